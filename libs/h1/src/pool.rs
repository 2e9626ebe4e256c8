//! The client's connections to one upstream authority: the idle ones to reuse, and a
//! slot for each exchange in flight ([`crate::client::Client::with_max_connections`]).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::client::ClientError;

/// Idle connections kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// Connections to one authority: the idle ones, most recently used last, and a slot for
/// each one in use.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(TcpStream, Instant)>>,
    /// [`crate::client::Client::with_max_connections`] slots; an exchange holds one from before
    /// it takes a connection until its response body has been read (or dropped).
    active: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn new(max_active: usize) -> Self {
        Self {
            idle: Mutex::default(),
            active: Arc::new(Semaphore::new(max_active.max(1))),
        }
    }

    /// A slot for one more exchange: at once when one is free, else the first to free up
    /// within `wait`.
    pub(crate) async fn slot(&self, wait: Duration) -> Result<OwnedSemaphorePermit, ClientError> {
        if let Ok(slot) = self.active.clone().try_acquire_owned() {
            return Ok(slot);
        }
        match tokio::time::timeout(wait, self.active.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(ClientError::Busy),
        }
    }

    pub(crate) fn take(&self, idle_timeout: Duration) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() < idle_timeout {
                return Some(stream);
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
