//! A durable [`SagaStore`] in one file on local disk, for embedded mode (`--data DIR`).
//!
//! Built on [redb]: a pure-Rust, ACID, copy-on-write B-tree store. Chosen over SQLite because
//! it needs no C toolchain or SQL layer for what is a key-value workload (sagas by id, an index
//! by status, outcomes by key), its write transactions are serialisable with a single writer
//! (exactly the optimistic-concurrency check we need, done inside the transaction), and a
//! commit is durable (fsync) before it returns. The file is locked: one process at a time.
//!
//! # Group commit
//!
//! Every write goes through one writer thread. It takes all the writes queued while the
//! previous transaction was being written and applies them in one transaction: one fsync for
//! many sagas under load, and still one fsync per write when there is only one. Each write
//! gets its own answer (a conflict in one does not fail the others).
//!
//! An outcome record ([`SagaStore::record_outcome`]) is queued without waiting for its fsync,
//! and the writer does not open a transaction for outcome records alone: they go with the
//! next saga write, or after [`OUTCOME_FLUSH_DELAY`] if none comes. The queue is first in,
//! first out, so the record is durable no later than the commit of the saga transition that
//! consumes the outcome (which the orchestrator makes after the worker recorded it). A crash
//! before that commit re-runs the command either way (at-least-once); this saves one fsync per
//! step. Until it is written, a record is answered from memory.
//!
//! The writer thread is the one serial part, so it does as little as it can: callers encode
//! records to JSON in parallel, and a transition rewrites one row (the record and its
//! history together), and the status index when the status changes. Every B-tree a commit
//! touches costs a copy of a leaf and its branches (copy-on-write), written and synced: one
//! row per saga keeps that to one path per transition. Point reads (a saga, an outcome) run on the
//! caller's thread: a few pages already in redb's cache, cheaper than a hop to another thread.
//!
//! # Cache
//!
//! Because this process is the only writer of the file, the store keeps every unfinished saga
//! in memory (loaded when the file is opened, updated by the writer as transactions commit):
//! the orchestrator's load before each decision is a map lookup, and the sweeper's question
//! "which timers are overdue" is answered from it, so no timer index is written to disk.
//! Past [`CACHE_CAPACITY`] unfinished sagas the rest are read from the file.
//!
//! Tables:
//! - `sagas`: id -> (revision, status, record as JSON, history as a JSON array): the revision
//!   and status are read without decoding anything.
//! - `by_status`: (status, id) -> (): `list` and crash recovery.
//! - `outcomes`: (command, idempotency key) -> outcome (JSON).
//!
//! [redb]: https://docs.rs/redb

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::{Committed, Created, SagaStore, StoreError, Transition};
use crate::orchestrator::saga::{HistoryEntry, Saga, SagaStatus};
use crate::protocol::Outcome;

/// A saga's row: (revision, status, record, history).
type Row = (u64, &'static str, &'static [u8], &'static [u8]);
const SAGAS: TableDefinition<'_, &str, Row> = TableDefinition::new("sagas");
const BY_STATUS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("by_status");
const OUTCOMES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("outcomes");

/// Most writes in one group transaction: enough to amortise the fsync, few enough that one
/// transaction stays short and its first caller does not wait long.
const MAX_GROUP: usize = 512;

/// Most unfinished sagas kept in memory; past this, loads of the others read the file and the
/// sweeper scans the status index.
pub const CACHE_CAPACITY: usize = 100_000;

/// How long outcome records may wait for a saga write to go with before the writer commits
/// them on their own. Under load a saga write comes within microseconds.
pub const OUTCOME_FLUSH_DELAY: Duration = Duration::from_millis(5);

/// See the module documentation. Cheap to clone; the file is closed when the last clone goes.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Write>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the writer thread shares with the store's handles. Std mutexes: lookups and inserts
/// only, never held across an await or an fsync.
struct Shared {
    db: Database,
    cache: Mutex<Cache>,
    /// Outcome records queued but not yet written, by (command, key).
    unflushed: Mutex<HashMap<(String, String), Vec<u8>>>,
}

/// The unfinished sagas, as last committed.
struct Cache {
    sagas: HashMap<String, Saga>,
    /// False once an unfinished saga did not fit: then the file is the only full account.
    complete: bool,
}

impl Cache {
    fn put(&mut self, saga: Saga) {
        if saga.status.is_terminal() {
            self.sagas.remove(&saga.id);
        } else if self.sagas.len() < CACHE_CAPACITY || self.sagas.contains_key(&saga.id) {
            self.sagas.insert(saga.id.clone(), saga);
        } else {
            self.complete = false;
        }
    }
}

impl Drop for Inner {
    /// Close the queue and wait for the writer to finish what is queued and let go of the
    /// file, so that the store can be opened again as soon as this returns.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A transition, encoded by its caller for the writer.
struct Encoded {
    saga: Saga,
    record: Vec<u8>,
    /// The transition's history entries as one JSON array.
    history: Vec<u8>,
    expected_revision: u64,
}

impl Encoded {
    fn new(t: &Transition) -> Result<Encoded, StoreError> {
        Ok(Encoded {
            saga: t.saga.clone(),
            record: serde_json::to_vec(&t.saga).map_err(unavailable)?,
            history: serde_json::to_vec(&t.history).map_err(unavailable)?,
            expected_revision: t.expected_revision,
        })
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
}

impl Write {
    fn is_outcome(&self) -> bool {
        matches!(self, Write::Outcome { .. })
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Unavailable(format!("corrupt record: {e}")))
}

/// The statuses of sagas that have not ended.
const UNFINISHED: [SagaStatus; 2] = [SagaStatus::Running, SagaStatus::Compensating];

/// Every saga of `status`, by the status index.
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

impl EmbeddedStore {
    /// Open (or create) the store in `dir/baton.redb`.
    pub fn open(dir: &Path) -> anyhow::Result<EmbeddedStore> {
        use anyhow::Context as _;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join("baton.redb");
        let db = Database::create(&path).with_context(|| {
            format!("cannot open the store {} (is another baton using it? only one process may)", path.display())
        })?;
        // Create the tables up front so readers never meet a missing table.
        let tx = db.begin_write()?;
        tx.open_table(SAGAS)?;
        tx.open_table(BY_STATUS)?;
        tx.open_table(OUTCOMES)?;
        tx.commit()?;
        let mut cache = Cache { sagas: HashMap::new(), complete: true };
        let tx = db.begin_read()?;
        for status in UNFINISHED {
            for saga in read_status(&tx, status).with_context(|| format!("cannot read {}", path.display()))? {
                cache.put(saga);
            }
        }
        drop(tx);
        let shared = Arc::new(Shared { db, cache: Mutex::new(cache), unflushed: Mutex::new(HashMap::new()) });
        let (writer, queue) = mpsc::channel();
        let for_writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("baton-store-writer".into())
            .spawn(move || write_loop(&for_writer, &queue))
            .context("cannot start the store's writer thread")?;
        Ok(EmbeddedStore { inner: Arc::new(Inner { shared, writer: Some(writer), thread: Some(thread) }) })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the store's writer thread stopped".into());
        self.inner.writer.as_ref().ok_or_else(stopped)?.send(write).map_err(|_| stopped())
    }

    /// Run a scan on the blocking pool: it may read many pages.
    async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared.db)).await.map_err(unavailable)?
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| StoreError::Unavailable("the store's writer thread stopped".into()))?
    }
}

/// The writer thread: group the queued writes, one transaction per group; outcome records
/// wait for a saga write (see the module documentation). Ends when every handle to the store
/// is gone, after writing what is queued.
fn write_loop(shared: &Shared, queue: &mpsc::Receiver<Write>) {
    let mut group: Vec<Write> = Vec::new();
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
        if !group.is_empty() {
            let batch = std::mem::take(&mut group);
            let answers = write_group(&shared.db, &batch);
            finish(shared, batch, answers);
        }
        if closed {
            return;
        }
    }
}

/// The answer of each write of a group, in order.
enum Answer {
    Created(Created),
    Committed(Vec<Committed>),
    Recorded,
}

fn write_group(db: &Database, group: &[Write]) -> Result<Vec<Answer>, StoreError> {
    let tx = db.begin_write().map_err(unavailable)?;
    let mut answers = Vec::with_capacity(group.len());
    for w in group {
        answers.push(match w {
            Write::Create(t, _) => {
                let existing = {
                    let table = tx.open_table(SAGAS).map_err(unavailable)?;
                    let got = table.get(t.saga.id.as_str()).map_err(unavailable)?;
                    got.map(|v| decode::<Saga>(v.value().2)).transpose()?
                };
                match existing {
                    Some(existing) => Answer::Created(Created::Existing(Box::new(existing))),
                    None => {
                        write_transition(&tx, t, None)?;
                        Answer::Created(Created::New)
                    }
                }
            }
            Write::Commit(batch, _) => {
                let mut results = Vec::with_capacity(batch.len());
                for t in batch {
                    let stored = {
                        let table = tx.open_table(SAGAS).map_err(unavailable)?;
                        let got = table.get(t.saga.id.as_str()).map_err(unavailable)?;
                        got.map(|v| {
                            let (revision, status, _, history) = v.value();
                            (revision, status.to_owned(), history.to_vec())
                        })
                    };
                    results.push(match stored {
                        None => Committed::NotFound,
                        Some((revision, ..)) if revision != t.expected_revision => Committed::Conflict,
                        Some((_, status, history)) => {
                            write_transition(&tx, t, Some((&status, &history)))?;
                            Committed::Ok
                        }
                    });
                }
                Answer::Committed(results)
            }
            Write::Outcome { command, key, outcome } => {
                let mut table = tx.open_table(OUTCOMES).map_err(unavailable)?;
                // The first record wins.
                if table.get((command.as_str(), key.as_str())).map_err(unavailable)?.is_none() {
                    table.insert((command.as_str(), key.as_str()), outcome.as_slice()).map_err(unavailable)?;
                }
                Answer::Recorded
            }
        });
    }
    tx.commit().map_err(unavailable)?;
    Ok(answers)
}

/// Write the row (record and history, the new entries appended to `old`'s) and the status
/// index when the status changed. `old` is the stored (status, history) of an existing saga.
fn write_transition(tx: &WriteTransaction, t: &Encoded, old: Option<(&str, &[u8])>) -> Result<(), StoreError> {
    let saga = &t.saga;
    let (id, status) = (saga.id.as_str(), saga.status.as_str());
    let history = match old {
        Some((_, before)) => append_json_arrays(before, &t.history),
        None => t.history.clone(),
    };
    let mut sagas = tx.open_table(SAGAS).map_err(unavailable)?;
    sagas.insert(id, (saga.revision, status, t.record.as_slice(), history.as_slice())).map_err(unavailable)?;
    let old_status = old.map(|(s, _)| s);
    if old_status != Some(status) {
        let mut by_status = tx.open_table(BY_STATUS).map_err(unavailable)?;
        if let Some(old) = old_status {
            by_status.remove((old, id)).map_err(unavailable)?;
        }
        by_status.insert((status, id), ()).map_err(unavailable)?;
    }
    Ok(())
}

/// `[a,b]` and `[c]` -> `[a,b,c]`, on the encoded bytes: the history grows without decoding.
fn append_json_arrays(before: &[u8], more: &[u8]) -> Vec<u8> {
    fn inner(a: &[u8]) -> &[u8] {
        let a = a.trim_ascii();
        a.strip_prefix(b"[").and_then(|a| a.strip_suffix(b"]")).unwrap_or(a).trim_ascii()
    }
    let (a, b) = (inner(before), inner(more));
    let mut out = Vec::with_capacity(a.len() + b.len() + 3);
    out.push(b'[');
    out.extend_from_slice(a);
    if !a.is_empty() && !b.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(b);
    out.push(b']');
    out
}

/// After a group: update the cache with what committed, forget the outcome records that were
/// written, and answer every caller.
fn finish(shared: &Shared, group: Vec<Write>, answers: Result<Vec<Answer>, StoreError>) {
    let answers = match answers {
        Ok(answers) => answers,
        Err(e) => {
            tracing::error!("the embedded store could not commit: {e}");
            let mut unflushed = shared.unflushed.lock().expect("unflushed lock poisoned");
            for w in group {
                let failure = StoreError::Unavailable(e.to_string());
                match w {
                    Write::Create(_, tx) => drop(tx.send(Err(failure))),
                    Write::Commit(_, tx) => drop(tx.send(Err(failure))),
                    Write::Outcome { command, key, .. } => {
                        tracing::warn!(
                            command,
                            key,
                            "an outcome record was lost: a redelivery will run the command again"
                        );
                        unflushed.remove(&(command, key));
                    }
                }
            }
            return;
        }
    };
    let mut cache = shared.cache.lock().expect("cache lock poisoned");
    let mut written = Vec::new();
    for (w, a) in group.into_iter().zip(answers) {
        match (w, a) {
            (Write::Create(t, tx), Answer::Created(c)) => {
                if matches!(c, Created::New) {
                    cache.put(t.saga);
                }
                let _ = tx.send(Ok(c));
            }
            (Write::Commit(batch, tx), Answer::Committed(results)) => {
                for (t, r) in batch.into_iter().zip(&results) {
                    if *r == Committed::Ok {
                        cache.put(t.saga);
                    }
                }
                let _ = tx.send(Ok(results));
            }
            (Write::Outcome { command, key, .. }, Answer::Recorded) => written.push((command, key)),
            _ => unreachable!("one answer per write, in order"),
        }
    }
    drop(cache);
    let mut unflushed = shared.unflushed.lock().expect("unflushed lock poisoned");
    for key in written {
        unflushed.remove(&key);
    }
}

#[async_trait]
impl SagaStore for EmbeddedStore {
    async fn create(&self, start: &Transition) -> Result<Created, StoreError> {
        let start = Box::new(Encoded::new(start)?);
        self.write(|tx| Write::Create(start, tx)).await
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        if let Some(saga) = self.shared().cache.lock().expect("cache lock poisoned").sagas.get(id) {
            return Ok(Some(saga.clone()));
        }
        let tx = self.shared().db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(SAGAS).map_err(unavailable)?;
        let got = table.get(id).map_err(unavailable)?;
        got.map(|v| decode(v.value().2)).transpose()
    }

    async fn commit(&self, batch: &[Transition]) -> Result<Vec<Committed>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.iter().map(Encoded::new).collect::<Result<Vec<_>, _>>()?;
        self.write(|tx| Write::Commit(batch, tx)).await
    }

    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        self.scan(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let mut out = match status {
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
            out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let tx = self.shared().db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(SAGAS).map_err(unavailable)?;
        let got = table.get(id).map_err(unavailable)?;
        Ok(got.map(|v| decode::<Vec<HistoryEntry>>(v.value().3)).transpose()?.unwrap_or_default())
    }

    async fn due_timers(&self, before: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let due = move |sagas: &mut dyn Iterator<Item = &Saga>| -> Vec<String> {
            let mut due: Vec<(u64, &str)> =
                sagas.filter_map(|s| s.timer_due().filter(|&d| d <= before).map(|d| (d, s.id.as_str()))).collect();
            due.sort_unstable();
            due.into_iter().take(limit).map(|(_, id)| id.to_owned()).collect()
        };
        {
            let cache = self.shared().cache.lock().expect("cache lock poisoned");
            if cache.complete {
                return Ok(due(&mut cache.sagas.values()));
            }
        }
        self.scan(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let mut unfinished = read_status(&tx, SagaStatus::Running)?;
            unfinished.extend(read_status(&tx, SagaStatus::Compensating)?);
            Ok(due(&mut unfinished.iter()))
        })
        .await
    }

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        // The table first: a record written there is the first one, whatever waits in memory.
        let tx = self.shared().db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(OUTCOMES).map_err(unavailable)?;
        if let Some(v) = table.get((command, idempotency_key)).map_err(unavailable)? {
            return decode(v.value()).map(Some);
        }
        let unflushed = self.shared().unflushed.lock().expect("unflushed lock poisoned");
        unflushed.get(&(command.to_owned(), idempotency_key.to_owned())).map(|b| decode(b)).transpose()
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let outcome = serde_json::to_vec(outcome).map_err(unavailable)?;
        let key = (command.to_owned(), idempotency_key.to_owned());
        {
            // The first record wins, here as in the table.
            let mut unflushed = self.shared().unflushed.lock().expect("unflushed lock poisoned");
            if unflushed.contains_key(&key) {
                return Ok(());
            }
            unflushed.insert(key.clone(), outcome.clone());
        }
        self.send(Write::Outcome { command: key.0, key: key.1, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::append_json_arrays;

    #[test]
    fn histories_append_as_json_arrays() {
        let join = |a: &str, b: &str| String::from_utf8(append_json_arrays(a.as_bytes(), b.as_bytes())).unwrap();
        assert_eq!(join("[1,2]", "[3]"), "[1,2,3]");
        assert_eq!(join("[]", "[{\"a\":[1]}]"), "[{\"a\":[1]}]");
        assert_eq!(join("[1]", "[]"), "[1]");
        assert_eq!(join("[]", "[]"), "[]");
    }
}
