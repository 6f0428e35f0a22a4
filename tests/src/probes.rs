//! What the Python and the JavaScript probes (`tests/polyglot/probe.py`, `probe.js`) share:
//! the same commands that fail in the same ways, so one check holds for both languages.

use std::path::Path;

use serde_json::{Value, json};

use crate::{baton, run, step};

/// `baton run WORKFLOW --input INPUT --json` with the plugins in `plugins` and the workflows
/// in `workflows`: its exit code and the saga.
pub fn run_saga(plugins: &Path, workflows: &Path, workflow: &str, input: &str) -> (i32, Value) {
    let ran = run(baton()
        .env("BATON_PLUGINS", plugins)
        .env("BATON_WORKFLOWS", workflows)
        .args(["run", workflow, "--input", input, "--json"]));
    (ran.code, ran.json())
}

/// A directory holding one workflow, `name.toml` with `text`.
pub fn workflow(name: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(format!("{name}.toml")), text).expect("write the workflow");
    dir
}

/// With a probe in `plugins` (and `testkit`): `probe.flaky`'s retryable failure is retried
/// with the same idempotency key until it passes, or up to the policy's attempts, with the
/// handler's code and message; `probe.decline`'s permanent one fails at its first attempt and
/// the saga compensates the Rust step before it.
pub fn fatal_fails_at_once_and_retryable_is_retried_up_to_the_policy(plugins: &Path) {
    let dir = workflow(
        "retries",
        r#"
name = "retries"
[defaults]
timeout = "10s"
retry = { attempts = 3, backoff = "10ms", max_backoff = "10ms" }

[[step]]
name = "first"
command = "testkit.echo"
compensate = "testkit.echo"

[[step]]
name = "flaky"
command = "probe.flaky"
input = "{ 'succeed_on': 3 }"

[[step]]
name = "exhausted"
command = "probe.flaky"
input = "{ 'succeed_on': 99 }"
catch = [{ errors = ["busy"], next = "decline" }]

[[step]]
name = "skipped"
command = "testkit.echo"

[[step]]
name = "decline"
command = "probe.decline"
input = "{ 'code': 'card_declined', 'message': 'the card was declined' }"
"#,
    );
    let (code, saga) = run_saga(plugins, dir.path(), "retries", "{}");
    assert_eq!(code, 2, "{saga:#}");
    assert_eq!(saga["status"], "compensated");

    // Retryable: tried again, with the same idempotency key, until it passed on the third.
    let flaky = step(&saga, "flaky");
    assert_eq!(flaky["status"], "completed", "{flaky:#}");
    assert_eq!(flaky["attempts"], 3);
    assert_eq!(flaky["output"]["attempt"], 3);
    assert!(flaky["output"]["idempotency_key"].as_str().unwrap().contains("flaky"), "{flaky:#}");

    // Retryable past the policy's attempts: failed with the handler's code and message.
    let exhausted = step(&saga, "exhausted");
    assert_eq!(exhausted["status"], "failed");
    assert_eq!(exhausted["attempts"], 3, "{exhausted:#}");
    assert_eq!(exhausted["error"]["code"], "busy");
    assert_eq!(exhausted["error"]["message"], "attempt 3 of exhausted: try again");

    // Fatal: failed at its first attempt though the policy allows three; the saga compensated
    // the Rust step before it.
    let decline = step(&saga, "decline");
    assert_eq!(decline["attempts"], 1, "{decline:#}");
    assert_eq!(decline["error"], json!({"code": "card_declined", "message": "the card was declined"}));
    assert_eq!(saga["error"]["code"], "card_declined");
    assert_eq!(step(&saga, "first")["compensation"]["status"], "completed");
}
