//! The event log: every transition gets a sequence number, goes to the store (in
//! order, batched) and to live subscribers. Streams resume from a cursor.

use crate::model::{now_ms, Event};
use crate::store::{Store, StoreError, WriteOp, Writer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Recent events kept in memory; older ones are read from the store.
const RING: usize = 10_000;

/// Emits, stores and fans out events.
#[derive(Debug)]
pub struct EventBus {
    inner: Mutex<Ring>,
    live: broadcast::Sender<Event>,
    writer: Writer,
    store: Store,
    /// Events emitted since start (for metrics).
    pub emitted: AtomicU64,
}

#[derive(Debug)]
struct Ring {
    next: u64,
    recent: VecDeque<Event>,
}

/// What a subscriber gets: the backlog after its cursor, then live events.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the cursor, in order.
    pub backlog: Vec<Event>,
    /// Live events (may repeat backlog seqs; skip seq ≤ the last one seen).
    pub live: broadcast::Receiver<Event>,
}

impl EventBus {
    /// A bus continuing the store's sequence.
    pub fn new(store: Store, writer: Writer) -> Result<Self, StoreError> {
        let last = store.last_event_seq()?;
        let recent: VecDeque<Event> = store
            .events_after(last.saturating_sub(RING as u64), RING)?
            .into();
        let (live, _) = broadcast::channel(4096);
        // Event writes are not fsync'd on their own, so a crash can lose the newest
        // ones; never hand out their seqs again: start past both the stored log and
        // a time-based floor (µs since the epoch), so cursors stay monotonic.
        let floor = crate::model::now_ms().saturating_mul(1000);
        Ok(Self {
            inner: Mutex::new(Ring {
                next: (last + 1).max(floor),
                recent,
            }),
            live,
            writer,
            store,
            emitted: AtomicU64::new(0),
        })
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Record one event.
    pub fn emit(&self, workload: &str, instance: Option<u64>, kind: &str, message: String) {
        tracing::info!(workload, instance, event = kind, "{message}");
        let mut r = self.ring();
        let e = Event {
            seq: r.next,
            time_ms: now_ms(),
            workload: workload.to_string(),
            instance,
            kind: kind.to_string(),
            message,
        };
        r.next += 1;
        r.recent.push_back(e.clone());
        if r.recent.len() > RING {
            r.recent.pop_front();
        }
        // Under the lock, so the writer and subscribers see seq order.
        self.writer.send(WriteOp::Events(vec![e.clone()]));
        let _ = self.live.send(e);
        self.emitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Subscribe from `cursor` (events with seq > cursor).
    pub fn subscribe(&self, cursor: u64) -> Result<Subscription, StoreError> {
        let r = self.ring();
        let live = self.live.subscribe();
        let front = r.recent.front().map(|e| e.seq).unwrap_or(r.next);
        let mut backlog = Vec::new();
        if cursor + 1 < front {
            // Older than the ring: these were written long ago.
            backlog = self
                .store
                .events_after(cursor, front.saturating_sub(cursor + 1) as usize)?;
            backlog.retain(|e| e.seq < front);
        }
        backlog.extend(r.recent.iter().filter(|e| e.seq > cursor).cloned());
        Ok(Subscription { backlog, live })
    }

    /// The seq of the newest event.
    pub fn last_seq(&self) -> u64 {
        self.ring().next - 1
    }
}
