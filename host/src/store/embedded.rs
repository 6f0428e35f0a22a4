//! A durable [`SagaStore`] in one file on local disk, for embedded mode (`--data DIR`).
//!
//! Built on [redb]: a pure-Rust, ACID, copy-on-write B-tree store. Chosen over SQLite because
//! it needs no C toolchain or SQL layer for what is a key-value workload (sagas by id, indexes
//! by status and by timer, outcomes by key), its write transactions are serialisable with a
//! single writer (exactly the optimistic-concurrency check we need, done inside the
//! transaction), and a commit is durable (fsync) before it returns. The file is locked: one
//! process at a time.
//!
//! # Group commit
//!
//! Every write goes through one writer thread. It takes all the writes queued while the
//! previous transaction was being written and applies them in one transaction: one fsync for
//! many sagas under load, and still one fsync per write when there is only one. Each write
//! gets its own answer (a conflict in one does not fail the others).
//!
//! An outcome record ([`SagaStore::record_outcome`]) is queued without waiting for its fsync.
//! The queue is first in, first out, so the record is durable no later than the commit of the
//! saga transition that consumes the outcome (which the orchestrator makes after the worker
//! recorded it). A crash before that commit re-runs the command either way (at-least-once);
//! not waiting saves one fsync per step.
//!
//! # Cache
//!
//! Because this process is the only writer of the file, the store keeps the records of
//! unfinished sagas in memory, updated by the writer thread as each transaction commits: the
//! orchestrator's load before every decision is a map lookup, not a read and a JSON decode.
//!
//! Tables:
//! - `sagas`: id -> saga record (JSON).
//! - `meta`: id -> revision, timer due time and status, so a commit checks the revision and
//!   updates the indexes without decoding the record.
//! - `by_status`: (status, id) -> (): `list` and crash recovery.
//! - `timers`: (due, id) -> (): timers whose host died, found by the sweeper.
//! - `history`: (id, revision, index) -> entry (JSON).
//! - `outcomes`: (command, idempotency key) -> outcome (JSON).
//!
//! [redb]: https://docs.rs/redb

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::{Committed, Created, SagaStore, StoreError, Transition};
use crate::orchestrator::saga::{HistoryEntry, Saga, SagaStatus};
use crate::protocol::Outcome;

const SAGAS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sagas");
const META: TableDefinition<'_, &str, (u64, u64, &str)> = TableDefinition::new("meta");
const BY_STATUS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("by_status");
const TIMERS: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("timers");
const HISTORY: TableDefinition<'_, (&str, u64, u32), &[u8]> = TableDefinition::new("history");
const OUTCOMES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("outcomes");

/// Most writes in one group transaction: enough to amortise the fsync, few enough that one
/// transaction stays short and its first caller does not wait long.
const MAX_GROUP: usize = 512;

/// Most unfinished sagas kept in the cache; past this, loads of the others read the file.
const CACHE_CAPACITY: usize = 100_000;

/// See the module documentation. Cheap to clone; the file is closed when the last clone goes.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Write>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Unfinished sagas, as last committed. A std `Mutex`: lookups and inserts only, never
    /// held across an await.
    cache: Arc<Mutex<HashMap<String, Saga>>>,
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

/// A write for the writer thread, with where its answer goes.
enum Write {
    Create(Box<Transition>, oneshot::Sender<Result<Created, StoreError>>),
    Commit(Vec<Transition>, oneshot::Sender<Result<Vec<Committed>, StoreError>>),
    /// Fire and forget; see the module documentation.
    Outcome {
        command: String,
        key: String,
        outcome: Vec<u8>,
    },
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Unavailable(format!("corrupt record: {e}")))
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
        tx.open_table(META)?;
        tx.open_table(BY_STATUS)?;
        tx.open_table(TIMERS)?;
        tx.open_table(HISTORY)?;
        tx.open_table(OUTCOMES)?;
        tx.commit()?;
        let db = Arc::new(db);
        let cache = Arc::new(Mutex::new(HashMap::new()));
        let (writer, queue) = mpsc::channel();
        let (db2, cache2) = (db.clone(), cache.clone());
        let thread = std::thread::Builder::new()
            .name("baton-store-writer".into())
            .spawn(move || write_loop(&db2, &cache2, &queue))
            .context("cannot start the store's writer thread")?;
        Ok(EmbeddedStore { inner: Arc::new(Inner { db, writer: Some(writer), thread: Some(thread), cache }) })
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the store's writer thread stopped".into());
        self.inner.writer.as_ref().ok_or_else(stopped)?.send(write).map_err(|_| stopped())
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(unavailable)?
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

/// The writer thread: group the queued writes, one transaction per group. Ends when every
/// handle to the store is gone.
fn write_loop(db: &Database, cache: &Mutex<HashMap<String, Saga>>, queue: &mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let mut committed: Vec<&Saga> = Vec::new();
        let answers = write_group(db, &group, &mut committed);
        if answers.is_ok() {
            let mut cache = cache.lock().expect("cache lock poisoned");
            for saga in committed {
                if saga.status.is_terminal() {
                    cache.remove(&saga.id);
                } else if cache.len() < CACHE_CAPACITY || cache.contains_key(&saga.id) {
                    cache.insert(saga.id.clone(), saga.clone());
                }
            }
        }
        reply(group, answers);
    }
}

/// The answer of each write of a group, in order (`None` for outcome records).
enum Answer {
    Created(Created),
    Committed(Vec<Committed>),
    Recorded,
}

fn write_group<'g>(
    db: &Database,
    group: &'g [Write],
    committed: &mut Vec<&'g Saga>,
) -> Result<Vec<Answer>, StoreError> {
    let tx = db.begin_write().map_err(unavailable)?;
    let mut answers = Vec::with_capacity(group.len());
    for w in group {
        answers.push(match w {
            Write::Create(t, _) => {
                let existing = {
                    let table = tx.open_table(SAGAS).map_err(unavailable)?;
                    let got = table.get(t.saga.id.as_str()).map_err(unavailable)?;
                    got.map(|v| decode::<Saga>(v.value())).transpose()?
                };
                match existing {
                    Some(existing) => Answer::Created(Created::Existing(Box::new(existing))),
                    None => {
                        write_transition(&tx, t, None)?;
                        committed.push(&t.saga);
                        Answer::Created(Created::New)
                    }
                }
            }
            Write::Commit(batch, _) => {
                let mut results = Vec::with_capacity(batch.len());
                for t in batch {
                    let meta = {
                        let table = tx.open_table(META).map_err(unavailable)?;
                        let got = table.get(t.saga.id.as_str()).map_err(unavailable)?;
                        got.map(|v| {
                            let (rev, due, status) = v.value();
                            (rev, due, status.to_owned())
                        })
                    };
                    results.push(match meta {
                        None => Committed::NotFound,
                        Some((rev, _, _)) if rev != t.expected_revision => Committed::Conflict,
                        Some(old) => {
                            write_transition(&tx, t, Some(old))?;
                            committed.push(&t.saga);
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

/// Write the record, its indexes and its history. `old` is the stored (revision, timer due
/// or 0, status) of an existing saga.
fn write_transition(tx: &WriteTransaction, t: &Transition, old: Option<(u64, u64, String)>) -> Result<(), StoreError> {
    let saga = &t.saga;
    let id = saga.id.as_str();
    let bytes = serde_json::to_vec(saga).map_err(unavailable)?;
    tx.open_table(SAGAS).map_err(unavailable)?.insert(id, bytes.as_slice()).map_err(unavailable)?;
    let due = saga.timer_due().unwrap_or(0);
    let status = saga.status.as_str();
    tx.open_table(META).map_err(unavailable)?.insert(id, (saga.revision, due, status)).map_err(unavailable)?;

    let mut by_status = tx.open_table(BY_STATUS).map_err(unavailable)?;
    let mut timers = tx.open_table(TIMERS).map_err(unavailable)?;
    if let Some((_, old_due, old_status)) = &old {
        if old_status != status {
            by_status.remove((old_status.as_str(), id)).map_err(unavailable)?;
        }
        if *old_due != 0 && *old_due != due {
            timers.remove((*old_due, id)).map_err(unavailable)?;
        }
    }
    by_status.insert((status, id), ()).map_err(unavailable)?;
    if due != 0 {
        timers.insert((due, id), ()).map_err(unavailable)?;
    }

    let mut history = tx.open_table(HISTORY).map_err(unavailable)?;
    for (i, entry) in t.history.iter().enumerate() {
        let bytes = serde_json::to_vec(entry).map_err(unavailable)?;
        history.insert((id, saga.revision, i as u32), bytes.as_slice()).map_err(unavailable)?;
    }
    Ok(())
}

fn reply(group: Vec<Write>, answers: Result<Vec<Answer>, StoreError>) {
    let failure = |e: &StoreError| StoreError::Unavailable(e.to_string());
    match answers {
        Ok(answers) => {
            for (w, a) in group.into_iter().zip(answers) {
                match (w, a) {
                    (Write::Create(_, tx), Answer::Created(c)) => drop(tx.send(Ok(c))),
                    (Write::Commit(_, tx), Answer::Committed(c)) => drop(tx.send(Ok(c))),
                    (Write::Outcome { .. }, Answer::Recorded) => {}
                    _ => unreachable!("one answer per write, in order"),
                }
            }
        }
        Err(e) => {
            tracing::error!("the embedded store could not commit: {e}");
            for w in group {
                match w {
                    Write::Create(_, tx) => drop(tx.send(Err(failure(&e)))),
                    Write::Commit(_, tx) => drop(tx.send(Err(failure(&e)))),
                    Write::Outcome { command, key, .. } => {
                        tracing::warn!(
                            command,
                            key,
                            "an outcome record was lost: a redelivery will run the command again"
                        )
                    }
                }
            }
        }
    }
}

#[async_trait]
impl SagaStore for EmbeddedStore {
    async fn create(&self, start: &Transition) -> Result<Created, StoreError> {
        let start = Box::new(start.clone());
        self.write(|tx| Write::Create(start, tx)).await
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        if let Some(saga) = self.inner.cache.lock().expect("cache lock poisoned").get(id) {
            return Ok(Some(saga.clone()));
        }
        let id = id.to_owned();
        self.read(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let table = tx.open_table(SAGAS).map_err(unavailable)?;
            let got = table.get(id.as_str()).map_err(unavailable)?;
            got.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn commit(&self, batch: &[Transition]) -> Result<Vec<Committed>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.write(|tx| Write::Commit(batch, tx)).await
    }

    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        self.read(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let sagas = tx.open_table(SAGAS).map_err(unavailable)?;
            let mut out = Vec::new();
            match status {
                Some(st) => {
                    let index = tx.open_table(BY_STATUS).map_err(unavailable)?;
                    let from = (st.as_str(), "");
                    for entry in index.range(from..).map_err(unavailable)? {
                        let (key, _) = entry.map_err(unavailable)?;
                        let (s, id) = key.value();
                        if s != st.as_str() {
                            break;
                        }
                        if let Some(v) = sagas.get(id).map_err(unavailable)? {
                            out.push(decode::<Saga>(v.value())?);
                        }
                    }
                }
                None => {
                    for entry in sagas.iter().map_err(unavailable)? {
                        let (_, v) = entry.map_err(unavailable)?;
                        out.push(decode::<Saga>(v.value())?);
                    }
                }
            }
            out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let id = id.to_owned();
        self.read(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let table = tx.open_table(HISTORY).map_err(unavailable)?;
            let range = (id.as_str(), 0, 0)..=(id.as_str(), u64::MAX, u32::MAX);
            let mut out = Vec::new();
            for entry in table.range(range).map_err(unavailable)? {
                let (_, v) = entry.map_err(unavailable)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn due_timers(&self, before: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.read(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let table = tx.open_table(TIMERS).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in table.range((0, "")..).map_err(unavailable)? {
                let (key, _) = entry.map_err(unavailable)?;
                let (due, id) = key.value();
                if due > before || out.len() >= limit {
                    break;
                }
                out.push(id.to_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        let (command, key) = (command.to_owned(), idempotency_key.to_owned());
        self.read(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let table = tx.open_table(OUTCOMES).map_err(unavailable)?;
            let got = table.get((command.as_str(), key.as_str())).map_err(unavailable)?;
            got.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let outcome = serde_json::to_vec(outcome).map_err(unavailable)?;
        self.send(Write::Outcome { command: command.to_owned(), key: idempotency_key.to_owned(), outcome })
    }
}
