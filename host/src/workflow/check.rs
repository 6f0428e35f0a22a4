//! Stage 2: validate an authored workflow and resolve it (names to indexes, durations parsed,
//! defaults applied, expressions compiled and their references checked).
//!
//! Every problem is collected, not only the first, each with its line and a fix. Beyond the
//! shape of each step, the checks that need the whole graph:
//! - every `next`, `otherwise`, choice and catch target is a step of the same block (or
//!   `"end"`), and every block named by `parallel` / `run` exists and runs no block that runs
//!   it back;
//! - every block is run by some step, and every step can be reached;
//! - an expression reads only steps that may have completed before it is evaluated (a
//!   may-precede relation over the whole file, through jumps, loops, catches and blocks), and
//!   `item` / `index` only inside a block run by `for_each`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::authored;
use super::expr::Expr;
use super::resolved::{
    Block, Catch, Choice, Command, Fail, ForEach, Next, Parallel, RetryPolicy, Sleep, Step, StepKind, Wait, Workflow,
};
use super::{
    DEFAULT_RETRY, DEFAULT_TIMEOUT, DefinitionErrors, MAX_ATTEMPTS, MAX_BACKOFF, MAX_CONCURRENCY, MAX_TIMEOUT, Report,
    closest, duration, is_command_name, is_identifier, unknown_command,
};

/// The grammar's kind keys, in the order messages list them.
const KINDS: &[&str] =
    &["command", "choice", "parallel", "for_each", "wait", "sleep", "sleep_until", "fail", "workflow"];

/// Parse, validate and resolve one workflow file's text. With `known` (the sorted commands
/// the loaded plugins handle), every command and compensation is checked against it too.
pub fn parse(file: &Path, text: &str, known: Option<&[String]>) -> Result<Workflow, DefinitionErrors> {
    let mut report = Report { file, text, workflow: None, errors: Vec::new() };
    // Pass 1: the TOML itself, and every key the grammar does not know.
    let doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            report.at(e.span(), None, e.message().trim_end().to_owned());
            return Err(DefinitionErrors(report.errors));
        }
    };
    for k in super::authored::unknown_keys(doc.get_ref()) {
        let hint = match closest(&k.key, &k.known.iter().map(|s| s.to_string()).collect::<Vec<_>>()) {
            Some(near) => format!("did you mean {near:?}?"),
            None => format!("known keys: {}", k.known.join(", ")),
        };
        report.at(
            Some(k.span),
            None,
            format!("unknown key {:?} in {}: {hint} (see the workflow grammar in README.md)", k.key, k.place),
        );
    }
    // Pass 2: the typed shape.
    let authored: authored::Workflow = match toml::from_str(text) {
        Ok(w) => w,
        Err(e) => {
            let message = e.message().trim_end().to_owned();
            let hint = if message.contains("missing field") { " (add it)" } else { "" };
            report.at(e.span(), None, format!("{message}{hint}"));
            report.errors.sort_by_key(|e| e.line);
            return Err(DefinitionErrors(report.errors));
        }
    };
    let name = authored.name.get_ref().clone();
    report.workflow = Some(name.clone());
    for e in &mut report.errors {
        e.workflow = Some(name.clone());
    }
    if !is_identifier(&name) {
        report.at(
            Some(authored.name.span()),
            None,
            format!("workflow name {name:?} must start with a letter and hold only letters, digits, '_' and '-'"),
        );
    }
    // Declared external commands count as known to the steps that send them.
    let external = super::external::resolve(&mut report, file, &authored.commands, known);
    let with_external = known.map(|k| super::external::with_known(k, &authored.commands));
    let wf = Resolver::new(&mut report, &authored, with_external.as_deref()).resolve(file, text);
    if report.errors.is_empty()
        && let Some(mut wf) = wf
    {
        wf.external = external;
        Ok(wf)
    } else {
        report.errors.sort_by_key(|e| e.line);
        Err(DefinitionErrors(report.errors))
    }
}

/// Where a step sits: its block and index, and its line.
#[derive(Clone, Copy)]
struct Place {
    block: usize,
    index: usize,
}

struct Resolver<'r, 'a> {
    report: &'r mut Report<'a>,
    authored: &'r authored::Workflow,
    known: Option<&'r [String]>,
    /// Block names, the main block first.
    block_names: Vec<String>,
    /// The authored steps of each block.
    block_steps: Vec<&'r [Spanned<authored::Step>]>,
    /// Every step name, where it is.
    places: BTreeMap<String, Place>,
    default_timeout: Duration,
    default_queue_timeout: Option<Duration>,
    default_retry: RetryPolicy,
}

impl<'r, 'a> Resolver<'r, 'a> {
    fn new(report: &'r mut Report<'a>, authored: &'r authored::Workflow, known: Option<&'r [String]>) -> Self {
        let defaults = authored.defaults.as_ref();
        let default_timeout = resolve_timeout(report, None, defaults.and_then(|d| d.timeout.as_ref()), DEFAULT_TIMEOUT);
        let default_queue_timeout =
            resolve_queue_timeout(report, None, defaults.and_then(|d| d.queue_timeout.as_ref()), None);
        let default_retry = resolve_retry(report, None, defaults.and_then(|d| d.retry.as_ref()), DEFAULT_RETRY);
        let mut block_names = vec!["main".to_owned()];
        let mut block_steps: Vec<&[Spanned<authored::Step>]> = vec![&authored.steps];
        for (name, steps) in &authored.blocks {
            block_names.push(name.clone());
            block_steps.push(steps.get_ref());
        }
        Resolver {
            report,
            authored,
            known,
            block_names,
            block_steps,
            places: BTreeMap::new(),
            default_timeout,
            default_queue_timeout,
            default_retry,
        }
    }

    fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.report.line_of(span.start)
    }

    fn resolve(mut self, file: &Path, text: &str) -> Option<Workflow> {
        if self.authored.steps.is_empty() {
            self.report.at(
                None,
                None,
                "the workflow has no steps: add at least one [[step]] with a name and a kind (e.g. command = \"...\")",
            );
        }
        for (b, name) in self.block_names.iter().enumerate().skip(1) {
            if name == "main" {
                self.report.at(
                    Some(self.authored.blocks[name].span()),
                    None,
                    "a block cannot be named \"main\": that is the name of the [[step]] list; rename the block",
                );
            }
            if !is_identifier(name) {
                self.report.at(
                    None,
                    None,
                    format!("block name {name:?} must start with a letter and hold only letters, digits, '_' and '-'"),
                );
            }
            if self.block_steps[b].is_empty() {
                self.report.at(
                    Some(self.authored.blocks[name].span()),
                    None,
                    format!("block {name:?} has no steps: add a [[block.{name}]] step or remove it"),
                );
            }
        }
        // Names first: every reference is resolved against the whole file.
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        for (b, steps) in self.block_steps.clone().into_iter().enumerate() {
            for (i, spanned) in steps.iter().enumerate() {
                let s = spanned.get_ref();
                let step_name = s.name.get_ref().clone();
                let line = self.line(spanned.span());
                if !is_identifier(&step_name) {
                    self.report.at(
                        Some(s.name.span()),
                        Some(&step_name),
                        "a step name must start with a letter and hold only letters, digits, '_' and '-' (it is used in expressions as steps.<name>)",
                    );
                }
                if step_name == "end" {
                    self.report.at(
                        Some(s.name.span()),
                        Some(&step_name),
                        "\"end\" is reserved (next = \"end\" ends a block): rename the step",
                    );
                }
                if let Some(first) = first_line.insert(step_name.clone(), line) {
                    self.report.at(
                        Some(s.name.span()),
                        Some(&step_name),
                        format!("duplicate step name (first used on line {first}): step names are unique in the whole file, give each step its own"),
                    );
                } else {
                    self.places.insert(step_name, Place { block: b, index: i });
                }
            }
        }
        let mut blocks: Vec<Block> = Vec::with_capacity(self.block_names.len());
        for b in 0..self.block_names.len() {
            let steps = self.block_steps[b];
            let mut resolved = Vec::with_capacity(steps.len());
            for (i, spanned) in steps.iter().enumerate() {
                if let Some(step) = self.step(b, i, spanned) {
                    resolved.push(step);
                }
            }
            blocks.push(Block { name: self.block_names[b].clone(), steps: resolved });
        }
        if !self.report.errors.is_empty() {
            return None;
        }
        let output = self.authored.output.as_ref().and_then(|o| self.expr(None, "output", o));
        let input_schema = self.input_schema(file);
        let handles = self.authored.handles.as_ref().and_then(|h| {
            if is_command_name(h.get_ref()) {
                Some(h.get_ref().clone())
            } else {
                self.report.at(
                    Some(h.span()),
                    None,
                    format!("handles: {:?} is not a command name: use letters, digits, '.', '_' and '-', e.g. \"travel.book\"", h.get_ref()),
                );
                None
            }
        });
        let wf = Workflow {
            name: self.authored.name.get_ref().clone(),
            version: self.authored.version.unwrap_or(1),
            description: self.authored.description.clone(),
            source: file.to_owned(),
            hash: crate::model::digest_text(text),
            text: text.into(),
            blocks,
            output,
            input_schema,
            handles,
            external: BTreeMap::new(),
        };
        self.graph(&wf);
        self.report.errors.is_empty().then_some(wf)
    }

    fn input_schema(&mut self, file: &Path) -> Option<super::schema::Schema> {
        let spanned = self.authored.input_schema.as_ref()?;
        match super::schema::load(file, "input_schema", spanned.get_ref()) {
            Ok(schema) => Some(schema),
            Err(message) => {
                self.report.at(Some(spanned.span()), None, message);
                None
            }
        }
    }

    /// Resolve a jump target named in block `b`.
    fn target(&mut self, b: usize, step: &str, key: &str, name: &Spanned<String>) -> Next {
        let target = name.get_ref();
        if target == "end" {
            return Next::End;
        }
        match self.places.get(target) {
            Some(p) if p.block == b => Next::Step(p.index),
            Some(p) => {
                let other = &self.block_names[p.block];
                let here = &self.block_names[b];
                self.report.at(
                    Some(name.span()),
                    Some(step),
                    format!("{key} = {target:?} jumps to a step of block {other:?}, but this step is in block {here:?}: a jump stays inside its block (use \"end\" to leave it)"),
                );
                Next::End
            }
            None => {
                let names: Vec<String> =
                    self.block_steps[b].iter().map(|s| s.get_ref().name.get_ref().clone()).collect();
                let hint = match closest(target, &names) {
                    Some(near) => format!("did you mean {near:?}? "),
                    None => String::new(),
                };
                self.report.at(
                    Some(name.span()),
                    Some(step),
                    format!("{key} = {target:?}: no step of this block has that name: {hint}name a step of the block, or \"end\""),
                );
                Next::End
            }
        }
    }

    fn block_ref(&mut self, step: &str, key: &str, name: &Spanned<String>) -> Option<usize> {
        let n = name.get_ref();
        match self.block_names.iter().skip(1).position(|b| b == n) {
            Some(i) => Some(i + 1),
            None => {
                let hint = match closest(n, &self.block_names[1..]) {
                    Some(near) => format!("did you mean {near:?}? "),
                    None => String::new(),
                };
                self.report.at(
                    Some(name.span()),
                    Some(step),
                    format!("{key} names block {n:?}, which does not exist: {hint}add its steps as [[block.{n}]]"),
                );
                None
            }
        }
    }

    fn expr(&mut self, step: Option<&str>, key: &str, text: &Spanned<String>) -> Option<Expr> {
        match Expr::parse(text.get_ref()) {
            Ok(e) => Some(e),
            Err(msg) => {
                self.report.at(Some(text.span()), step, format!("{key} is not a valid expression: {msg}"));
                None
            }
        }
    }

    /// Resolve step `i` of block `b`.
    fn step(&mut self, b: usize, i: usize, spanned: &Spanned<authored::Step>) -> Option<Step> {
        let s = spanned.get_ref();
        let line = self.line(spanned.span());
        let name = s.name.get_ref().clone();
        let sn = Some(name.as_str());
        let span = s.name.span();
        let span = || Some(span.clone());
        let kinds: Vec<&str> = [
            s.command.is_some(),
            s.choice.is_some(),
            s.parallel.is_some(),
            s.for_each.is_some(),
            s.wait.is_some(),
            s.sleep.is_some(),
            s.sleep_until.is_some(),
            s.fail.is_some(),
            s.workflow.is_some(),
        ]
        .iter()
        .zip(KINDS)
        .filter_map(|(set, k)| set.then_some(*k))
        .collect();
        let kind = match kinds[..] {
            [k] => k,
            [] => {
                self.report.at(
                    span(),
                    sn,
                    format!("the step has no kind: give it exactly one of {}", KINDS.join(", ")),
                );
                return None;
            }
            _ => {
                self.report.at(
                    span(),
                    sn,
                    format!("the step has several kinds ({}): give it exactly one", kinds.join(", ")),
                );
                return None;
            }
        };
        // Keys that belong to some kinds only.
        let only = |key: &str, set: bool, kinds: &[&str]| {
            (set && !kinds.contains(&kind)).then(|| (key.to_owned(), kinds.join(" and ")))
        };
        let misplaced: Vec<(String, String)> = [
            only("compensate", s.compensate.is_some(), &["command"]),
            only("compensate_input", s.compensate_input.is_some(), &["command"]),
            only("input", s.input.is_some(), &["command", "workflow"]),
            only("otherwise", s.otherwise.is_some(), &["choice"]),
            only("run", s.run.is_some(), &["for_each"]),
            only("concurrency", s.concurrency.is_some(), &["for_each"]),
            only("timeout", s.timeout.is_some(), &["command", "workflow", "wait"]),
            only("queue_timeout", s.queue_timeout.is_some(), &["command", "workflow"]),
            only("retry", s.retry.is_some(), &["command", "workflow"]),
            only("schema", s.schema.is_some(), &["wait"]),
            only(
                "next",
                s.next.is_some() && kind == "choice",
                &["steps other than choice (a choice jumps with its cases and otherwise)"],
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (key, kinds) in misplaced {
            self.report.at(
                span(),
                sn,
                format!("{key} does not apply to a {kind} step: it goes with {kinds} steps only"),
            );
        }
        let next = match &s.next {
            Some(n) => self.target(b, &name, "next", n),
            None => Next::Following,
        };
        let mut catch = Vec::with_capacity(s.catch.len());
        for c in &s.catch {
            let entry = c.get_ref();
            let next = self.target(b, &name, "catch.next", &entry.next);
            for code in &entry.errors {
                if !is_command_name(code) {
                    self.report.at(
                        Some(c.span()),
                        sn,
                        format!("catch.errors: {code:?} is not a failure code (letters, digits, '.', '_' and '-')"),
                    );
                }
            }
            catch.push(Catch { errors: entry.errors.clone(), next });
        }
        let kind = match kind {
            "command" => {
                let cmd = s.command.as_ref().expect("kind checked");
                for (what, c) in
                    std::iter::once(("command", cmd)).chain(s.compensate.as_ref().map(|c| ("compensation", c)))
                {
                    if !is_command_name(c.get_ref()) {
                        self.report.at(
                            Some(c.span()),
                            sn,
                            format!("{:?} is not a command name: use letters, digits, '.', '_' and '-', e.g. \"payment.charge\"", c.get_ref()),
                        );
                    } else if let Some(known) = self.known
                        && let Some(message) = unknown_command(what, c.get_ref(), known)
                    {
                        self.report.at(Some(c.span()), sn, message);
                    }
                }
                if s.compensate_input.is_some() && s.compensate.is_none() {
                    self.report.at(
                        s.compensate_input.as_ref().map(|c| c.span()),
                        sn,
                        "compensate_input is set but compensate is not: add the compensating command",
                    );
                }
                let input = s.input.as_ref().and_then(|t| self.expr(sn, "input", t));
                let compensate_input = s.compensate_input.as_ref().and_then(|t| self.expr(sn, "compensate_input", t));
                let timeout = resolve_timeout(self.report, sn, s.timeout.as_ref(), self.default_timeout);
                let queue_timeout =
                    resolve_queue_timeout(self.report, sn, s.queue_timeout.as_ref(), self.default_queue_timeout);
                let retry = resolve_retry(self.report, sn, s.retry.as_ref(), self.default_retry);
                StepKind::Command(Command {
                    command: cmd.get_ref().clone(),
                    workflow: None,
                    compensate: s.compensate.as_ref().map(|c| c.get_ref().clone()),
                    input,
                    compensate_input,
                    timeout,
                    queue_timeout,
                    retry,
                })
            }
            "choice" => {
                let cases_spanned = s.choice.as_ref().expect("kind checked");
                if cases_spanned.get_ref().is_empty() {
                    self.report.at(
                        Some(cases_spanned.span()),
                        sn,
                        "choice has no cases: add { when = \"...\", next = \"...\" }",
                    );
                }
                let mut cases = Vec::new();
                for case in cases_spanned.get_ref() {
                    let when = self.expr(sn, "choice.when", &case.when);
                    let next = self.target(b, &name, "choice.next", &case.next);
                    cases.extend(when.map(|w| (w, next)));
                }
                let otherwise = match &s.otherwise {
                    Some(o) => self.target(b, &name, "otherwise", o),
                    None => Next::Following,
                };
                StepKind::Choice(Choice { cases, otherwise })
            }
            "parallel" => {
                let list = s.parallel.as_ref().expect("kind checked");
                if list.get_ref().is_empty() {
                    self.report.at(
                        Some(list.span()),
                        sn,
                        "parallel names no blocks: list the blocks to run side by side",
                    );
                }
                let mut seen = BTreeSet::new();
                let mut blocks = Vec::new();
                for n in list.get_ref() {
                    if !seen.insert(n.get_ref().clone()) {
                        self.report.at(
                            Some(n.span()),
                            sn,
                            format!(
                                "parallel names block {:?} twice: its output is keyed by block name, name it once",
                                n.get_ref()
                            ),
                        );
                    }
                    blocks.extend(self.block_ref(&name, "parallel", n));
                }
                StepKind::Parallel(Parallel { blocks })
            }
            "for_each" => {
                let items = self.expr(sn, "for_each", s.for_each.as_ref().expect("kind checked"));
                let block = match &s.run {
                    Some(r) => self.block_ref(&name, "run", r),
                    None => {
                        self.report.at(
                            span(),
                            sn,
                            "a for_each step needs run = \"BLOCK\": the block each iteration runs",
                        );
                        None
                    }
                };
                let concurrency = match &s.concurrency {
                    None => 1,
                    Some(c) if (1..=MAX_CONCURRENCY as i64).contains(c.get_ref()) => *c.get_ref() as usize,
                    Some(c) => {
                        self.report.at(
                            Some(c.span()),
                            sn,
                            format!("concurrency must be between 1 and {MAX_CONCURRENCY}"),
                        );
                        1
                    }
                };
                StepKind::ForEach(ForEach { items: items?, block: block?, concurrency })
            }
            "wait" => {
                let signal = s.wait.as_ref().expect("kind checked");
                if !is_command_name(signal.get_ref()) {
                    self.report.at(
                        Some(signal.span()),
                        sn,
                        format!("{:?} is not a signal name: use letters, digits, '.', '_' and '-'", signal.get_ref()),
                    );
                }
                let timeout = s.timeout.as_ref().and_then(|t| {
                    let d = resolve_duration(self.report, sn, "timeout", t, MAX_TIMEOUT)?;
                    if d.is_zero() {
                        self.report.at(Some(t.span()), sn, "timeout must be longer than zero");
                    }
                    Some(d)
                });
                let file = self.report.file;
                let schema = s.schema.as_ref().and_then(|v| match super::schema::load(file, "schema", v.get_ref()) {
                    Ok(schema) => Some(schema),
                    Err(message) => {
                        self.report.at(Some(v.span()), sn, message);
                        None
                    }
                });
                StepKind::Wait(Wait { signal: signal.get_ref().clone(), schema, timeout })
            }
            "sleep" => {
                let d =
                    resolve_duration(self.report, sn, "sleep", s.sleep.as_ref().expect("kind checked"), MAX_TIMEOUT)?;
                StepKind::Sleep(Sleep::For(d))
            }
            "sleep_until" => StepKind::Sleep(Sleep::Until(self.expr(
                sn,
                "sleep_until",
                s.sleep_until.as_ref().expect("kind checked"),
            )?)),
            "fail" => {
                let f = s.fail.as_ref().expect("kind checked").get_ref();
                if !is_command_name(f.code.get_ref()) {
                    self.report.at(
                        Some(f.code.span()),
                        sn,
                        format!(
                            "fail.code {:?} is not a failure code: use letters, digits, '.', '_' and '-'",
                            f.code.get_ref()
                        ),
                    );
                }
                let message = f
                    .message
                    .as_ref()
                    .map_or_else(|| format!("the workflow failed at step {name:?}"), |m| m.get_ref().clone());
                StepKind::Fail(Fail { code: f.code.get_ref().clone(), message })
            }
            "workflow" => {
                let w = s.workflow.as_ref().expect("kind checked");
                if !is_identifier(w.get_ref()) {
                    self.report.at(
                        Some(w.span()),
                        sn,
                        format!(
                            "{:?} is not a workflow name: letters, digits, '_' and '-', starting with a letter",
                            w.get_ref()
                        ),
                    );
                }
                let input = s.input.as_ref().and_then(|t| self.expr(sn, "input", t));
                // A sub-saga may wait for people or signals: without a timeout of its own, it
                // may run as long as a step can (the defaults' timeout is for commands).
                let timeout = resolve_timeout(self.report, sn, s.timeout.as_ref(), MAX_TIMEOUT);
                let queue_timeout = resolve_queue_timeout(self.report, sn, s.queue_timeout.as_ref(), None);
                // A child that failed has compensated itself: trying again is the author's
                // choice, not the default's.
                let retry =
                    resolve_retry(self.report, sn, s.retry.as_ref(), RetryPolicy { attempts: 1, ..self.default_retry });
                let command = super::resolved::sub_saga_command(w.get_ref());
                StepKind::Workflow(Command {
                    compensate: Some(command.clone()),
                    command,
                    workflow: Some(w.get_ref().clone()),
                    input,
                    compensate_input: None,
                    timeout,
                    queue_timeout,
                    retry,
                })
            }
            _ => unreachable!("kind list"),
        };
        let _ = i;
        Some(Step { name, kind, next, catch, line })
    }

    /// The checks over the whole graph; see the module documentation.
    fn graph(&mut self, wf: &Workflow) {
        let n_blocks = wf.blocks.len();
        // Who runs each block.
        let mut runners: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n_blocks];
        for (b, block) in wf.blocks.iter().enumerate() {
            for (i, s) in block.steps.iter().enumerate() {
                for &k in s.kind.blocks() {
                    runners[k].push((b, i));
                }
            }
        }
        for (k, r) in runners.iter().enumerate().skip(1) {
            if r.is_empty() {
                let name = &wf.blocks[k].name;
                self.report.at(
                    Some(self.authored.blocks[name].span()),
                    None,
                    format!(
                        "block {name:?} is never run: name it in a parallel or in the run of a for_each, or remove it"
                    ),
                );
            }
        }
        // A block that runs itself, directly or through others, would nest for ever.
        for k in 1..n_blocks {
            if reaches(wf, k, k) {
                let name = &wf.blocks[k].name;
                self.report.at(
                    Some(self.authored.blocks[name].span()),
                    None,
                    format!("block {name:?} runs itself (through parallel or for_each): a block cannot nest inside itself; loop with next instead"),
                );
                return;
            }
        }
        // Unreachable steps.
        for block in &wf.blocks {
            let mut seen = vec![false; block.steps.len()];
            let mut todo = vec![0];
            while let Some(i) = todo.pop() {
                if i >= seen.len() || seen[i] {
                    continue;
                }
                seen[i] = true;
                let s = &block.steps[i];
                todo.extend(
                    successors(block, i).into_iter().chain(s.catch.iter().filter_map(|c| index_of(c.next, i, block))),
                );
            }
            for (i, s) in block.steps.iter().enumerate() {
                if !seen[i] {
                    self.report.at_line(s.line, Some(&s.name), format!("the step can never run: the steps before it always jump elsewhere; remove it, or jump to it with next = {:?}", s.name),
                    );
                }
            }
        }
        // May-precede: ids are (block, index) flattened.
        let ids: Vec<(usize, usize)> =
            wf.blocks.iter().enumerate().flat_map(|(b, bl)| (0..bl.steps.len()).map(move |i| (b, i))).collect();
        let id_of = |b: usize, i: usize| ids.iter().position(|&x| x == (b, i)).expect("a step");
        let n = ids.len();
        // done(s): s and every step inside the blocks it runs.
        let mut done: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        for (g, &(b, i)) in ids.iter().enumerate() {
            let mut set = BTreeSet::from([g]);
            let mut todo: Vec<usize> = wf.blocks[b].steps[i].kind.blocks().to_vec();
            while let Some(k) = todo.pop() {
                for (j, s) in wf.blocks[k].steps.iter().enumerate() {
                    if set.insert(id_of(k, j)) {
                        todo.extend(s.kind.blocks());
                    }
                }
            }
            done[g] = set;
        }
        let mut before: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        loop {
            let mut changed = false;
            for (g, &(b, i)) in ids.iter().enumerate() {
                let block = &wf.blocks[b];
                let s = &block.steps[i];
                let mut after: BTreeSet<usize> = before[g].clone();
                after.extend(done[g].iter().copied());
                for t in successors(block, i) {
                    let t = id_of(b, t);
                    let len = before[t].len();
                    before[t].extend(after.iter().copied());
                    changed |= before[t].len() != len;
                }
                let mut failed = before[g].clone();
                failed.extend(done[g].iter().copied().filter(|&x| x != g));
                for t in s.catch.iter().filter_map(|c| index_of(c.next, i, block)) {
                    let t = id_of(b, t);
                    let len = before[t].len();
                    before[t].extend(failed.iter().copied());
                    changed |= before[t].len() != len;
                }
                for &k in s.kind.blocks() {
                    if wf.blocks[k].steps.is_empty() {
                        continue;
                    }
                    let t = id_of(k, 0);
                    let len = before[t].len();
                    let into = before[g].clone();
                    before[t].extend(into);
                    changed |= before[t].len() != len;
                }
            }
            if !changed {
                break;
            }
        }
        // Blocks inside a for_each, for `item` and `index`.
        let mut in_for_each = vec![false; n_blocks];
        for (b, block) in wf.blocks.iter().enumerate() {
            for s in &block.steps {
                if let StepKind::ForEach(f) = &s.kind {
                    mark(wf, f.block, &mut in_for_each);
                }
            }
            let _ = b;
        }
        let has_catch: Vec<bool> = wf.blocks.iter().map(|bl| bl.steps.iter().any(|s| !s.catch.is_empty())).collect();
        for (g, &(b, i)) in ids.iter().enumerate() {
            let s = &wf.blocks[b].steps[i];
            for (key, e, with_self) in step_exprs(s) {
                for read in e.steps_read() {
                    let ok = match wf.step(read) {
                        None => {
                            self.report.at_line(
                                s.line,
                                Some(&s.name),
                                format!("{key} reads steps.{read}, but no step is named {read:?}"),
                            );
                            continue;
                        }
                        Some((rb, _)) => {
                            let r = id_of(rb, wf.blocks[rb].steps.iter().position(|x| x.name == *read).expect("found"));
                            before[g].contains(&r) || (with_self && r == g)
                        }
                    };
                    if !ok {
                        self.report.at_line(s.line, Some(&s.name), format!("{key} reads steps.{read}, but step {read:?} cannot have run before step {:?}: a step can read only the outputs of steps that may complete before it", s.name),
                        );
                    }
                }
                for var in e.variables() {
                    match var.as_str() {
                        "item" | "index" if !in_for_each[b] => self.report.at_line(s.line, Some(&s.name), format!("{key} reads {var}, which exists only in a block run by for_each"),
                        ),
                        "error" if !has_catch[b] => self.report.at_line(s.line, Some(&s.name), format!("{key} reads error, which exists only after a catch has jumped (no step of this block has a catch)"),
                        ),
                        _ => {}
                    }
                }
            }
        }
        if let Some(output) = &wf.output {
            for read in output.steps_read() {
                if wf.step(read).is_none() {
                    self.report.at(None, None, format!("output reads steps.{read}, but no step is named {read:?}"));
                }
            }
            for var in output.variables() {
                if !matches!(var.as_str(), "input" | "steps") {
                    self.report.at(
                        None,
                        None,
                        format!("output reads {var}: the saga's output can read input and steps only"),
                    );
                }
            }
        }
    }
}

/// The expressions of a step: (key, expression, may it read the step's own output).
fn step_exprs(s: &Step) -> Vec<(&'static str, &Expr, bool)> {
    let mut out = Vec::new();
    match &s.kind {
        StepKind::Command(c) | StepKind::Workflow(c) => {
            out.extend(c.input.as_ref().map(|e| ("input", e, false)));
            out.extend(c.compensate_input.as_ref().map(|e| ("compensate_input", e, true)));
        }
        StepKind::Choice(c) => out.extend(c.cases.iter().map(|(e, _)| ("choice.when", e, false))),
        StepKind::ForEach(f) => out.push(("for_each", &f.items, false)),
        StepKind::Sleep(Sleep::Until(e)) => out.push(("sleep_until", e, false)),
        _ => {}
    }
    out
}

fn mark(wf: &Workflow, k: usize, marks: &mut [bool]) {
    if marks[k] {
        return;
    }
    marks[k] = true;
    for s in &wf.blocks[k].steps {
        for &c in s.kind.blocks() {
            mark(wf, c, marks);
        }
    }
}

/// Whether block `from` runs block `to`, directly or through others.
fn reaches(wf: &Workflow, from: usize, to: usize) -> bool {
    let mut seen = vec![false; wf.blocks.len()];
    let mut todo: Vec<usize> = wf.blocks[from].steps.iter().flat_map(|s| s.kind.blocks().to_vec()).collect();
    while let Some(k) = todo.pop() {
        if k == to {
            return true;
        }
        if !std::mem::replace(&mut seen[k], true) {
            todo.extend(wf.blocks[k].steps.iter().flat_map(|s| s.kind.blocks().to_vec()));
        }
    }
    false
}

/// The index a jump from step `i` lands on, if it stays in the block.
fn index_of(next: Next, i: usize, block: &Block) -> Option<usize> {
    match next {
        Next::Following => (i + 1 < block.steps.len()).then_some(i + 1),
        Next::Step(j) => Some(j),
        Next::End => None,
    }
}

/// Where step `i` may go when it completes.
fn successors(block: &Block, i: usize) -> Vec<usize> {
    let s = &block.steps[i];
    match &s.kind {
        StepKind::Fail(_) => Vec::new(),
        StepKind::Choice(c) => {
            c.cases.iter().map(|(_, n)| *n).chain([c.otherwise]).filter_map(|n| index_of(n, i, block)).collect()
        }
        _ => index_of(s.next, i, block).into_iter().collect(),
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

fn resolve_queue_timeout(
    report: &mut Report<'_>,
    step: Option<&str>,
    text: Option<&Spanned<String>>,
    fallback: Option<Duration>,
) -> Option<Duration> {
    let Some(text) = text else { return fallback };
    match resolve_duration(report, step, "queue_timeout", text, MAX_TIMEOUT) {
        Some(d) if d.is_zero() => {
            report.at(Some(text.span()), step, "queue_timeout must be longer than zero");
            fallback
        }
        Some(d) => Some(d),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        match parse(Path::new("t.toml"), text, None) {
            Ok(_) => "valid".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_unknown_key_is_reported_with_the_other_errors() {
        let e = errors(
            r#"
name = "t"
[[step]]
name = "a"
command = "x.y"
compensation = "x.z"
[[step]]
name = "b"
comand = "x.y"
retry = { attempts = 0 }
"#,
        );
        assert!(e.contains("unknown key \"compensation\""), "{e}");
        assert!(e.contains("unknown key \"comand\" in a step: did you mean \"command\""), "{e}");
        assert!(e.contains("no kind"), "{e}");
    }

    #[test]
    fn jumps_stay_in_their_block() {
        let e = errors(
            r#"
name = "t"
[[step]]
name = "p"
parallel = ["b"]
next = "inner"
[[block.b]]
name = "inner"
command = "x.y"
"#,
        );
        assert!(e.contains("jumps to a step of block \"b\""), "{e}");
    }

    #[test]
    fn loops_may_read_later_steps_and_blocks_must_be_run() {
        let ok = errors(
            r#"
name = "t"
[[step]]
name = "ask"
command = "chat.say"
input = "has(steps.listen) ? steps.listen : {}"
[[step]]
name = "listen"
wait = "message"
[[step]]
name = "again"
choice = [{ when = "steps.listen.text == 'again'", next = "ask" }]
"#,
        );
        assert_eq!(ok, "valid");
        let e = errors(
            r#"
name = "t"
[[step]]
name = "a"
command = "x.y"
input = "steps.b"
[[step]]
name = "b"
command = "x.y"
[[block.lonely]]
name = "c"
command = "x.y"
"#,
        );
        assert!(e.contains("step \"b\" cannot have run before step \"a\""), "{e}");
        assert!(e.contains("block \"lonely\" is never run"), "{e}");
    }
}
