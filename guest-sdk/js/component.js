// The WebAssembly side of the SDK: the `worker` export of `baton:saga`'s `worker-plugin`
// world, served by the functions registered with `command`.
//
// `baton-worker-build` writes an entry module that imports the user's module (registering its
// commands) and re-exports `worker` from here; componentize-js binds it to the WIT export
// `baton:saga/worker@0.2.0`. It delegates to the default `registry`:
//
// - `describe` is `Registry.describe`, as the WIT `command-spec` records;
// - `handle` parses the command's JSON payload, makes a `Context` of its `meta`, runs
//   `Registry.handle` and returns the result as JSON text, or the failure.
//
// How componentize-js 0.23 maps `handle: func(cmd: command) -> result<string, failure>` (read
// in the bindings it generates, and tried against the host):
//
// - the export is awaited: it may return a promise, and the engine runs its event loop until
//   the promise settles;
// - a returned `{ tag: "ok", val }` or `{ tag: "err", val }` is the result as it is; any
//   other returned value is `ok` with that value (it must then be a string);
// - a thrown value is `err` with its own `payload` property when it has one, else with the
//   value itself, except that an `Error` without `payload` is thrown on: the instance traps
//   and the host sees no message. A thrown value without `code`, `message` and `retryable`
//   (a string, a number) makes the bindings themselves throw while lowering it: a trap too.
//
// So `handle` never throws: it returns the tagged result, whatever went wrong (the failure
// `internal` with the stack, when it is not the handler's own `Failure`).

import {
  Context,
  Failure,
  INTERNAL,
  INVALID_INPUT,
  internal,
  isThenable,
  registry as defaultRegistry,
} from "./handlers.js";

/** The handler's `Context` of a WIT command (its `meta` in componentize-js's casing). The
 * contract carries no deadline: `timeoutMs` is 0 and `deadline` null (the host enforces the
 * step's timeout and stops the instance). */
export function context(cmd) {
  const m = cmd.meta;
  return new Context({
    command: cmd.name,
    transactionId: m.transactionId,
    correlationId: m.correlationId,
    idempotencyKey: m.idempotencyKey,
    step: m.step,
    attempt: Number(m.attempt),
    traceparent: m.traceparent ?? null,
  });
}

/** The failure `internal` for what went wrong in this glue (not in a handler); never throws,
 * whatever `thrown` is. */
function glueFailure(thrown, name) {
  try {
    return internal(thrown, `in baton-worker's component glue, handling ${name}`);
  } catch {
    return { err: { code: INTERNAL, message: `baton-worker's component glue failed handling ${name}`, retryable: false } };
  }
}

/** An outcome with its `ok` value as JSON text. */
function asText(outcome) {
  return "ok" in outcome ? { ok: JSON.stringify(outcome.ok) } : outcome;
}

/**
 * What the component answers to `cmd` (`{ name, payload, meta }`, `payload` JSON text):
 * `{ ok: jsonText }` or `{ err: { code, message, retryable } }`, or a promise of it when the
 * handler is async. Never throws, and the promise never rejects. `baton-worker/testing` calls
 * this too, so a test sees what the host would.
 */
export function answer(cmd, registry = defaultRegistry) {
  const name = cmd?.name;
  try {
    let payload;
    try {
      payload = JSON.parse(cmd.payload);
    } catch (e) {
      return Failure.fatal(INVALID_INPUT, `the payload of ${name} is not JSON text: ${e.message}`).outcome();
    }
    const outcome = registry.handle(name, payload, context(cmd));
    if (isThenable(outcome)) {
      return Promise.resolve(outcome)
        .then(asText)
        .catch((e) => glueFailure(e, name));
    }
    return asText(outcome);
  } catch (e) {
    return glueFailure(e, name);
  }
}

/** An outcome as componentize-js's tagged `result`. */
function tagged(outcome) {
  return "ok" in outcome ? { tag: "ok", val: outcome.ok } : { tag: "err", val: outcome.err };
}

/** The `worker` export, serving the default registry (see the top of this module). */
export const worker = {
  /** The registered commands with their schemas (JSON text, or null for none). */
  describe() {
    return defaultRegistry.describe();
  },

  /** Run the handler of `cmd.name` once: `ok` with its result as JSON text, or `err`. */
  handle(cmd) {
    const outcome = answer(cmd);
    return isThenable(outcome) ? outcome.then(tagged) : tagged(outcome);
  },
};
