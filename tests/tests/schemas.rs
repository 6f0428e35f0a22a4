//! Schemas enforced, through the real binary and a real host: a plugin command's input schema
//! before it runs, its output schema on its result, a `wait`'s schema on a signal, a
//! workflow's `input_schema` at start over the API, and what `baton check` finds before
//! anything runs. The commands are `testkit`'s (`testkit.amount`, `testkit.reply`,
//! `testkit.undo`) and the demo's `payment`, whose schemas are derived from its types.

use std::path::Path;
use std::time::Duration;

use baton_tests::server::{InProcess, config};
use baton_tests::{baton, run, step};
use serde_json::json;

/// A workflow directory holding `files` (name, text).
fn workflows(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn baton_run(dir: &Path, workflow: &str, input: &str) -> baton_tests::Ran {
    run(baton().env("BATON_WORKFLOWS", dir).args(["run", workflow, "--json", "--input", input]))
}

const PAY: &str = r#"
name = "pay"
[[step]]
name = "pay"
command = "testkit.amount"
input = "{ 'amount': input.amount }"
"#;

#[test]
fn a_payload_that_does_not_fit_the_input_schema_is_refused_before_the_plugin_runs() {
    let dir = workflows(&[("pay.toml", PAY)]);
    // `exclusiveMinimum`: -5 and 0 are refused, with the JSON pointer of the field.
    for amount in ["-5", "0"] {
        let ran = baton_run(dir.path(), "pay", &format!(r#"{{"amount": {amount}}}"#));
        assert_eq!(ran.code, 2, "{ran}");
        let saga = ran.json();
        let error = &step(&saga, "pay")["error"];
        assert_eq!(error["code"], "invalid_input", "{saga:#}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("/amount") && message.contains("not run"), "{message}");
        assert!(message.contains("plugin testkit"), "names the plugin: {message}");
        // Permanent: one attempt, no retry.
        assert_eq!(step(&saga, "pay")["attempts"], 1, "{saga:#}");
    }
    let ran = baton_run(dir.path(), "pay", r#"{"amount": 0.5}"#);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(step(&ran.json(), "pay")["output"], json!({"amount": 0.5}));
}

/// The result of `answer` is refused for its shape; `answer` ran, so it is undone with the
/// step before it, last first.
const ANSWER: &str = r#"
name = "answer"
[[step]]
name = "first"
command = "testkit.echo"
input = "{ 'did': 'first' }"
compensate = "testkit.echo"
compensate_input = "{ 'undid': 'first' }"

[[step]]
name = "answer"
command = "testkit.reply"
input = "{ 'reply': input.reply }"
compensate = "testkit.echo"
compensate_input = "{ 'undid': 'answer' }"
"#;

#[test]
fn a_result_that_does_not_fit_the_output_schema_fails_the_step_and_it_is_compensated() {
    let dir = workflows(&[("answer.toml", ANSWER)]);
    let ran = baton_run(dir.path(), "answer", r#"{"reply": {"id": 7}}"#);
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    let answer = step(&saga, "answer");
    assert_eq!(answer["error"]["code"], "invalid_output", "{saga:#}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("/id") && message.contains("output-schema"), "{message}");
    assert_eq!(answer["compensation"]["status"], "completed", "it ran, so it is undone: {saga:#}");
    assert_eq!(step(&saga, "first")["compensation"]["status"], "completed", "{saga:#}");
    let seq = |name: &str| step(&saga, name)["seq"].as_u64().unwrap_or_else(|| panic!("{name} in the log: {saga:#}"));
    assert!(seq("answer") > seq("first"), "in the log after first, so undone before it: {saga:#}");

    let ran = baton_run(dir.path(), "answer", r#"{"reply": {"id": "r-1"}}"#);
    assert_eq!(ran.code, 0, "{ran}");
}

/// Typed commands derive their schemas from their types (schemars): `testkit.undo` wants a
/// string `loan_id`, and the demo's `payment` declares what a charge needs.
#[test]
fn derived_schemas_are_enforced_and_shown() {
    let dir = workflows(&[(
        "undo.toml",
        "name = \"undo\"\n[[step]]\nname = \"undo\"\ncommand = \"testkit.undo\"\ninput = \"{ 'loan_id': input.id }\"\n",
    )]);
    let ran = baton_run(dir.path(), "undo", r#"{"id": 5}"#);
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    let error = &step(&saga, "undo")["error"];
    assert_eq!(error["code"], "invalid_input", "{saga:#}");
    assert!(error["message"].as_str().unwrap().contains("/loan_id"), "{saga:#}");
    let ran = baton_run(dir.path(), "undo", r#"{"id": "loan-5"}"#);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(step(&ran.json(), "undo")["output"], json!({"undone": "loan-5"}));

    let ran = run(baton().args(["plugins", "--json"]));
    assert_eq!(ran.code, 0, "{ran}");
    let plugins = ran.json();
    let payment = plugins.as_array().unwrap().iter().find(|p| p["name"] == "payment").expect("payment");
    let charge = payment["commands"].as_array().unwrap().iter().find(|c| c["name"] == "payment.charge").unwrap();
    let schema: serde_json::Value = serde_json::from_str(charge["input_schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["required"], json!(["order_id", "customer", "items"]), "{schema:#}");
}

#[test]
fn baton_plugins_shows_a_multi_line_schema_on_one_line() {
    let ran = run(baton().arg("plugins").env("NO_COLOR", "1"));
    assert_eq!(ran.code, 0, "{ran}");
    let line = ran.stdout.lines().find(|l| l.trim_start().starts_with("testkit.amount")).expect("testkit.amount");
    assert!(line.contains(r#"input: {"type":"object","required":["amount"]"#), "{line}");
    assert!(line.contains("exclusiveMinimum"), "{line}");
}

const APPROVAL: &str = r#"
name = "approval"
input_schema = { type = "object", required = ["order_id"], properties = { order_id = { type = "string" } } }

[[step]]
name = "approve"
wait = "approved"
schema = { type = "object", required = ["by"], properties = { by = { type = "string", minLength = 1 }, amount = { type = "number", exclusiveMinimum = 0 } } }

[[step]]
name = "record"
command = "testkit.echo"
input = "{ 'order': input.order_id, 'by': steps.approve.by }"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_inputs_that_do_not_fit_are_refused_over_the_api() {
    let dir = workflows(&[("approval.toml", APPROVAL)]);
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.workflows = dir.path().to_owned();
    let host = InProcess::start(config).await;

    // The workflow's input_schema at start: 400, every violation with its pointer.
    let (status, body) = host.start_saga("approval", "a-0", &json!({"order_id": 7})).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("/order_id"), "{body}");
    assert_eq!(host.get("/v1/sagas/a-0").await.0, 404, "nothing was created");

    let (status, _) = host.start_saga("approval", "a-1", &json!({"order_id": "o-1"})).await.unwrap();
    assert_eq!(status, 201);
    // A signal is checked when it is sent, before the wait is even reached.
    for payload in [json!({}), json!({"by": ""}), json!({"by": "ada", "amount": -1}), json!("yes")] {
        let (status, body) = host.signal("a-1", "approved", &payload).await;
        assert_eq!(status, 400, "{payload}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("step approve"), "names the wait: {message}");
    }
    let (_, body) = host.signal("a-1", "approved", &json!({"by": "ada", "amount": -1})).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("/amount"), "{body}");
    // Nothing refused reached the saga: it still waits, with an empty inbox.
    let saga = host.until_waiting("a-1", "approve").await;
    assert!(saga["inbox"].as_array().is_none_or(|i| i.is_empty()), "{saga:#}");

    let (status, body) = host.signal("a-1", "approved", &json!({"by": "ada"})).await;
    assert_eq!(status, 202, "{body}");
    let saga = &host.wait_all(&["a-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert_eq!(step(saga, "record")["output"], json!({"order": "o-1", "by": "ada"}));
    host.stop().await;
}

#[test]
fn baton_run_refuses_a_signal_that_does_not_fit() {
    let dir = workflows(&[("approval.toml", APPROVAL)]);
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).args([
        "run",
        "approval",
        "--input",
        r#"{"order_id": "o-1"}"#,
        "--signal",
        r#"approved={"by": 5}"#,
    ]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("/by"), "{ran}");
}

/// The loan case: `approve` returns `{id}`, the compensation wants `loan_id`. Found by
/// `baton check`, and the workflow is not loaded by `baton run`.
const LOAN: &str = r#"
name = "loan"
[[step]]
name = "approve"
command = "testkit.reply"
input = "{ 'reply': { 'id': 'loan-1' } }"
compensate = "testkit.undo"

[[step]]
name = "fund"
command = "testkit.fail"
input = "{ 'code': 'no_funds', 'message': 'the bank said no' }"
"#;

const SHORT: &str = r#"
name = "short"
[[step]]
name = "pay"
command = "testkit.amount"
input = "{ 'sum': 5 }"

[[step]]
name = "undo"
command = "testkit.echo"
compensate = "testkit.undo"
compensate_input = "{ 'id': 'x' }"
"#;

const BROKEN: &str = r#"
name = "broken"
[[step]]
name = "approve"
wait = "approved"
schema = { type = 5 }
"#;

#[test]
fn baton_check_finds_payloads_that_cannot_fit_and_schemas_that_are_not_schemas() {
    let dir = workflows(&[("loan.toml", LOAN), ("short.toml", SHORT), ("broken.toml", BROKEN)]);
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).arg("check"));
    assert_eq!(ran.code, 1, "{ran}");
    let line = |needle: &str| {
        ran.stderr.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in:\n{ran}")).to_owned()
    };
    let loan = line("loan.toml");
    for part in ["approve", "\"testkit.undo\"", "\"loan_id\"", "\"id\"", "compensate_input"] {
        assert!(loan.contains(part), "{part}: {loan}");
    }
    let pay = line("command \"testkit.amount\" requires");
    assert!(pay.contains("\"amount\"") && pay.contains("pay"), "{pay}");
    let undo = line("compensate_input never gives");
    assert!(undo.contains("\"loan_id\""), "{undo}");
    let broken = line("broken.toml");
    assert!(broken.contains("schema is not a valid JSON Schema"), "{broken}");

    let ran = baton_run(dir.path(), "loan", "{}");
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("loan_id"), "{ran}");
}

/// A signal from the bus is checked as one from the API: one that does not fit is logged and
/// dropped (acknowledged, so it does not come back), and the saga takes the next that fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_signal_that_does_not_fit_is_dropped() {
    use redis::AsyncCommands as _;
    let prefix = baton_tests::unique_prefix("schema_bus_signal");
    let dir = workflows(&[("approval.toml", APPROVAL)]);
    let mut config = baton_tests::server::redis_config(&prefix);
    config.workflows = dir.path().to_owned();
    let host = InProcess::start(config).await;
    assert_eq!(host.start_saga("approval", "b-1", &json!({"order_id": "o-1"})).await.unwrap().0, 201);
    host.until_waiting("b-1", "approve").await;
    let event = |id: &str, data: serde_json::Value| {
        json!({
            "specversion": "1.0", "type": "baton.signal.v1", "source": "test", "id": id,
            "subject": "approved", "transactionid": "b-1", "data": data
        })
        .to_string()
    };
    let client = redis::Client::open(baton_tests::redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("{prefix}:signals");
    for e in [event("e-1", json!({"by": 7})), event("e-2", json!({"by": "maria"}))] {
        let _: String = con.xadd(&stream, "*", &[("event", e.as_str())]).await.unwrap();
    }
    let saga = host.wait_all(&["b-1".to_owned()], Duration::from_secs(30)).await.remove(0);
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert_eq!(step(&saga, "record")["output"], json!({"order": "o-1", "by": "maria"}));
    let (_, history) = host.get("/v1/sagas/b-1/history").await;
    let received = history.as_array().unwrap().iter().filter(|h| h["event"] == "signal_received").count();
    assert_eq!(received, 1, "only the signal that fits reached the saga: {history:#}");
    host.stop().await;
    baton_tests::delete_prefix(&prefix);
}
