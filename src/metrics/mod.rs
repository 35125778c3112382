//! Operator metrics: the counters one replica keeps about itself since it
//! started, for `ringkv status --metrics` (a `MetricsRequest` in kv.proto).
//!
//! One `Metrics` per replica process, shared through an `Arc` by the
//! parts that count:
//! - the coordinator: client gets, puts and deletes by operation and level,
//!   the errors it answered them with, and their latency (`Request`), and
//!   the writes it stamped above a newer version a replica held;
//! - the WAL thread (`storage/durable.rs`): group commits, records, checkpoints;
//! - the hints (`cluster/hints/`): hints stored, delivered and dropped.
//!
//! Everything here is a relaxed atomic counter or an `AtomicHistogram`, so
//! counting costs the hot path a few atomic increments and never a lock.
//! Gauges that other modules already keep (hints pending, read repairs,
//! anti-entropy rounds) are read from them when the reply is built.

pub mod histogram;
pub mod prometheus;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::metrics::histogram::AtomicHistogram;
use crate::ops::process;
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::proto::{Consistency, ErrorCount, LatencySummary, MetricsReply, RequestCount};

/// Operations counted, in the order of `Metrics::requests`.
const OPS: [Op; 4] = [Op::Get, Op::Put, Op::Delete, Op::Cas];

/// Levels counted, in the order of `Metrics::requests`' inner arrays;
/// a missing or unknown level counts as `Unspecified`.
const LEVELS: [Consistency; 5] = [
    Consistency::Unspecified,
    Consistency::One,
    Consistency::Quorum,
    Consistency::All,
    Consistency::Serial,
];

/// Error kinds counted, in the order of `Metrics::errors`.
const ERROR_KINDS: [ErrorKind; 5] = [
    ErrorKind::Invalid,
    ErrorKind::Unavailable,
    ErrorKind::Timeout,
    ErrorKind::Internal,
    ErrorKind::Unauthenticated,
];

/// What a client asked for, in the words of its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Get,
    /// A write of a value.
    Put,
    /// A write of a tombstone.
    Delete,
    /// A compare-and-set.
    Cas,
}

impl Op {
    /// The word errors and metrics use: get, put or delete.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Cas => "cas",
        }
    }

    /// Whether it writes (a put, a delete or a cas).
    pub fn writes(self) -> bool {
        self != Op::Get
    }
}

/// The counters of one replica. Every method takes `&self` and is lock-free.
#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; LEVELS.len()]; OPS.len()],
    errors: [AtomicU64; ERROR_KINDS.len()],
    latency: [AtomicHistogram; OPS.len()],
    wal_batches: AtomicU64,
    wal_records: AtomicU64,
    wal_checkpoints: AtomicU64,
    hints_stored: AtomicU64,
    hints_delivered: AtomicU64,
    hints_dropped: AtomicU64,
    stale_write_retries: AtomicU64,
}

/// Counts read elsewhere (their owners keep them), added to the reply.
pub struct Gauges {
    /// This replica's id.
    pub replica_id: u32,
    /// Read-repair writes sent as a coordinator.
    pub repairs_sent: u64,
    /// Hints waiting for any peer.
    pub hints_pending: u64,
    /// Anti-entropy rounds completed.
    pub anti_entropy_rounds: u64,
    /// Versions anti-entropy sent or took.
    pub anti_entropy_fixes: u64,
}

/// One client request in progress, from its arrival at the coordinator:
/// `finish` records its outcome and latency. A request whose future is
/// dropped before it finishes (its connection closed) stays counted as a
/// request, with no outcome.
#[must_use = "finish the request to record its outcome"]
pub struct Request<'a> {
    metrics: &'a Metrics,
    op: Op,
    started: Instant,
}

impl Metrics {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a client request as it arrives, by operation and the level
    /// field as sent (`i32` from the wire: it may be missing or unknown).
    pub fn request(&self, op: Op, level: i32) -> Request<'_> {
        let level = Consistency::try_from(level).unwrap_or(Consistency::Unspecified);
        self.requests[op_index(op)][level_index(level)].fetch_add(1, Ordering::Relaxed);
        Request {
            metrics: self,
            op,
            started: Instant::now(),
        }
    }

    /// One WAL group commit (one write, one fdatasync) of `records` records.
    pub fn wal_batch(&self, records: usize) {
        self.wal_batches.fetch_add(1, Ordering::Relaxed);
        self.wal_records
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    /// One WAL checkpoint written.
    pub fn wal_checkpoint(&self) {
        self.wal_checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// One hint made durable.
    pub fn hint_stored(&self) {
        self.hints_stored.fetch_add(1, Ordering::Relaxed);
    }

    /// One hint delivered to its replica.
    pub fn hint_delivered(&self) {
        self.hints_delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// One hint given up on (expired, over the bound, or refused).
    pub fn hint_dropped(&self) {
        self.hints_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// One write stamped above a newer version than this replica's clock
    /// would have given it: a replica of the key held that version.
    pub fn stale_write_retry(&self) {
        self.stale_write_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Each operation's coordinator latencies so far, in microseconds.
    pub fn latencies(&self) -> Vec<(Op, histogram::Histogram)> {
        OPS.iter()
            .map(|&op| (op, self.latency[op_index(op)].snapshot()))
            .collect()
    }

    /// Everything counted so far, with the gauges kept elsewhere.
    pub fn reply(&self, gauges: Gauges) -> MetricsReply {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let requests = OPS
            .iter()
            .zip(&self.requests)
            .flat_map(|(op, by_level)| {
                LEVELS
                    .iter()
                    .zip(by_level)
                    .map(move |(level, count)| RequestCount {
                        operation: op.name().to_string(),
                        consistency: *level as i32,
                        count: load(count),
                    })
            })
            .collect();
        let errors = ERROR_KINDS
            .iter()
            .zip(&self.errors)
            .map(|(kind, count)| ErrorCount {
                kind: wire_kind(*kind) as i32,
                count: load(count),
            })
            .collect();
        let latency = |op: Op| summary(&self.latency[op_index(op)]);
        let cpu = process::cpu_time();
        MetricsReply {
            replica_id: gauges.replica_id,
            requests,
            errors,
            put_latency: Some(latency(Op::Put)),
            get_latency: Some(latency(Op::Get)),
            delete_latency: Some(latency(Op::Delete)),
            cas_latency: Some(latency(Op::Cas)),
            wal_batches: load(&self.wal_batches),
            wal_records: load(&self.wal_records),
            wal_checkpoints: load(&self.wal_checkpoints),
            repairs_sent: gauges.repairs_sent,
            hints_pending: gauges.hints_pending,
            hints_stored: load(&self.hints_stored),
            hints_delivered: load(&self.hints_delivered),
            hints_dropped: load(&self.hints_dropped),
            anti_entropy_rounds: gauges.anti_entropy_rounds,
            anti_entropy_fixes: gauges.anti_entropy_fixes,
            stale_write_retries: load(&self.stale_write_retries),
            cpu_user_us: cpu.user_us,
            cpu_system_us: cpu.system_us,
        }
    }
}

impl Request<'_> {
    /// Records the request's outcome: its error kind if it failed, and its
    /// latency unless it was refused as INVALID (which did no work and
    /// would only pull the percentiles down). Returns the outcome as is.
    pub fn finish<T>(self, outcome: Result<T, KvError>) -> Result<T, KvError> {
        let kind = outcome.as_ref().err().map(|error| error.kind);
        if let Some(kind) = kind {
            self.metrics.errors[error_index(kind)].fetch_add(1, Ordering::Relaxed);
        }
        if kind != Some(ErrorKind::Invalid) {
            let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.metrics.latency[op_index(self.op)].record(micros);
        }
        outcome
    }
}

/// The percentiles the bench reports, of one histogram.
fn summary(histogram: &AtomicHistogram) -> LatencySummary {
    let histogram = histogram.snapshot();
    LatencySummary {
        count: histogram.count(),
        p50_us: histogram.percentile(0.5),
        p90_us: histogram.percentile(0.9),
        p95_us: histogram.percentile(0.95),
        p99_us: histogram.percentile(0.99),
        p999_us: histogram.percentile(0.999),
        max_us: histogram.max(),
        mean_us: histogram.sum().checked_div(histogram.count()).unwrap_or(0),
    }
}

fn op_index(op: Op) -> usize {
    match op {
        Op::Get => 0,
        Op::Put => 1,
        Op::Delete => 2,
        Op::Cas => 3,
    }
}

fn level_index(level: Consistency) -> usize {
    match level {
        Consistency::Unspecified => 0,
        Consistency::One => 1,
        Consistency::Quorum => 2,
        Consistency::All => 3,
        Consistency::Serial => 4,
    }
}

fn wire_kind(kind: ErrorKind) -> crate::protocol::proto::ErrorKind {
    use crate::protocol::proto::ErrorKind as Wire;
    match kind {
        ErrorKind::Invalid => Wire::Invalid,
        ErrorKind::Unavailable => Wire::Unavailable,
        ErrorKind::Timeout => Wire::Timeout,
        ErrorKind::Internal => Wire::Internal,
        ErrorKind::Unauthenticated => Wire::Unauthenticated,
    }
}

fn error_index(kind: ErrorKind) -> usize {
    match kind {
        ErrorKind::Invalid => 0,
        ErrorKind::Unavailable => 1,
        ErrorKind::Timeout => 2,
        ErrorKind::Internal => 3,
        ErrorKind::Unauthenticated => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            replica_id: 2,
            repairs_sent: 0,
            hints_pending: 0,
            anti_entropy_rounds: 0,
            anti_entropy_fixes: 0,
        }
    }

    fn count(reply: &MetricsReply, op: &str, level: Consistency) -> u64 {
        reply
            .requests
            .iter()
            .find(|r| r.operation == op && r.consistency == level as i32)
            .map_or(0, |r| r.count)
    }

    #[test]
    fn requests_count_by_op_and_level_and_errors_by_kind() {
        let metrics = Metrics::new();
        let ok: Result<(), KvError> = Ok(());
        metrics
            .request(Op::Put, Consistency::Quorum as i32)
            .finish(ok.clone())
            .ok();
        metrics
            .request(Op::Put, Consistency::Quorum as i32)
            .finish(ok.clone())
            .ok();
        metrics
            .request(Op::Get, Consistency::One as i32)
            .finish(ok)
            .ok();
        metrics
            .request(Op::Get, 99)
            .finish::<()>(Err(KvError::invalid("bad level")))
            .ok();
        metrics
            .request(Op::Delete, Consistency::All as i32)
            .finish::<()>(Err(KvError::timeout("slow")))
            .ok();
        metrics.wal_batch(3);
        metrics.wal_batch(1);
        let reply = metrics.reply(gauges());
        assert_eq!(reply.replica_id, 2);
        assert_eq!(
            reply.requests.len(),
            4 * 5,
            "every operation at every level"
        );
        assert_eq!(count(&reply, "put", Consistency::Quorum), 2);
        assert_eq!(count(&reply, "get", Consistency::One), 1);
        assert_eq!(count(&reply, "get", Consistency::Unspecified), 1);
        assert_eq!(count(&reply, "delete", Consistency::All), 1);
        let errors: Vec<(i32, u64)> = reply.errors.iter().map(|e| (e.kind, e.count)).collect();
        assert!(errors.contains(&(crate::protocol::proto::ErrorKind::Invalid as i32, 1)));
        assert!(errors.contains(&(crate::protocol::proto::ErrorKind::Timeout as i32, 1)));
        assert!(errors.contains(&(crate::protocol::proto::ErrorKind::Internal as i32, 0)));
        // The INVALID get is not timed; the TIMEOUT delete is.
        let latency = |summary: Option<LatencySummary>| summary.map_or(0, |s| s.count);
        assert_eq!(latency(reply.put_latency), 2);
        assert_eq!(latency(reply.get_latency), 1);
        assert_eq!(latency(reply.delete_latency), 1);
        assert_eq!((reply.wal_batches, reply.wal_records), (2, 4));
    }
}
