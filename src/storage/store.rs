//! A replica's memory: the newest version it holds of each of the 256 keys.
//!
//! Merging is last-write-wins on (timestamp, coordinator id), so the order in
//! which writes arrive, are replayed or are repaired never changes the result.
//! This module never touches the disk: callers apply a write here only after
//! the write-ahead log has made it durable.

use std::sync::Mutex;

use crate::ops::lock::lock;
use crate::protocol::proto::Versioned;

/// The newest version of each key this replica holds.
#[derive(Debug)]
pub struct Store {
    slots: Mutex<Vec<Option<Versioned>>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store {
            slots: Mutex::new(vec![None; 256]),
        }
    }

    /// Keeps `version` if it is newer than what the key holds; returns
    /// whether it was kept.
    pub fn merge(&self, key: u8, version: Versioned) -> bool {
        let mut slots = self.slots();
        let slot = &mut slots[key as usize];
        let newer = match slot {
            Some(held) => version.lww_cmp(held).is_gt(),
            None => true,
        };
        if newer {
            *slot = Some(version);
        }
        newer
    }

    /// Whether the key already holds `version` or something newer, in which
    /// case writing it again would change nothing.
    pub fn supersedes(&self, key: u8, version: &Versioned) -> bool {
        self.slots()[key as usize]
            .as_ref()
            .is_some_and(|held| held.lww_cmp(version).is_ge())
    }

    /// The key's current version, if any.
    pub fn get(&self, key: u8) -> Option<Versioned> {
        self.slots()[key as usize].clone()
    }

    /// How many keys hold a live value (tombstones not counted).
    pub fn keys_held(&self) -> usize {
        self.slots()
            .iter()
            .filter(|slot| slot.as_ref().is_some_and(|v| !v.tombstone))
            .count()
    }

    /// Every key held, tombstones included, with its version: what a
    /// checkpoint writes, so that replaying it rebuilds this store exactly.
    pub fn all(&self) -> Vec<(u8, Versioned)> {
        self.slots()
            .iter()
            .enumerate()
            .filter_map(|(key, slot)| slot.clone().map(|version| (key as u8, version)))
            .collect()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<Versioned>>> {
        // A panic while holding this lock cannot leave a half-written slot
        // (each update is one assignment), so a poisoned lock is still sound.
        lock(&self.slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ts: u64, coordinator: u32, value: &str) -> Versioned {
        Versioned {
            value: value.into(),
            timestamp_micros: ts,
            coordinator_id: coordinator,
            tombstone: false,
        }
    }

    #[test]
    fn merge_keeps_the_newest_whatever_the_arrival_order() {
        let writes = [v(5, 0, "a"), v(9, 1, "b"), v(9, 2, "c"), v(7, 3, "d")];
        let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
        for order in orders {
            let store = Store::new();
            for i in order {
                store.merge(42, writes[i].clone());
            }
            assert_eq!(store.get(42), Some(v(9, 2, "c")));
            assert!(store.supersedes(42, &v(9, 1, "b")));
            assert!(!store.supersedes(42, &v(10, 0, "e")));
        }
    }

    #[test]
    fn an_empty_store_holds_nothing() {
        let store = Store::new();
        assert_eq!(store.get(0), None);
        assert_eq!(store.keys_held(), 0);
        assert!(store.merge(255, v(1, 0, "x")));
        assert_eq!(store.keys_held(), 1);
    }
}
