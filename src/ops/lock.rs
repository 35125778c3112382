//! The one way this crate takes a `std::sync::Mutex`.
//!
//! A mutex is poisoned when a thread panicked while holding it. Every
//! critical section in ringkv is a load, a store or a small update that
//! leaves the value consistent at each step, so a poisoned lock still
//! guards a usable value: going on is right, and panicking in turn would
//! take down a replica for a fault that is already over.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking its value even if a panic poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
