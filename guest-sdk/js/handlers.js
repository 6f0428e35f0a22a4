// The handler API, independent of how commands arrive: commands, failures, their context.
//
// A handler is `(payload, ctx) => result`: `payload` is the command's JSON input (an object
// for the usual one), `ctx` a `Context`, and the result any JSON value (or a promise of one).
// It fails by throwing a `Failure`; anything else it throws, an `Error` or not, becomes the
// permanent failure `internal` with its stack. `Registry.handle` turns one call into an
// *outcome*, the wire form of `data.outcome` in a `baton.result.v1` event: `{ ok: value }` or
// `{ err: { code, message, retryable } }`. The same as the Python SDK's `baton_worker.handlers`.

/** The code of an uncaught exception. Permanent: a bug fails the same way on a retry (throw
 * `Failure.retryable` for what may pass later, a service that is away). */
export const INTERNAL = "internal";
/** The code of a result that is not JSON. Permanent. */
export const INVALID_OUTPUT = "invalid_output";
/** The code of a payload that is not JSON text. Permanent (the host sends JSON; this guards
 * against a host that does not). */
export const INVALID_INPUT = "invalid_input";
/** The code of a command no registered function handles. Permanent. */
export const UNKNOWN_COMMAND = "unknown_command";
/** Most characters of the message of `internal` (a stack is cut to fit, its end kept). */
export const MAX_MESSAGE = 16 * 1024;

const NAME = /^[A-Za-z0-9._-]+$/;
// Marks a Failure and holds the registry, by symbols every copy of this module shares: a
// worker whose bundle carries a copy of the SDK of its own still reaches the component's.
const FAILURE = Symbol.for("baton-worker.failure");
const REGISTRY = Symbol.for("baton-worker.registry");

/**
 * Why a command did not succeed: a `code` workflows branch on (`catch`), a `message` for
 * people, and whether a retry may help.
 *
 * `throw Failure.retryable(code, message)`: trying again may succeed (a busy service); the
 * step is retried as its workflow's retry policy says. `throw Failure.fatal(code, message)`
 * (or `Failure.permanent`): it never will (a declined card); the step fails for good at once.
 * On an instance, `retryable` is the flag.
 */
export class Failure extends Error {
  constructor(code, message, retryable = false) {
    if (typeof code !== "string" || !NAME.test(code)) {
      throw new TypeError(`failure code ${show(code)}: use letters, digits, '.', '_' and '-', e.g. "card_declined"`);
    }
    super(String(message));
    this.name = "Failure";
    this.code = code;
    this.retryable = Boolean(retryable);
    Object.defineProperty(this, FAILURE, { value: true });
  }

  /** A failure a retry may fix. */
  static retryable(code, message) {
    return new Failure(code, message, true);
  }

  /** A failure no retry can fix: the step fails for good (a `catch` may take it, otherwise
   * the saga compensates). */
  static fatal(code, message) {
    return new Failure(code, message, false);
  }

  /** The Rust SDK's name for `fatal`. */
  static permanent(code, message) {
    return Failure.fatal(code, message);
  }

  /** Whether `value` is a `Failure`, of this copy of the SDK or another. */
  static [Symbol.hasInstance](value) {
    return value != null && value[FAILURE] === true;
  }

  /** `Failure card_declined: the card was declined (permanent)`. */
  toString() {
    return `Failure ${this.code}: ${this.message} (${this.retryable ? "retryable" : "permanent"})`;
  }

  /** As `data.outcome` of a result event. */
  outcome() {
    return { err: { code: this.code, message: this.message, retryable: this.retryable } };
  }
}

/** What a handler knows about the command it performs (the command's `meta`). */
export class Context {
  constructor({
    command,
    transactionId,
    correlationId,
    idempotencyKey,
    step,
    attempt,
    traceparent = null,
    timeoutMs = 0,
    deadline = null,
    startBy = null,
  }) {
    /** The command name, e.g. `fraud.check`. */
    this.command = command;
    /** The saga. */
    this.transactionId = transactionId;
    /** Pairs this attempt with its result; new for every attempt. */
    this.correlationId = correlationId;
    /** The same for every attempt of this step's command: pass it to the services you call
     * as their idempotency key, so a retry never does the work twice. */
    this.idempotencyKey = idempotencyKey;
    /** The path of the step instance that sent it, e.g. `settle/charge`. */
    this.step = step;
    /** 1 for the first try, 2 for the first retry, and so on. */
    this.attempt = attempt;
    /** W3C trace context, when the sender set one; else `null`. */
    this.traceparent = traceparent ?? null;
    /** How long the run may take, in milliseconds (0: the host enforces the step's timeout). */
    this.timeoutMs = timeoutMs;
    /** When the saga stops waiting for this attempt (a `Date`); `null`: never said. */
    this.deadline = deadline;
    /** The latest time the command may be started; `null`: none. */
    this.startBy = startBy;
    Object.freeze(this);
  }

  /** Seconds left before the deadline (negative once past); `null` without one. */
  remaining() {
    return this.deadline === null ? null : (this.deadline.getTime() - Date.now()) / 1000;
  }
}

/** `value` for a message: its JSON when it has one, else its `String`, at most 200
 * characters; never throws. */
export function show(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    // a cycle or a BigInt: its String below
  }
  if (text === undefined) {
    try {
      text = String(value);
    } catch {
      text = Object.prototype.toString.call(value);
    }
  }
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

/** The permanent failure `internal` for `thrown`, caught `where` (e.g. "in the handler of
 * fraud.check"): the error's name and message, then its stack, cut to `MAX_MESSAGE` with
 * the stack's end kept. A value that is not an `Error` has no stack: the message says what
 * it was. */
export function internal(thrown, where) {
  let head;
  let stack = "";
  if (thrown instanceof Error) {
    head = `${thrown.name}: ${thrown.message} (uncaught ${where})`;
    stack = typeof thrown.stack === "string" ? thrown.stack : "";
    // V8's stack starts with the name and message again; SpiderMonkey's has the frames alone.
    const title = `${thrown.name}: ${thrown.message}`;
    if (stack.startsWith(title)) stack = stack.slice(title.length).replace(/^\n/, "");
  } else {
    const kind = thrown === null ? "null" : Array.isArray(thrown) ? "array" : typeof thrown;
    const shown = show(thrown);
    head =
      `uncaught ${shown === kind ? kind : `${kind} ${shown}`} ${where} (not an Error, so no stack: throw an Error for one, ` +
      `or Failure.fatal(code, message) to fail with a code of your own)`;
  }
  stack = stack.trimEnd();
  if (stack === "") return Failure.fatal(INTERNAL, head.slice(0, MAX_MESSAGE)).outcome();
  head += "\n";
  const body =
    head.length + stack.length <= MAX_MESSAGE ? stack : `...\n${stack.slice(-(MAX_MESSAGE - head.length - 4))}`;
  return Failure.fatal(INTERNAL, (head + body).slice(0, MAX_MESSAGE)).outcome();
}

/** The outcome of a result: `{ ok }` when it is JSON (`undefined` is `null`), else the
 * failure `invalid_output`. Like Python's `json.dumps(allow_nan=False)`, a number that is not
 * finite is not JSON here (JSON.stringify would write it as null). */
function okOutcome(name, result) {
  const value = result === undefined ? null : result;
  try {
    JSON.stringify(value, (key, v) => {
      if (typeof v === "number" && !Number.isFinite(v)) throw new TypeError(`${v} is not a JSON number`);
      return v;
    });
  } catch (e) {
    return Failure.fatal(
      INVALID_OUTPUT,
      `the handler of ${name} returned something that is not JSON: ${e instanceof Error ? e.message : show(e)}`,
    ).outcome();
  }
  return { ok: value };
}

/** The outcome of what a handler threw: a `Failure`'s own, anything else `internal`. */
function thrownOutcome(name, thrown) {
  return thrown instanceof Failure ? thrown.outcome() : internal(thrown, `in the handler of ${name}`);
}

/** Whether `value` is a promise, or anything with a `then` to await. */
export function isThenable(value) {
  return value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function";
}

const OPTIONS = new Set(["inputSchema", "outputSchema"]);

/** A schema as the JSON text `describe` reports, or `null`. */
function schemaText(name, which, schema) {
  if (schema === undefined || schema === null) return null;
  let text;
  try {
    text = JSON.stringify(schema);
  } catch (e) {
    throw new TypeError(`the ${which} of ${name} is not JSON: ${e.message}`);
  }
  if (typeof schema !== "object" && typeof schema !== "boolean") {
    throw new TypeError(`the ${which} of ${name} must be a JSON Schema (an object), not ${show(schema)}`);
  }
  return text;
}

/**
 * Command name -> handler. Most code uses the module's default, through `command`; a
 * registry of its own suits tests.
 */
export class Registry {
  #entries = new Map();

  /** Register `handler` as the handler of command `name`, with the JSON Schemas `describe`
   * reports (`{ inputSchema, outputSchema }`, both optional: the host checks payloads and
   * results against them). Returns `handler`. */
  command(name, handler, options = {}) {
    if (typeof name !== "string" || !NAME.test(name)) {
      throw new TypeError(`command name ${show(name)}: use letters, digits, '.', '_' and '-', e.g. "fraud.check"`);
    }
    if (typeof handler !== "function") {
      throw new TypeError(`the handler of ${name} must be a function (payload, ctx) => result, not ${show(handler)}`);
    }
    if (options === null || typeof options !== "object") {
      throw new TypeError(`the options of ${name} must be an object: { inputSchema, outputSchema }`);
    }
    for (const key of Object.keys(options)) {
      if (!OPTIONS.has(key)) {
        const camel = key.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
        const hint = OPTIONS.has(camel) ? ` (did you mean ${camel}?)` : "";
        throw new TypeError(`command ${name}: unknown option ${key}${hint}; the options are inputSchema and outputSchema`);
      }
    }
    if (this.#entries.has(name)) {
      const other = this.#entries.get(name).handler.name || "an anonymous function";
      throw new Error(`command ${name} is already registered (to ${other}): register each command once`);
    }
    this.#entries.set(name, {
      handler,
      inputSchema: schemaText(name, "inputSchema", options.inputSchema),
      outputSchema: schemaText(name, "outputSchema", options.outputSchema),
    });
    return handler;
  }

  /** The registered command names, sorted. */
  names() {
    return [...this.#entries.keys()].sort();
  }

  /** Whether a handler of command `name` is registered. */
  has(name) {
    return this.#entries.has(name);
  }

  /** How many commands are registered. */
  get size() {
    return this.#entries.size;
  }

  /** Every command with its schemas as JSON text (or `null`), sorted by name: the
   * `command-spec` list of the WIT contract's `describe`. */
  describe() {
    return this.names().map((name) => {
      const { inputSchema, outputSchema } = this.#entries.get(name);
      return { name, inputSchema, outputSchema };
    });
  }

  /** Run the handler of `name` once and return its outcome (a promise of it when the handler
   * returns a promise); never throws, and the promise never rejects. */
  handle(name, payload, ctx) {
    const entry = this.#entries.get(name);
    if (entry === undefined) {
      const known = this.names().join(", ") || "none";
      return Failure.fatal(UNKNOWN_COMMAND, `no function handles command ${show(name)} here (registered: ${known})`).outcome();
    }
    let result;
    try {
      result = entry.handler(payload, ctx);
    } catch (e) {
      return thrownOutcome(name, e);
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        (value) => okOutcome(name, value),
        (e) => thrownOutcome(name, e),
      );
    }
    return okOutcome(name, result);
  }
}

/** The registry `command` registers into and the component serves: one per program, shared
 * by every copy of this module. */
export const registry = (globalThis[REGISTRY] ??= new Registry());

/** `command("fraud.check", handler, { inputSchema, outputSchema })`: register `handler` as
 * the handler of that command in the default `registry`; returns `handler`. */
export function command(name, handler, options) {
  return registry.command(name, handler, options);
}
