//! A durable [`SagaStore`] on local disk, for embedded mode (`--data DIR`): a write-ahead log
//! in front of [redb] tables.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree store, chosen over SQLite because it needs
//! no C toolchain or SQL layer for what is a key-value workload (sagas by id, an index by
//! status, outcomes by key), and its file is locked to one process. A durable redb commit
//! writes a copy of every B-tree page it touched and syncs them all; doing that for every
//! step of every saga was the embedded mode's bottleneck (see BENCHMARKS.md). So a commit
//! here is durable when its record is in the [write-ahead log](wal): one sequential append
//! and one `fdatasync`. A background thread then brings the tables up to date, in large
//! batches, and the log segments they cover are deleted. After a crash the log is replayed
//! into the tables before anything else happens.
//!
//! # Threads
//!
//! - The **writer** takes every write queued while it was busy (group commit): it checks each
//!   against the newest state (optimistic concurrency: the revision must be the expected one),
//!   appends one log record for the group, syncs it, makes the writes visible, and answers
//!   each caller (a conflict in one write does not fail the others).
//! - The **applier** writes what the log holds into the tables, many records per
//!   transaction. Until it has, reads find those writes in an in-memory overlay.
//!
//! Outcome records ([`SagaStore::record_outcome`]) are queued without waiting, and the writer
//! does not write a log record for outcome records alone: they go with the next saga write,
//! or after [`OUTCOME_FLUSH_DELAY`] if none comes. The queue is first in, first out, so a
//! record is durable no later than the commit of the saga transition that consumes the
//! outcome. A crash before that commit re-runs the command either way (at-least-once); this
//! saves one sync per step. Until it is written, a record is answered from memory.
//!
//! # Reads
//!
//! This process is the only writer, so it keeps every unfinished saga in memory (loaded at
//! open, updated by the writer): the orchestrator's load before each decision is a map
//! lookup, and the sweeper's "which timers are overdue" is answered without a timer index on
//! disk. Other reads merge the overlay with the tables, taking the newer revision of each
//! saga, so they are right whichever of the applier and the reader goes first.
//!
//! Tables:
//! - `sagas`: id -> (revision, status, record as JSON, history as a JSON array).
//! - `by_status`: (status, id) -> (): `list` and crash recovery.
//! - `outcomes`: (command, idempotency key) -> outcome (JSON).
//! - `outcomes_by_saga`: (saga, command, idempotency key) -> (): a saga's outcome records, so
//!   that they are deleted with it.
//! - `expiry`: (expires_at, id) -> (): finished sagas by the time their retention ends.
//! - `definitions`: content hash -> the text of a workflow definition sagas started with.
//!
//! # Retention
//!
//! The applier files each finished saga under its `expires_at` and each outcome record under
//! its saga. [`SagaStore::purge`] reads the expired entries and hands the writer a purge of
//! each, which it logs like any write (`Op::Purge`): the applier deletes the saga, its history
//! and its outcome records in log order, so a replay that brings back a saga's rows also
//! replays their deletion. Purges never wait for a sync of their own: they ride with the next
//! commit, as outcome records do, and a purge lost in a crash is simply read again.
//!
//! [redb]: https://docs.rs/redb

pub mod wal;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::{Committed, Created, SagaStore, StoreError, Transition};
use crate::model::{HistoryEntry, Saga, SagaStatus};
use crate::protocol::Outcome;
use wal::{Op, Record, Wal};

/// A saga's row: (revision, status, record, history).
type Row = (u64, &'static str, &'static [u8], &'static [u8]);
const SAGAS: TableDefinition<'_, &str, Row> = TableDefinition::new("sagas");
const BY_STATUS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("by_status");
const OUTCOMES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("outcomes");
const OUTCOMES_BY_SAGA: TableDefinition<'_, (&str, &str, &str), ()> = TableDefinition::new("outcomes_by_saga");
const EXPIRY: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("expiry");
/// Workflow definitions by content hash. Written directly, in a transaction of its own, not
/// through the log: a definition is written once per version of a workflow, before the first
/// saga that runs it is created.
const DEFINITIONS: TableDefinition<'_, &str, &str> = TableDefinition::new("definitions");

/// The one field of a saga record the applier reads, to file a finished saga by its expiry.
#[derive(serde::Deserialize)]
struct Expiry {
    #[serde(default, with = "crate::model::time::option")]
    expires_at: Option<u64>,
}

/// Most writes in one group: enough to amortise the sync, few enough that one record stays
/// small and its first caller does not wait long.
const MAX_GROUP: usize = 512;

/// Most log records the applier writes into the tables in one transaction.
const MAX_APPLY: usize = 4096;

/// How long the applier gathers log records before writing them into the tables. The tables'
/// commit syncs every page it touched, and a device flushes one sync at a time: applying each
/// record as it came made the log's own sync (the one callers wait for) queue behind it.
/// Gathered, the tables cost a few syncs a second, and pages shared by many records are
/// written once. The price is memory: the overlay holds this much of the writes.
const APPLY_INTERVAL: Duration = Duration::from_millis(50);

/// Log records queued for the applier; past this the writer keeps them itself until there is
/// room (see [`Shared::failed`] for what bounds that).
const APPLY_QUEUE: usize = 1024;

/// How long the tables may fail to be written before the store refuses new writes. The log
/// keeps everything meanwhile, so nothing is lost; refusing makes the problem (a full disk)
/// visible instead of letting memory grow.
const APPLY_FAILURE_LIMIT: Duration = Duration::from_secs(30);

/// Most unfinished sagas kept in memory; past this, loads of the others read the tables and
/// the sweeper scans the status index.
pub const CACHE_CAPACITY: usize = 100_000;

/// How long outcome records may wait for a saga write to go with before the writer writes
/// them on their own. Under load a saga write comes within microseconds.
pub const OUTCOME_FLUSH_DELAY: Duration = Duration::from_millis(5);

/// The statuses of sagas that have not ended.
const UNFINISHED: [SagaStatus; 2] = [SagaStatus::Running, SagaStatus::Compensating];

/// See the module documentation. Cheap to clone; the file is closed when the last clone goes.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Write>>,
    /// The writer, then the applier: joined in that order.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    /// Close the queue and wait for the writer to finish what is queued and the applier to
    /// write it to the tables, so that the store can be opened again as soon as this returns.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.writer.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the threads share with the store's handles. Std mutexes: map lookups and inserts
/// only, never held across an await, a sync or a table write.
struct Shared {
    db: Database,
    cache: Mutex<Cache>,
    overlay: Mutex<Overlay>,
    /// Outcome records queued for the writer, not yet in the log, by (command, key).
    unflushed: Mutex<HashMap<OutcomeKey, Vec<u8>>>,
    /// Sequence number of the last log record the tables hold durably.
    applied: AtomicU64,
    /// Why the store takes no more writes, once it does not: the tables could not be written
    /// for [`APPLY_FAILURE_LIMIT`], or the applier stopped. Cleared when the tables recover.
    failed: Mutex<Option<String>>,
    /// Set when the last handle is dropped: the applier then gives up on a failing table
    /// write instead of retrying (the log keeps it for the next open).
    stopping: std::sync::atomic::AtomicBool,
    /// Expiry entries handed to the writer and not yet applied, so that the next purge does
    /// not hand them over again.
    purging: Mutex<std::collections::HashSet<(u64, String)>>,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failed.lock().expect("failed lock poisoned").clone()
    }

    fn set_failure(&self, why: Option<String>) {
        *self.failed.lock().expect("failed lock poisoned") = why;
    }
}

/// The unfinished sagas, as last committed.
struct Cache {
    sagas: HashMap<String, Arc<Saga>>,
    /// False once an unfinished saga did not fit: then the tables are the only full account.
    complete: bool,
}

impl Cache {
    fn put(&mut self, saga: Arc<Saga>) {
        if saga.status.is_terminal() {
            self.sagas.remove(&saga.id);
        } else if self.sagas.len() < CACHE_CAPACITY || self.sagas.contains_key(&saga.id) {
            self.sagas.insert(saga.id.clone(), saga);
        } else {
            self.complete = false;
        }
    }
}

/// An outcome record's key: (command, idempotency key).
type OutcomeKey = (String, String);

/// Writes that are in the log but not yet in the tables, each with the sequence number of
/// the log record that carries it.
#[derive(Default)]
struct Overlay {
    /// Per saga, its rows oldest first.
    rows: HashMap<Arc<str>, Vec<(u64, PendingRow)>>,
    outcomes: HashMap<OutcomeKey, (u64, Arc<[u8]>)>,
}

#[derive(Clone)]
struct PendingRow {
    revision: u64,
    status: &'static str,
    record: Arc<[u8]>,
    /// The history entries this revision added (a JSON array).
    history: Arc<[u8]>,
}

/// A transition, encoded by its caller for the writer.
struct Encoded {
    saga: Arc<Saga>,
    record: Arc<[u8]>,
    history: Arc<[u8]>,
    expected_revision: u64,
}

impl Encoded {
    fn new(t: &Transition) -> Result<Encoded, StoreError> {
        Ok(Encoded {
            saga: t.saga.clone(),
            record: serde_json::to_vec(&*t.saga).map_err(unavailable)?.into(),
            history: serde_json::to_vec(&t.history).map_err(unavailable)?.into(),
            expected_revision: t.expected_revision,
        })
    }

    fn op(&self) -> Op {
        Op::Row {
            id: self.saga.id.as_str().into(),
            revision: self.saga.revision,
            status: self.saga.status.as_str(),
            record: self.record.clone(),
            history: self.history.clone(),
        }
    }
}

/// A write for the writer thread, with where its answer goes.
enum Write {
    Create(Box<Encoded>, oneshot::Sender<Result<Created, StoreError>>),
    Commit(Vec<Encoded>, oneshot::Sender<Result<Vec<Committed>, StoreError>>),
    /// Fire and forget; see the module documentation.
    Outcome {
        command: String,
        key: String,
        outcome: Vec<u8>,
    },
    /// Fire and forget: (id, revision, expires_at) of sagas whose retention is over.
    Purge(Vec<(String, u64, u64)>),
}

impl Write {
    /// Writes that may wait for a saga write to go with (see the module documentation).
    fn is_outcome(&self) -> bool {
        matches!(self, Write::Outcome { .. } | Write::Purge(_))
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt("in the embedded store", e))
}

/// `[a,b]`, `[c]` and `[d]` -> `[a,b,c,d]`, on the encoded bytes: the history grows without
/// decoding.
fn join_json_arrays<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    fn inner(a: &[u8]) -> &[u8] {
        let a = a.trim_ascii();
        a.strip_prefix(b"[").and_then(|a| a.strip_suffix(b"]")).unwrap_or(a).trim_ascii()
    }
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    for part in parts.into_iter().map(inner).filter(|p| !p.is_empty()) {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(part);
    }
    out.push(b']');
    out
}

/// Every saga of `status` in the tables, by the status index.
fn read_status(tx: &redb::ReadTransaction, status: SagaStatus) -> Result<Vec<Saga>, StoreError> {
    let sagas = tx.open_table(SAGAS).map_err(unavailable)?;
    let index = tx.open_table(BY_STATUS).map_err(unavailable)?;
    let mut out = Vec::new();
    for entry in index.range((status.as_str(), "")..).map_err(unavailable)? {
        let (key, _) = entry.map_err(unavailable)?;
        let (s, id) = key.value();
        if s != status.as_str() {
            break;
        }
        if let Some(v) = sagas.get(id).map_err(unavailable)? {
            out.push(decode::<Saga>(v.value().2)?);
        }
    }
    Ok(out)
}

/// The tables a log record touches, opened once per apply transaction.
struct Tables<'tx> {
    sagas: redb::Table<'tx, &'static str, Row>,
    by_status: redb::Table<'tx, (&'static str, &'static str), ()>,
    outcomes: redb::Table<'tx, (&'static str, &'static str), &'static [u8]>,
    by_saga: redb::Table<'tx, (&'static str, &'static str, &'static str), ()>,
    expiry: redb::Table<'tx, (u64, &'static str), ()>,
}

impl<'tx> Tables<'tx> {
    fn open(tx: &'tx WriteTransaction) -> Result<Tables<'tx>, StoreError> {
        Ok(Tables {
            sagas: tx.open_table(SAGAS).map_err(unavailable)?,
            by_status: tx.open_table(BY_STATUS).map_err(unavailable)?,
            outcomes: tx.open_table(OUTCOMES).map_err(unavailable)?,
            by_saga: tx.open_table(OUTCOMES_BY_SAGA).map_err(unavailable)?,
            expiry: tx.open_table(EXPIRY).map_err(unavailable)?,
        })
    }
}

/// One saga's rows in one apply batch, merged: most of a saga's revisions are logged within
/// one [`APPLY_INTERVAL`], and writing each would read back and rewrite its row (and its
/// whole history) once per step. Merged, the row is written once, with the newest record
/// and every revision's history entries in order.
struct Merged<'a> {
    revision: u64,
    status: &'static str,
    record: &'a [u8],
    /// (revision, the history entries it added), oldest first.
    histories: Vec<(u64, &'a [u8])>,
}

/// Write log records into the tables, in one durable transaction. Idempotent: a row is
/// written only over an older revision and an outcome only where there is none, so a record
/// applied twice (replayed after a crash) changes nothing the second time.
///
/// Rows of one saga are merged ([`Merged`]) up to a purge of that saga, which is applied in
/// its place in the log's order; rows touch nothing of another saga, and outcome records
/// nothing a row touches, so the merge changes no outcome of applying the records one by one.
fn apply(db: &Database, records: &[Record]) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(unavailable)?;
    {
        let mut tables = Tables::open(&tx)?;
        let mut rows: HashMap<&str, Merged<'_>> = HashMap::new();
        for op in records.iter().flat_map(|r| &r.ops) {
            match op {
                Op::Row { id, revision, status, record, history } => {
                    let merged = rows.entry(&**id).or_insert_with(|| Merged {
                        revision: *revision,
                        status,
                        record,
                        histories: Vec::new(),
                    });
                    if *revision >= merged.revision {
                        (merged.revision, merged.status, merged.record) = (*revision, status, record);
                    }
                    merged.histories.push((*revision, history));
                }
                Op::Purge { id, .. } => {
                    if let Some(merged) = rows.remove(&**id) {
                        write_row(&mut tables, id, &merged)?;
                    }
                    apply_op(&mut tables, op)?;
                }
                Op::Outcome { .. } => apply_op(&mut tables, op)?,
            }
        }
        for (id, merged) in &rows {
            write_row(&mut tables, id, merged)?;
        }
    }
    tx.commit().map_err(unavailable)
}

/// Write a saga's merged rows over what the tables hold, skipping the revisions they already
/// have; its status index and, when it has just ended, its expiry entry follow.
fn write_row(tables: &mut Tables<'_>, id: &str, merged: &Merged<'_>) -> Result<(), StoreError> {
    let stored = tables.sagas.get(id).map_err(unavailable)?.map(|v| {
        let (rev, status, _, history) = v.value();
        (rev, status.to_owned(), history.to_vec())
    });
    let stored_revision = stored.as_ref().map_or(0, |(rev, ..)| *rev);
    if stored_revision >= merged.revision {
        return Ok(());
    }
    let before = stored.as_ref().map(|(_, _, history)| history.as_slice());
    let added = merged.histories.iter().filter(|(rev, _)| *rev > stored_revision).map(|(_, h)| *h);
    let full = join_json_arrays(before.into_iter().chain(added));
    tables.sagas.insert(id, (merged.revision, merged.status, merged.record, full.as_slice())).map_err(unavailable)?;
    let old_status = stored.as_ref().map(|(_, s, _)| s.as_str());
    if old_status != Some(merged.status) {
        if let Some(old) = old_status {
            tables.by_status.remove((old, id)).map_err(unavailable)?;
        }
        tables.by_status.insert((merged.status, id), ()).map_err(unavailable)?;
        // A saga reaches a terminal status once: that is when it is filed by expiry.
        if let Some(at) = decode::<Expiry>(merged.record)?.expires_at {
            tables.expiry.insert((at, id), ()).map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Apply a purge or an outcome record (rows go through [`write_row`]).
fn apply_op(tables: &mut Tables<'_>, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::Row { id, revision, status, record, history } => {
            let merged = Merged { revision: *revision, status, record, histories: vec![(*revision, history)] };
            write_row(tables, id, &merged)?;
        }
        Op::Purge { id, revision, expires_at } => {
            tables.expiry.remove((*expires_at, &**id)).map_err(unavailable)?;
            let stored = tables.sagas.get(&**id).map_err(unavailable)?.map(|v| (v.value().0, v.value().1.to_owned()));
            match stored {
                // A newer write of the saga came first: it is no longer what expired.
                Some((rev, _)) if rev != *revision => return Ok(()),
                Some((_, status)) => {
                    tables.sagas.remove(&**id).map_err(unavailable)?;
                    tables.by_status.remove((status.as_str(), &**id)).map_err(unavailable)?;
                }
                None => {}
            }
            let mine: Vec<(String, String)> = tables
                .by_saga
                .range((&**id, "", "")..=(&**id, "\u{10FFFF}", "\u{10FFFF}"))
                .map_err(unavailable)?
                .map(|e| e.map(|(k, _)| (k.value().1.to_owned(), k.value().2.to_owned())))
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            for (command, key) in &mine {
                tables.outcomes.remove((command.as_str(), key.as_str())).map_err(unavailable)?;
                tables.by_saga.remove((&**id, command.as_str(), key.as_str())).map_err(unavailable)?;
            }
        }
        Op::Outcome { command, key, outcome } => {
            if tables.outcomes.get((command.as_str(), key.as_str())).map_err(unavailable)?.is_none() {
                tables.outcomes.insert((command.as_str(), key.as_str()), &**outcome).map_err(unavailable)?;
                let saga = super::saga_of(key);
                tables.by_saga.insert((saga, command.as_str(), key.as_str()), ()).map_err(unavailable)?;
            }
        }
    }
    Ok(())
}

/// The expired entries of the expiry index, up to `limit`, with the revision of each saga's
/// row, leaving out those already handed to the writer (see [`EmbeddedStore`]'s `purge`).
fn expired(shared: &Shared, now: u64, limit: usize) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let tx = shared.db.begin_read().map_err(unavailable)?;
    let expiry = tx.open_table(EXPIRY).map_err(unavailable)?;
    let sagas = tx.open_table(SAGAS).map_err(unavailable)?;
    let purging = shared.purging.lock().expect("purging lock poisoned");
    let mut out = Vec::new();
    for entry in expiry.range(..=(now, "\u{10FFFF}")).map_err(unavailable)? {
        if out.len() == limit {
            break;
        }
        let (k, _) = entry.map_err(unavailable)?;
        let (at, id) = k.value();
        if purging.contains(&(at, id.to_owned())) {
            continue;
        }
        let revision = sagas.get(id).map_err(unavailable)?.map_or(0, |v| v.value().0);
        out.push((id.to_owned(), revision, at));
    }
    Ok(out)
}

impl EmbeddedStore {
    /// Open (or create) the store in `dir`: `dir/baton.redb` and the log in `dir/wal/`.
    /// What the log holds beyond the tables (a crash) is replayed first.
    pub fn open(dir: &Path) -> anyhow::Result<EmbeddedStore> {
        use anyhow::Context as _;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join("baton.redb");
        let db = Database::create(&path).with_context(|| {
            format!("cannot open the store {} (is another baton using it? only one process may)", path.display())
        })?;
        // Create the tables up front so readers never meet a missing table.
        let layout = || {
            format!(
                "{} was written with another table layout (an older Baton?): move it aside to start with an empty store",
                path.display()
            )
        };
        let tx = db.begin_write()?;
        tx.open_table(SAGAS).with_context(layout)?;
        tx.open_table(BY_STATUS).with_context(layout)?;
        tx.open_table(OUTCOMES).with_context(layout)?;
        tx.open_table(OUTCOMES_BY_SAGA).with_context(layout)?;
        tx.open_table(EXPIRY).with_context(layout)?;
        tx.commit()?;

        let wal_dir = dir.join("wal");
        let records = if wal_dir.exists() { wal::replay(&wal_dir)? } else { Vec::new() };
        if !records.is_empty() {
            apply(&db, &records).map_err(|e| anyhow::anyhow!("cannot replay the log into {}: {e}", path.display()))?;
            tracing::info!(records = records.len(), "replayed the write-ahead log");
        }
        let next_seq = records.last().map_or(1, |r| r.seq + 1);
        let wal = Wal::start(&wal_dir, next_seq)?;

        let mut cache = Cache { sagas: HashMap::new(), complete: true };
        let tx = db.begin_read()?;
        for status in UNFINISHED {
            for saga in read_status(&tx, status).with_context(|| format!("cannot read {}", path.display()))? {
                cache.put(Arc::new(saga));
            }
        }
        drop(tx);
        let shared = Arc::new(Shared {
            db,
            cache: Mutex::new(cache),
            overlay: Mutex::new(Overlay::default()),
            unflushed: Mutex::new(HashMap::new()),
            applied: AtomicU64::new(next_seq - 1),
            failed: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
            purging: Mutex::new(std::collections::HashSet::new()),
        });
        let (writer, queue) = mpsc::channel();
        let (apply_tx, apply_rx) = mpsc::sync_channel(APPLY_QUEUE);
        let for_writer = shared.clone();
        let writer_thread = std::thread::Builder::new()
            .name("baton-store-writer".into())
            .spawn(move || write_loop(&for_writer, wal, &queue, &apply_tx))
            .context("cannot start the store's writer thread")?;
        let for_applier = shared.clone();
        let applier_thread = std::thread::Builder::new()
            .name("baton-store-apply".into())
            .spawn(move || apply_loop(&for_applier, &apply_rx))
            .context("cannot start the store's applier thread")?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner { shared, writer: Some(writer), threads: vec![writer_thread, applier_thread] }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the store's writer thread stopped".into());
        self.inner.writer.as_ref().ok_or_else(stopped)?.send(write).map_err(|_| stopped())
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| StoreError::Unavailable("the store's writer thread stopped".into()))?
    }

    /// The newest pending row of each saga in the overlay.
    fn pending_rows(&self) -> HashMap<Arc<str>, PendingRow> {
        let overlay = self.shared().overlay.lock().expect("overlay lock poisoned");
        overlay.rows.iter().filter_map(|(id, rows)| Some((id.clone(), rows.last()?.1.clone()))).collect()
    }
}

// ---------------------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------------------

/// The writer thread: group the queued writes, one log record per group; outcome records
/// wait for a saga write (see the module documentation). Ends when every handle to the store
/// is gone, after writing what is queued.
fn write_loop(shared: &Shared, mut wal: Wal, queue: &mpsc::Receiver<Write>, apply_tx: &mpsc::SyncSender<Record>) {
    let mut group: Vec<Write> = Vec::new();
    // Logged records the applier had no room for yet, oldest first.
    let mut backlog: std::collections::VecDeque<Record> = std::collections::VecDeque::new();
    // When the oldest outcome record waiting in `group` must be written.
    let mut flush_by: Option<Instant> = None;
    loop {
        // Outcome records alone wait a little for company; anything else goes at once.
        let next = match flush_by {
            None => queue.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) => queue.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        let closed = match next {
            Ok(w) => {
                group.push(w);
                while group.len() < MAX_GROUP {
                    match queue.try_recv() {
                        Ok(w) => group.push(w),
                        Err(_) => break,
                    }
                }
                let waiting = flush_by.is_none_or(|at| Instant::now() < at);
                if group.iter().all(Write::is_outcome) && group.len() < MAX_GROUP && waiting {
                    flush_by.get_or_insert_with(|| Instant::now() + OUTCOME_FLUSH_DELAY);
                    continue;
                }
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        flush_by = None;
        if !group.is_empty()
            && let Some(record) = commit_group(shared, &mut wal, std::mem::take(&mut group))
        {
            backlog.push_back(record);
        }
        hand_over(shared, &mut backlog, apply_tx, closed);
        wal.release(shared.applied.load(Ordering::Acquire));
        if closed {
            return;
        }
    }
}

/// Pass logged records on to the applier, as many as it has room for. At the end (`closing`)
/// wait for room, unless the applier is gone: what it never got is in the log, replayed at the
/// next open.
fn hand_over(
    shared: &Shared,
    backlog: &mut std::collections::VecDeque<Record>,
    apply_tx: &mpsc::SyncSender<Record>,
    closing: bool,
) {
    while let Some(record) = backlog.pop_front() {
        let result = if closing {
            apply_tx.send(record).map_err(|e| mpsc::TrySendError::Disconnected(e.0))
        } else {
            apply_tx.try_send(record)
        };
        match result {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(record)) => {
                backlog.push_front(record);
                if backlog.len() > APPLY_QUEUE {
                    shared.set_failure(Some(format!(
                        "the store's tables are {} log records behind; writes resume when they catch up",
                        backlog.len() + APPLY_QUEUE
                    )));
                }
                return;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                shared.set_failure(Some("the store's applier thread stopped; restart the host".into()));
                backlog.clear();
                return;
            }
        }
    }
    if shared.failure().is_some_and(|why| why.contains("log records behind")) {
        shared.set_failure(None);
    }
}

/// A saga's revision and status as the writer must check them: as staged earlier in this
/// group, else pending in the overlay, else cached, else in the tables.
fn current(shared: &Shared, staged: &HashMap<String, &Saga>, id: &str) -> Result<Option<(u64, String)>, StoreError> {
    if let Some(saga) = staged.get(id) {
        return Ok(Some((saga.revision, saga.status.as_str().to_owned())));
    }
    if let Some((_, row)) = shared.overlay.lock().expect("overlay lock poisoned").rows.get(id).and_then(|r| r.last()) {
        return Ok(Some((row.revision, row.status.to_owned())));
    }
    if let Some(s) = shared.cache.lock().expect("cache lock poisoned").sagas.get(id) {
        return Ok(Some((s.revision, s.status.as_str().to_owned())));
    }
    // Not pending: the applier has written it, or it never existed.
    let tx = shared.db.begin_read().map_err(unavailable)?;
    let table = tx.open_table(SAGAS).map_err(unavailable)?;
    Ok(table.get(id).map_err(unavailable)?.map(|v| {
        let (rev, status, _, _) = v.value();
        (rev, status.to_owned())
    }))
}

/// The whole saga with this id, newest version, for a create that finds it exists.
fn existing(shared: &Shared, staged: &HashMap<String, &Saga>, id: &str) -> Result<Option<Saga>, StoreError> {
    if let Some(saga) = staged.get(id) {
        return Ok(Some((*saga).clone()));
    }
    let pending = shared.overlay.lock().expect("overlay lock poisoned").rows.get(id).and_then(|r| r.last().cloned());
    if let Some((_, row)) = pending {
        return decode(&row.record).map(Some);
    }
    let cached = shared.cache.lock().expect("cache lock poisoned").sagas.get(id).cloned();
    if let Some(s) = cached {
        return Ok(Some(Saga::clone(&s)));
    }
    let tx = shared.db.begin_read().map_err(unavailable)?;
    let table = tx.open_table(SAGAS).map_err(unavailable)?;
    table.get(id).map_err(unavailable)?.map(|v| decode(v.value().2)).transpose()
}

/// Whether an outcome is recorded (pending or in the tables) for (command, key).
fn outcome_recorded(shared: &Shared, command: &str, key: &str) -> Result<bool, StoreError> {
    if shared
        .overlay
        .lock()
        .expect("overlay lock poisoned")
        .outcomes
        .contains_key(&(command.to_owned(), key.to_owned()))
    {
        return Ok(true);
    }
    let tx = shared.db.begin_read().map_err(unavailable)?;
    let table = tx.open_table(OUTCOMES).map_err(unavailable)?;
    Ok(table.get((command, key)).map_err(unavailable)?.is_some())
}

/// What the writer answers a write, once the group's record is durable.
enum Answer {
    Created(Result<Created, StoreError>),
    Committed(Result<Vec<Committed>, StoreError>),
    Recorded,
}

/// Check every write of `group`, log the accepted ones in one record, publish and answer.
/// Returns the record for the applier, if there is one.
fn commit_group(shared: &Shared, wal: &mut Wal, group: Vec<Write>) -> Option<Record> {
    if let Some(why) = shared.failure() {
        refuse(shared, group, &why);
        return None;
    }
    let mut staged: HashMap<String, &Saga> = HashMap::new();
    let mut staged_outcomes: std::collections::HashSet<OutcomeKey> = std::collections::HashSet::new();
    let mut ops = Vec::new();
    let mut answers = Vec::with_capacity(group.len());
    for w in &group {
        // Each write stages into scratch space, merged only if the whole write succeeds: a
        // read error halfway through a batch must not log half of it.
        let mut my_staged: Vec<&Encoded> = Vec::new();
        answers.push(match w {
            Write::Create(t, _) => {
                let answer = (|| {
                    let id = t.saga.id.as_str();
                    if current(shared, &staged, id)?.is_some() {
                        let saga = existing(shared, &staged, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
                        return Ok(Created::Existing(Box::new(saga)));
                    }
                    my_staged.push(t);
                    Ok(Created::New)
                })();
                Answer::Created(answer)
            }
            Write::Commit(batch, _) => {
                let answer = (|| {
                    let mut results = Vec::with_capacity(batch.len());
                    let mut seen: HashMap<&str, u64> = HashMap::new();
                    for t in batch {
                        let id = t.saga.id.as_str();
                        let now = match seen.get(id) {
                            Some(rev) => Some(*rev),
                            None => current(shared, &staged, id)?.map(|(rev, _)| rev),
                        };
                        results.push(match now {
                            None => Committed::NotFound,
                            Some(rev) if rev != t.expected_revision => Committed::Conflict,
                            Some(_) => {
                                seen.insert(id, t.saga.revision);
                                my_staged.push(t);
                                Committed::Ok
                            }
                        });
                    }
                    Ok(results)
                })();
                Answer::Committed(answer)
            }
            Write::Outcome { command, key, outcome } => {
                let pair = (command.clone(), key.clone());
                // The first record wins.
                let known = staged_outcomes.contains(&pair) || outcome_recorded(shared, command, key).unwrap_or(false);
                if !known {
                    staged_outcomes.insert(pair);
                    ops.push(Op::Outcome {
                        command: command.clone(),
                        key: key.clone(),
                        outcome: outcome.as_slice().into(),
                    });
                }
                Answer::Recorded
            }
            Write::Purge(expired) => {
                for (id, revision, expires_at) in expired {
                    ops.push(Op::Purge { id: id.as_str().into(), revision: *revision, expires_at: *expires_at });
                }
                Answer::Recorded
            }
        });
        let ok = match answers.last() {
            Some(Answer::Created(r)) => r.is_ok(),
            Some(Answer::Committed(r)) => r.is_ok(),
            _ => true,
        };
        if ok {
            for t in my_staged {
                staged.insert(t.saga.id.clone(), &t.saga);
                ops.push(t.op());
            }
        }
    }
    let record = Record { seq: wal.last_seq() + 1, ops };
    if !record.ops.is_empty()
        && let Err(e) = wal.append(&record)
    {
        tracing::error!("cannot write the log: {e} (is the disk full?)");
        refuse(shared, group, &format!("cannot write the log: {e}"));
        return None;
    }
    publish(shared, &record, group, answers);
    (!record.ops.is_empty()).then_some(record)
}

/// Answer every write of `group` with an error: none of it was logged.
fn refuse(shared: &Shared, group: Vec<Write>, why: &str) {
    let failed = || StoreError::Unavailable(why.to_owned());
    let mut unflushed = shared.unflushed.lock().expect("unflushed lock poisoned");
    for w in group {
        match w {
            Write::Create(_, tx) => drop(tx.send(Err(failed()))),
            Write::Commit(_, tx) => drop(tx.send(Err(failed()))),
            Write::Outcome { command, key, .. } => {
                tracing::warn!(command, key, "an outcome record was lost: a redelivery will run the command again");
                unflushed.remove(&(command, key));
            }
            // Read again by the next purge.
            Write::Purge(expired) => {
                let mut purging = shared.purging.lock().expect("purging lock poisoned");
                for (id, _, at) in expired {
                    purging.remove(&(at, id));
                }
            }
        }
    }
}

/// Make a logged group visible (overlay and cache together, so a reader never sees one
/// without the other), then answer its callers.
fn publish(shared: &Shared, record: &Record, group: Vec<Write>, answers: Vec<Answer>) {
    /// An answer to send once the locks are released.
    enum Reply {
        Created(oneshot::Sender<Result<Created, StoreError>>, Result<Created, StoreError>),
        Committed(oneshot::Sender<Result<Vec<Committed>, StoreError>>, Result<Vec<Committed>, StoreError>),
    }
    let mut replies = Vec::with_capacity(group.len());
    let mut recorded = Vec::new();
    {
        let mut overlay = shared.overlay.lock().expect("overlay lock poisoned");
        let mut cache = shared.cache.lock().expect("cache lock poisoned");
        for op in &record.ops {
            match op {
                Op::Row { id, revision, status, record: bytes, history } => {
                    let row =
                        PendingRow { revision: *revision, status, record: bytes.clone(), history: history.clone() };
                    overlay.rows.entry(id.clone()).or_default().push((record.seq, row));
                }
                Op::Outcome { command, key, outcome } => {
                    overlay.outcomes.insert((command.clone(), key.clone()), (record.seq, outcome.clone()));
                }
                // Readers see the saga until the applier has deleted it: a moment longer.
                Op::Purge { .. } => {}
            }
        }
        // The sagas move into the cache: the writes are done with them.
        for (w, a) in group.into_iter().zip(answers) {
            match (w, a) {
                (Write::Create(t, tx), Answer::Created(r)) => {
                    if matches!(r, Ok(Created::New)) {
                        cache.put(t.saga);
                    }
                    replies.push(Reply::Created(tx, r));
                }
                (Write::Commit(batch, tx), Answer::Committed(r)) => {
                    if let Ok(results) = &r {
                        for (t, c) in batch.into_iter().zip(results) {
                            if *c == Committed::Ok {
                                cache.put(t.saga);
                            }
                        }
                    }
                    replies.push(Reply::Committed(tx, r));
                }
                (Write::Outcome { command, key, .. }, Answer::Recorded) => recorded.push((command, key)),
                (Write::Purge(_), Answer::Recorded) => {}
                _ => unreachable!("one answer per write, in order"),
            }
        }
    }
    {
        let mut unflushed = shared.unflushed.lock().expect("unflushed lock poisoned");
        for key in recorded {
            unflushed.remove(&key);
        }
    }
    for reply in replies {
        match reply {
            Reply::Created(tx, r) => drop(tx.send(r)),
            Reply::Committed(tx, r) => drop(tx.send(r)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The applier
// ---------------------------------------------------------------------------------------

/// The applier thread: write logged records into the tables, many at a time, then drop them
/// from the overlay and let the log release them. Ends when the writer is gone.
fn apply_loop(shared: &Shared, rx: &mpsc::Receiver<Record>) {
    while let Ok(first) = rx.recv() {
        let mut records = vec![first];
        let until = Instant::now() + APPLY_INTERVAL;
        while records.len() < MAX_APPLY {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(r) => records.push(r),
                // Time is up, or the writer is gone: write what there is.
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        let failing_since = Instant::now();
        while let Err(e) = apply(&shared.db, &records) {
            // The log keeps everything: nothing is lost while the tables cannot be written.
            if shared.stopping.load(Ordering::Acquire) {
                tracing::error!("cannot write the store's tables: {e}; the log keeps the writes for the next start");
                return;
            }
            tracing::error!("cannot write the store's tables: {e}; retrying in {delay:?}");
            if failing_since.elapsed() >= APPLY_FAILURE_LIMIT {
                shared.set_failure(Some(format!(
                    "the store's tables cannot be written ({e}); writes resume when they can (is the disk full?)"
                )));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if shared.failure().is_some_and(|why| why.contains("cannot be written")) {
            tracing::info!("the store's tables can be written again");
            shared.set_failure(None);
        }
        let last = records.last().map_or(0, |r| r.seq);
        shared.applied.store(last, Ordering::Release);
        let mut overlay = shared.overlay.lock().expect("overlay lock poisoned");
        for record in &records {
            for op in &record.ops {
                match op {
                    Op::Row { id, .. } => {
                        if let Some(rows) = overlay.rows.get_mut(id) {
                            rows.retain(|(seq, _)| *seq > last);
                            if rows.is_empty() {
                                overlay.rows.remove(id);
                            }
                        }
                    }
                    Op::Outcome { command, key, .. } => {
                        let pair = (command.clone(), key.clone());
                        if overlay.outcomes.get(&pair).is_some_and(|(seq, _)| *seq <= last) {
                            overlay.outcomes.remove(&pair);
                        }
                    }
                    Op::Purge { id, expires_at, .. } => {
                        shared.purging.lock().expect("purging lock poisoned").remove(&(*expires_at, id.to_string()));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

#[async_trait]
impl SagaStore for EmbeddedStore {
    fn system(&self) -> &'static str {
        "redb"
    }

    /// From the status index, without reading the records; commits still in the log (the
    /// last few milliseconds) are not counted yet.
    async fn count(&self, status: SagaStatus) -> Result<u64, StoreError> {
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || {
            let tx = shared.db.begin_read().map_err(unavailable)?;
            let index = tx.open_table(BY_STATUS).map_err(unavailable)?;
            let mut n = 0;
            for entry in index.range((status.as_str(), "")..).map_err(unavailable)? {
                let (key, _) = entry.map_err(unavailable)?;
                if key.value().0 != status.as_str() {
                    break;
                }
                n += 1;
            }
            Ok(n)
        })
        .await
        .map_err(unavailable)?
    }

    async fn create(&self, start: &Transition) -> Result<Created, StoreError> {
        let start = Box::new(Encoded::new(start)?);
        self.write(|tx| Write::Create(start, tx)).await
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        // The copy is made outside the lock: the lock is held for a reference count.
        let cached = self.shared().cache.lock().expect("cache lock poisoned").sagas.get(id).cloned();
        if let Some(saga) = cached {
            return Ok(Some(Saga::clone(&saga)));
        }
        // The overlay before the tables: whatever the applier does meanwhile, the newer
        // revision of the two is the saga as it is.
        let pending =
            self.shared().overlay.lock().expect("overlay lock poisoned").rows.get(id).and_then(|r| r.last().cloned());
        let tx = self.shared().db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(SAGAS).map_err(unavailable)?;
        let stored = table.get(id).map_err(unavailable)?;
        match (pending, stored) {
            (Some((_, row)), Some(v)) if row.revision <= v.value().0 => decode(v.value().2).map(Some),
            (Some((_, row)), _) => decode(&row.record).map(Some),
            (None, Some(v)) => decode(v.value().2).map(Some),
            (None, None) => Ok(None),
        }
    }

    async fn commit(&self, batch: &[Transition]) -> Result<Vec<Committed>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.iter().map(Encoded::new).collect::<Result<Vec<_>, _>>()?;
        self.write(|tx| Write::Commit(batch, tx)).await
    }

    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        let pending = self.pending_rows();
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || {
            let tx = shared.db.begin_read().map_err(unavailable)?;
            let stored: Vec<Saga> = match status {
                Some(st) => read_status(&tx, st)?,
                None => {
                    let sagas = tx.open_table(SAGAS).map_err(unavailable)?;
                    let mut out = Vec::new();
                    for entry in sagas.iter().map_err(unavailable)? {
                        let (_, v) = entry.map_err(unavailable)?;
                        out.push(decode::<Saga>(v.value().2)?);
                    }
                    out
                }
            };
            let mut by_id: HashMap<String, Saga> = stored.into_iter().map(|s| (s.id.clone(), s)).collect();
            // Pending rows newer than what the tables hold replace it, or take it out of a
            // status it has left.
            let table = tx.open_table(SAGAS).map_err(unavailable)?;
            for (id, row) in pending {
                let stored_rev = table.get(&*id).map_err(unavailable)?.map(|v| v.value().0);
                if stored_rev.is_some_and(|r| r >= row.revision) {
                    continue;
                }
                if status.is_none_or(|st| st.as_str() == row.status) {
                    by_id.insert(id.to_string(), decode(&row.record)?);
                } else {
                    by_id.remove(&*id);
                }
            }
            let mut out: Vec<Saga> = by_id.into_values().collect();
            out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
            out.truncate(limit);
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        // The overlay first, then the tables: entries the tables already hold are told apart
        // by their revision.
        let pending: Vec<PendingRow> = {
            let overlay = self.shared().overlay.lock().expect("overlay lock poisoned");
            overlay.rows.get(id).map(|r| r.iter().map(|(_, row)| row.clone()).collect()).unwrap_or_default()
        };
        let tx = self.shared().db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(SAGAS).map_err(unavailable)?;
        let (stored_rev, mut out) = match table.get(id).map_err(unavailable)? {
            Some(v) => (v.value().0, decode::<Vec<HistoryEntry>>(v.value().3)?),
            None => (0, Vec::new()),
        };
        for row in pending.into_iter().filter(|r| r.revision > stored_rev) {
            out.extend(decode::<Vec<HistoryEntry>>(&row.history)?);
        }
        Ok(out)
    }

    async fn due_timers(
        &self,
        after: Option<(u64, &str)>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let due = move |sagas: &mut dyn Iterator<Item = &Saga>| -> Vec<(u64, String)> {
            let mut due: Vec<(u64, &str)> = sagas
                .filter_map(|s| s.timer_due().filter(|&d| d <= before).map(|d| (d, s.id.as_str())))
                .filter(|entry| after.is_none_or(|a| *entry > a))
                .collect();
            due.sort_unstable();
            due.into_iter().take(limit).map(|(d, id)| (d, id.to_owned())).collect()
        };
        {
            let cache = self.shared().cache.lock().expect("cache lock poisoned");
            if cache.complete {
                return Ok(due(&mut cache.sagas.values().map(|s| &**s)));
            }
        }
        let mut unfinished = Vec::new();
        for status in UNFINISHED {
            unfinished.extend(self.list(Some(status), usize::MAX).await?);
        }
        Ok(due(&mut unfinished.iter()))
    }

    async fn purge(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let shared = self.inner.shared.clone();
        let expired =
            tokio::task::spawn_blocking(move || expired(&shared, now, limit)).await.map_err(unavailable)??;
        if expired.is_empty() {
            return Ok(0);
        }
        let n = expired.len();
        self.shared()
            .purging
            .lock()
            .expect("purging lock poisoned")
            .extend(expired.iter().map(|(id, _, at)| (*at, id.clone())));
        self.send(Write::Purge(expired))?;
        Ok(n)
    }

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        let pair = (command.to_owned(), idempotency_key.to_owned());
        // A record moves from the queue to the overlay to the tables, and is always in at
        // least one: read them in that order, so a move during the reads is never missed.
        // A logged or table record is the first one and wins over a queued one.
        let queued = self.shared().unflushed.lock().expect("unflushed lock poisoned").get(&pair).cloned();
        let logged = self.shared().overlay.lock().expect("overlay lock poisoned").outcomes.get(&pair).cloned();
        if let Some((_, bytes)) = logged {
            return decode(&bytes).map(Some);
        }
        let tx = self.shared().db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(OUTCOMES).map_err(unavailable)?;
        if let Some(v) = table.get((command, idempotency_key)).map_err(unavailable)? {
            return decode(v.value()).map(Some);
        }
        queued.map(|b| decode(&b)).transpose()
    }

    async fn put_definition(&self, hash: &str, text: &str) -> Result<(), StoreError> {
        if self.definition(hash).await?.is_some() {
            return Ok(());
        }
        let tx = self.shared().db.begin_write().map_err(unavailable)?;
        tx.open_table(DEFINITIONS).map_err(unavailable)?.insert(hash, text).map_err(unavailable)?;
        tx.commit().map_err(unavailable)
    }

    async fn definition(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let tx = self.shared().db.begin_read().map_err(unavailable)?;
        let table = match tx.open_table(DEFINITIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        Ok(table.get(hash).map_err(unavailable)?.map(|v| v.value().to_owned()))
    }

    /// Deletes from the queue, the overlay and the tables at once, in a transaction of its
    /// own. Known limit: a record still in the log (not yet checkpointed into the tables) comes
    /// back if the host restarts before the next checkpoint; the retry then gets the old
    /// answer and the operator retries again.
    async fn forget_outcomes(&self, keys: &[(&str, &str)]) -> Result<(), StoreError> {
        let shared = self.shared();
        let pairs: Vec<OutcomeKey> = keys.iter().map(|(c, k)| ((*c).to_owned(), (*k).to_owned())).collect();
        {
            let mut unflushed = shared.unflushed.lock().expect("unflushed lock poisoned");
            let mut overlay = shared.overlay.lock().expect("overlay lock poisoned");
            for pair in &pairs {
                unflushed.remove(pair);
                overlay.outcomes.remove(pair);
            }
        }
        let tx = shared.db.begin_write().map_err(unavailable)?;
        {
            let mut outcomes = tx.open_table(OUTCOMES).map_err(unavailable)?;
            let mut by_saga = tx.open_table(OUTCOMES_BY_SAGA).map_err(unavailable)?;
            for (command, key) in &pairs {
                outcomes.remove((command.as_str(), key.as_str())).map_err(unavailable)?;
                by_saga.remove((super::saga_of(key), command.as_str(), key.as_str())).map_err(unavailable)?;
            }
        }
        tx.commit().map_err(unavailable)
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let outcome = serde_json::to_vec(outcome).map_err(unavailable)?;
        let key = (command.to_owned(), idempotency_key.to_owned());
        {
            // The first record wins, here as in the writer.
            let mut unflushed = self.shared().unflushed.lock().expect("unflushed lock poisoned");
            if unflushed.contains_key(&key) {
                return Ok(());
            }
            unflushed.insert(key.clone(), outcome.clone());
        }
        self.send(Write::Outcome { command: key.0, key: key.1, outcome })
    }

    /// Ready while the writer and the applier run and the store takes writes (it refuses
    /// them once the tables could not be written for a while: a full disk).
    async fn ping(&self) -> Result<(), StoreError> {
        if let Some(why) = self.shared().failure() {
            return Err(StoreError::Unavailable(why));
        }
        if self.inner.threads.iter().any(std::thread::JoinHandle::is_finished) {
            return Err(StoreError::Unavailable(
                "the store's writer or applier thread stopped; restart the host".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HistoryEvent, SagaStatus};
    use serde_json::json;

    fn saga(revision: u64, status: SagaStatus) -> Saga {
        let wf = crate::workflow::parse(
            Path::new("w.toml"),
            "name = \"w\"\n[[step]]\nname = \"a\"\ncommand = \"x.y\"\n",
            None,
        )
        .expect("valid workflow");
        let mut s = crate::orchestrator::new_saga("s-1".into(), &wf, json!({"n": 1}), 5);
        s.revision = revision;
        s.status = status;
        s
    }

    fn row(revision: u64, status: SagaStatus) -> Op {
        let entries = vec![HistoryEntry { at: revision, revision, event: HistoryEvent::Started }];
        Op::Row {
            id: "s-1".into(),
            revision,
            status: status.as_str(),
            record: serde_json::to_vec(&saga(revision, status)).unwrap().into(),
            history: serde_json::to_vec(&entries).unwrap().into(),
        }
    }

    /// A crash after the log was synced and before the tables were written: opening the
    /// store replays the log. Records the tables already hold (a crash in the middle of the
    /// applier's work) are skipped by revision, so nothing is doubled.
    #[test]
    fn a_file_of_another_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join("baton.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            let old: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sagas");
            tx.open_table(old).unwrap().insert("x", b"{}".as_slice()).unwrap();
            tx.commit().unwrap();
        }
        let err = format!("{:#}", EmbeddedStore::open(dir.path()).err().expect("the layout differs"));
        assert!(err.contains("another table layout") && err.contains("move it aside"), "{err}");
    }

    #[tokio::test]
    async fn logged_writes_the_tables_never_got_are_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The tables got revision 1 before the crash...
            let db = Database::create(dir.path().join("baton.redb")).unwrap();
            apply(&db, &[Record { seq: 1, ops: vec![row(1, SagaStatus::Running)] }]).unwrap();
        }
        // ...and the log holds revisions 1 to 3 and an outcome.
        let mut log = Wal::start(&dir.path().join("wal"), 1).unwrap();
        log.append(&Record { seq: 1, ops: vec![row(1, SagaStatus::Running)] }).unwrap();
        log.append(&Record { seq: 2, ops: vec![row(2, SagaStatus::Running)] }).unwrap();
        let outcome = Op::Outcome { command: "x.y".into(), key: "k".into(), outcome: b"{\"ok\":{}}".as_slice().into() };
        log.append(&Record { seq: 3, ops: vec![row(3, SagaStatus::Completed), outcome] }).unwrap();
        drop(log);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        let loaded = store.load("s-1").await.unwrap().unwrap();
        assert_eq!((loaded.revision, loaded.status), (3, SagaStatus::Completed));
        let revisions: Vec<u64> = store.history("s-1").await.unwrap().iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [1, 2, 3], "each revision's history once");
        assert!(store.outcome("x.y", "k").await.unwrap().is_some());
        assert_eq!(store.list(Some(SagaStatus::Completed), 10).await.unwrap().len(), 1);
        assert!(store.list(Some(SagaStatus::Running), 10).await.unwrap().is_empty(), "the index moved too");
        drop(store);
        // Replayed into the tables, and the log emptied: a second open finds the same.
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.history("s-1").await.unwrap().len(), 3);
    }

    /// One apply batch holding a saga's whole life, its purge and a new saga under the same id:
    /// the merged rows end as applying them one by one would, and the tables' own revisions
    /// are not written twice.
    #[test]
    fn rows_of_one_batch_are_merged_up_to_a_purge() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("baton.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        drop(Tables::open(&tx).unwrap());
        tx.commit().unwrap();
        let ended = {
            let mut s = saga(3, SagaStatus::Completed);
            s.expires_at = Some(1_000);
            let entries = vec![HistoryEntry { at: 3, revision: 3, event: HistoryEvent::Started }];
            Op::Row {
                id: "s-1".into(),
                revision: 3,
                status: s.status.as_str(),
                record: serde_json::to_vec(&s).unwrap().into(),
                history: serde_json::to_vec(&entries).unwrap().into(),
            }
        };
        let purge = Op::Purge { id: "s-1".into(), revision: 3, expires_at: 1_000 };
        let read = |db: &Database| {
            let tx = db.begin_read().unwrap();
            let (revision, status, history) = tx
                .open_table(SAGAS)
                .unwrap()
                .get("s-1")
                .unwrap()
                .map(|v| (v.value().0, v.value().1.to_owned(), decode::<Vec<HistoryEntry>>(v.value().3).unwrap()))
                .unwrap();
            let statuses: Vec<String> =
                tx.open_table(BY_STATUS).unwrap().iter().unwrap().map(|e| e.unwrap().0.value().0.to_owned()).collect();
            let expiry = redb::ReadableTableMetadata::len(&tx.open_table(EXPIRY).unwrap()).unwrap();
            (revision, status, history.iter().map(|e| e.revision).collect::<Vec<_>>(), statuses, expiry)
        };

        // The tables hold revision 1; the batch repeats it and goes on to the end.
        apply(&db, &[Record { seq: 1, ops: vec![row(1, SagaStatus::Running)] }]).unwrap();
        let life = vec![row(1, SagaStatus::Running), row(2, SagaStatus::Compensating), ended.clone()];
        apply(&db, &[Record { seq: 2, ops: life.clone() }]).unwrap();
        assert_eq!(read(&db), (3, "completed".into(), vec![1, 2, 3], vec!["completed".into()], 1));

        // Its whole life, its purge and a new saga of the same id, in one batch.
        let db2 = Database::create(dir.path().join("other.redb")).unwrap();
        let mut ops = life;
        ops.push(purge);
        ops.push(row(1, SagaStatus::Running));
        apply(&db2, &[Record { seq: 1, ops: ops[..2].to_vec() }, Record { seq: 2, ops: ops[2..].to_vec() }]).unwrap();
        assert_eq!(read(&db2), (1, "running".into(), vec![1], vec!["running".into()], 0));
    }

    #[test]
    fn histories_append_as_json_arrays() {
        let join = |parts: &[&str]| String::from_utf8(join_json_arrays(parts.iter().map(|p| p.as_bytes()))).unwrap();
        assert_eq!(join(&["[1,2]", "[3]"]), "[1,2,3]");
        assert_eq!(join(&["[]", "[{\"a\":[1]}]"]), "[{\"a\":[1]}]");
        assert_eq!(join(&["[1]", "[]", " [2, 3] "]), "[1,2, 3]");
        assert_eq!(join(&["[]", "[]"]), "[]");
        assert_eq!(join(&[]), "[]");
    }
}
