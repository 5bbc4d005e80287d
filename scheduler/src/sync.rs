//! [`lock`]: a mutex lock that survives a panic in another holder. A leaf of the crate.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, taking over a poisoned one: the scheduler's maps and counters stay
/// consistent between calls, so a panic elsewhere leaves nothing half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
