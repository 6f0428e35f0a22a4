//! Hot reload: a running `baton serve` notices a plugin or a workflow file added, changed or
//! removed, and loads it without a restart.
//!
//! The two directories are polled ([`POLL`]): a file's name, size and modification time are
//! its fingerprint. A change is applied once the directory has held still for one poll, so a
//! file being copied in is not read half-written. Then:
//!
//! - a `.wasm` added or changed (or its manifest, `<name>.toml`) is loaded in place of the
//!   loaded version: commands already running finish on the old instance, new ones run the
//!   new one ([`Runtime::load_file`]). A file that does not load is reported by name and the
//!   version loaded before keeps serving. A `.wasm` removed is unloaded.
//! - the workflow directory is loaded again as at start (after the plugins, since workflows
//!   are checked against them). A file that does not load is reported and the version loaded
//!   before keeps serving; a file removed takes its workflow away from new starts. Sagas keep
//!   the definition they started with, whatever happens to the file.
//!
//! The worker pools follow the plugins ([`crate::runtime::worker::run`]); the tasks that
//! answer sub-saga and `handles` commands follow the workflows
//! ([`crate::orchestrator::sub_sagas::serve`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::orchestrator::Orchestrator;
use crate::runtime::Runtime;

/// How often the directories are looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// The fingerprints of a directory's files: name -> (size, modification time).
type Fingerprints = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

fn fingerprints(dir: &Path) -> Fingerprints {
    let Ok(entries) = std::fs::read_dir(dir) else { return Fingerprints::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            Some((e.path(), (meta.len(), meta.modified().ok())))
        })
        .collect()
}

/// What to watch and what to reload.
pub struct Watch {
    pub plugins: PathBuf,
    pub workflows: PathBuf,
    /// The plugins of a host that runs workers.
    pub runtime: Option<Arc<Runtime>>,
    /// The orchestrator of a host that runs one.
    pub orchestrator: Option<Orchestrator>,
    /// Distributed (a shared bus): workflows load without the plugin check.
    pub distributed: bool,
}

/// Watch until `shutdown` turns true.
pub async fn run(w: Watch, mut shutdown: watch::Receiver<bool>) {
    let look = |w: &Watch| (fingerprints(&w.plugins), fingerprints(&w.workflows));
    let mut applied = look(&w);
    let mut last = applied.clone();
    loop {
        if crate::wait_or_stop(&mut shutdown, POLL).await {
            return;
        }
        let now = look(&w);
        // Held still for a poll, and not what is loaded.
        if now == last && now != applied {
            if now.0 != applied.0 {
                reload_plugins(&w, &applied.0, &now.0).await;
            }
            reload_workflows(&w);
            applied = now.clone();
        }
        last = now;
    }
}

/// The plugin files of a directory's fingerprints: plugin name -> (its `.wasm`'s, its
/// manifest's if it has one).
fn plugin_files(files: &Fingerprints) -> BTreeMap<String, (PathBuf, String)> {
    let mut out = BTreeMap::new();
    for (path, print) in files {
        if path.extension().is_some_and(|x| x == "wasm")
            && let Some(name) = path.file_stem().and_then(|s| s.to_str())
        {
            let manifest = files.get(&path.with_extension("toml"));
            out.insert(name.to_owned(), (path.clone(), format!("{print:?}/{manifest:?}")));
        }
    }
    out
}

async fn reload_plugins(w: &Watch, before: &Fingerprints, now: &Fingerprints) {
    let Some(runtime) = &w.runtime else { return };
    let (before, now) = (plugin_files(before), plugin_files(now));
    for name in before.keys().filter(|n| !now.contains_key(*n)) {
        if runtime.unload(name) {
            tracing::info!(plugin = %name, "plugin unloaded: its file is gone; its commands wait on the bus for a host that has it");
        }
    }
    for (name, (path, print)) in &now {
        if before.get(name).map(|(_, p)| p) == Some(print) {
            continue;
        }
        let had = runtime.plugins().iter().any(|p| &p.name == name);
        match runtime.load_file(path).await {
            Ok(()) => {
                tracing::info!(plugin = %name, "plugin {}: {}", if had { "reloaded" } else { "loaded" }, path.display())
            }
            Err(e) if had => eprintln!(
                "warning: plugin not reloaded: {}: {e}; the version loaded before keeps serving",
                path.display()
            ),
            Err(e) => eprintln!("warning: plugin not loaded: {}: {e}", path.display()),
        }
    }
}

fn reload_workflows(w: &Watch) {
    let Some(orchestrator) = &w.orchestrator else { return };
    let (mut catalog, errors) = match crate::serve::load_workflows(&w.workflows, w.runtime.as_deref(), w.distributed) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("warning: workflows not reloaded: {e:#}; the ones loaded before keep serving");
            return;
        }
    };
    let old = orchestrator.workflows();
    for e in &errors {
        // The version of that file loaded before, if any, keeps serving.
        let kept: Vec<&str> = old
            .workflows
            .values()
            .filter(|wf| wf.source == e.file && !catalog.workflows.contains_key(&wf.name))
            .map(|wf| wf.name.as_str())
            .collect();
        for name in &kept {
            catalog.workflows.insert((*name).to_owned(), old.workflows[*name].clone());
        }
        match kept.as_slice() {
            [] => eprintln!("warning: workflow not loaded: {e}"),
            names => eprintln!(
                "warning: workflow not reloaded: {e}; the version of {} loaded before keeps serving",
                names.join(", ")
            ),
        }
    }
    let mut changed = Vec::new();
    for (name, wf) in &catalog.workflows {
        match old.workflows.get(name) {
            None => changed.push(format!("{name} (added)")),
            Some(o) if o.hash != wf.hash => changed.push(format!("{name} (changed)")),
            Some(_) => {}
        }
    }
    changed
        .extend(old.workflows.keys().filter(|n| !catalog.workflows.contains_key(*n)).map(|n| format!("{n} (removed)")));
    if changed.is_empty() {
        return;
    }
    tracing::info!("workflows reloaded: {}; running sagas keep the definition they started with", changed.join(", "));
    orchestrator.set_workflows(catalog);
}
