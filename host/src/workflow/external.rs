//! Commands served outside the host: declared in a workflow file, performed by any process
//! that speaks the bus protocol (docs/PROTOCOL.md) instead of a plugin.
//!
//! ```toml
//! [commands."fraud.score"]
//! external = true
//! input_schema = { type = "object", required = ["order_id"] }   # optional: checked before it is sent
//! output_schema = "fraud.output.json"                          # optional: checked on its result
//! ```
//!
//! A declared command counts as handled when the workflow is checked against the loaded
//! plugins, so `baton check` accepts the steps that send it; a loaded plugin that handles it
//! too is a definition error (the plugin's worker pool and the outside worker would compete
//! for the same commands). The orchestrator sends it on the bus like any other command: no
//! worker pool of the host subscribes to it, since a pool reads only its own plugin's
//! commands. The schemas are compiled here, at load, and checked by
//! `orchestrator::steps::command`: a payload that does not fit fails the step with
//! `invalid_input` before anything is sent, a result that does not fit fails it with
//! `invalid_output`, neither retried.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::schema::{self, Schema};
use super::{DefinitionError, DefinitionErrors, Report, Workflow, is_command_name};

/// One `[commands."NAME"]` table, as written.
#[derive(Debug, Deserialize)]
pub struct Declaration {
    /// Must be `true`: the command is served outside the host.
    #[serde(default)]
    pub external: Option<Spanned<bool>>,
    /// A JSON Schema for the command's payload: a path to a JSON file (relative to the
    /// workflow file) or an inline table.
    #[serde(default)]
    pub input_schema: Option<Spanned<toml::Value>>,
    /// A JSON Schema for the command's successful result, in the same forms.
    #[serde(default)]
    pub output_schema: Option<Spanned<toml::Value>>,
}

/// The keys of a `[commands."NAME"]` table (for `authored::unknown_keys`).
pub const KEYS: &[&str] = &["external", "input_schema", "output_schema"];

/// A command the workflow declares as served outside the host.
#[derive(Debug, Clone, PartialEq)]
pub struct External {
    /// Checked against each payload before it is sent.
    pub input_schema: Option<Schema>,
    /// Checked against each successful result.
    pub output_schema: Option<Schema>,
    /// The line of its `[commands."NAME"]` table, for messages.
    pub line: usize,
}

/// Why a loaded plugin and an external declaration may not name the same command.
fn conflict(name: &str) -> String {
    format!(
        "command {name:?} is declared external = true, but a loaded plugin handles it too (`baton plugins` says which): its worker pool and the outside worker would take each other's commands; remove the [commands.{name:?}] table to use the plugin, or remove the plugin so that the outside worker serves it"
    )
}

/// Resolve the declarations of one file, reporting every problem. With `known` (the sorted
/// commands the loaded plugins handle), a declared command a plugin handles is an error.
pub(crate) fn resolve(
    report: &mut Report<'_>,
    file: &Path,
    declared: &BTreeMap<String, Spanned<Declaration>>,
    known: Option<&[String]>,
) -> BTreeMap<String, External> {
    let mut out = BTreeMap::new();
    for (name, spanned) in declared {
        let d = spanned.get_ref();
        let span = || Some(spanned.span());
        let before = report.errors.len();
        if !is_command_name(name) {
            report.at(
                span(),
                None,
                format!("[commands.{name:?}]: {name:?} is not a command name: use letters, digits, '.', '_' and '-', e.g. \"fraud.score\""),
            );
        }
        match &d.external {
            Some(e) if *e.get_ref() => {}
            Some(e) => report.at(
                Some(e.span()),
                None,
                format!("[commands.{name:?}] external = false: a [commands] table declares a command served outside the host (plugins declare their own); set external = true, or remove the table"),
            ),
            None => report.at(
                span(),
                None,
                format!("[commands.{name:?}] has no external = true: a [commands] table declares a command served outside the host; add external = true (a dotted name must be quoted: [commands.\"fraud.score\"])"),
            ),
        }
        if known.is_some_and(|k| k.binary_search_by(|c| c.as_str().cmp(name)).is_ok()) {
            report.at(span(), None, conflict(name));
        }
        let mut schema_of = |key: &str, value: &Option<Spanned<toml::Value>>| {
            let v = value.as_ref()?;
            match schema::load(file, &format!("[commands.{name:?}] {key}"), v.get_ref()) {
                Ok(s) => Some(s),
                Err(message) => {
                    report.at(Some(v.span()), None, message);
                    None
                }
            }
        };
        let input_schema = schema_of("input_schema", &d.input_schema);
        let output_schema = schema_of("output_schema", &d.output_schema);
        if report.errors.len() == before {
            let line = report.line_of(spanned.span().start);
            out.insert(name.clone(), External { input_schema, output_schema, line });
        }
    }
    out
}

/// `known` (sorted) with the `declared` names added, still sorted: what the steps of the
/// workflow may send. A declaration with problems counts too: its own errors say what is
/// wrong, and the steps that send its command need not repeat it.
pub(crate) fn with_known(known: &[String], declared: &BTreeMap<String, Spanned<Declaration>>) -> Vec<String> {
    let mut all: Vec<String> = known.iter().chain(declared.keys()).cloned().collect();
    all.sort();
    all.dedup();
    all
}

/// Check a resolved workflow's external declarations against the commands the loaded plugins
/// handle (`known`, sorted): a command both declare is an error. What a distributed host
/// checks, whose workflows load without the plugin check.
pub fn check_conflicts(wf: &Workflow, known: &[String]) -> Result<(), DefinitionErrors> {
    let errors: Vec<DefinitionError> = wf
        .external
        .iter()
        .filter(|(name, _)| known.binary_search_by(|c| c.as_str().cmp(name)).is_ok())
        .map(|(name, e)| DefinitionError {
            file: wf.source.clone(),
            workflow: Some(wf.name.clone()),
            line: Some(e.line),
            step: None,
            message: conflict(name),
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(DefinitionErrors(errors)) }
}

impl Workflow {
    /// The declaration of `command`, when the workflow declares it external.
    pub fn external(&self, command: &str) -> Option<&External> {
        self.external.get(command)
    }

    /// The external commands the workflow's steps send (commands and compensations), sorted,
    /// each once: what a saga of it needs a worker outside the host for.
    pub fn external_commands(&self) -> Vec<&str> {
        let mut used: Vec<&str> =
            self.commands().map(|(_, cmd, _)| cmd).filter(|cmd| self.external.contains_key(*cmd)).collect();
        used.sort_unstable();
        used.dedup();
        used
    }
}
