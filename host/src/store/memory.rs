//! An in-process [`SagaStore`]: a map behind a mutex. Nothing survives the process.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Created, SagaStore, StoreError};
use crate::orchestrator::saga::{Saga, SagaStatus};
use crate::protocol::Outcome;

/// A std `Mutex`, not an async one: every critical section is a few map operations and never
/// awaits, so holding it across an `.await` cannot happen and contention stays short.
#[derive(Default)]
pub struct MemoryStore {
    sagas: Mutex<HashMap<String, Saga>>,
    outcomes: Mutex<HashMap<(String, String), Outcome>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SagaStore for MemoryStore {
    async fn create(&self, saga: &Saga) -> Result<Created, StoreError> {
        let mut sagas = self.sagas.lock().expect("store lock poisoned");
        if let Some(existing) = sagas.get(&saga.id) {
            return Ok(Created::Existing(Box::new(existing.clone())));
        }
        sagas.insert(saga.id.clone(), saga.clone());
        Ok(Created::New)
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        Ok(self.sagas.lock().expect("store lock poisoned").get(id).cloned())
    }

    async fn commit(&self, saga: &Saga, expected_revision: u64) -> Result<(), StoreError> {
        let mut sagas = self.sagas.lock().expect("store lock poisoned");
        let stored = sagas.get_mut(&saga.id).ok_or_else(|| StoreError::NotFound(saga.id.clone()))?;
        if stored.revision != expected_revision {
            return Err(StoreError::Conflict { id: saga.id.clone(), expected: expected_revision });
        }
        *stored = saga.clone();
        Ok(())
    }

    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        let sagas = self.sagas.lock().expect("store lock poisoned");
        let mut out: Vec<Saga> = sagas.values().filter(|s| status.is_none_or(|st| s.status == st)).cloned().collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        let outcomes = self.outcomes.lock().expect("store lock poisoned");
        Ok(outcomes.get(&(command.to_owned(), idempotency_key.to_owned())).cloned())
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let mut outcomes = self.outcomes.lock().expect("store lock poisoned");
        outcomes.entry((command.to_owned(), idempotency_key.to_owned())).or_insert_with(|| outcome.clone());
        Ok(())
    }
}
