//! How the CLI shows sagas to a person: a line per step instance, a table of sagas, a line per
//! history entry. Works on the JSON record (what the API serves), so `baton run` and
//! `baton status` print the same thing.

use serde_json::Value;

use crate::model::{Saga, SagaStatus, WaitOn};

fn ms_between(a: &Value, b: &Value) -> Option<u64> {
    let a = crate::model::time::parse(a.as_str()?).ok()?;
    let b = crate::model::time::parse(b.as_str()?).ok()?;
    Some(b.saturating_sub(a))
}

fn human_ms(ms: u64) -> String {
    if ms < 1_000 { format!("{ms}ms") } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

/// One line per instance (indented by depth), then the error or the output.
pub fn saga_lines(saga: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let took = ms_between(&saga["created_at"], &saga["updated_at"]).map(human_ms).unwrap_or_default();
    out.push(format!(
        "{}  {}  {}  {took}",
        saga["id"].as_str().unwrap_or("?"),
        saga["workflow"].as_str().unwrap_or("?"),
        saga["status"].as_str().unwrap_or("?"),
    ));
    if let Some(p) = saga["parent"].as_object() {
        out.push(format!(
            "  sub-saga of {} (step {})",
            p.get("saga").and_then(Value::as_str).unwrap_or("?"),
            p.get("step").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    for step in saga["steps"].as_array().into_iter().flatten() {
        let path = step["path"].as_str().or(step["name"].as_str()).unwrap_or("?");
        let depth = path.matches('/').count();
        let (indent, width) = (depth * 2, 28usize.saturating_sub(depth * 2));
        let mut line = format!("  {:indent$}{path:<width$} {:<10}", "", step["status"].as_str().unwrap_or("?"));
        if let Some(n) = step["attempts"].as_u64().filter(|&n| n > 0) {
            line.push_str(&format!(" {n} attempt{}", if n == 1 { " " } else { "s" }));
        }
        if let Some(ms) = ms_between(&step["started_at"], &step["ended_at"]) {
            line.push_str(&format!(" {:>7}", human_ms(ms)));
        }
        if let Some(w) = step["waiting"].as_object() {
            if let Some(signal) = w.get("signal").and_then(Value::as_str) {
                line.push_str(&format!("  waiting for signal {signal:?}"));
            } else if let Some(due) = w.get("due_at").and_then(Value::as_str) {
                line.push_str(&format!("  until {due}"));
            }
        }
        if let Some(e) = step["error"].as_object() {
            line.push_str(&format!("  {}: {}", e["code"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("")));
        }
        if let Some(child) = step["child"].as_str() {
            line.push_str(&format!("  sub-saga {child}"));
        }
        if let Some(c) = step["compensation"].as_object() {
            line.push_str(&format!(
                "  [undone by {}: {}]",
                c["command"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?")
            ));
        }
        out.push(line);
    }
    if let Some(e) = saga["error"].as_object() {
        out.push(format!(
            "error: {} at {}: {}",
            e["code"].as_str().unwrap_or("?"),
            e["step"].as_str().filter(|s| !s.is_empty()).unwrap_or("the saga"),
            e["message"].as_str().unwrap_or("")
        ));
    }
    if let Some(output) = saga.get("output").filter(|o| !o.is_null()) {
        out.push(format!("output: {output}"));
    }
    out
}

/// A table of sagas: id, workflow, status, created, steps.
pub fn list_table(sagas: &[Value]) -> Vec<String> {
    let mut out = vec![format!("{:<40} {:<16} {:<13} {:<24} STEPS", "ID", "WORKFLOW", "STATUS", "CREATED")];
    for s in sagas {
        out.push(format!(
            "{:<40} {:<16} {:<13} {:<24} {}",
            s["id"].as_str().unwrap_or("?"),
            s["workflow"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
            s["created_at"].as_str().unwrap_or("?"),
            s["steps"].as_array().map_or(0, Vec::len)
        ));
    }
    out
}

/// One history entry as a line: time, revision, event and its fields.
pub fn history_line(entry: &Value) -> String {
    let mut line = format!(
        "{} r{:<4} {:<20}",
        entry["at"].as_str().unwrap_or("?"),
        entry["revision"].as_u64().unwrap_or(0),
        entry["event"].as_str().unwrap_or("?")
    );
    if let Some(map) = entry.as_object() {
        for (k, v) in map.iter().filter(|(k, _)| !matches!(k.as_str(), "at" | "revision" | "event")) {
            match v {
                Value::String(s) => line.push_str(&format!(" {k}={s}")),
                other => line.push_str(&format!(" {k}={other}")),
            }
        }
    }
    line
}

/// The signal a running saga waits for when nothing else can move it now: no command out,
/// no backoff, no sleep; only waits. `None` when something else is under way.
pub fn stuck_on_signal(saga: &Saga) -> Option<String> {
    if saga.status != SagaStatus::Running {
        return None;
    }
    let waits: Vec<_> = saga.steps.iter().filter_map(|s| s.waiting.as_ref()).collect();
    if waits.is_empty() || waits.iter().any(|w| w.on != WaitOn::Signal) {
        return None;
    }
    waits.first().and_then(|w| w.signal.clone())
}

/// Whether a saga that waits only for signals will still move by itself (a wait's timeout).
pub fn may_still_move(saga: &Saga) -> bool {
    saga.steps.iter().filter_map(|s| s.waiting.as_ref()).any(|w| w.due_at.is_some())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_saga_reads_as_a_line_per_instance() {
        let saga = json!({
            "id": "o-1", "workflow": "order", "status": "compensated",
            "created_at": "2026-12-01T10:00:00.000Z", "updated_at": "2026-12-01T10:00:01.500Z",
            "error": {"step": "settle/charge", "code": "card_declined", "message": "declined"},
            "steps": [
                {"path": "reserve/reserve_one", "status": "completed", "attempts": 1,
                 "started_at": "2026-12-01T10:00:00.000Z", "ended_at": "2026-12-01T10:00:00.012Z",
                 "compensation": {"command": "inventory.release", "status": "completed"}},
                {"path": "approval", "status": "running", "waiting": {"on": "signal", "signal": "approved"}},
                {"path": "settle/charge", "status": "failed", "attempts": 3,
                 "error": {"code": "card_declined", "message": "declined"}}
            ]
        });
        let lines = super::saga_lines(&saga);
        assert_eq!(lines[0], "o-1  order  compensated  1.5s");
        assert!(lines[1].starts_with("    reserve/reserve_one"), "nested paths are indented: {lines:?}");
        assert!(
            lines[1].contains("1 attempt ")
                && lines[1].contains("12ms")
                && lines[1].contains("[undone by inventory.release: completed]")
        );
        assert!(lines[2].contains("waiting for signal \"approved\""), "{lines:?}");
        assert!(lines[3].contains("3 attempts") && lines[3].contains("card_declined: declined"));
        assert_eq!(lines[4], "error: card_declined at settle/charge: declined");
    }
}
