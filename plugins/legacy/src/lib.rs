//! `legacy`: a worker built against the previous contract, `baton:saga@0.1.0`
//! (`wit/0.1.0/saga.wit`), with wit-bindgen alone and no guest SDK: what a plugin built
//! before 0.2.0 looks like to the host. The tests load it to prove that the host still
//! serves that contract.
//!
//! - `legacy.echo` returns `{"payload": <its payload>, "meta": {...}}`, the command's
//!   metadata as the host passed it.
//! - `legacy.fail` fails with the payload's `code`, `message` and `retryable`.

wit_bindgen::generate!({
    path: "../../wit/0.1.0/saga.wit",
    world: "worker-plugin",
});

use exports::baton::saga::worker::{Command, CommandSpec, Failure, Guest};
use serde_json::{Value, json};

struct Legacy;

fn payload(cmd: &Command) -> Result<Value, Failure> {
    serde_json::from_str(&cmd.payload).map_err(|e| Failure {
        code: "invalid_input".into(),
        message: format!("{}: the payload is not JSON: {e}", cmd.name),
        retryable: false,
    })
}

fn echo(cmd: &Command) -> Result<String, Failure> {
    let m = &cmd.meta;
    let out = json!({
        "payload": payload(cmd)?,
        "meta": {
            "transaction_id": m.transaction_id,
            "correlation_id": m.correlation_id,
            "idempotency_key": m.idempotency_key,
            "step": m.step,
            "attempt": m.attempt,
            "traceparent": m.traceparent,
        },
    });
    Ok(out.to_string())
}

fn fail(cmd: &Command) -> Result<String, Failure> {
    let p = payload(cmd)?;
    let text = |key: &str| p[key].as_str().unwrap_or_default().to_owned();
    Err(Failure { code: text("code"), message: text("message"), retryable: p["retryable"].as_bool().unwrap_or(false) })
}

impl Guest for Legacy {
    fn describe() -> Vec<CommandSpec> {
        ["legacy.echo", "legacy.fail"]
            .into_iter()
            .map(|name| CommandSpec { name: name.into(), input_schema: None, output_schema: None })
            .collect()
    }

    fn handle(cmd: Command) -> Result<String, Failure> {
        match cmd.name.as_str() {
            "legacy.echo" => echo(&cmd),
            "legacy.fail" => fail(&cmd),
            other => Err(Failure {
                code: "unknown_command".into(),
                message: format!("legacy does not handle {other:?}"),
                retryable: false,
            }),
        }
    }
}

export!(Legacy);

#[cfg(test)]
mod tests {
    use super::*;
    use baton::saga::types::Meta;

    fn command(name: &str, payload: &str) -> Command {
        let meta = Meta {
            transaction_id: "t-1".into(),
            correlation_id: "t-1/s/forward/2".into(),
            idempotency_key: "t-1/s/forward".into(),
            step: "s".into(),
            attempt: 2,
            traceparent: None,
        };
        Command { name: name.into(), payload: payload.into(), meta }
    }

    #[test]
    fn echo_returns_the_payload_and_the_meta() {
        let out: Value = serde_json::from_str(&Legacy::handle(command("legacy.echo", r#"{"n":1}"#)).unwrap()).unwrap();
        assert_eq!(out["payload"], json!({"n": 1}));
        assert_eq!(out["meta"]["idempotency_key"], "t-1/s/forward");
        assert_eq!(out["meta"]["attempt"], 2);
    }

    #[test]
    fn fail_fails_as_told_and_bad_json_is_invalid_input() {
        let f =
            Legacy::handle(command("legacy.fail", r#"{"code":"teapot","message":"no","retryable":true}"#)).unwrap_err();
        assert_eq!((f.code.as_str(), f.message.as_str(), f.retryable), ("teapot", "no", true));
        let f = Legacy::handle(command("legacy.echo", "not json")).unwrap_err();
        assert_eq!((f.code.as_str(), f.retryable), ("invalid_input", false));
        assert_eq!(Legacy::handle(command("legacy.nope", "{}")).unwrap_err().code, "unknown_command");
    }
}
