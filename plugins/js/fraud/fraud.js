// `fraud`: a Baton worker plugin in JavaScript, the example of guest-sdk/js.
//
// Build it into a plugin directory with the SDK (componentize-js installed):
//
//     npm install --prefix /tmp/js-tools @bytecodealliance/componentize-js@0.23
//     node guest-sdk/js/build.js plugins/js/fraud/fraud.js \
//         -o plugins/target/wasm32-wasip2/release/fraud.wasm --componentize-js /tmp/js-tools
//
// and run the workflow beside it, which reserves the stock (Rust), screens the order here,
// charges the card and tells the customer (Rust):
//
//     baton run checkout --workflows plugins/js/fraud --input @plugins/js/fraud/checkout.input.json
//
// No model behind it: rules, so a demo or a test steers it with the order. Each rule adds to
// the score (0 to 1); at THRESHOLD or more the order is refused for good, `fraud_suspected`,
// and the saga undoes what it did.

import { Failure, command } from "baton-worker";

/** A score at or above this refuses the order. */
export const THRESHOLD = 0.8;
/** The total at which the amount alone weighs its most. */
const LARGE_TOTAL = 10_000;
/** More units of one article than this in one order is unusual. */
const BULK_QTY = 20;

/** What each rule adds to the score, and why: [weight, reason] or null. */
const RULES = [
  (o) => [Math.min(1, o.total / LARGE_TOTAL) * 0.6, `a total of ${o.total.toFixed(2)}`],
  (o) =>
    o.billing_country && o.shipping_country && o.billing_country !== o.shipping_country
      ? [0.3, `billed in ${o.billing_country}, shipped to ${o.shipping_country}`]
      : null,
  (o) => {
    const bulk = o.items.find((i) => i.qty > BULK_QTY);
    return bulk ? [0.2, `${bulk.qty} units of ${bulk.sku}`] : null;
  },
];

/** The order's items, checked: a list of `{ sku, qty, price }`. */
function items(order) {
  if (!Array.isArray(order.items) || order.items.length === 0) {
    throw Failure.fatal("invalid_order", `order ${order.order_id} has no items to screen`);
  }
  for (const item of order.items) {
    if (!Number.isFinite(item?.qty) || !Number.isFinite(item?.price) || item.qty < 0 || item.price < 0) {
      throw Failure.fatal("invalid_order", `order ${order.order_id}: an item needs a qty and a price of 0 or more, not ${JSON.stringify(item)}`);
    }
  }
  return order.items;
}

/** Score an order, refusing it at THRESHOLD or more. `flaky_screening: N` has the scoring
 * service "busy" for the first N attempts (retryable), as payment's `flaky_payment` does. */
export function check(order, ctx) {
  if (typeof order?.order_id !== "string" || order.order_id === "") {
    throw Failure.fatal("invalid_order", "which order? the payload has no order_id");
  }
  if (ctx.attempt <= (order.flaky_screening ?? 0)) {
    throw Failure.retryable("screening_busy", `the scoring service is busy (attempt ${ctx.attempt}); try again`);
  }
  const list = items(order);
  const total = list.reduce((sum, i) => sum + i.qty * i.price, 0);
  const facts = { ...order, items: list, total };
  const hits = RULES.map((rule) => rule(facts)).filter((hit) => hit !== null && hit[0] > 0);
  const score = Math.round(Math.min(1, hits.reduce((sum, [weight]) => sum + weight, 0)) * 1000) / 1000;
  const reasons = hits.map(([, reason]) => reason);
  if (score >= THRESHOLD) {
    throw Failure.fatal("fraud_suspected", `order ${order.order_id} scored ${score} (${reasons.join("; ")}), at or above ${THRESHOLD}`);
  }
  return { order_id: order.order_id, score, reasons, screened_by: ctx.step };
}

command("fraud.check", check, {
  inputSchema: {
    type: "object",
    required: ["order_id", "items"],
    properties: {
      order_id: { type: "string" },
      customer: { type: "string" },
      items: { type: "array", items: { type: "object", required: ["qty", "price"] } },
      billing_country: { type: "string" },
      shipping_country: { type: "string" },
      flaky_screening: { type: "integer", minimum: 0 },
    },
  },
  outputSchema: {
    type: "object",
    required: ["order_id", "score", "reasons"],
    properties: {
      order_id: { type: "string" },
      score: { type: "number", minimum: 0, maximum: 1 },
      reasons: { type: "array", items: { type: "string" } },
    },
  },
});
