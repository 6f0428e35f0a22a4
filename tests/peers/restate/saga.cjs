// The order saga of Baton's bench (workflows/order.toml), on Restate's Node SDK: reserve each
// item, charge and ship side by side, notify; on a terminal failure undo in reverse order.
// Every step is a journaled side effect (ctx.run), as every Baton step is a durable command.
// Node 20 (this machine's) lacks Promise.withResolvers, which the SDK uses (Node 22 has it).
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new this((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}
const restate = require("@restatedev/restate-sdk");

const order = restate.service({
  name: "order",
  handlers: {
    run: async (ctx, input) => {
      const undo = [];
      try {
        for (const [i, item] of input.items.entries()) {
          const r = await ctx.run(`reserve ${i}`, async () => ({ reservation_id: `res-${input.order_id}-${i}`, skus: [item.sku] }));
          undo.push(() => ctx.run(`release ${i}`, async () => ({ released: r.reservation_id })));
        }
        const total = input.items.reduce((s, it) => s + it.qty * it.price, 0);
        const [payment, shipment] = await restate.RestatePromise.all([
          ctx.run("charge", async () => ({ payment_id: `pay-${input.order_id}`, amount: total })),
          ctx.run("ship", async () => ({ tracking_number: `trk-${input.order_id}` })),
        ]);
        undo.push(() => ctx.run("refund", async () => ({ refunded: payment.payment_id })));
        undo.push(() => ctx.run("cancel shipment", async () => ({ cancelled: shipment.tracking_number })));
        await ctx.run("notify", async () => ({ sent: true, to: input.customer }));
        return { order_id: input.order_id, payment_id: payment.payment_id, tracking_number: shipment.tracking_number };
      } catch (e) {
        if (e instanceof restate.TerminalError) {
          for (const u of undo.reverse()) await u();
        }
        throw e;
      }
    },
  },
});

restate.serve({ services: [order], port: 9080 });
