//! `testkit`: misbehaving and trivial commands for the host's tests.
//!
//! - `testkit.echo` returns its payload.
//! - `testkit.fail` fails as its payload says: `{"code", "message", "retryable"}`.
//! - `testkit.loop` never returns (the host's CPU deadline must stop it).
//! - `testkit.panic` panics with the payload's `message`.
//! - `testkit.oom` allocates until memory runs out (the host's memory limit must stop it).
//! - `testkit.sagas` makes the calls to the orchestrator its payload lists, in order, and
//!   returns what each gave: `{"calls": [{"call": "run", "workflow", "input"}, ...]}` ->
//!   `{"results": [{"ok": ...} | {"err": {"code", "message", "retryable"}}, ...]}`. A call is
//!   `start` (`workflow`, `input`, `id`?), `run` (`workflow`, `input`), `signal` (`id`,
//!   `signal`, `payload`), `get` (`id`), `start_text` (`workflow` and `input` as text passed
//!   as it is, JSON or not) or `spin` (`ms` of busy CPU). With `"fail": true` the first failed
//!   call fails the command.
//!
//! - `testkit.config` reads the config value `{"name"}` its manifest grants and answers
//!   `{"set", "len", "sum"}` (its length and the sum of its bytes), never the value itself.
//!
//! - `testkit.fetch` sends `{"url", "method"?, "body"?}` over HTTP (the manifest must allow
//!   it) and answers `{"status", "body"}`, the body as text.
//!
//! Commands with schemas, for the host's checks of them:
//! - `testkit.amount` returns its payload; its input schema wants `amount` over 0
//!   (`exclusiveMinimum`), written by hand over several lines.
//! - `testkit.reply` returns its payload's `reply`; its output schema wants an object with a
//!   string `id`, so a reply without one is an `invalid_output`.
//! - `testkit.undo` undoes a `testkit.reply`: typed, it requires `loan_id` (derived by
//!   schemars), so compensating a reply with its result (`{id}`) cannot work, and
//!   `baton check` says so.
use baton_guest::{Context, Failure, Registry, saga};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

fn echo(v: Value, _: &Context) -> Result<Value, Failure> {
    Ok(v)
}

#[derive(Deserialize)]
struct Fail {
    code: String,
    message: String,
    #[serde(default)]
    retryable: bool,
    /// Succeed from this attempt on (0 = never).
    #[serde(default)]
    succeed_on_attempt: u32,
}

fn fail(f: Fail, ctx: &Context) -> Result<Value, Failure> {
    if f.succeed_on_attempt != 0 && ctx.attempt >= f.succeed_on_attempt {
        return Ok(serde_json::json!({ "attempt": ctx.attempt }));
    }
    Err(Failure { code: f.code, message: f.message, retryable: f.retryable })
}

fn spin(_: Value, _: &Context) -> Result<Value, Failure> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[derive(Deserialize)]
struct Panic {
    message: String,
}

fn panic(p: Panic, _: &Context) -> Result<Value, Failure> {
    panic!("{}", p.message)
}

fn oom(_: Value, _: &Context) -> Result<Value, Failure> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // 1 MiB at a time, touched so that it is really committed.
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

#[derive(Deserialize)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
enum Call {
    Start {
        workflow: String,
        #[serde(default)]
        input: Value,
        #[serde(default)]
        id: Option<String>,
    },
    Run {
        workflow: String,
        #[serde(default)]
        input: Value,
    },
    Signal {
        id: String,
        signal: String,
        #[serde(default)]
        payload: Value,
    },
    Get {
        id: String,
    },
    StartText {
        workflow: String,
        input: String,
    },
    Spin {
        ms: u64,
    },
}

#[derive(Deserialize)]
struct Calls {
    calls: Vec<Call>,
    #[serde(default)]
    fail: bool,
}

fn one(call: Call) -> Result<Value, Failure> {
    match call {
        Call::Start { workflow, input, id } => saga::start(&workflow, &input, id.as_deref()).map(Value::String),
        Call::Run { workflow, input } => saga::run(&workflow, &input),
        Call::Signal { id, signal, payload } => saga::signal(&id, &signal, &payload).map(|()| Value::Null),
        Call::Get { id } => saga::get(&id),
        Call::StartText { workflow, input } => {
            // The raw import, past the SDK's typed face: the host's own JSON check.
            use baton_guest::__bindings::baton::saga::orchestrator::start_saga;
            start_saga(&workflow, &input, None).map(Value::String).map_err(|f| Failure {
                code: f.code,
                message: f.message,
                retryable: f.retryable,
            })
        }
        Call::Spin { ms } => {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
            let mut n: u64 = 0;
            while std::time::Instant::now() < until {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            Ok(json!({ "spun_ms": ms }))
        }
    }
}

fn sagas(req: Calls, _: &Context) -> Result<Value, Failure> {
    let mut results = Vec::with_capacity(req.calls.len());
    for call in req.calls {
        match one(call) {
            Ok(v) => results.push(json!({ "ok": v })),
            Err(f) if req.fail => return Err(f),
            Err(f) => {
                results.push(json!({ "err": { "code": f.code, "message": f.message, "retryable": f.retryable } }))
            }
        }
    }
    Ok(json!({ "results": results }))
}

/// `testkit.amount`'s input schema, over several lines as an author writes one.
const AMOUNT_SCHEMA: &str = r#"{
    "type": "object",
    "required": ["amount"],
    "properties": {
        "amount": { "type": "number", "exclusiveMinimum": 0 }
    }
}"#;

/// `testkit.reply`'s output schema.
const REPLY_OUTPUT: &str = r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}"#;

#[derive(Deserialize)]
struct Reply {
    reply: Value,
}

fn reply(r: Reply, _: &Context) -> Result<Value, Failure> {
    Ok(r.reply)
}

#[derive(Deserialize, JsonSchema)]
struct Undo {
    loan_id: String,
}

#[derive(Serialize, JsonSchema)]
struct Undone {
    undone: String,
}

fn undo(u: Undo, _: &Context) -> Result<Undone, Failure> {
    Ok(Undone { undone: u.loan_id })
}

#[derive(Deserialize)]
struct ConfigName {
    name: String,
}

fn config(c: ConfigName, _: &Context) -> Result<Value, Failure> {
    Ok(match baton_guest::config(&c.name) {
        Some(v) => json!({ "set": true, "len": v.len(), "sum": v.bytes().map(u64::from).sum::<u64>() }),
        None => json!({ "set": false }),
    })
}

#[derive(Deserialize)]
struct Fetch {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    body: Option<String>,
}

fn fetch(f: Fetch, _: &Context) -> Result<Value, Failure> {
    let mut request = baton_guest::http::Request::new(f.method.as_deref().unwrap_or("GET"), &f.url);
    if let Some(body) = f.body {
        request = request.body(body);
    }
    let r = request.send()?;
    Ok(json!({ "status": r.status, "body": r.text() }))
}

fn register(r: &mut Registry) {
    r.command_with_schema("testkit.echo", echo, Some(r#"{"type":"object"}"#), Some(r#"{"type":"object"}"#));
    r.command_with_schema("testkit.amount", echo, Some(AMOUNT_SCHEMA), None);
    r.command_with_schema(
        "testkit.reply",
        reply,
        Some(r#"{"type":"object","required":["reply"]}"#),
        Some(REPLY_OUTPUT),
    );
    r.typed("testkit.undo", undo);
    r.command("testkit.config", config);
    r.command("testkit.fetch", fetch);
    r.command("testkit.fail", fail);
    r.command("testkit.loop", spin);
    r.command("testkit.panic", panic);
    r.command("testkit.oom", oom);
    r.command("testkit.sagas", sagas);
}

baton_guest::worker!(register);
