//! A mutex lock that outlives a panic elsewhere. Every value kept behind these locks is left
//! whole by each operation on it (no half-made updates), so after a panic in one request or
//! task the rest of the process carries on with it rather than panicking in turn.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub trait Locked<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
