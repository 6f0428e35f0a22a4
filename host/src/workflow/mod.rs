//! Workflows: TOML state machines, loaded in stages.
//!
//! 1. [`authored`]: serde types, as written, with source spans; every unknown key found.
//! 2. [`check`]: validate and resolve ([`parse`]): durations parsed, defaults applied,
//!    expressions compiled, jumps and references checked over the whole graph. Every problem
//!    is collected, not only the first, each with file, line and a fix.
//! 3. [`resolved`]: the immutable [`Workflow`] the orchestrator runs: blocks of steps, one
//!    [`StepKind`] per step.
//!
//! [`check_commands`] checks a workflow against the commands the loaded plugins handle (and
//! [`external`] the commands it declares as served outside the host);
//! [`expr`] is the expression language (CEL); [`schema`] checks JSON against a JSON Schema.
//!
//! This module knows nothing of buses, stores or wasm.
//!
//! ```toml
//! name = "order"
//! [defaults]
//! timeout = "5s"
//! retry = { attempts = 3, backoff = "100ms", max_backoff = "2s" }
//!
//! [[step]]
//! name = "reserve"
//! for_each = "input.items"
//! run = "reserve_item"
//!
//! [[step]]
//! name = "ship"
//! command = "shipping.ship"
//! input = "{ 'order_id': input.order_id, 'customer': input.customer }"
//!
//! [[block.reserve_item]]
//! name = "reserve_one"
//! command = "inventory.reserve"
//! compensate = "inventory.release"   # receives reserve_one's output unless compensate_input says otherwise
//! input = "{ 'sku': item.sku, 'qty': item.qty }"
//! ```

pub mod authored;
pub mod check;
pub mod duration;
pub mod expr;
pub mod external;
pub mod fit;
pub mod resolved;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use check::parse;
pub use resolved::*;

/// Step timeout when neither the step nor `[defaults]` sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Retry policy when neither the step nor `[defaults]` sets one: three attempts in all,
/// 100 ms, then 200 ms (with jitter), capped at 10 s.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    attempts: 3,
    backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(10),
    multiplier: 2.0,
};

/// Longest step timeout, wait timeout or sleep: a year. A deadline is computed as
/// `now + timeout`, so a bound keeps the arithmetic far from overflow; a step that must wait
/// longer is a design to rethink.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);
/// Longest delay between two attempts (`retry.backoff`, `retry.max_backoff`): a day.
pub const MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// Most attempts of one step, the first included.
pub const MAX_ATTEMPTS: u32 = 100;
/// Most iterations of a `for_each` running at once.
pub const MAX_CONCURRENCY: usize = 256;

/// A problem in a workflow definition: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub file: PathBuf,
    /// The workflow's name, when the file got far enough to say it.
    pub workflow: Option<String>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub step: Option<String>,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(step) = &self.step {
            write!(f, "step {step:?}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for DefinitionError {}

/// All the problems found in one or more files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionErrors(pub Vec<DefinitionError>);

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionErrors {}

/// Collects errors for one file and turns byte offsets into line numbers.
pub(crate) struct Report<'a> {
    pub(crate) file: &'a Path,
    pub(crate) text: &'a str,
    pub(crate) workflow: Option<String>,
    pub(crate) errors: Vec<DefinitionError>,
}

impl Report<'_> {
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|&b| b == b'\n').count() + 1
    }

    /// A problem at a known line (the graph checks work on resolved steps, which keep lines).
    pub(crate) fn at_line(&mut self, line: usize, step: Option<&str>, message: impl Into<String>) {
        self.errors.push(DefinitionError {
            file: self.file.to_owned(),
            workflow: self.workflow.clone(),
            line: Some(line),
            step: step.map(str::to_owned),
            message: message.into(),
        });
    }

    pub(crate) fn at(&mut self, span: Option<std::ops::Range<usize>>, step: Option<&str>, message: impl Into<String>) {
        let line = span.map(|s| self.line_of(s.start));
        self.errors.push(DefinitionError {
            file: self.file.to_owned(),
            workflow: self.workflow.clone(),
            line,
            step: step.map(str::to_owned),
            message: message.into(),
        });
    }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(crate) fn is_command_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The message for a command no plugin handles, or `None` when one does.
pub(crate) fn unknown_command(what: &str, cmd: &str, known: &[String]) -> Option<String> {
    if known.binary_search_by(|k| k.as_str().cmp(cmd)).is_ok() {
        return None;
    }
    let hint = match closest(cmd, known) {
        Some(near) => format!("did you mean {near:?}? "),
        None => String::new(),
    };
    let loaded = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
    Some(format!(
        "no plugin handles {what} {cmd:?}: {hint}add a plugin that exports it to the plugin directory, declare it served outside the host ([commands.{cmd:?}] external = true), or fix the name (loaded: {loaded})"
    ))
}

/// Check that some loaded plugin handles every command and compensation of a resolved
/// workflow that it does not declare external. `known` is the sorted list of commands the
/// plugins handle.
pub fn check_commands(wf: &Workflow, known: &[String]) -> Result<(), DefinitionErrors> {
    let errors: Vec<DefinitionError> = wf
        .commands()
        .filter(|(_, cmd, _)| wf.external(cmd).is_none())
        .filter_map(|(what, cmd, step)| {
            unknown_command(what, cmd, known).map(|message| DefinitionError {
                file: wf.source.clone(),
                workflow: Some(wf.name.clone()),
                line: Some(step.line),
                step: Some(step.name.clone()),
                message,
            })
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(DefinitionErrors(errors)) }
}

/// The known name nearest to `name`, when it is near enough to be a likely typo.
pub(crate) fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The workflows of a directory, by name.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub workflows: BTreeMap<String, Arc<Workflow>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Arc<Workflow>> {
        self.workflows.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.workflows.keys().map(String::as_str).collect()
    }
}

/// Load every `*.toml` in `dir` (sorted, not recursive), checking commands against `known`
/// when given. Files that fail are reported in the error list and left out of the catalog;
/// the others load.
pub fn load_dir(dir: &Path, known: Option<&[String]>) -> std::io::Result<(Catalog, Vec<DefinitionError>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    // A command a workflow of the directory `handles` is known too: this host answers it.
    let plugins_known = known;
    let with_handled: Option<Vec<String>> = known.map(|k| {
        let mut all = k.to_vec();
        all.extend(files.iter().filter_map(|f| handles_of(&std::fs::read_to_string(f).ok()?)));
        all.sort();
        all.dedup();
        all
    });
    let known = with_handled.as_deref();
    let mut catalog = Catalog::default();
    let mut errors = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(DefinitionError {
                    file,
                    workflow: None,
                    line: None,
                    step: None,
                    message: format!("cannot read the file: {e}"),
                });
                continue;
            }
        };
        match parse(&file, &text, known) {
            Ok(wf) => {
                if let Some(other) = catalog.workflows.get(&wf.name) {
                    errors.push(DefinitionError {
                        file: file.clone(),
                        workflow: Some(wf.name.clone()),
                        line: None,
                        step: None,
                        message: format!(
                            "workflow {:?} is already defined in {}: give one of them another name",
                            wf.name,
                            other.source.display()
                        ),
                    });
                } else {
                    catalog.workflows.insert(wf.name.clone(), Arc::new(wf));
                }
            }
            Err(e) => errors.extend(e.0),
        }
    }
    errors.extend(check_catalog(&mut catalog, plugins_known));
    Ok((catalog, errors))
}

/// The `handles` of a workflow file's text, read without checking anything else (the file's
/// own parse reports its problems).
fn handles_of(text: &str) -> Option<String> {
    let doc: toml::Table = text.parse().ok()?;
    doc.get("handles")?.as_str().filter(|h| is_command_name(h)).map(str::to_owned)
}

/// What only the whole directory tells, and leaves out of `catalog` the workflows it
/// refuses: two workflows that `handles` one command (or one a plugin of `known` handles
/// too); and, with `known` (this host must run everything: embedded, or `baton check`), a
/// `workflow` step naming a workflow that is not there. Distributed, another host may run it.
fn check_catalog(catalog: &mut Catalog, known: Option<&[String]>) -> Vec<DefinitionError> {
    let mut errors = Vec::new();
    let mut refuse = |wf: &Workflow, line: Option<usize>, step: Option<&str>, message: String| {
        errors.push(DefinitionError {
            file: wf.source.clone(),
            workflow: Some(wf.name.clone()),
            line,
            step: step.map(str::to_owned),
            message,
        });
        wf.name.clone()
    };
    let mut out = Vec::new();
    let mut handled: BTreeMap<&str, &str> = BTreeMap::new();
    for wf in catalog.workflows.values() {
        let Some(h) = &wf.handles else { continue };
        if let Some(known) = known
            && known.binary_search_by(|k| k.as_str().cmp(h)).is_ok()
        {
            out.push(refuse(wf, None, None, format!("handles {h:?}, but a plugin handles that command too: a command has one handler, rename one of them")));
        } else if let Some(first) = handled.insert(h, &wf.name) {
            out.push(refuse(wf, None, None, format!("handles {h:?}, which workflow {first:?} handles already: a command has one handler, rename one of them")));
        }
    }
    if known.is_some() {
        // Refusing one workflow may leave another naming it: until nothing changes.
        loop {
            let names: BTreeSet<&str> =
                catalog.workflows.keys().map(String::as_str).filter(|n| !out.iter().any(|o| o == n)).collect();
            let mut more = Vec::new();
            for wf in catalog.workflows.values().filter(|wf| names.contains(wf.name.as_str())) {
                for (_, step) in wf.all_steps() {
                    if let StepKind::Workflow(c) = &step.kind
                        && let Some(child) = &c.workflow
                        && !names.contains(child.as_str())
                    {
                        let hint = match closest(child, &names.iter().map(|n| n.to_string()).collect::<Vec<_>>()) {
                            Some(near) => format!("did you mean {near:?}? "),
                            None => String::new(),
                        };
                        more.push(refuse(wf, Some(step.line), Some(&step.name), format!(
                            "no workflow {child:?} here for this step's sub-saga: {hint}add {child}.toml to the workflow directory, or fix the name"
                        )));
                        break;
                    }
                }
            }
            if more.is_empty() {
                break;
            }
            out.extend(more);
        }
    }
    for name in out {
        catalog.workflows.remove(&name);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            multiplier: 2.0,
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(350));
        assert_eq!(p.delay(40), Duration::from_millis(350));
    }

    #[test]
    fn suggests_near_names() {
        let known = vec!["payment.charge".to_owned(), "payment.refund".to_owned()];
        assert_eq!(closest("payment.charg", &known), Some("payment.charge"));
        assert_eq!(closest("shipping.ship", &known), None);
    }
}
