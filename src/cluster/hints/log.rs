//! The hints' own write-ahead log (`DIR/hints/`): a `Stored` record when a
//! hint is kept, a `Removed` one when it is delivered or dropped, replayed
//! into the pending set at start. Its thread is the one that adds stored
//! hints to the pending set, once they are durable, and keeps the log
//! small: emptied whenever nothing is pending, otherwise rewritten as the
//! pending set (a checkpoint) each time it grows by the threshold.

use std::path::Path;
use std::sync::{Arc, Mutex};

use prost::Message;

use super::{Pending, PendingHint};
use crate::ops::exit::EXIT_WAL_FAILED;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{hint_record, Hint, HintRecord};
use crate::storage::group_commit::{self, Committer};

/// Records that may wait for the hints log thread.
const LOG_QUEUE: usize = 1024;

/// The most record bytes one group commit of the hints log writes.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A record for the hints log thread, and whom to tell once it is durable.
pub(super) struct LogJob {
    pub(super) record: HintRecord,
    pub(super) durable: Option<rt::Sender<Result<(), KvError>>>,
}

/// Opens (or creates) `DIR/hints`, replays it into a pending set and
/// starts the thread that writes to it. Blocking. Returns the pending set,
/// shared with that thread, and the queue of records to it.
pub(super) fn open_log(
    data_dir: &Path,
    wal_options: wal::Options,
    checkpoint_bytes: u64,
) -> Result<(Arc<Mutex<Pending>>, rt::Sender<LogJob>), String> {
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
    Ok((pending, to_log))
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
pub(super) fn hint_record_of(
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
    use crate::protocol::proto::Versioned;

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
