//! Stage 1: the workflow file exactly as its author wrote it (serde types, spans kept).
//!
//! These types accept unknown keys: [`unknown_keys`] walks the file first and reports every
//! key the grammar does not know (with its line and the nearest known key), so that one typo
//! does not hide the file's other problems. A typo such as `compensation = ...` is still an
//! error, never a step silently without a compensation.

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

#[derive(Debug, Deserialize)]
pub struct Workflow {
    pub name: Spanned<String>,
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub defaults: Option<Defaults>,
    /// The saga's output (an expression); default: the main block's output.
    #[serde(default)]
    pub output: Option<Spanned<String>>,
    /// A JSON Schema for the saga input: a path to a JSON file (relative to the workflow
    /// file) or an inline table.
    #[serde(default)]
    pub input_schema: Option<Spanned<toml::Value>>,
    /// A command this workflow answers: the host runs a saga of it for each such command on
    /// the bus and replies with the saga's output or failure.
    #[serde(default)]
    pub handles: Option<Spanned<String>>,
    /// Commands served outside the host, by name (`[commands."fraud.score"]`).
    #[serde(default)]
    pub commands: std::collections::BTreeMap<String, Spanned<super::external::Declaration>>,
    /// The main block.
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<Step>>,
    /// Named blocks, run by `parallel` and `for_each` steps.
    #[serde(default, rename = "block")]
    pub blocks: std::collections::BTreeMap<String, Spanned<Vec<Spanned<Step>>>>,
}

#[derive(Debug, Deserialize)]
pub struct Defaults {
    pub timeout: Option<Spanned<String>>,
    pub queue_timeout: Option<Spanned<String>>,
    pub retry: Option<Spanned<Retry>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Retry {
    /// Total attempts, the first one included.
    pub attempts: Option<u32>,
    /// Delay before the first retry.
    pub backoff: Option<Spanned<String>>,
    /// Upper bound of the delay.
    pub max_backoff: Option<Spanned<String>>,
    /// Growth of the delay from one retry to the next.
    pub multiplier: Option<f64>,
}

/// One step: a name, exactly one kind key, and the keys that go with it.
#[derive(Debug, Deserialize)]
pub struct Step {
    pub name: Spanned<String>,
    // Kinds.
    pub command: Option<Spanned<String>>,
    pub choice: Option<Spanned<Vec<Case>>>,
    pub parallel: Option<Spanned<Vec<Spanned<String>>>>,
    pub for_each: Option<Spanned<String>>,
    pub wait: Option<Spanned<String>>,
    pub sleep: Option<Spanned<String>>,
    pub sleep_until: Option<Spanned<String>>,
    pub fail: Option<Spanned<Fail>>,
    pub workflow: Option<Spanned<String>>,
    // Keys of some kinds.
    pub compensate: Option<Spanned<String>>,
    pub compensate_input: Option<Spanned<String>>,
    pub input: Option<Spanned<String>>,
    pub otherwise: Option<Spanned<String>>,
    pub run: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<String>>,
    /// How long a command may wait for a worker to start it (command steps).
    pub queue_timeout: Option<Spanned<String>>,
    pub retry: Option<Spanned<Retry>>,
    /// A JSON Schema the signal's payload must fit (wait steps): a path or an inline table.
    pub schema: Option<Spanned<toml::Value>>,
    // Flow, for every kind.
    pub next: Option<Spanned<String>>,
    #[serde(default)]
    pub catch: Vec<Spanned<Catch>>,
}

/// One case of a `choice`.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub when: Spanned<String>,
    pub next: Spanned<String>,
}

/// `fail = { code = "...", message = "..." }`.
#[derive(Debug, Deserialize)]
pub struct Fail {
    pub code: Spanned<String>,
    #[serde(default)]
    pub message: Option<Spanned<String>>,
}

/// One entry of a step's `catch` list.
#[derive(Debug, Deserialize)]
pub struct Catch {
    /// The failure codes it takes; empty or absent: every code.
    #[serde(default)]
    pub errors: Vec<String>,
    pub next: Spanned<String>,
}

const TOP: &[&str] =
    &["name", "version", "description", "defaults", "output", "input_schema", "handles", "commands", "step", "block"];
const DEFAULTS: &[&str] = &["timeout", "queue_timeout", "retry"];
const RETRY: &[&str] = &["attempts", "backoff", "max_backoff", "multiplier"];
/// Every key a step may have (which go with which kind is checked in the next stage).
pub const STEP: &[&str] = &[
    "name",
    "command",
    "choice",
    "parallel",
    "for_each",
    "wait",
    "sleep",
    "sleep_until",
    "fail",
    "workflow",
    "compensate",
    "compensate_input",
    "input",
    "otherwise",
    "run",
    "concurrency",
    "timeout",
    "queue_timeout",
    "retry",
    "schema",
    "next",
    "catch",
];
const CASE: &[&str] = &["when", "next"];
const CATCH: &[&str] = &["errors", "next"];
const FAIL: &[&str] = &["code", "message"];

/// A key the grammar does not know: where, which, and where it was found.
pub struct UnknownKey {
    pub span: std::ops::Range<usize>,
    pub key: String,
    /// Where the key is, e.g. "a step", "[defaults]".
    pub place: &'static str,
    pub known: &'static [&'static str],
}

/// Every unknown key of a parsed file, in file order. Values of the wrong type are left to
/// the typed stage.
pub fn unknown_keys(doc: &DeTable<'_>) -> Vec<UnknownKey> {
    let mut out = Vec::new();
    check_table(doc, TOP, "the top level", &mut out);
    if let Some(d) = doc.get("defaults").and_then(|v| as_table(v.get_ref())) {
        check_table(d, DEFAULTS, "[defaults]", &mut out);
        if let Some(r) = d.get("retry").and_then(|v| as_table(v.get_ref())) {
            check_table(r, RETRY, "retry", &mut out);
        }
    }
    if let Some(commands) = doc.get("commands").and_then(|v| as_table(v.get_ref())) {
        // The schemas inside are JSON Schema, not grammar: only the table's own keys.
        for entry in commands.values().filter_map(|v| as_table(v.get_ref())) {
            check_table(entry, super::external::KEYS, "a [commands] table", &mut out);
        }
    }
    let mut step_lists: Vec<&DeValue<'_>> = doc.get("step").map(|v| v.get_ref()).into_iter().collect();
    if let Some(blocks) = doc.get("block").and_then(|v| as_table(v.get_ref())) {
        step_lists.extend(blocks.values().map(|v| v.get_ref()));
    }
    for list in step_lists {
        let DeValue::Array(steps) = list else { continue };
        for step in steps.iter().filter_map(|s| as_table(s.get_ref())) {
            check_table(step, STEP, "a step", &mut out);
            if let Some(r) = step.get("retry").and_then(|v| as_table(v.get_ref())) {
                check_table(r, RETRY, "retry", &mut out);
            }
            if let Some(f) = step.get("fail").and_then(|v| as_table(v.get_ref())) {
                check_table(f, FAIL, "fail", &mut out);
            }
            for (key, allowed, place) in [("choice", CASE, "a choice case"), ("catch", CATCH, "a catch entry")] {
                if let Some(DeValue::Array(entries)) = step.get(key).map(|v| v.get_ref()) {
                    for entry in entries.iter().filter_map(|e| as_table(e.get_ref())) {
                        check_table(entry, allowed, place, &mut out);
                    }
                }
            }
        }
    }
    out.sort_by_key(|k| k.span.start);
    out
}

fn as_table<'a, 'i>(v: &'a DeValue<'i>) -> Option<&'a DeTable<'i>> {
    match v {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

fn check_table(table: &DeTable<'_>, allowed: &'static [&'static str], place: &'static str, out: &mut Vec<UnknownKey>) {
    for key in table.keys() {
        if !allowed.contains(&key.get_ref().as_ref()) {
            out.push(UnknownKey { span: key.span(), key: key.get_ref().to_string(), place, known: allowed });
        }
    }
}
