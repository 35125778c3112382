//! Hinted handoff: the writes other replicas missed, kept durably by the
//! coordinator that took them until those replicas are back.
//!
//! The rules this module keeps:
//! - A hint is the original timestamped version, never restamped, so on
//!   arrival it merges by last-write-wins like any write: an old hint can
//!   never overwrite a newer acknowledged write.
//! - A hint is durable (in its own write-ahead log, `DIR/hints/`) before
//!   `store` returns, and the coordinator stores it before it answers the
//!   client, so a coordinator that crashes right after answering still
//!   delivers it after its restart.
//! - Hints never count toward a consistency level.
//!
//! Per target and key only the newest hint matters (last write wins), so a
//! newer hint replaces an older one: at most 256 hints per replica. They are
//! delivered oldest first, as soon as the replica is seen up (a hello, a
//! ping answered; see `cluster::peers`) and then every `DELIVERY_TICK` while any
//! remain. A delivered hint is removed; once none is pending the log is
//! emptied, and while hints are pending it is checkpointed (the pending set
//! rewritten, older segments deleted) whenever it passes the checkpoint
//! threshold, so it stays small however long a replica is down. Delivering a hint twice (after a crash between the delivery and
//! the note of it) is harmless: the second write changes nothing.
//!
//! Hints older than the window, and hints past the per-replica bound, are
//! dropped with a log line each; anti-entropy covers what they would have
//! carried.
//!
//! The parts: `log` (the durable hints log, its thread and its records),
//! `delivery` (sending hints to replicas that are back). This file holds
//! the pending set: storing a hint, counting, forgetting and expiring them.

mod delivery;
mod log;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{hint_record, Versioned};
use crate::storage::clock::wall_micros;
use log::{hint_record_of, open_log, LogJob};

/// Limits on what a coordinator keeps for replicas that are down.
#[derive(Clone, Copy, Debug)]
pub struct HintOptions {
    /// Hints older than this are dropped instead of delivered.
    pub window: Duration,
    /// At most this many keys' hints are kept per replica (at most 256
    /// exist); a hint for one more key is dropped.
    pub max_per_replica: usize,
}

/// One pending hint.
#[derive(Clone, Debug, PartialEq)]
struct PendingHint {
    version: Versioned,
    stored_at_micros: u64,
}

/// The hints pending for each replica, by key.
type Pending = BTreeMap<ReplicaId, BTreeMap<u8, PendingHint>>;

/// The hints this replica holds for its peers.
pub struct Hints {
    pending: Arc<Mutex<Pending>>,
    to_log: rt::Sender<LogJob>,
    options: HintOptions,
    /// Targets with a delivery in progress: one at a time per target.
    delivering: Mutex<HashSet<ReplicaId>>,
    /// Counts hints stored, delivered and dropped.
    metrics: Arc<Metrics>,
}

impl Hints {
    /// Opens (or creates) `DIR/hints`, replays it and starts its log
    /// thread. Blocking: call before serving. Returns the hints and how
    /// many were pending after replay. Hints stored, delivered and dropped
    /// from then on are counted in `metrics`.
    pub fn open(
        data_dir: &Path,
        wal_options: wal::Options,
        options: HintOptions,
        checkpoint_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Result<(Hints, usize), String> {
        let (pending, to_log) = open_log(data_dir, wal_options, checkpoint_bytes)?;
        let hints = Hints {
            pending,
            to_log,
            options,
            delivering: Mutex::new(HashSet::new()),
            metrics,
        };
        hints.drop_expired();
        let count = hints.pending_total();
        Ok((hints, count))
    }

    /// Keeps `version` of `key` for `target`, durably, and returns once it
    /// is on disk (or dropped by the per-replica bound, which is logged).
    pub async fn store(
        &self,
        target: ReplicaId,
        key: u8,
        version: Versioned,
    ) -> Result<(), KvError> {
        {
            let pending = lock(&self.pending);
            let held = pending.get(&target);
            if let Some(existing) = held.and_then(|by_key| by_key.get(&key)) {
                if existing.version.lww_cmp(&version).is_ge() {
                    return Ok(());
                }
            } else if held.map_or(0, BTreeMap::len) >= self.options.max_per_replica {
                crate::warn!(
                    "dropped a hint for replica {target} (key {key}, timestamp {}): it already has hints for {} keys, the bound",
                    version.timestamp_micros,
                    self.options.max_per_replica
                );
                self.metrics.hint_dropped();
                return Ok(());
            }
        }
        let hint = PendingHint {
            version,
            stored_at_micros: wall_micros(),
        };
        let record = hint_record_of(hint_record::Entry::Stored, target, key, &hint);
        let (durable, is_durable) = rt::bounded(1);
        let stopped = || KvError::internal("the hints log thread has stopped");
        self.to_log
            .send(LogJob {
                record,
                durable: Some(durable),
            })
            .await
            .map_err(|_| stopped())?;
        is_durable.recv().await.map_err(|_| stopped())??;
        self.metrics.hint_stored();
        Ok(())
    }

    /// Hints pending for `target`.
    pub fn pending_for(&self, target: ReplicaId) -> usize {
        lock(&self.pending).get(&target).map_or(0, BTreeMap::len)
    }

    /// Hints pending for every target.
    pub fn pending_total(&self) -> usize {
        lock(&self.pending).values().map(BTreeMap::len).sum()
    }

    /// Forgets a hint that was delivered (`dropped_because` is None) or
    /// dropped, unless a newer one replaced it meanwhile, and notes it in
    /// the log.
    async fn remove(
        &self,
        target: ReplicaId,
        key: u8,
        hint: &PendingHint,
        dropped_because: Option<&str>,
    ) {
        {
            let mut pending = lock(&self.pending);
            let Some(by_key) = pending.get_mut(&target) else {
                return;
            };
            if by_key.get(&key) != Some(hint) {
                return;
            }
            by_key.remove(&key);
            if by_key.is_empty() {
                pending.remove(&target);
            }
        }
        if let Some(why) = dropped_because {
            self.metrics.hint_dropped();
            crate::warn!(
                "dropped the hint for replica {target} (key {key}, timestamp {}): {why}",
                hint.version.timestamp_micros
            );
        }
        let record = hint_record_of(hint_record::Entry::Removed, target, key, hint);
        // Not awaited to durability: a removal lost in a crash only means
        // a harmless second delivery.
        let _ = self
            .to_log
            .send(LogJob {
                record,
                durable: None,
            })
            .await;
    }

    fn is_expired(&self, hint: &PendingHint) -> bool {
        let window = self.options.window.as_micros() as u64;
        wall_micros().saturating_sub(hint.stored_at_micros) > window
    }

    /// Drops every hint older than the window, with a log line each.
    fn drop_expired(&self) {
        let mut dropped = Vec::new();
        {
            let mut pending = lock(&self.pending);
            for (&target, by_key) in pending.iter_mut() {
                by_key.retain(|&key, hint| {
                    let keep = !self.is_expired(hint);
                    if !keep {
                        dropped.push((target, key, hint.clone()));
                    }
                    keep
                });
            }
            pending.retain(|_, by_key| !by_key.is_empty());
        }
        for (target, key, hint) in dropped {
            self.metrics.hint_dropped();
            crate::warn!(
                "dropped the hint for replica {target} (key {key}, timestamp {}): it is older than the hint window of {} s",
                hint.version.timestamp_micros,
                self.options.window.as_secs()
            );
            let record = hint_record_of(hint_record::Entry::Removed, target, key, &hint);
            let _ = self.to_log.try_send(LogJob {
                record,
                durable: None,
            });
        }
    }
}
