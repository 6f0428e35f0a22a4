//! Commands a workflow declares `external` (served outside the host): how they load, how the
//! orchestrator checks their schemas, and the start refused on a bus no outside worker
//! reaches. The decision function alone, and the orchestrator over the in-process bus.

use std::path::Path;
use std::sync::Arc;

use baton::model::{HistoryEvent, Phase, SagaStatus, StepStatus};
use baton::orchestrator::{Effect, Event, Orchestrator, StartError, TokioClock, decide, new_saga};
use baton::protocol::{CommandMessage, Outcome, ResultMessage};
use baton::workflow::{self, Catalog, Workflow};
use serde_json::json;

const WF: &str = r#"
name = "scored"

[commands."fraud.score"]
external = true
input_schema = { type = "object", required = ["order_id"], properties = { order_id = { type = "string" } } }
output_schema = { type = "object", required = ["score"], properties = { score = { type = "number" } } }

[commands."fraud.forget"]
external = true
input_schema = { type = "object", required = ["order_id"] }

[[step]]
name = "reserve"
command = "inventory.reserve"
compensate = "inventory.release"

[[step]]
name = "score"
command = "fraud.score"
compensate = "fraud.forget"
compensate_input = "{ 'order': 'none' }"
input = "input.order"

[[step]]
name = "charge"
command = "payment.charge"
"#;

fn known() -> Vec<String> {
    let mut k: Vec<String> =
        ["inventory.reserve", "inventory.release", "payment.charge"].iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

fn parse(text: &str) -> Result<Workflow, String> {
    workflow::parse(Path::new("w.toml"), text, Some(&known())).map_err(|e| e.to_string())
}

const T0: u64 = 1_000_000;

/// Feed `event`; the commands it sends.
fn feed(
    wf: &Workflow,
    saga: &mut baton::model::Saga,
    event: Event,
    now: u64,
) -> (Vec<CommandMessage>, Vec<HistoryEvent>) {
    let d = decide(wf, saga, &event, now);
    let sent = d
        .effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Dispatch(c) => Some(c),
            _ => None,
        })
        .collect();
    (sent, d.history)
}

fn answer(c: &CommandMessage, outcome: Outcome) -> Event {
    Event::Result(ResultMessage { command: c.name.clone(), meta: c.meta.clone(), outcome })
}

#[test]
fn a_declared_external_command_passes_the_plugin_check_and_keeps_its_schemas() {
    let wf = parse(WF).unwrap();
    assert_eq!(wf.external_commands(), ["fraud.forget", "fraud.score"]);
    let score = wf.external("fraud.score").unwrap();
    assert_eq!(score.input_schema.as_ref().unwrap().json()["required"], json!(["order_id"]));
    assert!(score.output_schema.is_some());
    assert!(wf.external("fraud.forget").unwrap().output_schema.is_none());
    assert_eq!(score.line, 4);
    // Without the declaration, the same step names a command no plugin handles, and the
    // message says how to declare it.
    let undeclared =
        WF.replace("[commands.\"fraud.score\"]\nexternal = true", "[commands.\"fraud.other\"]\nexternal = true");
    let e = parse(&undeclared).unwrap_err();
    assert!(e.contains("no plugin handles command \"fraud.score\""), "{e}");
    assert!(e.contains("[commands.\"fraud.score\"] external = true"), "{e}");
    // A host that has not loaded the plugins (distributed) checks the others' later.
    assert!(workflow::check_commands(&wf, &known()).is_ok());
}

#[test]
fn declarations_are_checked_like_the_rest_of_the_file() {
    let e = parse(&WF.replace(
        "external = true\ninput_schema = { type = \"object\", required = [\"order_id\"] }",
        "extrenal = true",
    ))
    .unwrap_err();
    assert!(e.contains("w.toml:10: unknown key \"extrenal\" in a [commands] table: did you mean \"external\"?"), "{e}");
    assert!(e.contains("[commands.\"fraud.forget\"] has no external = true"), "{e}");
    let e = parse(
        &WF.replace("[commands.\"fraud.forget\"]\nexternal = true", "[commands.\"fraud.forget\"]\nexternal = false"),
    )
    .unwrap_err();
    assert!(e.contains("[commands.\"fraud.forget\"] external = false"), "{e}");
    let e = parse(&WF.replace(
        "output_schema = { type = \"object\", required = [\"score\"], properties = { score = { type = \"number\" } } }",
        "output_schema = { type = 12 }",
    ))
    .unwrap_err();
    assert!(e.contains("w.toml:7: [commands.\"fraud.score\"] output_schema is not a valid JSON Schema"), "{e}");
    let e = parse(&WF.replace("[commands.\"fraud.forget\"]", "[commands.\"fraud forget\"]")).unwrap_err();
    assert!(e.contains("\"fraud forget\" is not a command name"), "{e}");
    // A plugin and a declaration may not both serve one command.
    let e = parse(&format!("{WF}\n[commands.\"payment.charge\"]\nexternal = true\n")).unwrap_err();
    assert!(
        e.contains("command \"payment.charge\" is declared external = true, but a loaded plugin handles it too"),
        "{e}"
    );
    let wf =
        workflow::parse(Path::new("w.toml"), &format!("{WF}\n[commands.\"payment.charge\"]\nexternal = true\n"), None)
            .unwrap();
    let e = workflow::external::check_conflicts(&wf, &known()).unwrap_err().to_string();
    assert!(e.contains("w.toml:29: command \"payment.charge\" is declared external"), "{e}");
}

#[test]
fn a_schema_file_is_read_relative_to_the_workflow_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out.json"), r#"{"type": "object", "required": ["score"]}"#).unwrap();
    let text = "name = \"f\"\n[commands.\"fraud.score\"]\nexternal = true\noutput_schema = \"out.json\"\n[[step]]\nname = \"s\"\ncommand = \"fraud.score\"\n";
    let wf = workflow::parse(&dir.path().join("f.toml"), text, Some(&[])).unwrap();
    assert_eq!(
        wf.external("fraud.score").unwrap().output_schema.as_ref().unwrap().json()["required"],
        json!(["score"])
    );
    let e = workflow::parse(&dir.path().join("f.toml"), &text.replace("out.json", "missing.json"), Some(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("f.toml:4: [commands.\"fraud.score\"] output_schema: cannot read"), "{e}");
}

#[test]
fn a_payload_that_does_not_fit_the_input_schema_is_never_sent() {
    let wf = parse(WF).unwrap();
    let mut saga = new_saga("s".into(), &wf, json!({"order": {"order_id": 7}}), T0);
    let (sent, _) = feed(&wf, &mut saga, Event::Start, T0);
    let (sent, history) = feed(&wf, &mut saga, answer(&sent[0], Outcome::Ok(json!({"reservation_id": "r"}))), T0 + 1);
    assert!(sent.iter().all(|c| c.name != "fraud.score"), "nothing sent to fraud.score: {sent:?}");
    let score = saga.steps.iter().find(|s| s.name == "score").unwrap();
    assert_eq!(score.status, StepStatus::Failed);
    let error = score.error.as_ref().unwrap();
    assert_eq!(error.code, "invalid_input");
    assert!(error.message.contains("/order_id: 7 is not of type \"string\""), "{}", error.message);
    assert!(error.message.contains("[commands.\"fraud.score\"]"), "{}", error.message);
    assert!(history.iter().any(|h| matches!(h, HistoryEvent::StepFailed { code, .. } if code == "invalid_input")));
    // Not retried, and what was done is undone: the saga compensates the reservation.
    assert_eq!(saga.status, SagaStatus::Compensating);
    assert_eq!(sent.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["inventory.release"]);
}

#[test]
fn a_result_that_does_not_fit_the_output_schema_fails_the_step_for_good() {
    let wf = parse(WF).unwrap();
    let mut saga = new_saga("s".into(), &wf, json!({"order": {"order_id": "o-1"}}), T0);
    let (sent, _) = feed(&wf, &mut saga, Event::Start, T0);
    let (sent, _) = feed(&wf, &mut saga, answer(&sent[0], Outcome::Ok(json!({"reservation_id": "r"}))), T0 + 1);
    let score = sent.iter().find(|c| c.name == "fraud.score").expect("a payload that fits is sent");
    assert_eq!(score.payload, json!({"order_id": "o-1"}));
    let (sent, history) = feed(&wf, &mut saga, answer(score, Outcome::Ok(json!({"score": "high"}))), T0 + 2);
    let inst = saga.steps.iter().find(|s| s.name == "score").unwrap();
    assert_eq!(inst.status, StepStatus::Failed, "{inst:?}");
    assert_eq!(inst.attempts, 1, "not retried");
    let error = inst.error.as_ref().unwrap();
    assert_eq!(error.code, "invalid_output");
    assert!(error.message.contains("/score: \"high\" is not of type \"number\""), "{}", error.message);
    assert!(
        history
            .iter()
            .any(|h| matches!(h, HistoryEvent::Failed { code, retryable: false, .. } if code == "invalid_output"))
    );
    assert_eq!(sent.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["inventory.release"]);
}

#[test]
fn a_compensation_payload_that_does_not_fit_fails_that_compensation_only() {
    let wf = parse(WF).unwrap();
    let mut saga = new_saga("s".into(), &wf, json!({"order": {"order_id": "o-1"}}), T0);
    let (sent, _) = feed(&wf, &mut saga, Event::Start, T0);
    let (sent, _) = feed(&wf, &mut saga, answer(&sent[0], Outcome::Ok(json!({"reservation_id": "r"}))), T0 + 1);
    let (sent, _) = feed(&wf, &mut saga, answer(&sent[0], Outcome::Ok(json!({"score": 0.1}))), T0 + 2);
    let fail = Outcome::Err(baton::protocol::Failure::permanent("card_declined", "no"));
    // The charge fails: `fraud.forget` would get {order: none}, which lacks order_id.
    let (sent, _) = feed(&wf, &mut saga, answer(&sent[0], fail), T0 + 3);
    assert_eq!(
        sent.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["inventory.release"],
        "fraud.forget not sent"
    );
    let comp = saga.steps.iter().find(|s| s.name == "score").unwrap().compensation.clone().unwrap();
    assert_eq!(comp.status, StepStatus::Failed);
    assert_eq!(comp.error.unwrap().code, "invalid_input");
    let (_, _) = feed(&wf, &mut saga, answer(&sent[0], Outcome::Ok(json!({}))), T0 + 4);
    assert_eq!(saga.status, SagaStatus::Failed, "a compensation failed for good");
    assert_eq!(sent[0].meta.idempotency_key, baton::model::idempotency_key("s", "reserve", Phase::Compensate));
}

#[tokio::test]
async fn the_in_process_bus_refuses_a_saga_that_needs_an_external_command() {
    let wf = parse(WF).unwrap();
    let mut catalog = Catalog::default();
    catalog.workflows.insert(wf.name.clone(), Arc::new(wf));
    let o = Orchestrator::new(
        catalog,
        Arc::new(baton::store::memory::MemoryStore::new()),
        Arc::new(baton::bus::memory::MemoryBus::new()),
        Arc::new(TokioClock::new(T0)),
        None,
    );
    let e = o.start("scored", json!({"order": {"order_id": "o"}}), Some("s-1".into())).await.unwrap_err();
    assert!(
        matches!(&e, StartError::ExternalUnreachable { commands, .. } if commands == &["fraud.forget", "fraud.score"])
    );
    let message = e.to_string();
    assert!(message.contains("fraud.forget, fraud.score"), "{message}");
    assert!(message.contains("baton serve --redis URL"), "{message}");
    assert!(o.get("s-1").await.unwrap().is_none(), "nothing was started");
}
