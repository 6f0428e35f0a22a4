//! The orchestrator's in-process timers: command deadlines, retry backoffs, wait timeouts and
//! sleeps.
//!
//! A saga may wait on several timers at once (parallel branches, for_each iterations), and
//! its record lists them all ([`crate::model::Saga::timers`]). Timers are kept by saga id:
//! after each commit the saga's whole set replaces the one before, so a timer whose step
//! moved on is dropped rather than fired, and the number of timers is bounded by what the
//! unfinished sagas this process touched wait on.
//!
//! One task owns the timers: an ordered index by due time and the time of the earliest, which
//! it sleeps until. Due timers are handed back through a channel, in batches.
//!
//! These timers are an optimisation for firing on time. What makes timers durable is the
//! saga record: its due time is indexed by the store, and the orchestrator's sweeper fires
//! the ones whose process died (see [`super::Orchestrator::run`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Clock, Event};

/// Asks the timer task to replace a saga's timers (empty: clear them).
struct Set {
    id: String,
    timers: Vec<(u64, Event)>,
}

/// A handle to the timer task. Cheap to clone; the task ends when every handle is gone.
#[derive(Clone)]
pub struct Timers {
    tx: mpsc::UnboundedSender<Set>,
}

/// Due timers: (saga id, event).
pub type Due = Vec<(String, Event)>;

impl Timers {
    /// Start the task. Due timers arrive on the returned receiver.
    pub fn start(clock: Arc<dyn Clock>) -> (Timers, mpsc::UnboundedReceiver<Due>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(clock, rx, due_tx));
        (Timers { tx }, due_rx)
    }

    /// Fire each `event` for saga `id` at its `at` (ms since the epoch), replacing the saga's
    /// previous timers; an empty list clears them.
    pub fn set(&self, id: &str, timers: Vec<(u64, Event)>) {
        let _ = self.tx.send(Set { id: id.to_owned(), timers });
    }
}

/// Longest single sleep: the clock is re-read at least this often, so a clock that jumps
/// (a test clock, a corrected wall clock) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

async fn run(clock: Arc<dyn Clock>, mut rx: mpsc::UnboundedReceiver<Set>, due_tx: mpsc::UnboundedSender<Due>) {
    // (due, sequence) -> (saga id, event); the sequence keeps timers due at the same instant
    // apart.
    let mut by_time: BTreeMap<(u64, u64), (String, Event)> = BTreeMap::new();
    // saga id -> its timers' keys in `by_time`.
    let mut by_saga: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    let mut sequence = 0u64;
    loop {
        let sleep = match by_time.keys().next() {
            Some(&(due, _)) => Duration::from_millis(due.saturating_sub(clock.now_ms())).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        tokio::select! {
            set = rx.recv() => {
                let Some(mut set) = set else { return };
                // Take every request already queued before sleeping again.
                loop {
                    for key in by_saga.remove(&set.id).into_iter().flatten() {
                        by_time.remove(&key);
                    }
                    if !set.timers.is_empty() {
                        let mut keys = Vec::with_capacity(set.timers.len());
                        for (at, event) in set.timers {
                            sequence += 1;
                            let key = (at, sequence);
                            by_time.insert(key, (set.id.clone(), event));
                            keys.push(key);
                        }
                        by_saga.insert(set.id, keys);
                    }
                    match rx.try_recv() {
                        Ok(next) => set = next,
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
        let now = clock.now_ms();
        let mut due = Vec::new();
        while let Some(entry) = by_time.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = *entry.key();
            let (id, event) = entry.remove();
            if let Some(keys) = by_saga.get_mut(&id) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    by_saga.remove(&id);
                }
            }
            due.push((id, event));
        }
        if !due.is_empty() && due_tx.send(due).is_err() {
            return;
        }
    }
}
