//! The shutdown signal, and a mutex lock that outlives a panic elsewhere. Every value kept
//! behind these locks is left whole by each operation on it (no half-made updates), so after
//! a panic in one request or task the rest of the process carries on with it rather than
//! panicking in turn.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub trait Locked<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one shutdown signal every server and task drains on (mini-redis's `Shutdown`): a value
/// to clone and ask, not a bare channel, whose `changed()` never fires for a shutdown that
/// came before it was awaited.
#[derive(Clone, Debug)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// A signal, and the sender that starts the shutdown (so does dropping it).
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Shutdown) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Shutdown(rx))
    }

    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown has begun: at once if it already has.
    pub async fn recv(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
