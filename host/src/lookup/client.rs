//! A worker's client of one lookup table, shared by the worker's
//! `lookup-join` steps that read the table (each a *slot*). It never waits on
//! the network. A batch of events is *admitted* with its keys (a *cell* per
//! event and key: a step may ask on behalf of the steps after it on the same
//! table, its chain); each cell is answered by the cache, by a request already
//! out for the same key (single flight, whoever asked), or joins the
//! *outbox*. The outbox goes out as one request (MGET, a pipeline, one query)
//! when the worker has handled a message ([`TableClient::flush`]), so the
//! misses of a batch, and of every step of the worker that read the table
//! meanwhile, share one request. Replies come on the client's channel, which
//! the worker watches; [`TableClient::drain`] answers the cells waiting for
//! them and caches the answers. A slot's batches leave in input order
//! ([`TableClient::ready`]), or, unordered, each event once answered (events of
//! one key are answered together, so their order holds).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::cache::{LookupCache, Shared};
use super::service::{Reply, Request};
use super::stats::StepStats;
use super::table::Table;
use super::LookupService;

/// A table's answer for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Found(Shared),
    /// The table has no such key (or the event had no key).
    Missing,
    /// The table did not answer in time (`miss_after_ms`): why.
    Unavailable(Arc<str>),
}

/// Where an answer goes: a slot, one of its batches, a cell of it.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    slot: u16,
    batch: u64,
    cell: u32,
}

/// The cells waiting for one key (one, as a rule: no allocation for it).
struct Waiters {
    first: Waiter,
    more: Vec<Waiter>,
}

/// Keys are hashed often (every cell admitted, every answer): foldhash, not SipHash.
type KeyMap<V> = HashMap<Vec<u8>, V, foldhash::fast::RandomState>;

/// A batch waiting for answers.
struct Waiting {
    id: u64,
    columns: usize,
    cells: Vec<Option<Answer>>,
    /// Per event: cells still unanswered.
    open: Vec<u16>,
    /// Events with cells unanswered.
    open_events: usize,
    /// Unordered: events not yet handed out.
    left: usize,
}

struct Slot {
    ordered: bool,
    waiting: VecDeque<Waiting>,
    next_id: u64,
    /// Unordered: (batch, event) answered since the last [`TableClient::ready`].
    done: Vec<(u64, u32)>,
    stats: Arc<StepStats>,
}

/// Answers of a slot's batch, ready to leave: `events` (indices in the batch,
/// ascending) with their cells (`columns` per event, in the same order).
#[derive(Debug, PartialEq)]
pub struct Ready {
    pub batch: u64,
    pub events: Vec<u32>,
    pub cells: Vec<Answer>,
}

pub struct TableClient {
    table: Arc<Table>,
    service: Arc<LookupService>,
    cache: LookupCache,
    in_flight: KeyMap<Waiters>,
    outbox: Vec<Vec<u8>>,
    max_keys: usize,
    tx: Sender<Reply>,
    rx: Receiver<Reply>,
    slots: Vec<Slot>,
    /// Answers a slot handed to the next one of its chain with its output
    /// (`slot`, cells of each output event); taken by that slot's next admit.
    stash: Option<(u16, Vec<Answer>)>,
    next_tag: u64,
    /// Requests out.
    out: usize,
}

impl TableClient {
    pub fn new(table: Arc<Table>, service: Arc<LookupService>, cache: LookupCache, max_keys: usize) -> Self {
        // Unbounded, but never holds more than the requests out, which the
        // slots' bounds on waiting events bound.
        let (tx, rx) = crossbeam_channel::unbounded();
        TableClient {
            table,
            service,
            cache,
            // Sized for a few batches' keys: no rehash on the way up.
            in_flight: KeyMap::with_capacity_and_hasher(4096, Default::default()),
            outbox: Vec::new(),
            max_keys: max_keys.max(1),
            tx,
            rx,
            slots: Vec::new(),
            stash: None,
            next_tag: 0,
            out: 0,
        }
    }

    /// A step reading the table through this client, as slot `slot`
    /// (slots are numbered by the plan of the pipeline, so a step knows the
    /// slot of the next one of its chain before it is made).
    pub fn add_slot(&mut self, slot: u16, ordered: bool, stats: Arc<StepStats>) {
        let i = slot as usize;
        while self.slots.len() <= i {
            self.slots.push(Slot { ordered: true, waiting: VecDeque::new(), next_id: 0, done: Vec::new(), stats: Arc::default() });
        }
        self.slots[i] = Slot { ordered, waiting: VecDeque::new(), next_id: 0, done: Vec::new(), stats };
    }

    /// The channel replies come on (the worker wakes the steps when it has one).
    pub fn replies(&self) -> &Receiver<Reply> {
        &self.rx
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Takes a batch of `keys.len() / columns` events into `slot`: `columns`
    /// cells per event (`None`: no key, answered missing at once); `stash`:
    /// cells already answered by the step before in the chain (`None` per
    /// cell: not). Returns the batch's number.
    pub fn admit(&mut self, slot: u16, keys: Vec<Option<Vec<u8>>>, columns: usize, stash: Option<Vec<Answer>>, now: Instant) -> u64 {
        let columns = columns.max(1);
        let events = keys.len() / columns;
        let s = &mut self.slots[slot as usize];
        let id = s.next_id;
        s.next_id += 1;
        let mut w = Waiting { id, columns, cells: Vec::with_capacity(keys.len()), open: vec![0; events], open_events: 0, left: events };
        let mut stash = stash.map(Vec::into_iter);
        let (mut hits, mut joined, mut prefetched, mut asked) = (0, 0, 0, 0);
        for (cell, key) in keys.into_iter().enumerate() {
            if let Some(answer) = stash.as_mut().and_then(Iterator::next) {
                prefetched += 1;
                w.cells.push(Some(answer));
                continue;
            }
            let Some(key) = key else {
                w.cells.push(Some(Answer::Missing));
                continue;
            };
            let waiter = Waiter { slot, batch: id, cell: cell as u32 };
            if let Some(waiters) = self.in_flight.get_mut(&key) {
                waiters.more.push(waiter);
                joined += 1;
            } else if let Some(cached) = self.cache.get(&key, now) {
                hits += 1;
                w.cells.push(Some(cached.map_or(Answer::Missing, Answer::Found)));
                continue;
            } else {
                self.in_flight.insert(key.clone(), Waiters { first: waiter, more: Vec::new() });
                self.outbox.push(key);
                asked += 1;
            }
            w.cells.push(None);
            let e = cell / columns;
            if w.open[e] == 0 {
                w.open_events += 1;
            }
            w.open[e] += 1;
        }
        let s = &mut self.slots[slot as usize];
        if !s.ordered {
            s.done.extend(w.open.iter().enumerate().filter(|(_, o)| **o == 0).map(|(e, _)| (id, e as u32)));
        }
        s.waiting.push_back(w);
        let st = &s.stats;
        st.cache_hits.fetch_add(hits, Relaxed);
        st.joined.fetch_add(joined, Relaxed);
        st.prefetched.fetch_add(prefetched, Relaxed);
        st.asked.fetch_add(asked, Relaxed);
        id
    }

    /// Sends the outbox: one request (up to the request size bound) for
    /// every key admitted since the last flush.
    pub fn flush(&mut self) {
        while !self.outbox.is_empty() {
            let rest = self.outbox.split_off(self.outbox.len().min(self.max_keys));
            let keys = std::mem::replace(&mut self.outbox, rest);
            self.table.stats.sent(keys.len());
            self.service.submit(&self.table, Request { tag: self.next_tag, keys }, self.tx.clone());
            self.next_tag += 1;
            self.out += 1;
        }
    }

    /// Requests out now.
    pub fn requests_out(&self) -> usize {
        self.out
    }

    /// Takes in every reply that has come: answers the cells waiting for
    /// them and caches the answers. Returns how many replies there were.
    pub fn drain(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Ok(reply) = self.rx.try_recv() {
            n += 1;
            self.out -= 1;
            self.table.stats.latency.record(reply.latency);
            match reply.result {
                Ok(values) => {
                    for (key, value) in reply.keys.into_iter().zip(values) {
                        let value: Option<Shared> = value.map(Into::into);
                        let answer = value.clone().map_or(Answer::Missing, Answer::Found);
                        self.answer(&key, answer);
                        self.cache.insert(key, value, now);
                    }
                }
                Err(e) => {
                    // Given up (`miss_after_ms`): not cached, asked again next time.
                    self.table.stats.failed.fetch_add(1, Relaxed);
                    let why: Arc<str> = e.to_string().into();
                    for key in reply.keys {
                        self.answer(&key, Answer::Unavailable(why.clone()));
                    }
                }
            }
        }
        n
    }

    fn answer(&mut self, key: &[u8], answer: Answer) {
        let Some(waiters) = self.in_flight.remove(key) else { return };
        for w in std::iter::once(waiters.first).chain(waiters.more) {
            let slot = &mut self.slots[w.slot as usize];
            let Some(first) = slot.waiting.front().map(|b| b.id) else { continue };
            // Batch numbers are consecutive from the front of the queue.
            let Some(b) = slot.waiting.get_mut((w.batch - first) as usize) else { continue };
            let cell = w.cell as usize;
            if b.cells[cell].is_some() {
                continue;
            }
            b.cells[cell] = Some(answer.clone());
            let e = cell / b.columns;
            b.open[e] -= 1;
            if b.open[e] == 0 {
                b.open_events -= 1;
                if !slot.ordered {
                    slot.done.push((b.id, e as u32));
                }
            }
        }
    }

    /// What of `slot` may leave now: its oldest batches once wholly answered
    /// (ordered), or every event answered since the last call (unordered),
    /// batch by batch in input order.
    pub fn ready(&mut self, slot: u16) -> Vec<Ready> {
        let s = &mut self.slots[slot as usize];
        let mut out = Vec::new();
        if s.ordered {
            while s.waiting.front().is_some_and(|b| b.open_events == 0) {
                let b = s.waiting.pop_front().expect("checked");
                let events = (0..b.open.len() as u32).collect();
                out.push(Ready { batch: b.id, events, cells: b.cells.into_iter().map(|c| c.unwrap_or(Answer::Missing)).collect() });
            }
            return out;
        }
        let mut done = std::mem::take(&mut s.done);
        done.sort_unstable();
        let first = s.waiting.front().map_or(0, |b| b.id);
        for (id, e) in done {
            let Some(b) = s.waiting.get_mut((id - first) as usize) else { continue };
            let cells = (e as usize * b.columns..(e as usize + 1) * b.columns).map(|c| b.cells[c].take().unwrap_or(Answer::Missing));
            match out.last_mut() {
                Some(r) if r.batch == id => {
                    r.events.push(e);
                    r.cells.extend(cells);
                }
                _ => out.push(Ready { batch: id, events: vec![e], cells: cells.collect() }),
            }
            b.left -= 1;
        }
        while s.waiting.front().is_some_and(|b| b.left == 0) {
            s.waiting.pop_front();
        }
        out
    }

    /// Hands `cells` (`columns` per event of the output batch just made) to
    /// `slot`'s next admit: the answers the step before fetched for it.
    pub fn stash(&mut self, slot: u16, cells: Vec<Answer>) {
        self.stash = Some((slot, cells));
    }

    /// The stash left for `slot`, if it covers `cells` cells (else it is
    /// dropped: it was not made for this batch).
    pub fn take_stash(&mut self, slot: u16, cells: usize) -> Option<Vec<Answer>> {
        match self.stash.take() {
            Some((s, stash)) if s == slot && stash.len() == cells => Some(stash),
            _ => None,
        }
    }

    /// Keys asked for and not answered yet.
    pub fn keys_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn cache(&self) -> &LookupCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests;
