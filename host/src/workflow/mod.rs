//! Workflows: TOML state machines, loaded in stages.
//!
//! 1. [`authored`]: serde types, as written, with source spans.
//! 2. [`parse`]: validate and resolve into an immutable [`Workflow`] (durations parsed,
//!    defaults applied, expressions parsed and their references checked). Every problem is
//!    collected, not only the first, each with file, line and a fix.
//! 3. [`check_commands`]: check the workflow against the commands the loaded plugins handle.
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
//! command = "inventory.reserve"
//! compensate = "inventory.release"    # receives reserve's output unless compensate_input says otherwise
//!
//! [[step]]
//! name = "ship"
//! command = "shipping.ship"
//! input = "{ 'order_id': input.order_id, 'customer': input.customer }"
//! ```

pub mod authored;
pub mod duration;
pub mod expr;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use expr::{Expr, Root};
use toml::Spanned;

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

/// Longest step timeout: a year. A deadline is computed as `now + timeout`, so a bound keeps
/// the arithmetic far from overflow; a step that must wait longer is a design to rethink.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);
/// Longest delay between two attempts (`retry.backoff`, `retry.max_backoff`): a day.
pub const MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// Most attempts of one step, the first included.
pub const MAX_ATTEMPTS: u32 = 100;

/// A validated, resolved workflow. Immutable; shared behind an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub version: u32,
    pub description: Option<String>,
    /// The file it was read from, for messages.
    pub source: PathBuf,
    pub steps: Vec<Step>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub command: String,
    /// The command that undoes this step, run when a later step fails for good.
    pub compensate: Option<String>,
    /// The payload of `command`; the saga input when absent.
    pub input: Option<Expr>,
    /// The payload of `compensate`; this step's output when absent.
    pub compensate_input: Option<Expr>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Line of the `[[step]]` in the source, for messages.
    pub line: usize,
}

/// How often and how patiently a failed command is tried again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included: 1 means no retry.
    pub attempts: u32,
    /// Delay before the first retry.
    pub backoff: Duration,
    /// Cap of the delay.
    pub max_backoff: Duration,
    /// Factor between successive delays.
    pub multiplier: f64,
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based), before jitter:
    /// `backoff * multiplier^(attempt-1)`, capped at `max_backoff`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
        let ms = (self.backoff.as_millis() as f64 * exp).min(self.max_backoff.as_millis() as f64);
        Duration::from_millis(ms as u64)
    }
}

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
struct Report<'a> {
    file: &'a Path,
    text: &'a str,
    workflow: Option<String>,
    errors: Vec<DefinitionError>,
}

impl Report<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn at(&mut self, span: Option<std::ops::Range<usize>>, step: Option<&str>, message: impl Into<String>) {
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

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_command_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Parse, validate and resolve one workflow file's text. With `known` (the sorted commands
/// the loaded plugins handle), every command and compensation is checked against it too.
pub fn parse(file: &Path, text: &str, known: Option<&[String]>) -> Result<Workflow, DefinitionErrors> {
    let mut report = Report { file, text, workflow: None, errors: Vec::new() };
    let authored: authored::Workflow = match toml::from_str(text) {
        Ok(w) => w,
        Err(e) => {
            let message = e.message().trim_end().to_owned();
            let hint = if message.contains("unknown field") {
                " (check the spelling; see the workflow grammar in README.md)"
            } else if message.contains("missing field") {
                " (add it)"
            } else {
                ""
            };
            report.at(e.span(), None, format!("{message}{hint}"));
            return Err(DefinitionErrors(report.errors));
        }
    };

    let name = authored.name.get_ref().clone();
    report.workflow = Some(name.clone());
    if !is_identifier(&name) {
        report.at(
            Some(authored.name.span()),
            None,
            format!("workflow name {name:?} must start with a letter and hold only letters, digits, '_' and '-'"),
        );
    }

    let defaults = authored.defaults.as_ref();
    let default_timeout =
        resolve_timeout(&mut report, None, defaults.and_then(|d| d.timeout.as_ref()), DEFAULT_TIMEOUT);
    let default_retry = resolve_retry(&mut report, None, defaults.and_then(|d| d.retry.as_ref()), DEFAULT_RETRY);

    if authored.steps.is_empty() {
        report.at(None, None, "the workflow has no steps: add at least one [[step]] with a name and a command");
    }

    let mut steps = Vec::with_capacity(authored.steps.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for spanned in &authored.steps {
        let s = spanned.get_ref();
        let line = report.line_of(spanned.span().start);
        let step_name = s.name.get_ref().clone();
        let sn = Some(step_name.as_str());
        if !is_identifier(&step_name) {
            report.at(
                Some(s.name.span()),
                sn,
                "a step name must start with a letter and hold only letters, digits, '_' and '-' (it is used in expressions as steps.<name>)",
            );
        }
        if let Some(first) = seen.insert(step_name.clone(), line) {
            report.at(
                Some(s.name.span()),
                sn,
                format!("duplicate step name (first used on line {first}): give each step its own name"),
            );
        }
        for (what, cmd) in
            std::iter::once(("command", &s.command)).chain(s.compensate.as_ref().map(|c| ("compensation", c)))
        {
            if let Some(known) = known
                && is_command_name(cmd.get_ref())
                && let Some(message) = unknown_command(what, cmd.get_ref(), known)
            {
                report.at(Some(cmd.span()), sn, message);
            }
            if !is_command_name(cmd.get_ref()) {
                report.at(
                    Some(cmd.span()),
                    sn,
                    format!(
                        "{:?} is not a command name: use letters, digits, '.', '_' and '-', e.g. \"payment.charge\"",
                        cmd.get_ref()
                    ),
                );
            }
        }
        if s.compensate_input.is_some() && s.compensate.is_none() {
            report.at(
                s.compensate_input.as_ref().map(|c| c.span()),
                sn,
                "compensate_input is set but compensate is not: add the compensating command",
            );
        }
        // Earlier steps' outputs are visible to `input`; `compensate_input` also sees this step's.
        let earlier: HashSet<&str> = steps.iter().map(|st: &Step| st.name.as_str()).collect();
        let input = resolve_expr(&mut report, sn, "input", s.input.as_ref(), &earlier);
        let mut with_self = earlier.clone();
        with_self.insert(step_name.as_str());
        let compensate_input =
            resolve_expr(&mut report, sn, "compensate_input", s.compensate_input.as_ref(), &with_self);
        let timeout = resolve_timeout(&mut report, sn, s.timeout.as_ref(), default_timeout);
        let retry = resolve_retry(&mut report, sn, s.retry.as_ref(), default_retry);
        steps.push(Step {
            name: step_name.clone(),
            command: s.command.get_ref().clone(),
            compensate: s.compensate.as_ref().map(|c| c.get_ref().clone()),
            input,
            compensate_input,
            timeout,
            retry,
            line,
        });
    }

    if report.errors.is_empty() {
        Ok(Workflow {
            name,
            version: authored.version.unwrap_or(1),
            description: authored.description,
            source: file.to_owned(),
            steps,
        })
    } else {
        report.errors.sort_by_key(|e| e.line);
        Err(DefinitionErrors(report.errors))
    }
}

/// The message for a command no plugin handles, or `None` when one does.
fn unknown_command(what: &str, cmd: &str, known: &[String]) -> Option<String> {
    if known.binary_search_by(|k| k.as_str().cmp(cmd)).is_ok() {
        return None;
    }
    let hint = match closest(cmd, known) {
        Some(near) => format!("did you mean {near:?}? "),
        None => String::new(),
    };
    let loaded = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
    Some(format!(
        "no plugin handles {what} {cmd:?}: {hint}add a plugin that exports it to the plugin directory, or fix the name (loaded: {loaded})"
    ))
}

fn resolve_expr(
    report: &mut Report<'_>,
    step: Option<&str>,
    key: &str,
    text: Option<&Spanned<String>>,
    visible: &HashSet<&str>,
) -> Option<Expr> {
    let text = text?;
    match Expr::parse(text.get_ref()) {
        Ok(e) => {
            for path in e.paths() {
                if let Root::Step(name) = &path.root
                    && !visible.contains(name.as_str())
                {
                    report.at(
                        Some(text.span()),
                        step,
                        format!("{key} reads {path}, but no earlier step is named {name:?}: a step can read only the outputs of the steps before it"),
                    );
                }
            }
            Some(e)
        }
        Err(msg) => {
            report.at(Some(text.span()), step, format!("{key} is not a valid expression: {msg}"));
            None
        }
    }
}

fn resolve_duration(
    report: &mut Report<'_>,
    step: Option<&str>,
    key: &str,
    text: &Spanned<String>,
    max: Duration,
) -> Option<Duration> {
    match duration::parse_at_most(text.get_ref(), max) {
        Ok(d) => Some(d),
        Err(msg) => {
            report.at(Some(text.span()), step, format!("{key}: {msg}"));
            None
        }
    }
}

fn resolve_timeout(
    report: &mut Report<'_>,
    step: Option<&str>,
    text: Option<&Spanned<String>>,
    fallback: Duration,
) -> Duration {
    let Some(text) = text else { return fallback };
    match resolve_duration(report, step, "timeout", text, MAX_TIMEOUT) {
        Some(d) if d.is_zero() => {
            report.at(Some(text.span()), step, "timeout must be longer than zero");
            fallback
        }
        Some(d) => d,
        None => fallback,
    }
}

fn resolve_retry(
    report: &mut Report<'_>,
    step: Option<&str>,
    retry: Option<&Spanned<authored::Retry>>,
    fallback: RetryPolicy,
) -> RetryPolicy {
    let Some(spanned) = retry else {
        return fallback;
    };
    let r = spanned.get_ref();
    let mut policy = fallback;
    if let Some(attempts) = r.attempts {
        if attempts == 0 {
            report.at(Some(spanned.span()), step, "retry.attempts counts the first try too: it must be at least 1");
        } else if attempts > MAX_ATTEMPTS {
            report.at(
                Some(spanned.span()),
                step,
                format!("retry.attempts {attempts} is more than the largest value allowed, {MAX_ATTEMPTS}"),
            );
        } else {
            policy.attempts = attempts;
        }
    }
    if let Some(b) = &r.backoff
        && let Some(d) = resolve_duration(report, step, "retry.backoff", b, MAX_BACKOFF)
    {
        policy.backoff = d;
    }
    if let Some(b) = &r.max_backoff
        && let Some(d) = resolve_duration(report, step, "retry.max_backoff", b, MAX_BACKOFF)
    {
        policy.max_backoff = d;
    }
    if let Some(m) = r.multiplier {
        if !(1.0..=100.0).contains(&m) {
            report.at(Some(spanned.span()), step, format!("retry.multiplier {m} must be between 1 and 100"));
        } else {
            policy.multiplier = m;
        }
    }
    if policy.backoff > policy.max_backoff {
        report.at(
            Some(spanned.span()),
            step,
            format!(
                "retry.backoff ({}) is longer than retry.max_backoff ({}): raise max_backoff or lower backoff",
                duration::format(policy.backoff),
                duration::format(policy.max_backoff)
            ),
        );
    }
    policy
}

/// Check that some loaded plugin handles every command and compensation of a resolved
/// workflow. `known` is the sorted list of commands the plugins handle.
pub fn check_commands(wf: &Workflow, known: &[String]) -> Result<(), DefinitionErrors> {
    let mut errors = Vec::new();
    for step in &wf.steps {
        let commands =
            std::iter::once(("command", &step.command)).chain(step.compensate.as_ref().map(|c| ("compensation", c)));
        for (what, cmd) in commands {
            if let Some(message) = unknown_command(what, cmd, known) {
                errors.push(DefinitionError {
                    file: wf.source.clone(),
                    workflow: Some(wf.name.clone()),
                    line: Some(step.line),
                    step: Some(step.name.clone()),
                    message,
                });
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(DefinitionErrors(errors)) }
}

/// The known name nearest to `name`, when it is near enough to be a likely typo.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
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
    Ok((catalog, errors))
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
