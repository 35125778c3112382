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
//! ping answered; see `peers.rs`) and then every `DELIVERY_TICK` while any
//! remain. A delivered hint is removed; once none is pending the log is
//! emptied, and while hints are pending it is checkpointed (the pending set
//! rewritten, older segments deleted) whenever it passes the checkpoint
//! threshold, so it stays small however long a replica is down. Delivering a hint twice (after a crash between the delivery and
//! the note of it) is harmless: the second write changes nothing.
//!
//! Hints older than the window, and hints past the per-replica bound, are
//! dropped with a log line each; anti-entropy covers what they would have
//! carried.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;

use crate::cluster::peers::Peers;
use crate::metrics::Metrics;
use crate::ops::exit::EXIT_WAL_FAILED;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::mux::CallError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{hint_record, Body, Hint, HintRecord, ReplicaWrite, Versioned};
use crate::storage::clock::wall_micros;
use crate::storage::group_commit::{self, Committer};

/// How often pending hints are retried, and expired ones dropped.
const DELIVERY_TICK: Duration = Duration::from_secs(1);

/// Records that may wait for the hints log thread.
const LOG_QUEUE: usize = 1024;

/// The most record bytes one group commit of the hints log writes.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

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

/// A record for the hints log thread, and whom to tell once it is durable.
struct LogJob {
    record: HintRecord,
    durable: Option<rt::Sender<Result<(), KvError>>>,
}

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
        let dir = data_dir.join("hints");
        let mut replayed = Pending::new();
        let (log, _report) = wal::Wal::open(&dir, wal_options, |payload| {
            apply_record(&mut replayed, decode(payload)?);
            Ok(())
        })
        .map_err(|e| format!("cannot open the hints log in {}: {e}", dir.display()))?;
        let pending = Arc::new(Mutex::new(replayed));
        let (to_log, jobs) = rt::bounded(LOG_QUEUE);
        let committer = HintsCommitter {
            pending: pending.clone(),
            checkpoint_bytes,
            next_checkpoint_at: checkpoint_bytes,
            empty_after: 0,
        };
        std::thread::Builder::new()
            .name("hints-log".to_string())
            .spawn(move || group_commit::run(log, jobs, committer, MAX_BATCH_BYTES))
            .map_err(|e| format!("cannot start the hints log thread: {e}"))?;
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

    /// Delivers hints for as long as the process runs: to a replica as soon
    /// as it is seen up, and to every replica with hints each tick.
    pub async fn deliver_forever(self: Arc<Self>, peers: Arc<Peers>, timeout: Duration) {
        let came_up = peers.up_events();
        let mut next_tick = Instant::now() + DELIVERY_TICK;
        loop {
            let until_tick = next_tick.saturating_duration_since(Instant::now());
            let mut targets = match rt::timeout(until_tick, came_up.recv()).await {
                Some(Ok(id)) => vec![id],
                Some(Err(_)) => return,
                None => {
                    // A fixed schedule: peers coming up often cannot put
                    // off the retries and expiry of everyone else's hints.
                    next_tick = Instant::now() + DELIVERY_TICK;
                    self.drop_expired();
                    lock(&self.pending).keys().copied().collect()
                }
            };
            while let Ok(id) = came_up.try_recv() {
                targets.push(id);
            }
            for target in targets {
                if self.pending_for(target) == 0 || !peers.is_up(target) {
                    continue;
                }
                if !lock(&self.delivering).insert(target) {
                    continue;
                }
                let (hints, peers) = (self.clone(), peers.clone());
                rt::spawn(async move {
                    hints.deliver_to(target, &peers, timeout).await;
                    lock(&hints.delivering).remove(&target);
                });
            }
        }
    }

    /// Sends `target` its hints, oldest first, until they are all delivered
    /// or one fails (the rest wait for the next tick).
    async fn deliver_to(&self, target: ReplicaId, peers: &Peers, timeout: Duration) {
        let Some(peer) = peers.get(target) else {
            return;
        };
        let mut queue: Vec<(u8, PendingHint)> = lock(&self.pending)
            .get(&target)
            .map(|by_key| by_key.iter().map(|(k, h)| (*k, h.clone())).collect())
            .unwrap_or_default();
        queue.sort_by(|a, b| a.1.version.lww_cmp(&b.1.version));
        let (mut delivered, total) = (0, queue.len());
        for (key, hint) in queue {
            if self.is_expired(&hint) {
                self.remove(target, key, &hint, Some("it is older than the hint window"))
                    .await;
                continue;
            }
            let write = Body::ReplicaWrite(ReplicaWrite {
                key: Some(u32::from(key)),
                version: Some(hint.version.clone()),
                client_write: false,
            });
            match peer.call(write, timeout).await {
                Ok(Body::ReplicaWriteAck(_)) => {
                    self.remove(target, key, &hint, None).await;
                    self.metrics.hint_delivered();
                    delivered += 1;
                }
                Err(CallError::Refused(KvError {
                    kind: ErrorKind::Invalid,
                    message,
                })) => {
                    let why = format!("replica {target} refused it: {message}");
                    self.remove(target, key, &hint, Some(&why)).await;
                }
                outcome => {
                    let why = match outcome {
                        Ok(other) => format!("it answered with a {}", other.kind_name()),
                        Err(CallError::Refused(error)) => error.to_string(),
                        Err(CallError::Disconnected(reason)) => reason,
                        Err(CallError::TimedOut) => "no answer in time".to_string(),
                    };
                    crate::warn!(
                        "hint delivery to replica {target} paused after {delivered} of {total}: {why}"
                    );
                    return;
                }
            }
        }
        if delivered > 0 {
            crate::info!("delivered {delivered} hints to replica {target}");
        }
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

/// Decodes one hints-log payload.
fn decode(payload: &[u8]) -> Result<HintRecord, String> {
    HintRecord::decode(payload).map_err(|e| format!("undecodable hint record: {e}"))
}

/// Applies one record to the pending set: replay and the log thread share it.
fn apply_record(pending: &mut Pending, record: HintRecord) {
    let (hint, stored) = match record.entry {
        Some(hint_record::Entry::Stored(hint)) => (hint, true),
        Some(hint_record::Entry::Removed(hint)) => (hint, false),
        None => return,
    };
    let (Ok(key), Some(version)) = (u8::try_from(hint.key), hint.version) else {
        return;
    };
    let entry = PendingHint {
        version,
        stored_at_micros: hint.stored_at_micros,
    };
    let by_key = pending.entry(hint.target).or_default();
    if stored {
        let newer = by_key
            .get(&key)
            .is_none_or(|held| entry.version.lww_cmp(&held.version).is_gt());
        if newer {
            by_key.insert(key, entry);
        }
    } else if by_key
        .get(&key)
        .is_some_and(|held| held.version == entry.version)
    {
        by_key.remove(&key);
    }
    if by_key.is_empty() {
        pending.remove(&hint.target);
    }
}

/// The hints log's side of each group commit (`storage::group_commit`):
/// add stored hints to the pending set once durable, tell the waiters, and
/// empty the log whenever nothing is pending (or rewrite the pending set
/// once the log has grown by the threshold). A failed checkpoint stops the
/// process, as a failed append does.
struct HintsCommitter {
    pending: Arc<Mutex<Pending>>,
    checkpoint_bytes: u64,
    next_checkpoint_at: u64,
    /// Raised after a full disk refused a checkpoint, so emptying is not
    /// retried on every record.
    empty_after: u64,
}

impl Committer for HintsCommitter {
    type Job = LogJob;

    fn encode(&self, job: &LogJob) -> Vec<u8> {
        job.record.encode_to_vec()
    }

    fn size(&self, job: &LogJob) -> usize {
        job.record.encoded_len()
    }

    fn committed(&mut self, log: &mut wal::Wal, batch: Vec<LogJob>) {
        let snapshot = {
            let mut held = lock(&self.pending);
            for job in batch {
                if matches!(job.record.entry, Some(hint_record::Entry::Stored(_))) {
                    apply_record(&mut held, job.record);
                }
                if let Some(durable) = job.durable {
                    let _ = durable.try_send(Ok(()));
                }
            }
            // Every stored hint that is not pending was removed first, and
            // removals are logged only after that: the pending set is all
            // the log needs to say. Only this thread adds pending hints, so
            // the copy stays true while the lock is released for the disk.
            // Empty it as soon as nothing is pending; otherwise rewrite the
            // pending set once the log has grown by the threshold since the
            // last checkpoint, so a large pending set is not rewritten for
            // every record.
            let worth_it = if held.is_empty() {
                log.total_bytes() > wal::SEGMENT_HEADER_LEN && log.total_bytes() > self.empty_after
            } else {
                log.total_bytes() > self.next_checkpoint_at
            };
            worth_it.then(|| stored_records(&held))
        };
        let Some(records) = snapshot else {
            return;
        };
        let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let outcome = log.checkpoint(&payloads);
        self.next_checkpoint_at = log.total_bytes().saturating_add(self.checkpoint_bytes);
        match outcome {
            Ok(()) => self.empty_after = 0,
            // The log is unchanged; try again after it has grown (a full
            // disk is not retried on every record).
            Err(wal::WalError::DiskFull { .. }) => self.empty_after = self.next_checkpoint_at,
            Err(error) => {
                crate::error!(
                    "checkpointing the hints log failed: {error}; stopping so that a restart replays the log from disk"
                );
                std::process::exit(EXIT_WAL_FAILED);
            }
        }
    }

    fn refused(&mut self, _log: &mut wal::Wal, batch: Vec<LogJob>, error: &wal::WalError) {
        // Nothing of the batch was kept: those hints are not stored (their
        // coordinators log it; anti-entropy covers them).
        for job in batch {
            if let Some(durable) = job.durable {
                let _ = durable.try_send(Err(KvError::internal(error.to_string())));
            }
        }
    }

    fn name(&self) -> &'static str {
        "hints log"
    }
}

/// A hints-log record (`Stored` or `Removed`) about one pending hint.
fn hint_record_of(
    entry: fn(Hint) -> hint_record::Entry,
    target: ReplicaId,
    key: u8,
    hint: &PendingHint,
) -> HintRecord {
    HintRecord {
        entry: Some(entry(Hint {
            target,
            key: u32::from(key),
            version: Some(hint.version.clone()),
            stored_at_micros: hint.stored_at_micros,
        })),
    }
}

/// The pending hints as `stored` records: a checkpoint of the hints log.
fn stored_records(pending: &Pending) -> Vec<Vec<u8>> {
    pending
        .iter()
        .flat_map(|(&target, by_key)| {
            by_key.iter().map(move |(&key, hint)| {
                hint_record_of(hint_record::Entry::Stored, target, key, hint).encode_to_vec()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(target: ReplicaId, key: u32, ts: u64, stored: bool) -> HintRecord {
        let hint = Hint {
            target,
            key,
            version: Some(Versioned {
                value: format!("v{ts}"),
                timestamp_micros: ts,
                coordinator_id: 0,
                tombstone: false,
            }),
            stored_at_micros: 1,
        };
        HintRecord {
            entry: Some(if stored {
                hint_record::Entry::Stored(hint)
            } else {
                hint_record::Entry::Removed(hint)
            }),
        }
    }

    #[test]
    fn replay_keeps_the_newest_hint_not_yet_removed() {
        let mut pending = Pending::new();
        apply_record(&mut pending, hint(2, 10, 5, true));
        apply_record(&mut pending, hint(2, 10, 9, true));
        apply_record(&mut pending, hint(2, 10, 7, true));
        assert_eq!(pending[&2][&10].version.timestamp_micros, 9);
        // Removing an older version leaves the newer one pending.
        apply_record(&mut pending, hint(2, 10, 5, false));
        assert_eq!(pending[&2].len(), 1);
        apply_record(&mut pending, hint(2, 10, 9, false));
        assert!(pending.is_empty());
        apply_record(&mut pending, hint(1, 300, 9, true));
        assert!(pending.is_empty(), "a key beyond 255 is ignored");
    }
}
