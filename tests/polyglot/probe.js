// The JavaScript component of tests/tests/polyglot_js.rs: the fraud example's commands, and
// commands that fail in each way a JavaScript handler can.
//
// - `probe.crash`: an uncaught RangeError, thrown two calls deep (its stack names both);
// - `probe.decline`: `Failure.fatal` with the code and message of its input;
// - `probe.flaky`: `Failure.retryable("busy", ...)` until attempt `succeed_on`, then its
//   attempt and idempotency key (the same for every attempt);
// - `probe.throw`: throws its input's `value` as it is (a string, a number), not an Error;
// - `probe.later`: an async handler, its result after a timer and a few awaits;
// - `probe.context`: the whole context;
// - `probe.echo`: its input, for the benchmark of the per-command cost (benches/polyglot.rs).

import "../../plugins/js/fraud/fraud.js"; // its commands are this component's too
import { Failure, command } from "baton-worker";

function divide(a, b) {
  if (b === 0) throw new RangeError(`cannot divide ${a} by zero`);
  return a / b;
}

function ratio(req) {
  return divide(req.numerator ?? 1, req.denominator ?? 0);
}

command("probe.crash", (req) => ({ ratio: ratio(req) }));

command("probe.decline", (req) => {
  throw Failure.fatal(req.code, req.message);
});

command("probe.flaky", (req, ctx) => {
  if (ctx.attempt < req.succeed_on) {
    throw Failure.retryable("busy", `attempt ${ctx.attempt} of ${ctx.step}: try again`);
  }
  return { attempt: ctx.attempt, idempotency_key: ctx.idempotencyKey };
});

command("probe.throw", (req) => {
  throw req.value;
});

command("probe.later", async (req) => {
  await new Promise((done) => setTimeout(done, req.ms ?? 1));
  const parts = [];
  for (const part of req.parts ?? []) parts.push(await Promise.resolve(part.toUpperCase()));
  return { joined: parts.join(" ") };
});

command("probe.context", (req, ctx) => ({ ...ctx }));

command("probe.echo", (req) => req);
