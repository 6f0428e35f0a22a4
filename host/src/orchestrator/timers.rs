//! The orchestrator's in-process timers: step deadlines and retry backoffs.
//!
//! A saga waits on at most one timer at a time (its cursor names it), so timers are kept by
//! saga id: setting a saga's timer replaces the one before, and a saga that moves on without
//! a timer clears it. Timers of steps that finished on time are never fired, and the number
//! of timers is bounded by the number of unfinished sagas this process touched.
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

/// Asks the timer task to set (or, with `None`, clear) a saga's timer.
struct Set {
    id: String,
    timer: Option<(u64, Event)>,
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

    /// Fire `event` for saga `id` at `at` (ms since the epoch), replacing its previous timer.
    pub fn set(&self, id: &str, at: u64, event: Event) {
        let _ = self.tx.send(Set { id: id.to_owned(), timer: Some((at, event)) });
    }

    /// Forget the timer of saga `id`.
    pub fn clear(&self, id: &str) {
        let _ = self.tx.send(Set { id: id.to_owned(), timer: None });
    }
}

/// Longest single sleep: the clock is re-read at least this often, so a clock that jumps
/// (a test clock, a corrected wall clock) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

async fn run(clock: Arc<dyn Clock>, mut rx: mpsc::UnboundedReceiver<Set>, due_tx: mpsc::UnboundedSender<Due>) {
    // (due, sequence) -> saga id; the sequence keeps timers due at the same instant apart.
    let mut by_time: BTreeMap<(u64, u64), String> = BTreeMap::new();
    // saga id -> its timer's key in `by_time` and its event.
    let mut by_saga: HashMap<String, ((u64, u64), Event)> = HashMap::new();
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
                    if let Some((key, _)) = by_saga.remove(&set.id) {
                        by_time.remove(&key);
                    }
                    if let Some((at, event)) = set.timer {
                        sequence += 1;
                        let key = (at, sequence);
                        by_time.insert(key, set.id.clone());
                        by_saga.insert(set.id, (key, event));
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
            let id = entry.remove();
            if let Some((_, event)) = by_saga.remove(&id) {
                due.push((id, event));
            }
        }
        if !due.is_empty() && due_tx.send(due).is_err() {
            return;
        }
    }
}
