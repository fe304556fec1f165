//! The byte bound of the channel between the sources and the pipeline
//! thread: a counting semaphore in bytes. A source takes a batch's bytes
//! before sending it (waiting while they do not fit); the coordinator
//! gives them back when it takes the batch off the channel.

use std::sync::{Condvar, Mutex};

/// Bytes in flight between the sources and the coordinator, at most
/// `capacity` (one message larger than the bound goes alone).
#[derive(Debug)]
pub struct ByteBudget {
    capacity: usize,
    state: Mutex<BudgetState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct BudgetState {
    in_flight: usize,
    /// Sources waiting for room (for tests and diagnostics).
    waiting: usize,
    /// The coordinator is gone: nobody will give bytes back.
    closed: bool,
}

impl ByteBudget {
    pub fn new(capacity: usize) -> Self {
        ByteBudget { capacity: capacity.max(1), state: Mutex::default(), freed: Condvar::new() }
    }

    /// Takes `bytes`, waiting until they fit (or nothing else is in flight).
    /// Returns false, taking nothing, once the budget is closed.
    pub fn acquire(&self, bytes: usize) -> bool {
        let mut s = self.lock();
        while !s.closed && s.in_flight > 0 && s.in_flight.saturating_add(bytes) > self.capacity {
            s.waiting += 1;
            s = self.freed.wait(s).unwrap_or_else(|p| p.into_inner());
            s.waiting -= 1;
        }
        if s.closed {
            return false;
        }
        s.in_flight += bytes;
        true
    }

    /// Takes `bytes` if they fit now (or nothing else is in flight), without
    /// waiting; false if they do not (or the budget is closed).
    pub fn try_acquire(&self, bytes: usize) -> bool {
        let mut s = self.lock();
        if s.closed || (s.in_flight > 0 && s.in_flight.saturating_add(bytes) > self.capacity) {
            return false;
        }
        s.in_flight += bytes;
        true
    }

    /// Gives `bytes` back (the coordinator took their message).
    pub fn release(&self, bytes: usize) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// Wakes every waiting source for good: the receiver is gone.
    pub fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes taken and not given back.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Sources waiting for room now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a message weighs against the budget: the bytes of its events'
/// values and keys (the part a user can make large).
pub fn message_bytes(msg: &super::SourceMessage) -> usize {
    let event = |e: &crate::event::Event| e.value.len() + e.key.as_ref().map_or(0, Vec::len);
    match msg {
        super::SourceMessage::Batch(b, keys) => {
            let keys: usize = keys.iter().flatten().map(|k| k.read.key.as_ref().map_or(0, Vec::len)).sum();
            b.events.iter().map(event).sum::<usize>() + keys
        }
        super::SourceMessage::Rejected(dead) => dead.iter().map(|d| event(&d.event) + d.reason.len()).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::source::{Emitter, SourceMessage};
    use std::sync::Arc;
    use std::time::Duration;

    /// A source sending batches of 4 events of 1000 bytes (4000 bytes a
    /// batch) into a channel with room for 100 batches, under a 10_000-byte
    /// bound: it can have two batches in flight, and blocks on the third
    /// until the receiver takes one.
    #[test]
    fn a_source_blocks_at_the_byte_bound_and_bytes_in_flight_stay_under_it() {
        let budget = Arc::new(ByteBudget::new(10_000));
        let (tx, rx) = crossbeam_channel::bounded(100);
        let mut emitter = Emitter::new(0, "src", tx, 4, Duration::from_secs(3600)).with_budget(budget.clone());
        let source = std::thread::spawn(move || {
            for i in 0..40u64 {
                emitter.push(Event::from_value(vec![b'x'; 1000], 0), i);
            }
        });
        // Wait (no time limit but the test's) until the source blocks.
        while budget.waiting() == 0 {
            std::thread::yield_now();
        }
        let batches = rx.try_iter().collect::<Vec<_>>();
        let sent = batches.iter().filter(|(_, m)| matches!(m, SourceMessage::Batch(..))).count();
        assert_eq!(sent, 2, "two batches fit in 10_000 bytes, the third waits");
        assert_eq!(budget.in_flight(), 8_000);
        // Taken off the channel: their bytes come back, the source goes on.
        for (_, msg) in &batches {
            budget.release(message_bytes(msg));
        }
        // Take them one at a time, as the coordinator does.
        let mut received = sent;
        let mut most = 0;
        while received < 10 {
            let (_, msg) = rx.recv().unwrap();
            let SourceMessage::Batch(b, _) = &msg else { continue };
            received += 1;
            assert_eq!(b.len(), 4);
            most = most.max(budget.in_flight());
            assert!(budget.in_flight() <= budget.capacity());
            budget.release(message_bytes(&msg));
        }
        source.join().unwrap();
        assert!(most <= 10_000, "in flight at most the bound: {most}");
        assert_eq!(budget.in_flight(), 0);
    }

    #[test]
    fn a_batch_larger_than_the_bound_goes_alone_and_closing_frees_waiters() {
        let budget = Arc::new(ByteBudget::new(100));
        assert!(budget.acquire(1_000), "nothing in flight: an oversized batch goes");
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.acquire(10))
        };
        while budget.waiting() == 0 {
            std::thread::yield_now();
        }
        budget.close();
        assert!(!waiter.join().unwrap(), "a closed budget gives nothing");
    }
}
