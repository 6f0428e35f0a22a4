//! An in-process [`EventBus`]: one FIFO queue per command name and one for results.
//!
//! Consumers compete for the queues they read. Acknowledgement is a no-op: in one process a
//! message handed to a consumer cannot be lost to a crash of another process, and a crash of
//! this one loses the queues anyway (embedded mode pairs this bus with its own durable store).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{AckToken, Acker, BusError, Consumer, Delivery, EventBus, NoAck};
use crate::protocol::{CommandMessage, ResultMessage, SignalMessage};

/// Named FIFO queues with a wake-up for waiting consumers.
///
/// A std `Mutex` because no critical section awaits; a `Notify` rather than a channel per
/// queue because one consumer may wait on several queues at once (a worker pool serves every
/// command of its plugins).
struct Queues<T> {
    queues: Mutex<HashMap<String, VecDeque<T>>>,
    notify: Notify,
}

impl<T> Queues<T> {
    fn new() -> Self {
        Self { queues: Mutex::new(HashMap::new()), notify: Notify::new() }
    }

    fn push(&self, items: impl IntoIterator<Item = (String, T)>) {
        {
            let mut queues = self.queues.lock().expect("bus lock poisoned");
            for (name, item) in items {
                queues.entry(name).or_default().push_back(item);
            }
        }
        self.notify.notify_waiters();
    }

    async fn pop(&self, names: &[String], max: usize) -> Vec<T> {
        loop {
            // Register interest before looking, so a push between the look and the wait
            // still wakes us.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut queues = self.queues.lock().expect("bus lock poisoned");
                let mut out = Vec::new();
                for name in names {
                    if let Some(q) = queues.get_mut(name) {
                        while out.len() < max {
                            match q.pop_front() {
                                Some(item) => out.push(item),
                                None => break,
                            }
                        }
                    }
                }
                if !out.is_empty() {
                    if queues.values().any(|q| !q.is_empty()) {
                        // Others may be waiting for what we left.
                        self.notify.notify_waiters();
                    }
                    return out;
                }
            }
            notified.await;
        }
    }
}

const RESULTS: &str = "results";
const SIGNALS: &str = "signals";

/// See the module documentation.
#[derive(Clone)]
pub struct MemoryBus {
    commands: Arc<Queues<CommandMessage>>,
    results: Arc<Queues<ResultMessage>>,
    signals: Arc<Queues<SignalMessage>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self { commands: Arc::new(Queues::new()), results: Arc::new(Queues::new()), signals: Arc::new(Queues::new()) }
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }
}

struct MemoryConsumer<T> {
    queues: Arc<Queues<T>>,
    names: Vec<String>,
}

#[async_trait]
impl<T: Send + 'static> Consumer<T> for MemoryConsumer<T> {
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery<T>>, BusError> {
        let items = self.queues.pop(&self.names, max.max(1)).await;
        Ok(items.into_iter().map(|message| Delivery { message, token: AckToken(String::new()) }).collect())
    }

    /// In one process a message handed out cannot go astray: nothing to acknowledge.
    fn acker(&self) -> Arc<dyn Acker> {
        Arc::new(NoAck)
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn send_commands(&self, commands: Vec<CommandMessage>) -> Result<(), BusError> {
        self.commands.push(commands.into_iter().map(|c| (c.name.clone(), c)));
        Ok(())
    }

    async fn send_results(&self, results: Vec<ResultMessage>) -> Result<(), BusError> {
        self.results.push(results.into_iter().map(|r| (RESULTS.to_owned(), r)));
        Ok(())
    }

    async fn command_consumer(&self, commands: &[String]) -> Result<Box<dyn Consumer<CommandMessage>>, BusError> {
        Ok(Box::new(MemoryConsumer { queues: self.commands.clone(), names: commands.to_vec() }))
    }

    async fn result_consumer(&self) -> Result<Box<dyn Consumer<ResultMessage>>, BusError> {
        Ok(Box::new(MemoryConsumer { queues: self.results.clone(), names: vec![RESULTS.to_owned()] }))
    }

    async fn send_signals(&self, signals: Vec<SignalMessage>) -> Result<(), BusError> {
        self.signals.push(signals.into_iter().map(|s| (SIGNALS.to_owned(), s)));
        Ok(())
    }

    async fn signal_consumer(&self) -> Result<Box<dyn Consumer<SignalMessage>>, BusError> {
        Ok(Box::new(MemoryConsumer { queues: self.signals.clone(), names: vec![SIGNALS.to_owned()] }))
    }

    /// In this process only.
    fn durable(&self) -> bool {
        false
    }

    /// In this process only: nothing outside it can read a command.
    fn reaches_outside(&self) -> bool {
        false
    }

    /// In this process: always there.
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}
