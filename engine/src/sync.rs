//! Locking helpers shared by every module: [`lock`], a mutex lock that survives a panic in
//! another holder. A leaf: it depends on nothing else in the crate.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, taking over a poisoned one: the data behind Ember's mutexes (counters,
/// maps of handles) stay consistent between statements, so a panic elsewhere leaves
/// nothing half-written to guard against.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
