//! `testkit`: misbehaving and trivial commands for the host's tests.
//!
//! - `testkit.echo` returns its payload.
//! - `testkit.fail` fails as its payload says: `{"code", "message", "retryable"}`.
//! - `testkit.loop` never returns (the host's CPU deadline must stop it).
//! - `testkit.panic` panics with the payload's `message`.
//! - `testkit.oom` allocates until memory runs out (the host's memory limit must stop it).
use baton_guest::{Context, Failure, Registry};
use serde::Deserialize;
use serde_json::Value;

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

fn register(r: &mut Registry) {
    r.command_with_schema("testkit.echo", echo, Some(r#"{"type":"object"}"#), Some(r#"{"type":"object"}"#));
    r.command("testkit.fail", fail);
    r.command("testkit.loop", spin);
    r.command("testkit.panic", panic);
    r.command("testkit.oom", oom);
}

baton_guest::worker!(register);
