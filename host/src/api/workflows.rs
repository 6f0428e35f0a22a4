//! `GET /v1/workflows` and `GET /v1/workflows/{name}[?hash=H]`: the workflows a host runs, as
//! JSON outlines of their resolved definitions.
//!
//! The web UI reads them to offer the workflows a saga may start with (and the input schema
//! it must fit), and to draw a saga's state machine with the steps it has not reached yet.
//! An outline is what a reader of the TOML sees, resolved: every block with its steps, each
//! step's kind and what it names (command, compensation, signal, blocks it runs, sub-saga
//! workflow), where it goes next and what its `catch` takes. Expressions are given as their
//! source text, durations as `baton` prints them (`1.5s`).
//!
//! ```json
//! {"name": "order", "version": 1, "hash": "sha256:67c6c85a1ea4c6c0", "description": "...",
//!  "input_schema": {...}, "handles": "...",
//!  "blocks": [{"name": "main", "steps": [
//!     {"name": "reserve", "kind": "for_each", "items": "input.items", "block": "reserve_item",
//!      "concurrency": 1, "next": "review"},
//!     {"name": "review", "kind": "choice", "cases": [{"when": "...", "next": "approval"}],
//!      "otherwise": "settle"},
//!     {"name": "approval", "kind": "wait", "signal": "approved", "timeout": "1h",
//!      "catch": [{"errors": ["timeout"], "next": "reject"}], "next": "settle"}]}]}
//! ```
//!
//! `next` (every kind but `choice` and `fail`) and a choice's `otherwise` are a step of the
//! same block or `end`. The list leaves `blocks` out; `{name}` has them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiError;
use crate::orchestrator::Orchestrator;
use crate::workflow::duration;
use crate::workflow::resolved::{Block, Next, Sleep, Step, StepKind, Workflow};

/// `GET /v1/workflows`: every workflow new sagas may start with, by name, without blocks.
pub(super) async fn list(State(o): State<Orchestrator>) -> Json<Value> {
    let catalog = o.workflows();
    Json(Value::Array(catalog.workflows.values().map(|wf| Value::Object(summary(wf))).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OneQuery {
    /// A definition by content hash (a saga's `workflow_hash`) instead of the one loaded.
    hash: Option<String>,
}

/// `GET /v1/workflows/{name}[?hash=H]`: the outline of the workflow loaded under `name`, or
/// of its definition `H` (the one a saga started with, also after the file changed).
pub(super) async fn one(
    State(o): State<Orchestrator>,
    Path(name): Path<String>,
    Query(q): Query<OneQuery>,
) -> Result<Json<Value>, ApiError> {
    let found = match &q.hash {
        None => o.workflows().get(&name).cloned(),
        Some(hash) => {
            check_hash(hash)?;
            o.definition(&name, hash).await?
        }
    };
    let wf = found.ok_or_else(|| {
        let which = q.hash.as_deref().map(|h| format!(" with hash {h}")).unwrap_or_default();
        let known = o.workflows().names().join(", ");
        ApiError(
            StatusCode::NOT_FOUND,
            "unknown_workflow",
            format!("no workflow {name:?}{which} on this host (it runs: {known})"),
        )
    })?;
    Ok(Json(outline(&wf)))
}

/// A content hash as `workflow_hash` spells it: `sha256:` and 16 hex digits.
fn check_hash(hash: &str) -> Result<(), ApiError> {
    let digits = hash.strip_prefix("sha256:").unwrap_or("");
    if digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    Err(ApiError(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("hash={hash:?} is not a definition's hash: `sha256:` and 16 hex digits, as a saga's workflow_hash"),
    ))
}

/// The outline of `wf`: its summary and its blocks.
pub fn outline(wf: &Workflow) -> Value {
    let mut out = summary(wf);
    let blocks = wf.blocks.iter().map(|b| block(wf, b)).collect();
    out.insert("blocks".into(), Value::Array(blocks));
    Value::Object(out)
}

/// Name, version, hash, and the optional description, input schema and `handles`.
fn summary(wf: &Workflow) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("name".into(), json!(wf.name));
    out.insert("version".into(), json!(wf.version));
    out.insert("hash".into(), json!(wf.hash));
    put(&mut out, "description", wf.description.as_ref().map(|d| json!(d)));
    put(&mut out, "input_schema", wf.input_schema.as_ref().map(|s| s.json().clone()));
    put(&mut out, "handles", wf.handles.as_ref().map(|h| json!(h)));
    out
}

fn block(wf: &Workflow, b: &Block) -> Value {
    let steps = b.steps.iter().enumerate().map(|(i, s)| step(wf, b, i, s)).collect();
    json!({ "name": b.name, "steps": Value::Array(steps) })
}

/// One step: name, kind, what its kind names, `next` and `catch`.
fn step(wf: &Workflow, b: &Block, index: usize, s: &Step) -> Value {
    let target = |n: Next| json!(next_name(b, index, n));
    let block_name = |i: usize| json!(wf.blocks[i].name);
    let mut out = Map::new();
    out.insert("name".into(), json!(s.name));
    out.insert("kind".into(), json!(s.kind.name()));
    match &s.kind {
        StepKind::Command(c) | StepKind::Workflow(c) => {
            match &c.workflow {
                Some(child) => out.insert("workflow".into(), json!(child)),
                None => out.insert("command".into(), json!(c.command)),
            };
            if c.workflow.is_none() {
                put(&mut out, "compensate", c.compensate.as_ref().map(|c| json!(c)));
            }
            out.insert("timeout".into(), json!(duration::format(c.timeout)));
            out.insert("attempts".into(), json!(c.retry.attempts));
        }
        StepKind::Choice(c) => {
            let cases = c.cases.iter().map(|(when, n)| json!({"when": when.source(), "next": target(*n)}));
            out.insert("cases".into(), Value::Array(cases.collect()));
            out.insert("otherwise".into(), target(c.otherwise));
        }
        StepKind::Parallel(p) => {
            out.insert("blocks".into(), Value::Array(p.blocks.iter().map(|&i| block_name(i)).collect()));
        }
        StepKind::ForEach(f) => {
            out.insert("items".into(), json!(f.items.source()));
            out.insert("block".into(), block_name(f.block));
            out.insert("concurrency".into(), json!(f.concurrency));
        }
        StepKind::Wait(w) => {
            out.insert("signal".into(), json!(w.signal));
            put(&mut out, "timeout", w.timeout.map(|t| json!(duration::format(t))));
            put(&mut out, "schema", w.schema.as_ref().map(|s| s.json().clone()));
        }
        StepKind::Sleep(Sleep::For(d)) => {
            out.insert("duration".into(), json!(duration::format(*d)));
        }
        StepKind::Sleep(Sleep::Until(e)) => {
            out.insert("until".into(), json!(e.source()));
        }
        StepKind::Fail(f) => {
            out.insert("code".into(), json!(f.code));
            out.insert("message".into(), json!(f.message));
        }
    }
    if !matches!(s.kind, StepKind::Choice(_) | StepKind::Fail(_)) {
        out.insert("next".into(), target(s.next));
    }
    if !s.catch.is_empty() {
        let catch = s.catch.iter().map(|c| json!({"errors": c.errors, "next": target(c.next)}));
        out.insert("catch".into(), Value::Array(catch.collect()));
    }
    Value::Object(out)
}

/// Where `next` leads from step `index` of `b`: a step's name, or `end`.
fn next_name(b: &Block, index: usize, next: Next) -> &str {
    let at = match next {
        Next::Following => index + 1,
        Next::Step(i) => i,
        Next::End => return "end",
    };
    b.steps.get(at).map_or("end", |s| s.name.as_str())
}

/// Insert `value` under `key` when there is one (keys with no value are left out, as in
/// the saga record).
fn put(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        out.insert(key.into(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Workflow {
        crate::workflow::parse(std::path::Path::new("w.toml"), text, None).expect("the workflow parses")
    }

    #[test]
    fn an_outline_names_every_step_and_where_it_goes() {
        let wf = parse(
            r#"
name = "w"
[[step]]
name = "each"
for_each = "input.items"
run = "one"
[[step]]
name = "pick"
choice = [{ when = "size(input.items) > 1", next = "hold" }]
otherwise = "end"
[[step]]
name = "hold"
wait = "go"
timeout = "90s"
catch = [{ errors = ["timeout"], next = "nope" }]
next = "end"
[[step]]
name = "nope"
fail = { code = "late", message = "too late" }
[[block.one]]
name = "do"
command = "testkit.echo"
compensate = "testkit.echo"
"#,
        );
        let o = outline(&wf);
        assert_eq!(o["name"], "w");
        assert!(o["hash"].as_str().unwrap().starts_with("sha256:"));
        let main = &o["blocks"][0];
        assert_eq!(main["name"], "main");
        assert_eq!(
            main["steps"][0],
            json!({"name": "each", "kind": "for_each", "items": "input.items", "block": "one", "concurrency": 1, "next": "pick"})
        );
        assert_eq!(main["steps"][1]["cases"], json!([{"when": "size(input.items) > 1", "next": "hold"}]));
        assert_eq!(main["steps"][1]["otherwise"], "end");
        assert_eq!(main["steps"][2]["timeout"], "90s");
        assert_eq!(main["steps"][2]["catch"], json!([{"errors": ["timeout"], "next": "nope"}]));
        assert_eq!(main["steps"][2]["next"], "end");
        assert_eq!(main["steps"][3], json!({"name": "nope", "kind": "fail", "code": "late", "message": "too late"}));
        let one = &o["blocks"][1];
        assert_eq!(one["steps"][0]["command"], "testkit.echo");
        assert_eq!(one["steps"][0]["compensate"], "testkit.echo");
        assert_eq!(one["steps"][0]["next"], "end");
    }

    #[test]
    fn a_hash_must_look_like_one() {
        assert!(check_hash("sha256:0123456789abcdef").is_ok());
        for bad in ["", "sha256:", "sha256:0123", "md5:0123456789abcdef", "sha256:0123456789abcdeg"] {
            assert!(check_hash(bad).is_err(), "{bad}");
        }
    }
}
