//! The client's connections to one upstream authority: the idle ones to reuse, and a
//! slot for each exchange in flight ([`crate::client::Client::with_max_connections`]).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{net::TcpStream, sync::Notify};

use crate::client::ClientError;

/// Idle connections kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// Connections to one authority: the idle ones, most recently used last, and a count of
/// the exchanges in flight.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(TcpStream, Instant)>>,
    /// Exchanges in flight, at most `max_active`
    /// ([`crate::client::Client::with_max_connections`]): one atomic add and one
    /// subtract each, where a semaphore would also lock its waiter list.
    active: AtomicUsize,
    max_active: usize,
    /// Exchanges waiting for one to end, and how they are told.
    waiting: AtomicUsize,
    freed: Notify,
}

/// An exchange's place among the pool's `max_active`; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Pool>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_waiters();
        }
    }
}

impl Pool {
    pub(crate) fn new(max_active: usize) -> Self {
        Self {
            idle: Mutex::default(),
            active: AtomicUsize::new(0),
            max_active: max_active.max(1),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// A slot for one more exchange, if one is free.
    pub(crate) fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        if self.active.fetch_add(1, Ordering::SeqCst) < self.max_active {
            return Some(Slot(self.clone()));
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// The first slot to free up within `wait`. (Boxed by the caller: its timer would
    /// otherwise make every exchange's future larger, and moving it dearer.)
    pub(crate) async fn wait_slot(self: Arc<Self>, wait: Duration) -> Result<Slot, ClientError> {
        /// Counts a waiter until it is done waiting, or dropped while it waits.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking again, so a slot freed in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_slot() {
                break Ok(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break Err(ClientError::Busy);
            }
        }
    }

    /// The most recently parked connection younger than `idle_timeout`, with how long it
    /// sat idle.
    pub(crate) fn take(&self, idle_timeout: Duration) -> Option<(TcpStream, Duration)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((stream, since)) = idle.pop() {
            let idle_for = since.elapsed();
            if idle_for < idle_timeout {
                return Some((stream, idle_for));
            }
        }
        None
    }

    pub(crate) fn put(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_PER_UPSTREAM {
            idle.push((stream, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_dropped_while_it_waits_is_no_longer_counted_and_slots_come_back() {
        let pool = Arc::new(Pool::new(1));
        let held = pool.try_slot().expect("the one slot");
        assert!(pool.try_slot().is_none());
        let waiting = Box::pin(pool.clone().wait_slot(Duration::from_secs(10)));
        // Polled once (it starts waiting), then dropped, as a cancelled request is.
        let mut waiting = waiting;
        let polled = futures::poll!(waiting.as_mut());
        assert!(polled.is_pending());
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 1);
        drop(waiting);
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
        drop(held);
        assert_eq!(pool.active.load(Ordering::SeqCst), 0);
        let again = pool.clone().wait_slot(Duration::from_secs(1)).await;
        assert!(again.is_ok(), "a freed slot is taken at once");
    }
}
