//! Coordinating client requests: any replica can take any get, put or
//! delete and carry it out on the key's replicas at the level the client
//! asked for.
//!
//! Each request keeps all of its state in its own future: its targets, its
//! answer channel, its deadline. Nothing is shared between requests but the
//! ring, the peer links, the hints and this replica's store, so concurrent
//! requests cannot see each other's answers.
//!
//! UNAVAILABLE is decided before anything is sent, from the up/down view: in
//! that case nothing is written anywhere. Otherwise a write goes to all of
//! the key's replicas at once (one that is down fails at once) and is
//! answered as soon as the level's number of replicas have acknowledged it.
//! A read asks only as many replicas as its level needs, as `read_plan`
//! decides (its own copy first, spares on failure or after the speculation
//! delay), and only the first of them sends the value: the others send a
//! digest, and a value is fetched only when a digest shows it is newer.
//!
//! Reads repair. When the answers that decide a QUORUM or ALL read
//! disagree, the coordinator writes the newest version to the stale ones
//! among them and answers only once the level's count of replicas hold it:
//! no later read at that level, through any coordinator, can return
//! anything older (blocking read repair, as Cassandra does since 4.0).
//! The share of reads that ask every replica (`--read-repair-chance`) also
//! repairs late answers in the background, never delaying the client. A
//! repair is an ordinary timestamped write, so it can never overwrite
//! something newer.
//!
//! Writes leave hints. When a replica does not acknowledge a write (down,
//! refused, timed out), the coordinator stores a hint for it before it
//! reports the miss, and it answers the client only after the misses of
//! replicas it knew were down are reported, so those hints are durable in
//! `DIR/hints` before the client hears back. Hints never count toward the
//! level.
//!
//! Writes are never shadowed by earlier ones, whatever the clocks' skew
//! (multi-writer ABD). Before stamping a write, the coordinator asks a
//! quorum of the key's replicas for the stamp they hold and stamps the
//! write above the newest; any two quorums intersect, so the write beats
//! every write acknowledged, and every version a QUORUM get returned,
//! before it started. It is sent once: a replica that holds something
//! newer by then answers "stale", which counts as acknowledging (that
//! version comes from a write still in flight, ordered after this one). A
//! write is never stamped twice, since its first stamp may already have
//! been read. A coordinator whose clock the clock fence distrusts
//! (`clock_fence.rs`) takes no writes at all.
//!
//! The files, by what they own: `link` (the seam: the `ReplicaLink` trait
//! the rules below are written against, and `ClusterLink`, the real one over
//! the peer connections, this replica's store and the hints log),
//! `fan_out` (asking replicas at once, spares, speculation, collecting
//! outcomes), `write` (put and delete: the newest stamp a quorum holds,
//! stamping above it, "stale" answers, the error a shortfall ends in), `read` (get: digests, fetching
//! past a newer digest, the newest of what was heard, `where`),
//! `read_repair` (blocking and background read repair), `read_plan`
//! (which replicas a get asks). This file keeps the `Coordinator`, its
//! parts, and the availability check both reads and writes make first.

mod cas;
mod fan_out;
pub mod link;
mod read;
pub mod read_plan;
mod read_repair;
#[cfg(test)]
mod tests;
mod write;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::hints::Hints;
use crate::cluster::peers::Peers;
use crate::cluster::repair_mode::RepairMode;
use crate::cluster::ring::Ring;
use crate::coordinator::link::{ClusterLink, ReplicaLink};
use crate::coordinator::read_plan::ReadPolicy;
use crate::metrics::{Metrics, Op};
use crate::ops::budget::MemoryBudget;
use crate::protocol::error::KvError;
use crate::protocol::proto::{Consistency, ReplicaId};
use crate::storage::clock::WriteClock;
use crate::storage::durable::LocalReplica;

/// Limits a coordinator enforces on every request.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a put waits for its acknowledgements.
    pub write_timeout: Duration,
    /// How long a get (or an inspect) waits for its answers.
    pub read_timeout: Duration,
    /// The largest value accepted, in bytes.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            write_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
            max_value_bytes: 1024 * 1024,
        }
    }
}

/// How long a request that would be UNAVAILABLE waits for one fresh attempt
/// to reach the replicas believed down. A replica that is really down
/// refuses the connection at once, so this is rarely waited in full.
const REFRESH_WAIT: Duration = Duration::from_millis(100);

/// Counters `status` reports.
#[derive(Default)]
pub struct CoordinatorStats {
    /// Read-repair writes sent, blocking and background.
    pub repairs_sent: AtomicU64,
}

/// Carries out client requests on the ring, reaching the replicas through
/// `L` (the peer connections, by default).
pub struct Coordinator<L: ReplicaLink = ClusterLink> {
    self_id: ReplicaId,
    ring: Arc<Ring>,
    link: Arc<L>,
    clock: Arc<WriteClock>,
    mode: RepairMode,
    read_policy: ReadPolicy,
    /// Numbers the reads of each key, for the rotation of the replicas
    /// they ask and the share that asks every replica: per key, so that a
    /// workload that cycles through keys cannot leave one key always on
    /// the same turn.
    read_turns: Vec<AtomicU64>,
    limits: Limits,
    metrics: Arc<Metrics>,
    budget: Arc<MemoryBudget>,
    /// What this coordinator has done, for `status`.
    pub stats: CoordinatorStats,
}

/// Everything a coordinator works with.
pub struct CoordinatorParts {
    /// This replica's id.
    pub self_id: ReplicaId,
    /// The ring.
    pub ring: Arc<Ring>,
    /// This replica's own store.
    pub local: Arc<LocalReplica>,
    /// Links to the other replicas.
    pub peers: Arc<Peers>,
    /// The write clock.
    pub clock: Arc<WriteClock>,
    /// Where missed writes are kept.
    pub hints: Arc<Hints>,
    /// Which convergence mechanisms run.
    pub mode: RepairMode,
    /// Which replicas a read asks.
    pub read_policy: ReadPolicy,
    /// Timeouts and the value limit.
    pub limits: Limits,
    /// Where requests, errors and latencies are counted.
    pub metrics: Arc<Metrics>,
    /// The replica's memory budget: each write sent to a replica holds a
    /// copy of its value until it ends, even after the client's answer.
    pub budget: Arc<MemoryBudget>,
}

impl Coordinator<ClusterLink> {
    /// A coordinator for replica `parts.self_id`.
    pub fn new(parts: CoordinatorParts) -> Self {
        let link = ClusterLink::new(parts.self_id, parts.local, parts.peers, parts.hints);
        Coordinator {
            self_id: parts.self_id,
            ring: parts.ring,
            link: Arc::new(link),
            clock: parts.clock,
            mode: parts.mode,
            read_policy: parts.read_policy,
            read_turns: no_reads_yet(),
            limits: parts.limits,
            metrics: parts.metrics,
            budget: parts.budget,
            stats: CoordinatorStats::default(),
        }
    }
}

impl<L: ReplicaLink> Coordinator<L> {
    /// Whether a read may count on replica `id`'s copy of `key`, by what
    /// it last said of itself: a replica that lost its data serves none
    /// until it has rebuilt the key, and one never heard from serves none.
    fn can_read_from(&self, id: ReplicaId, key: u8) -> bool {
        self.link.may_serve(id, key)
    }

    /// How many answers the level needs from the key's replicas, or
    /// UNAVAILABLE if fewer than that are believed up. Decided from the
    /// up/down view alone, before anything is sent.
    async fn check_available(&self, key: u8, level: Consistency, op: Op) -> Result<usize, KvError> {
        let replicas = self.ring.replicas_for(key);
        let need = level.required_acks(replicas.len());
        if !op.writes() {
            let rebuilding: Vec<ReplicaId> = replicas
                .iter()
                .copied()
                .filter(|&id| self.link.is_up(id) && !self.can_read_from(id, key))
                .collect();
            if replicas.len() - rebuilding.len() < need {
                return Err(KvError::unavailable(format!(
                    "{level} get of key {key} needs {need} of its replicas {}, but {} rebuilding after losing its data and may not serve it yet (nothing was read)",
                    list(replicas),
                    if rebuilding.len() == 1 { format!("{} is", rebuilding[0]) } else { format!("{} are", list(&rebuilding)) },
                )));
            }
        }
        let count_up = || replicas.iter().filter(|&&id| self.link.is_up(id)).count();
        if count_up() < need {
            // Not from a stale view: try the missing replicas once first.
            let down: Vec<ReplicaId> = replicas
                .iter()
                .copied()
                .filter(|&id| !self.link.is_up(id))
                .collect();
            self.link.refresh(&down, REFRESH_WAIT).await;
        }
        let usable =
            |id: ReplicaId| self.link.is_up(id) && (op.writes() || self.can_read_from(id, key));
        let (up, down): (Vec<ReplicaId>, Vec<ReplicaId>) =
            replicas.iter().partition(|&&id| usable(id));
        if up.len() < need {
            return Err(KvError::unavailable(format!(
                "{level} {} of key {key} needs {need} of its replicas {} but only {} up ({}); down: {}",
                op.name(),
                list(replicas),
                if up.len() == 1 { "1 is".to_string() } else { format!("{} are", up.len()) },
                list(&up),
                list(&down),
            )));
        }
        Ok(need)
    }
}

/// A read counter for every key.
fn no_reads_yet() -> Vec<AtomicU64> {
    (0..=u8::MAX).map(|_| AtomicU64::new(0)).collect()
}

/// "0,2", or "none".
fn list(ids: &[ReplicaId]) -> String {
    if ids.is_empty() {
        return "none".to_string();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
