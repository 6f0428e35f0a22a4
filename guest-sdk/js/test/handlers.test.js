// The handler API and the component glue, through baton-worker/testing: what a worker author
// sees of the registry, failures, uncaught throws and payloads that are not JSON. No
// componentize-js needed. Run with `node --test guest-sdk/js/test/`.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Context, Failure, MAX_MESSAGE, Registry, command, registry } from "baton-worker";
import { worker } from "baton-worker/component";
import { call, callText } from "baton-worker/testing";

// Commands of the default registry, as a worker module registers them.
command("t.echo", (req, ctx) => ({ req, attempt: ctx.attempt, step: ctx.step, traceparent: ctx.traceparent }), {
  inputSchema: { type: "object", required: ["name"] },
});
command("t.fatal", () => {
  throw Failure.fatal("card_declined", "the card was declined");
});
command("t.retry", (req, ctx) => {
  throw Failure.retryable("busy", `attempt ${ctx.attempt}`);
});
function lookUp(table, key) {
  return table[key].value; // a TypeError when the key is missing
}
command("t.crash", (req) => lookUp({}, req.key));
command("t.throw", (req) => {
  throw req.value;
});
command("t.nothing", () => {});
command("t.notjson", (req) => ({ big: 10n ** BigInt(req.digits ?? 3) }));
command("t.infinite", () => ({ ratio: 1 / 0 }));
command("t.async", async (req) => {
  await new Promise((done) => setTimeout(done, 1));
  return { twice: req.n * 2 };
});
command("t.async_fail", async () => {
  await null;
  throw Failure.retryable("later", "not yet");
});
command("t.async_crash", async () => {
  await null;
  throw new Error("broke after an await");
});

describe("the registry", () => {
  test("lists its commands, sorted, with schemas as JSON text", () => {
    const echo = registry.describe().find((c) => c.name === "t.echo");
    assert.deepEqual(echo, { name: "t.echo", inputSchema: '{"type":"object","required":["name"]}', outputSchema: null });
    assert.deepEqual(worker.describe(), registry.describe());
    const names = registry.names();
    assert.deepEqual(names, [...names].sort());
    assert.ok(registry.has("t.echo") && !registry.has("t.none"));
  });

  test("refuses a bad name, a handler that is not a function, a second registration and unknown options", () => {
    const reg = new Registry();
    assert.throws(() => reg.command("no spaces", () => 1), /command name "no spaces": use letters, digits/);
    assert.throws(() => reg.command("a.b", "nope"), /the handler of a\.b must be a function/);
    reg.command("a.b", function first() {});
    assert.throws(() => reg.command("a.b", () => 2), /command a\.b is already registered \(to first\): register each command once/);
    assert.throws(() => reg.command("a.c", () => 2, { input_schema: {} }), /unknown option input_schema \(did you mean inputSchema\?\)/);
    assert.throws(() => reg.command("a.d", () => 2, { inputSchema: "text" }), /must be a JSON Schema/);
    assert.equal(reg.size, 1);
  });

  test("handle gives outcomes; an unknown command is the permanent unknown_command", () => {
    const reg = new Registry();
    reg.command("x.one", () => 1);
    const ctx = new Context({ command: "x.one", transactionId: "t", correlationId: "c", idempotencyKey: "k", step: "s", attempt: 1 });
    assert.deepEqual(reg.handle("x.one", {}, ctx), { ok: 1 });
    const { err } = reg.handle("x.two", {}, ctx);
    assert.equal(err.code, "unknown_command");
    assert.equal(err.retryable, false);
    assert.match(err.message, /no function handles command "x\.two" here \(registered: x\.one\)/);
  });
});

describe("a call, as the host would make it", () => {
  test("gives the result, and the context of the command's meta", () => {
    assert.deepEqual(call("t.echo", { name: "Ada" }), { ok: { req: { name: "Ada" }, attempt: 1, step: "test", traceparent: null } });
    const out = call("t.echo", { name: "Ada" }, { attempt: 3, step: "screen", traceparent: "00-ab-cd-01" });
    assert.deepEqual(out.ok, { req: { name: "Ada" }, attempt: 3, step: "screen", traceparent: "00-ab-cd-01" });
  });

  test("fills the meta as a saga would, and refuses an unknown option", () => {
    const reg = new Registry();
    reg.command("x.ctx", (req, ctx) => ({ ...ctx, frozen: Object.isFrozen(ctx), remaining: ctx.remaining() }));
    const { ok } = call("x.ctx", {}, { registry: reg, attempt: 2 });
    assert.deepEqual(ok, {
      command: "x.ctx",
      transactionId: "test-saga",
      correlationId: "test-saga/test/forward/2",
      idempotencyKey: "test-saga/test/forward",
      step: "test",
      attempt: 2,
      traceparent: null,
      timeoutMs: 0,
      deadline: null,
      startBy: null,
      frozen: true,
      remaining: null,
    });
    assert.throws(() => call("x.ctx", {}, { attemps: 2 }), /unknown option attemps; the options are transactionId/);
  });

  test("keeps a Failure's code, message and retryable", () => {
    assert.deepEqual(call("t.fatal", {}), { err: { code: "card_declined", message: "the card was declined", retryable: false } });
    assert.deepEqual(call("t.retry", {}, { attempt: 2 }), { err: { code: "busy", message: "attempt 2", retryable: true } });
    const f = Failure.permanent("x", "y");
    assert.ok(f instanceof Error && f instanceof Failure && !f.retryable);
    assert.equal(String(f), "Failure x: y (permanent)");
    assert.throws(() => Failure.fatal("bad code", "m"), /failure code "bad code": use letters/);
  });

  test("an uncaught Error is the permanent internal, with its name, message and stack", () => {
    const { err } = call("t.crash", { key: "gone" });
    assert.equal(err.code, "internal");
    assert.equal(err.retryable, false);
    const [head, ...stack] = err.message.split("\n");
    assert.match(head, /^TypeError: Cannot read properties of undefined \(reading 'value'\) \(uncaught in the handler of t\.crash\)$/);
    assert.match(stack.join("\n"), /lookUp/, err.message);
  });

  test("a thrown value that is not an Error is internal too, and says what it was", () => {
    for (const [value, shown] of [
      ["the disk is full", 'uncaught string "the disk is full" in the handler of t.throw'],
      [42, "uncaught number 42 in the handler of t.throw"],
      [null, "uncaught null in the handler of t.throw"],
      [{ code: "x" }, 'uncaught object {"code":"x"} in the handler of t.throw'],
    ]) {
      const { err } = call("t.throw", { value });
      assert.equal(err.code, "internal");
      assert.ok(err.message.startsWith(shown), err.message);
      assert.match(err.message, /not an Error, so no stack: throw an Error for one, or Failure\.fatal\(code, message\)/);
    }
  });

  test("a stack too long for a message is cut to MAX_MESSAGE, its end kept", () => {
    const reg = new Registry();
    reg.command("x.deep", () => {
      const e = new Error("deep");
      e.stack = `${"frame@file.js:1:1\n".repeat(5000)}last@file.js:9:9`;
      throw e;
    });
    const { err } = call("x.deep", {}, { registry: reg });
    assert.equal(err.message.length, MAX_MESSAGE);
    assert.ok(err.message.startsWith("Error: deep (uncaught in the handler of x.deep)\n...\n"), err.message.slice(0, 80));
    assert.ok(err.message.endsWith("last@file.js:9:9"));
  });

  test("a payload that is not JSON is invalid_input; a result that is not JSON is invalid_output", () => {
    const bad = callText("t.echo", "{nope");
    assert.equal(bad.err.code, "invalid_input");
    assert.match(bad.err.message, /^the payload of t\.echo is not JSON text: /);
    for (const name of ["t.notjson", "t.infinite"]) {
      const { err } = call(name, {});
      assert.equal(err.code, "invalid_output", name);
      assert.match(err.message, new RegExp(`^the handler of ${name.replace(".", "\\.")} returned something that is not JSON: `));
    }
    assert.deepEqual(call("t.nothing", {}), { ok: null });
  });

  test("an async handler is awaited, its failures and throws mapped the same", async () => {
    assert.deepEqual(await call("t.async", { n: 21 }), { ok: { twice: 42 } });
    assert.deepEqual(await call("t.async_fail", {}), { err: { code: "later", message: "not yet", retryable: true } });
    const { err } = await call("t.async_crash", {});
    assert.equal(err.code, "internal");
    assert.match(err.message, /^Error: broke after an await \(uncaught in the handler of t\.async_crash\)/);
  });

  test("the worker export answers with componentize-js's tagged result, never a throw", async () => {
    const meta = { transactionId: "t", correlationId: "c", idempotencyKey: "k", step: "s", attempt: 1 };
    assert.deepEqual(worker.handle({ name: "t.fatal", payload: "{}", meta }), {
      tag: "err",
      val: { code: "card_declined", message: "the card was declined", retryable: false },
    });
    assert.deepEqual(worker.handle({ name: "t.echo", payload: '{"name":"x"}', meta }), {
      tag: "ok",
      val: '{"req":{"name":"x"},"attempt":1,"step":"s","traceparent":null}',
    });
    assert.deepEqual(await worker.handle({ name: "t.async", payload: '{"n":1}', meta }), { tag: "ok", val: '{"twice":2}' });
    // A command without meta: the glue's own catch.
    const broken = worker.handle({ name: "t.echo", payload: "{}" });
    assert.equal(broken.tag, "err");
    assert.match(broken.val.message, /in baton-worker's component glue, handling t\.echo/);
  });
});
