//! An in-process [`SagaStore`]: maps behind a mutex. Nothing survives the process.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Committed, Created, SagaStore, StoreError, Transition};
use crate::model::{HistoryEntry, Saga, SagaStatus};
use crate::protocol::Outcome;

/// Everything behind one lock, so a transition (record, history, timer index) is applied as
/// one step, as the durable stores do.
#[derive(Default)]
struct State {
    sagas: HashMap<String, Saga>,
    history: HashMap<String, Vec<HistoryEntry>>,
    /// (due, id) of every saga waiting on a timer.
    timers: BTreeSet<(u64, String)>,
    /// (expires_at, id) of every finished saga that is not kept forever.
    expiry: BTreeSet<(u64, String)>,
    /// Workflow definitions by content hash.
    definitions: HashMap<String, String>,
    /// By saga (see [`super::saga_of`]), then (command, idempotency key).
    outcomes: HashMap<String, HashMap<(String, String), Outcome>>,
}

impl State {
    /// Write a transition whose revision was checked.
    fn apply(&mut self, t: &Transition) {
        let saga = &t.saga;
        if let Some(due) = self.sagas.get(&saga.id).and_then(Saga::timer_due) {
            self.timers.remove(&(due, saga.id.clone()));
        }
        if let Some(due) = saga.timer_due() {
            self.timers.insert((due, saga.id.clone()));
        }
        if let Some(at) = self.sagas.get(&saga.id).and_then(|s| s.expires_at) {
            self.expiry.remove(&(at, saga.id.clone()));
        }
        if let Some(at) = saga.expires_at {
            self.expiry.insert((at, saga.id.clone()));
        }
        self.history.entry(saga.id.clone()).or_default().extend(t.history.iter().cloned());
        self.sagas.insert(saga.id.clone(), Saga::clone(saga));
    }
}

/// A std `Mutex`, not an async one: every critical section is a few map operations and never
/// awaits, so holding it across an `.await` cannot happen and contention stays short.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("store lock poisoned")
    }
}

#[async_trait]
impl SagaStore for MemoryStore {
    async fn create(&self, start: &Transition) -> Result<Created, StoreError> {
        let mut state = self.state();
        if let Some(existing) = state.sagas.get(&start.saga.id) {
            return Ok(Created::Existing(Box::new(existing.clone())));
        }
        state.apply(start);
        Ok(Created::New)
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        Ok(self.state().sagas.get(id).cloned())
    }

    async fn commit(&self, batch: &[Transition]) -> Result<Vec<Committed>, StoreError> {
        let mut state = self.state();
        Ok(batch
            .iter()
            .map(|t| match state.sagas.get(&t.saga.id) {
                None => Committed::NotFound,
                Some(stored) if stored.revision != t.expected_revision => Committed::Conflict,
                Some(_) => {
                    state.apply(t);
                    Committed::Ok
                }
            })
            .collect())
    }

    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        let state = self.state();
        let mut out: Vec<Saga> =
            state.sagas.values().filter(|s| status.is_none_or(|st| s.status == st)).cloned().collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self.state().history.get(id).cloned().unwrap_or_default())
    }

    async fn due_timers(
        &self,
        after: Option<(u64, &str)>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        use std::ops::Bound;
        let state = self.state();
        let start = match after {
            Some((due, id)) => Bound::Excluded((due, id.to_owned())),
            None => Bound::Unbounded,
        };
        Ok(state
            .timers
            .range((start, Bound::Unbounded))
            .take_while(|(due, _)| *due <= before)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn purge(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let mut state = self.state();
        let due: Vec<(u64, String)> =
            state.expiry.iter().take_while(|(at, _)| *at <= now).take(limit).cloned().collect();
        for entry in &due {
            let id = &entry.1;
            state.expiry.remove(entry);
            state.sagas.remove(id);
            state.history.remove(id);
            state.outcomes.remove(id);
        }
        Ok(due.len())
    }

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        let state = self.state();
        let mine = state.outcomes.get(super::saga_of(idempotency_key));
        Ok(mine.and_then(|m| m.get(&(command.to_owned(), idempotency_key.to_owned()))).cloned())
    }

    async fn put_definition(&self, hash: &str, text: &str) -> Result<(), StoreError> {
        self.state().definitions.entry(hash.to_owned()).or_insert_with(|| text.to_owned());
        Ok(())
    }

    async fn definition(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state().definitions.get(hash).cloned())
    }

    async fn forget_outcomes(&self, keys: &[(&str, &str)]) -> Result<(), StoreError> {
        let mut state = self.state();
        for (command, key) in keys {
            if let Some(records) = state.outcomes.get_mut(super::saga_of(key)) {
                records.remove(&((*command).to_owned(), (*key).to_owned()));
            }
        }
        Ok(())
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let mut state = self.state();
        state
            .outcomes
            .entry(super::saga_of(idempotency_key).to_owned())
            .or_default()
            .entry((command.to_owned(), idempotency_key.to_owned()))
            .or_insert_with(|| outcome.clone());
        Ok(())
    }

    /// In this process: always there.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
