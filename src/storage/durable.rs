//! This replica's own copy of its keys: the write-ahead log and the memory
//! it rebuilds.
//!
//! The one rule this module exists to keep: memory changes only after the
//! WAL says durable. A write is encoded and handed to the WAL thread, which
//! appends and fdatasyncs it, then merges it into the store, and only then
//! tells the writer, who acknowledges it. The WAL thread does the merge so
//! that a writer that stops waiting (its request timed out) can never leave
//! a durable write out of memory.
//!
//! Group commit: the WAL thread takes every write that is waiting when it
//! finishes a sync and makes them durable together, with one write and one
//! fdatasync, so throughput grows with the number of concurrent writers
//! instead of being capped at one write per disk sync. Disk work happens on
//! that thread only, never on the async executor's threads.
//!
//! Checkpoints keep restarts flat: once the log has grown by
//! `checkpoint_bytes` since its last checkpoint (or since start), the WAL
//! thread writes the whole store (at most 256 versions, tombstones
//! included) as a checkpoint at the start of a fresh segment, and the log
//! deletes the segments behind it once the checkpoint is durable. So the
//! log holds at most the store plus `checkpoint_bytes` (plus one batch),
//! and a store larger than the threshold is not rewritten after every
//! batch. Between batches the store holds exactly what the log replays to
//! (only this thread changes it), so the checkpoint is a faithful copy.
//! Writes queue while it is written: one segment switch and one write of
//! the store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prost::Message;

use crate::metrics::Metrics;
use crate::ops::exit::EXIT_WAL_FAILED;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::proto::{log_record, LogRecord, ReplicaWrite, Versioned};
use crate::storage::group_commit::{self, Committer};
use crate::storage::paxos::{AcceptorState, BallotStamp, PaxosStore};
use crate::storage::store::Store;

/// The most bytes of records one group commit writes before syncing.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Writes that may wait for the WAL thread before writers wait in turn.
const WAL_QUEUE: usize = 4096;

/// Value bytes that may wait for the WAL thread before writers wait in
/// turn: with a slow disk, the queue holds at most this much (plus one
/// value), however many coordinators send writes.
const WAL_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// How often a writer waiting for room in the WAL queue looks again.
const QUEUE_RECHECK: std::time::Duration = std::time::Duration::from_millis(1);

/// Value bytes queued for the WAL thread, counted from when a writer takes
/// room until its write is finished, durable or not.
#[derive(Default)]
struct QueuedBytes(AtomicUsize);

/// One write's room in the queue; given back when dropped.
struct QueueRoom {
    queued: Arc<QueuedBytes>,
    bytes: usize,
}

impl Drop for QueueRoom {
    fn drop(&mut self) {
        self.queued.0.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl QueuedBytes {
    /// Waits until `bytes` fit (or the queue is empty), then takes them.
    async fn room_for(self: &Arc<Self>, bytes: usize) -> QueueRoom {
        loop {
            let queued = self.0.load(Ordering::SeqCst);
            let fits = queued == 0 || queued.saturating_add(bytes) <= WAL_QUEUE_BYTES;
            if fits
                && self
                    .0
                    .compare_exchange(queued, queued + bytes, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return QueueRoom {
                    queued: self.clone(),
                    bytes,
                };
            }
            if !fits {
                rt::sleep(QUEUE_RECHECK).await;
            }
        }
    }
}

/// A change waiting for the WAL thread, and where to say it is durable. It
/// is encoded by the WAL thread, batch by batch, so that a queued write
/// holds its value once, not twice.
struct PendingWrite {
    key: u8,
    change: Change,
    /// Its value's room in the queue, held until the write is finished.
    _room: QueueRoom,
    /// Told once the change is durable and applied, or why it is not.
    durable: rt::Sender<Result<(), KvError>>,
}

/// What a log record changes: a key's version, or its Paxos acceptor state.
enum Change {
    Version(Versioned),
    Paxos(AcceptorState),
}

impl Change {
    /// Value bytes it holds, for the queue's bound and the batch's.
    fn value_bytes(&self) -> usize {
        match self {
            Change::Version(version) => version.value.len(),
            Change::Paxos(state) => state.accepted.as_ref().map_or(0, |(_, v)| v.value.len()),
        }
    }
}

/// What a Paxos prepare found, and whether it promised.
pub struct Promise {
    /// Whether the ballot was promised.
    pub promised: bool,
    /// The highest ballot promised now (the asker's, if it was).
    pub promised_ballot: Option<BallotStamp>,
    /// The accepted proposal with the highest ballot, and that ballot.
    pub accepted: Option<(BallotStamp, Versioned)>,
    /// The key's current version.
    pub current: Option<Versioned>,
}

/// The replica's durable store: WAL on disk, newest versions in memory.
pub struct LocalReplica {
    store: Arc<Store>,
    paxos: Arc<PaxosStore>,
    /// One Paxos step per key at a time: a promise or an acceptance is
    /// decided and made durable before the next step on the key looks.
    paxos_steps: Vec<rt::AsyncMutex<()>>,
    to_wal_thread: rt::Sender<PendingWrite>,
    wal_bytes: Arc<AtomicU64>,
    queued: Arc<QueuedBytes>,
    disk_recoveries: rt::Receiver<()>,
}

/// What opening the data directory found, for the start-up log line.
pub struct OpenReport {
    /// Where the WAL lives.
    pub wal_dir: PathBuf,
    /// What replay did.
    pub replay: wal::ReplayReport,
    /// Keys in memory after replay.
    pub keys_held: usize,
    /// The greatest write timestamp replayed: this replica's coordinator
    /// clock starts past it, so a restart never reissues a timestamp.
    pub newest_timestamp: u64,
}

impl LocalReplica {
    /// Opens (or creates) the data directory, replays the WAL into memory
    /// and starts the WAL thread, which counts its batches in `metrics`.
    /// Blocking: call it before serving.
    pub fn open(
        data_dir: &Path,
        options: wal::Options,
        checkpoint_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Result<(LocalReplica, OpenReport), String> {
        wal::create_durably(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let wal_dir = data_dir.join("wal");
        let store = Arc::new(Store::new());
        let paxos = Arc::new(PaxosStore::default());
        let mut newest_timestamp = 0;
        let (log, replay) = wal::Wal::open(&wal_dir, options, |payload| {
            match decode_record(payload)? {
                Record::Write(key, version) => {
                    newest_timestamp = newest_timestamp.max(version.timestamp_micros);
                    store.merge(key, version);
                }
                Record::Paxos(key, state) => paxos.merge(key, state),
            }
            Ok(())
        })
        .map_err(|e| match e {
            wal::WalError::Corrupt { .. } => format!(
                "{e}. The replica will not start on a corrupt log; to skip the damaged record \
                 and lose its data, start it with --skip-corrupt-wal"
            ),
            other => other.to_string(),
        })?;
        let wal_bytes = Arc::new(AtomicU64::new(log.total_bytes()));
        let (to_wal_thread, requests) = rt::bounded(WAL_QUEUE);
        let (room_again, disk_recoveries) = rt::bounded(1);
        let newest_timestamp = newest_timestamp.max(paxos.newest_micros());
        let committer = WalCommitter {
            store: store.clone(),
            paxos: paxos.clone(),
            wal_bytes: wal_bytes.clone(),
            checkpoint_bytes,
            next_checkpoint_at: checkpoint_bytes,
            metrics,
            disk_full: false,
            room_again,
        };
        std::thread::Builder::new()
            .name("wal".to_string())
            .spawn(move || group_commit::run(log, requests, committer, MAX_BATCH_BYTES))
            .map_err(|e| format!("cannot start the WAL thread: {e}"))?;
        let report = OpenReport {
            wal_dir,
            replay,
            keys_held: store.keys_held(),
            newest_timestamp,
        };
        Ok((
            LocalReplica {
                store,
                paxos,
                paxos_steps: (0..=u8::MAX).map(|_| rt::AsyncMutex::new(())).collect(),
                to_wal_thread,
                queued: Arc::new(QueuedBytes::default()),
                wal_bytes,
                disk_recoveries,
            },
            report,
        ))
    }

    /// Makes the write durable and merges it into memory; returns once both
    /// are done. A version no newer than the one held is acknowledged
    /// without logging: the newer one is already durable and would win on
    /// replay anyway. Dropping the future before it returns is safe: a
    /// write that reached the WAL thread is applied all the same.
    pub async fn write(&self, key: u8, version: Versioned) -> Result<(), KvError> {
        if self.store.supersedes(key, &version) {
            return Ok(());
        }
        self.log_change(key, Change::Version(version)).await
    }

    /// Hands a change to the WAL thread and waits until it is durable and
    /// applied.
    async fn log_change(&self, key: u8, change: Change) -> Result<(), KvError> {
        let room = self.queued.room_for(change.value_bytes()).await;
        let (durable, is_durable) = rt::bounded(1);
        let pending = PendingWrite {
            key,
            change,
            _room: room,
            durable,
        };
        let stopped = || KvError::internal("the write-ahead log thread has stopped");
        self.to_wal_thread
            .send(pending)
            .await
            .map_err(|_| stopped())?;
        is_durable.recv().await.map_err(|_| stopped())?
    }

    /// A Paxos prepare: promises `ballot` for `key` if it is higher than
    /// every ballot promised before, durably before it answers, and says
    /// what it has accepted and what it holds.
    pub async fn prepare(&self, key: u8, ballot: BallotStamp) -> Result<Promise, KvError> {
        let _step = self.paxos_steps[usize::from(key)].lock().await;
        let state = self.paxos.get(key);
        let promised = state.promised.is_none_or(|held| ballot > held);
        if promised {
            let change = AcceptorState {
                promised: Some(ballot),
                accepted: None,
            };
            self.log_change(key, Change::Paxos(change)).await?;
        }
        Ok(Promise {
            promised,
            promised_ballot: if promised {
                Some(ballot)
            } else {
                state.promised
            },
            accepted: state.accepted,
            current: self.read(key),
        })
    }

    /// A Paxos proposal: accepts `proposal` under `ballot` for `key` unless
    /// a higher ballot was promised, durably before it answers. Returns
    /// whether it accepted, and the highest ballot promised now.
    pub async fn propose(
        &self,
        key: u8,
        ballot: BallotStamp,
        proposal: Versioned,
    ) -> Result<(bool, Option<BallotStamp>), KvError> {
        let _step = self.paxos_steps[usize::from(key)].lock().await;
        let state = self.paxos.get(key);
        if state.promised.is_some_and(|held| held > ballot) {
            return Ok((false, state.promised));
        }
        let change = AcceptorState {
            promised: Some(ballot),
            accepted: Some((ballot, proposal)),
        };
        self.log_change(key, Change::Paxos(change)).await?;
        Ok((true, Some(ballot)))
    }

    /// The Paxos acceptor state of `key`, for `dump`-like inspection and tests.
    pub fn acceptor_state(&self, key: u8) -> AcceptorState {
        self.paxos.get(key)
    }

    /// Told each time the disk has room again after it was full: writes
    /// coordinated meanwhile may have left this replica without a copy and
    /// with no hint anywhere, so the replica runs an anti-entropy round.
    pub fn disk_recoveries(&self) -> rt::Receiver<()> {
        self.disk_recoveries.clone()
    }

    /// The newest version held for the key.
    pub fn read(&self, key: u8) -> Option<Versioned> {
        self.store.get(key)
    }

    /// The version held for the key if it is newer than `version`: a
    /// client write of `version` is then stale here.
    pub fn newer_than(&self, key: u8, version: &Versioned) -> Option<Versioned> {
        self.read(key).filter(|held| held.lww_cmp(version).is_gt())
    }

    /// Keys with a value, for status.
    pub fn keys_held(&self) -> usize {
        self.store.keys_held()
    }

    /// Bytes in the WAL's segments, for status.
    pub fn wal_bytes(&self) -> u64 {
        self.wal_bytes.load(Ordering::Relaxed)
    }
}

/// Encodes a write as the payload of one WAL record.
pub fn encode_record(key: u8, version: &Versioned) -> Vec<u8> {
    LogRecord {
        entry: Some(log_record::Entry::Write(ReplicaWrite {
            key: Some(u32::from(key)),
            version: Some(version.clone()),
            client_write: false,
        })),
    }
    .encode_to_vec()
}

/// Encodes a key's Paxos acceptor state as the payload of one WAL record.
fn encode_paxos_record(key: u8, state: &AcceptorState) -> Vec<u8> {
    LogRecord {
        entry: Some(log_record::Entry::Paxos(state.to_record(key))),
    }
    .encode_to_vec()
}

/// What one WAL record says.
pub enum Record {
    /// A key's version, merged by last-write-wins.
    Write(u8, Versioned),
    /// A key's Paxos promise or acceptance, merged by ballot.
    Paxos(u8, AcceptorState),
}

/// Decodes a WAL record payload.
pub fn decode_record(payload: &[u8]) -> Result<Record, String> {
    let record = LogRecord::decode(payload).map_err(|e| format!("undecodable record: {e}"))?;
    match record.entry {
        Some(log_record::Entry::Write(ReplicaWrite {
            key: Some(key),
            version: Some(version),
            ..
        })) => {
            let key = u8::try_from(key).map_err(|_| format!("record for key {key}, beyond 255"))?;
            Ok(Record::Write(key, version))
        }
        Some(log_record::Entry::Write(_)) => Err("write record without key or version".into()),
        Some(log_record::Entry::Paxos(state)) => {
            let (key, state) = AcceptorState::from_record(state)?;
            Ok(Record::Paxos(key, state))
        }
        None => Err("record of an unknown kind (written by a newer ringkv?)".into()),
    }
}

/// The WAL thread's side of each group commit: merge durable writes into
/// memory, tell their writers, and checkpoint once the log has grown by
/// the threshold.
struct WalCommitter {
    store: Arc<Store>,
    paxos: Arc<PaxosStore>,
    wal_bytes: Arc<AtomicU64>,
    checkpoint_bytes: u64,
    next_checkpoint_at: u64,
    metrics: Arc<Metrics>,
    /// Whether the last batch was refused for a full disk.
    disk_full: bool,
    /// Told when the disk has room again after it was full.
    room_again: rt::Sender<()>,
}

impl Committer for WalCommitter {
    type Job = PendingWrite;

    fn encode(&self, write: &PendingWrite) -> Vec<u8> {
        match &write.change {
            Change::Version(version) => encode_record(write.key, version),
            Change::Paxos(state) => encode_paxos_record(write.key, state),
        }
    }

    fn size(&self, write: &PendingWrite) -> usize {
        write.change.value_bytes()
    }

    fn committed(&mut self, log: &mut wal::Wal, batch: Vec<PendingWrite>) {
        if self.disk_full {
            crate::info!("the disk has room again: writes are durable again; running an anti-entropy round for what was missed meanwhile");
            self.disk_full = false;
            let _ = self.room_again.try_send(());
        }
        self.wal_bytes.store(log.total_bytes(), Ordering::Relaxed);
        self.metrics.wal_batch(batch.len());
        for write in batch {
            match write.change {
                Change::Version(version) => {
                    self.store.merge(write.key, version);
                }
                Change::Paxos(state) => self.paxos.merge(write.key, state),
            }
            // The waiter may have given up (its request timed out); the write
            // is durable and applied all the same.
            let _ = write.durable.try_send(Ok(()));
        }
        if log.total_bytes() > self.next_checkpoint_at {
            if checkpoint(log, &self.store, &self.paxos) {
                self.metrics.wal_checkpoint();
            } else {
                crate::warn!(
                    "the next checkpoint is tried once the log has grown by another {} bytes",
                    self.checkpoint_bytes
                );
            }
            // Done, or no room for it now: either way the next one comes
            // after the log has grown by another threshold.
            self.next_checkpoint_at = log.total_bytes().saturating_add(self.checkpoint_bytes);
            self.wal_bytes.store(log.total_bytes(), Ordering::Relaxed);
        }
    }

    fn refused(&mut self, log: &mut wal::Wal, batch: Vec<PendingWrite>, error: &wal::WalError) {
        // Nothing of the batch was kept: refuse each write, apply none, and
        // go on; the next batch tries again.
        if !self.disk_full {
            crate::error!(
                "{error}; puts through this replica fail until space is freed, gets go on"
            );
            self.disk_full = true;
            // The log may hold much that a checkpoint would drop.
            if checkpoint(log, &self.store, &self.paxos) {
                self.metrics.wal_checkpoint();
                self.wal_bytes.store(log.total_bytes(), Ordering::Relaxed);
                crate::info!(
                    "a checkpoint while the disk was full left the log at {} bytes",
                    log.total_bytes()
                );
            }
        }
        for write in batch {
            let _ = write.durable.try_send(Err(KvError::internal(format!(
                "disk full on replica: {error}"
            ))));
        }
    }

    fn name(&self) -> &'static str {
        "write-ahead log"
    }
}

/// Writes the whole store as a checkpoint; the log then drops every
/// segment behind it. Returns false if the disk had no room (the log is
/// unchanged); any other failure stops the process, as a failed append does.
fn checkpoint(log: &mut wal::Wal, store: &Store, paxos: &PaxosStore) -> bool {
    let encoded: Vec<Vec<u8>> = store
        .all()
        .iter()
        .map(|(key, version)| encode_record(*key, version))
        .chain(
            paxos
                .all()
                .iter()
                .map(|(key, state)| encode_paxos_record(*key, state)),
        )
        .collect();
    let payloads: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    match log.checkpoint(&payloads) {
        Ok(()) => true,
        Err(error @ wal::WalError::DiskFull { .. }) => {
            crate::warn!("write-ahead log checkpoint postponed: {error}");
            false
        }
        Err(error) => {
            crate::error!(
                "write-ahead log checkpoint of {} keys failed: {error}; stopping so that a restart replays the log from disk",
                payloads.len()
            );
            std::process::exit(EXIT_WAL_FAILED);
        }
    }
}
