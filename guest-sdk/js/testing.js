// Test a handler without a host: `call` sends one command through the same glue the
// component uses (the payload as JSON text and back, the same catching), so a test sees what
// the host would get.
//
//     import { call } from "baton-worker/testing";
//     import "./fraud.js"; // registers fraud.check
//
//     assert.deepEqual(call("fraud.check", { order_id: "o-1", items: [] }, { attempt: 2 }),
//                      { err: { code: "invalid_order", message: "...", retryable: false } });

import { answer } from "./component.js";
import { isThenable, registry as defaultRegistry } from "./handlers.js";

const OPTIONS = ["transactionId", "correlationId", "idempotencyKey", "step", "attempt", "traceparent", "registry"];

/** The WIT command `{ name, payload, meta }` of a call, its meta defaulted as a saga
 * `test-saga` would send it from step `test` at attempt 1. */
function command(name, payload, options) {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`call(${name}, input, options): options is an object of ${OPTIONS.join(", ")}`);
  }
  for (const key of Object.keys(options)) {
    if (!OPTIONS.includes(key)) throw new TypeError(`call(${name}): unknown option ${key}; the options are ${OPTIONS.join(", ")}`);
  }
  const transactionId = options.transactionId ?? "test-saga";
  const step = options.step ?? "test";
  const attempt = options.attempt ?? 1;
  if (!Number.isInteger(attempt) || attempt < 1) throw new TypeError(`call(${name}): attempt is 1 or more, not ${attempt}`);
  const idempotencyKey = options.idempotencyKey ?? `${transactionId}/${step}/forward`;
  const meta = {
    transactionId,
    correlationId: options.correlationId ?? `${idempotencyKey}/${attempt}`,
    idempotencyKey,
    step,
    attempt,
    traceparent: options.traceparent,
  };
  return { name, payload, meta };
}

/** `{ ok: value }` from `{ ok: jsonText }`. */
function parsed(outcome) {
  return "ok" in outcome ? { ok: JSON.parse(outcome.ok) } : outcome;
}

/**
 * Run command `name` with `input` (any JSON value, sent as JSON text) as the host would:
 * returns `{ ok: result }` or `{ err: { code, message, retryable } }` (a promise of it when the
 * handler is async: `await` works for both). `options`: the command's meta,
 * `{ transactionId, correlationId, idempotencyKey, step, attempt, traceparent }` (defaults: a
 * first attempt of step `test` of saga `test-saga`), and `registry` (default: the one
 * `command` registers into).
 */
export function call(name, input, options = {}) {
  return callText(name, JSON.stringify(input === undefined ? null : input), options);
}

/** As `call`, with the payload as it arrives: JSON text, or anything else to see the
 * failure `invalid_input`. */
export function callText(name, payload, options = {}) {
  const outcome = answer(command(name, payload, options), options.registry ?? defaultRegistry);
  return isThenable(outcome) ? outcome.then(parsed) : parsed(outcome);
}
