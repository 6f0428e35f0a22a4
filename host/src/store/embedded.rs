//! A durable [`SagaStore`] in one file on local disk, for embedded mode (`--data DIR`).
//!
//! Built on [redb]: a pure-Rust, ACID, copy-on-write B-tree store. Chosen over SQLite because
//! it needs no C toolchain or SQL layer for what is a key-value workload (sagas by id, an
//! index by status, outcomes by key), its transactions are serialisable with a single
//! writer (which is exactly the optimistic-concurrency check we need, done inside one write
//! transaction), and every commit is durable (fsync) before it returns.
//!
//! Tables:
//! - `sagas`: id -> saga record (JSON).
//! - `by_status`: (status, id) -> (): the index behind `list` and crash recovery.
//! - `outcomes`: (command, idempotency key) -> outcome (JSON).
//!
//! redb is synchronous; every call runs on tokio's blocking pool.
//!
//! [redb]: https://docs.rs/redb

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Created, SagaStore, StoreError};
use crate::orchestrator::saga::{Saga, SagaStatus};
use crate::protocol::Outcome;

const SAGAS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sagas");
const BY_STATUS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("by_status");
const OUTCOMES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("outcomes");

/// See the module documentation.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
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
        tx.open_table(BY_STATUS)?;
        tx.open_table(OUTCOMES)?;
        tx.commit()?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(unavailable)?
    }
}

fn write_saga(tx: &redb::WriteTransaction, saga: &Saga, old_status: Option<SagaStatus>) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(saga).map_err(unavailable)?;
    tx.open_table(SAGAS).map_err(unavailable)?.insert(saga.id.as_str(), bytes.as_slice()).map_err(unavailable)?;
    let mut index = tx.open_table(BY_STATUS).map_err(unavailable)?;
    if let Some(old) = old_status
        && old != saga.status
    {
        index.remove((old.as_str(), saga.id.as_str())).map_err(unavailable)?;
    }
    index.insert((saga.status.as_str(), saga.id.as_str()), ()).map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl SagaStore for EmbeddedStore {
    async fn create(&self, saga: &Saga) -> Result<Created, StoreError> {
        let saga = saga.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            let existing = {
                let table = tx.open_table(SAGAS).map_err(unavailable)?;
                let got = table.get(saga.id.as_str()).map_err(unavailable)?;
                got.map(|v| decode::<Saga>(v.value())).transpose()?
            };
            if let Some(existing) = existing {
                return Ok(Created::Existing(Box::new(existing)));
            }
            write_saga(&tx, &saga, None)?;
            tx.commit().map_err(unavailable)?;
            Ok(Created::New)
        })
        .await
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let table = tx.open_table(SAGAS).map_err(unavailable)?;
            let got = table.get(id.as_str()).map_err(unavailable)?;
            got.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn commit(&self, saga: &Saga, expected_revision: u64) -> Result<(), StoreError> {
        let saga = saga.clone();
        self.blocking(move |db| {
            // One write transaction at a time (redb's rule), so reading the revision and
            // writing the new record cannot interleave with another commit.
            let tx = db.begin_write().map_err(unavailable)?;
            let stored: Saga = {
                let table = tx.open_table(SAGAS).map_err(unavailable)?;
                let got = table.get(saga.id.as_str()).map_err(unavailable)?;
                match got {
                    Some(v) => decode(v.value())?,
                    None => return Err(StoreError::NotFound(saga.id.clone())),
                }
            };
            if stored.revision != expected_revision {
                return Err(StoreError::Conflict { id: saga.id.clone(), expected: expected_revision });
            }
            write_saga(&tx, &saga, Some(stored.status))?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        self.blocking(move |db| {
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

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        let (command, key) = (command.to_owned(), idempotency_key.to_owned());
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let table = tx.open_table(OUTCOMES).map_err(unavailable)?;
            let got = table.get((command.as_str(), key.as_str())).map_err(unavailable)?;
            got.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let (command, key) = (command.to_owned(), idempotency_key.to_owned());
        let bytes = serde_json::to_vec(outcome).map_err(unavailable)?;
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut table = tx.open_table(OUTCOMES).map_err(unavailable)?;
                // The first record wins.
                if table.get((command.as_str(), key.as_str())).map_err(unavailable)?.is_none() {
                    table.insert((command.as_str(), key.as_str()), bytes.as_slice()).map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
