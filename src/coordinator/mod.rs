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
//! Writes are never shadowed by earlier ones, whatever the clocks' skew. A
//! replica that holds a version newer than a client write answers "stale"
//! instead of acknowledging it (this replica's own copy too); the
//! coordinator then stamps the write again above every stale stamp it saw
//! and sends it again to all the key's replicas, within the request's
//! timeout, and only acknowledgements of the final stamp count. Each
//! acknowledging replica held nothing newer, and any two quorums
//! intersect, so an acknowledged QUORUM put beats every put acknowledged
//! before it started. A coordinator whose clock the clock fence distrusts
//! (`clock_fence.rs`) takes no writes at all.

pub mod read_plan;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::hints::Hints;
use crate::cluster::peers::Peers;
use crate::cluster::repair_mode::RepairMode;
use crate::cluster::ring::Ring;
use crate::coordinator::read_plan::ReadPolicy;
use crate::metrics::{Metrics, Op};
use crate::ops::budget::MemoryBudget;
use crate::ops::rt;
use crate::protocol::checks::{checked_key, checked_value};
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::mux::CallError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{
    replica_holding, Body, Consistency, DeleteReply, DeleteRequest, GetReply, GetRequest, Holding,
    InspectReply, InspectRequest, PutReply, PutRequest, ReplicaHolding, ReplicaRead, ReplicaWrite,
    Versioned,
};
use crate::storage::clock::{max_offset_micros, wall_micros, ClockRefusal, WriteClock};
use crate::storage::clock_fence::check_stamp;
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

/// How long a put waits for the clock's lease to be renewed.
const LEASE_WAIT: Duration = Duration::from_secs(1);

/// Whether a write carries a client's put or delete, or copies a version
/// that already exists (a repair).
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteOf {
    /// A client's put or delete: a replica holding something newer answers
    /// "stale" rather than acknowledging it.
    Client,
    /// A read repair: the newest version seen, copied as it is.
    Repair,
}

/// What a coordinator asks of one replica of a key.
#[derive(Clone)]
enum ReplicaAsk {
    /// The version is shared by every target's ask: each copies it only
    /// to encode it (or to queue it for its own log).
    Write(u8, Arc<Versioned>, WriteOf),
    Read(u8),
    /// A digest read: the stamp of what the replica holds, not the value.
    Digest(u8),
}

/// What orders versions, without their values: (timestamp, coordinator).
type Stamp = (u64, ReplicaId);

fn stamp_of(version: &Versioned) -> Stamp {
    (version.timestamp_micros, version.coordinator_id)
}

/// What a read heard from one replica: its version, or only its stamp.
#[derive(Clone, Debug)]
enum Heard {
    Value(Option<Versioned>),
    Stamp(Option<Stamp>),
}

impl Heard {
    fn stamp(&self) -> Option<Stamp> {
        match self {
            Heard::Value(found) => found.as_ref().map(stamp_of),
            Heard::Stamp(stamp) => *stamp,
        }
    }

    /// Whether this replica holds something older than `newest` (holding
    /// nothing is older than any version). A stamp equal to the newest's
    /// is the same version.
    fn is_older_than(&self, newest: &Option<Versioned>) -> bool {
        match self {
            Heard::Value(held) => is_older(held, newest),
            Heard::Stamp(stamp) => match newest {
                None => false,
                Some(newest) => stamp.is_none_or(|stamp| stamp < stamp_of(newest)),
            },
        }
    }
}

/// What one replica did with one ask.
#[derive(Clone, Debug)]
enum Outcome {
    /// It answered: the version it holds (reads) or nothing (writes).
    Answered(Option<Versioned>),
    /// It answered a digest read: the stamp of what it holds.
    Digest(Option<Stamp>),
    /// It holds a version newer than the client write it was sent (this
    /// stamp), so it did not acknowledge it.
    Stale(Stamp),
    /// It refused or failed with a typed error: a write did not land there.
    Failed(ErrorKind, String),
    /// No answer (down, disconnected, timed out): a write may or may not
    /// have landed there.
    NoAnswer(String),
}

impl Outcome {
    fn answered(&self) -> bool {
        matches!(self, Outcome::Answered(_) | Outcome::Digest(_))
    }
}

/// One ask sent to several replicas at once, and the outcomes so far.
/// Outcomes that arrive after the request was answered can still be
/// collected (background repair does).
struct FanOut {
    arriving: rt::Receiver<(ReplicaId, Outcome)>,
    outcomes: Vec<(ReplicaId, Outcome)>,
    waiting: Vec<ReplicaId>,
    deadline: Instant,
    /// Where the asks report; kept for the spares a read may add.
    report: rt::Sender<(ReplicaId, Outcome)>,
    /// Replicas not asked yet, and how to ask them (reads only).
    reserve: Option<Reserve>,
    /// Set once a write's stamp is replaced by a new one: the asks still
    /// in flight then store no hints, because the hint of a replica that
    /// missed must be the final stamp's version.
    superseded: Arc<AtomicBool>,
}

/// The spares of a read that asked only the replicas its level needs.
struct Reserve {
    coordinator: Arc<Coordinator>,
    key: u8,
    spares: Vec<ReplicaId>,
    /// The replica last asked for the value (the others send digests): if
    /// it fails, a spare is asked for the value in its place.
    value_from: Option<ReplicaId>,
    /// When every spare is asked if the answers are not all in.
    speculate_at: Instant,
}

impl FanOut {
    /// Replicas that answered, with what they answered.
    fn answers(&self) -> Vec<(ReplicaId, Heard)> {
        self.outcomes
            .iter()
            .filter_map(|(id, outcome)| match outcome {
                Outcome::Answered(version) => Some((*id, Heard::Value(version.clone()))),
                Outcome::Digest(stamp) => Some((*id, Heard::Stamp(*stamp))),
                _ => None,
            })
            .collect()
    }

    fn answered(&self) -> usize {
        self.outcomes.iter().filter(|(_, o)| o.answered()).count()
    }

    /// The newest stamp up to `horizon` that replicas answering "stale"
    /// hold, if any did.
    fn newest_stale(&self, horizon: u64) -> Option<Stamp> {
        self.outcomes
            .iter()
            .filter_map(|(_, outcome)| match outcome {
                Outcome::Stale(stamp) if stamp.0 <= horizon => Some(*stamp),
                _ => None,
            })
            .max()
    }

    /// Collects a write's outcomes until `need` replicas acknowledged it,
    /// one answered "stale" with a stamp up to `horizon`, every replica
    /// answered or failed, or the deadline passed.
    async fn gather_unless_stale(&mut self, need: usize, horizon: u64) {
        while !self.waiting.is_empty()
            && self.answered() < need
            && self.newest_stale(horizon).is_none()
        {
            if !self.receive_one().await {
                return;
            }
        }
    }

    /// Collects outcomes until `need` replicas answered (None: until every
    /// replica answered or failed) or the deadline passed. Once failures
    /// have made success impossible, it still collects what is in flight,
    /// so that the error can say which replicas did take a write.
    async fn gather(&mut self, need: Option<usize>) {
        while !self.waiting.is_empty() {
            if need.is_some_and(|need| self.answered() >= need) || !self.receive_one().await {
                return;
            }
        }
    }

    /// Collects outcomes until none of `these` is still waiting (or the
    /// deadline passed).
    async fn gather_until_reported(&mut self, these: &[ReplicaId]) {
        while self.waiting.iter().any(|id| these.contains(id)) {
            if !self.receive_one().await {
                return;
            }
        }
    }

    /// Records the next outcome to arrive; false once the deadline passed.
    /// A failure brings in a spare; so does the speculation delay, for
    /// every spare left.
    async fn receive_one(&mut self) -> bool {
        loop {
            let speculate_at = self
                .reserve
                .as_ref()
                .filter(|reserve| !reserve.spares.is_empty())
                .map(|reserve| reserve.speculate_at);
            let until = speculate_at.map_or(self.deadline, |at| at.min(self.deadline));
            let remaining = until.saturating_duration_since(Instant::now());
            match rt::timeout(remaining, self.arriving.recv()).await {
                Some(Ok((replica, outcome))) => {
                    self.waiting.retain(|&id| id != replica);
                    if !outcome.answered() {
                        let value_lost = self
                            .reserve
                            .as_ref()
                            .is_some_and(|reserve| reserve.value_from == Some(replica));
                        self.ask_spares(1, value_lost);
                    }
                    self.outcomes.push((replica, outcome));
                    return true;
                }
                Some(Err(_)) => return false,
                None if speculate_at.is_some() && Instant::now() < self.deadline => {
                    let value_missing = !self
                        .outcomes
                        .iter()
                        .any(|(_, outcome)| matches!(outcome, Outcome::Answered(_)));
                    self.ask_spares(usize::MAX, value_missing);
                }
                None => return false,
            }
        }
    }

    /// Asks up to `count` spares, in the plan's order, for digests; the
    /// first for the value instead if `for_value` (the value is missing).
    fn ask_spares(&mut self, count: usize, for_value: bool) {
        let Some(reserve) = self.reserve.as_mut() else {
            return;
        };
        let count = count.min(reserve.spares.len());
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        let asked: Vec<ReplicaId> = reserve.spares.drain(..count).collect();
        for (index, target) in asked.into_iter().enumerate() {
            let ask = if index == 0 && for_value {
                reserve.value_from = Some(target);
                ReplicaAsk::Read(reserve.key)
            } else {
                ReplicaAsk::Digest(reserve.key)
            };
            self.waiting.push(target);
            let (coordinator, report) = (reserve.coordinator.clone(), self.report.clone());
            rt::spawn(async move {
                let outcome = coordinator.ask_replica(target, ask, timeout).await;
                let _ = report.send((target, outcome)).await;
            });
        }
    }

    /// Records that `replica`, counted as answered, failed after all (its
    /// value could not be fetched), and asks a spare for the value.
    fn answer_failed(&mut self, replica: ReplicaId, miss: Outcome) {
        if let Some(entry) = self.outcomes.iter_mut().find(|(id, _)| *id == replica) {
            entry.1 = miss;
        }
        self.ask_spares(1, true);
    }

    /// Every replica that has not answered, and why: failures with their
    /// kind, and the ones still waiting as no answer.
    fn misses(&self, timeout: Duration) -> Vec<(ReplicaId, Outcome)> {
        let mut misses: Vec<(ReplicaId, Outcome)> = self
            .outcomes
            .iter()
            .filter(|(_, o)| !o.answered())
            .cloned()
            .collect();
        misses.extend(
            self.waiting
                .iter()
                .map(|&id| (id, Outcome::NoAnswer(no_answer_within(timeout)))),
        );
        misses
    }
}

/// Counters `status` reports.
#[derive(Default)]
pub struct CoordinatorStats {
    /// Read-repair writes sent, blocking and background.
    pub repairs_sent: AtomicU64,
}

/// Carries out client requests on the ring.
pub struct Coordinator {
    self_id: ReplicaId,
    ring: Arc<Ring>,
    local: Arc<LocalReplica>,
    peers: Arc<Peers>,
    clock: Arc<WriteClock>,
    hints: Arc<Hints>,
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

impl Coordinator {
    /// A coordinator for replica `parts.self_id`.
    pub fn new(parts: CoordinatorParts) -> Self {
        Coordinator {
            self_id: parts.self_id,
            ring: parts.ring,
            local: parts.local,
            peers: parts.peers,
            clock: parts.clock,
            hints: parts.hints,
            mode: parts.mode,
            read_policy: parts.read_policy,
            read_turns: (0..=u8::MAX).map(|_| AtomicU64::new(0)).collect(),
            limits: parts.limits,
            metrics: parts.metrics,
            budget: parts.budget,
            stats: CoordinatorStats::default(),
        }
    }

    /// Stamps the value and answers once `level` replicas made it durable.
    pub async fn put(self: &Arc<Self>, request: PutRequest) -> Result<PutReply, KvError> {
        let counted = self.metrics.request(Op::Put, request.consistency);
        counted.finish(self.put_counted(request).await)
    }

    /// Stamps a tombstone and answers once `level` replicas made it durable.
    pub async fn delete(self: &Arc<Self>, request: DeleteRequest) -> Result<DeleteReply, KvError> {
        let counted = self.metrics.request(Op::Delete, request.consistency);
        counted.finish(self.delete_counted(request).await)
    }

    /// Answers with the newest version among the first `level` replicas to
    /// answer, after making sure (at QUORUM and ALL) that `level` replicas
    /// hold it.
    pub async fn get(self: &Arc<Self>, request: GetRequest) -> Result<GetReply, KvError> {
        let counted = self.metrics.request(Op::Get, request.consistency);
        counted.finish(self.get_counted(request).await)
    }

    async fn put_counted(self: &Arc<Self>, request: PutRequest) -> Result<PutReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        checked_value(&request.value, self.limits.max_value_bytes)?;
        let timestamp_micros = self
            .write(key, level, Op::Put, request.value, false)
            .await?;
        Ok(PutReply { timestamp_micros })
    }

    async fn delete_counted(
        self: &Arc<Self>,
        request: DeleteRequest,
    ) -> Result<DeleteReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        let timestamp_micros = self
            .write(key, level, Op::Delete, String::new(), true)
            .await?;
        Ok(DeleteReply { timestamp_micros })
    }

    /// The write path shared by put and delete.
    async fn write(
        self: &Arc<Self>,
        key: u8,
        level: Consistency,
        op: Op,
        value: String,
        tombstone: bool,
    ) -> Result<u64, KvError> {
        if let Some(reason) = self.peers.clock_offsets().fence() {
            return Err(KvError::internal(format!(
                "clock fence: replica {} does not coordinate writes: {reason}. Nothing was written; \
                 another coordinator can take the {}",
                self.self_id,
                op.name()
            )));
        }
        let need = self.check_available(key, level, op).await?;
        let mut timestamp_micros = self.stamp().await?;
        // Restamping after a stale answer happens within this too.
        let timeout = self.limits.write_timeout;
        let deadline = Instant::now() + timeout;
        let hint_misses = self.mode.hinted_handoff();
        let replicas = self.ring.replicas_for(key);
        let down: Vec<ReplicaId> = replicas
            .iter()
            .copied()
            .filter(|&id| !self.peers.is_up(id))
            .collect();
        loop {
            let version = Versioned {
                value: value.clone(),
                timestamp_micros,
                coordinator_id: self.self_id,
                tombstone,
            };
            let mut fan = self.fan_out(
                replicas,
                ReplicaAsk::Write(key, Arc::new(version), WriteOf::Client),
                hint_misses,
                deadline.saturating_duration_since(Instant::now()),
            );
            // A replica holds something newer than this stamp: unless the
            // level is already met, stamp the write again above it and
            // send it again to every replica of the key. A stamp more than
            // twice the maximum offset ahead of this clock is not chased:
            // no replica within the offset of this clock could have
            // acknowledged it under the fence (it was stored before the
            // fence, or its replica's clock is fenced), so that replica
            // just does not count toward the level.
            let horizon = wall_micros().saturating_add(2 * max_offset_micros());
            fan.gather_unless_stale(need, horizon).await;
            if let (Some(held), true) = (fan.newest_stale(horizon), fan.answered() < need) {
                fan.superseded.store(true, Ordering::SeqCst);
                self.metrics.stale_write_retry();
                timestamp_micros = self.restamp_above(key, held, deadline).await?;
                continue;
            }
            if hint_misses {
                // Replicas known to be down fail at once; their hints are
                // durable before the client hears back.
                fan.gather_until_reported(&down).await;
            }
            return if fan.answered() >= need {
                Ok(timestamp_micros)
            } else {
                Err(self.shortfall(op, key, level, need, &fan, timeout))
            };
        }
    }

    /// A new stamp for a write that a replica answered "stale" to, above
    /// the stamp `held` it holds. The clock observes `held`, but the fence
    /// stops it at the maximum offset past the wall clock: if `held` is
    /// beyond that (stamped by a clock ahead of this one), this waits for
    /// the wall clock, until the request's deadline.
    async fn restamp_above(&self, key: u8, held: Stamp, deadline: Instant) -> Result<u64, KvError> {
        loop {
            self.clock.observe(held.0);
            let stamp = self.stamp_by(deadline).await?;
            if stamp > held.0 {
                return Ok(stamp);
            }
            let wait = Duration::from_micros(held.0 - stamp + 1);
            if Instant::now() + wait > deadline {
                return Err(KvError::timeout(format!(
                    "key {key} holds a version stamped {} by coordinator {}, {} ms ahead of replica {}'s clock: \
                     a stamp above it would be more than the maximum clock offset ({} ms) ahead, and the \
                     write timeout ends first; the write may have been applied on some replicas below that version",
                    held.0,
                    held.1,
                    held.0.saturating_sub(wall_micros()) / 1_000,
                    self.self_id,
                    max_offset_micros() / 1_000
                )));
            }
            rt::sleep(wait).await;
        }
    }

    async fn get_counted(self: &Arc<Self>, request: GetRequest) -> Result<GetReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        let need = self.check_available(key, level, Op::Get).await?;
        let timeout = self.limits.read_timeout;
        let turn = self.read_turns[usize::from(key)].fetch_add(1, Ordering::Relaxed);
        // A replica rebuilding the key after losing its data is never asked.
        let replicas = self.ring.replicas_for(key);
        let servable: Vec<ReplicaId>;
        let replicas = if replicas.iter().all(|&id| self.can_read_from(id, key)) {
            replicas
        } else {
            servable = replicas
                .iter()
                .copied()
                .filter(|&id| self.can_read_from(id, key))
                .collect();
            &servable
        };
        let plan = self
            .read_policy
            .plan(self.self_id, replicas, need, turn, |id| {
                self.peers.is_up(id)
            });
        // One value, the rest digests: the first replica in the plan (this
        // one, when it holds the key) is read, the others say what they hold.
        let asks = plan
            .ask
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                (
                    id,
                    if i == 0 {
                        ReplicaAsk::Read(key)
                    } else {
                        ReplicaAsk::Digest(key)
                    },
                )
            })
            .collect();
        let mut fan = self.fan_out_asks(asks, false, timeout);
        if !plan.spares.is_empty() {
            fan.reserve = Some(Reserve {
                coordinator: self.clone(),
                key,
                spares: plan.spares,
                value_from: plan.ask.first().copied(),
                speculate_at: Instant::now() + self.read_policy.speculate_after,
            });
        }
        // A replica whose digest is the newest but whose value cannot be
        // fetched counts as missed, and a spare takes its place: the answer
        // is always decided by `need` replicas that did answer.
        let (newest, deciding) = loop {
            fan.gather(Some(need)).await;
            let mut deciding = fan.answers();
            if deciding.len() < need {
                return Err(self.shortfall(Op::Get, key, level, need, &fan, timeout));
            }
            match self.newest_of(key, &mut deciding, None, fan.deadline).await {
                Ok(newest) => break (newest, deciding),
                Err((replica, miss)) => fan.answer_failed(replica, miss),
            }
        };
        if let Some(version) = &newest {
            // A put through this coordinator after this read beats what it read.
            self.clock.observe(version.timestamp_micros);
        }
        let stale: Vec<ReplicaId> = deciding
            .iter()
            .filter(|(_, heard)| heard.is_older_than(&newest))
            .map(|(id, _)| *id)
            .collect();
        if let (Some(version), false) = (&newest, stale.is_empty()) {
            let holders = deciding.len() - stale.len();
            self.stats
                .repairs_sent
                .fetch_add(stale.len() as u64, Ordering::Relaxed);
            let mut repair = self.fan_out(
                &stale,
                ReplicaAsk::Write(key, Arc::new(version.clone()), WriteOf::Repair),
                false,
                fan.deadline.saturating_duration_since(Instant::now()),
            );
            repair.gather(Some(need.saturating_sub(holders))).await;
            let mut held_by = holders + repair.answered();
            let mut misses = repair.misses(timeout);
            if held_by < need {
                // A stale replica refused the repair (its clock fence, say,
                // when the stamp is further ahead of its clock than the
                // maximum offset): the key's replicas that did not decide
                // this read may hold the version already, or take it.
                let others: Vec<ReplicaId> = self
                    .ring
                    .replicas_for(key)
                    .iter()
                    .copied()
                    .filter(|id| deciding.iter().all(|(decided, _)| decided != id))
                    .collect();
                if !others.is_empty() {
                    self.stats
                        .repairs_sent
                        .fetch_add(others.len() as u64, Ordering::Relaxed);
                    let mut spare = self.fan_out(
                        &others,
                        ReplicaAsk::Write(key, Arc::new(version.clone()), WriteOf::Repair),
                        false,
                        fan.deadline.saturating_duration_since(Instant::now()),
                    );
                    spare.gather(Some(need - held_by)).await;
                    held_by += spare.answered();
                    misses.extend(spare.misses(timeout));
                }
            }
            if held_by < need {
                return Err(KvError::timeout(format!(
                    "{level} get of key {key}: the replicas that answered disagreed, and read repair \
                     reached only {held_by} of the {need} needed before the timeout ({})",
                    describe(&misses)
                )));
            }
        }
        // Only a read that asked every replica repairs the late ones; with
        // every replica already heard from, the blocking repair above has
        // done all there is to do: no task.
        if plan.everyone && self.mode.background_read_repair() && !fan.waiting.is_empty() {
            fan.reserve = None;
            let (coordinator, repaired) = (self.clone(), newest.clone());
            rt::spawn(async move {
                coordinator
                    .repair_in_background(key, fan, repaired, stale)
                    .await
            });
        }
        Ok(GetReply {
            found: newest.filter(|version| !version.tombstone),
        })
    }

    /// After a read was answered: waits for the replicas that had not
    /// answered yet, and brings every replica that answered with something
    /// older than the newest version seen up to it. `already` were repaired
    /// to `answered` before the client got its answer.
    async fn repair_in_background(
        self: Arc<Self>,
        key: u8,
        mut fan: FanOut,
        answered: Option<Versioned>,
        already: Vec<ReplicaId>,
    ) {
        fan.gather(None).await;
        let mut answers = fan.answers();
        let deadline = Instant::now() + self.limits.read_timeout;
        let Ok(newest) = self
            .newest_of(key, &mut answers, answered.clone(), deadline)
            .await
        else {
            return;
        };
        let Some(version) = newest.clone() else {
            return;
        };
        let stale: Vec<ReplicaId> = answers
            .iter()
            .filter(|(id, heard)| {
                heard.is_older_than(&newest) && !(already.contains(id) && newest == answered)
            })
            .map(|(id, _)| *id)
            .collect();
        if stale.is_empty() {
            return;
        }
        self.stats
            .repairs_sent
            .fetch_add(stale.len() as u64, Ordering::Relaxed);
        let mut repair = self.fan_out(
            &stale,
            ReplicaAsk::Write(key, Arc::new(version), WriteOf::Repair),
            false,
            self.limits.write_timeout,
        );
        repair.gather(None).await;
    }

    /// The newest version among what a read heard (and `known`, a version
    /// already in hand). Where a digest is newer than every value heard,
    /// that replica's value is fetched, and its entry in `heard` becomes the
    /// value. Fails with the replica's miss if such a fetch fails.
    async fn newest_of(
        &self,
        key: u8,
        heard: &mut [(ReplicaId, Heard)],
        known: Option<Versioned>,
        deadline: Instant,
    ) -> Result<Option<Versioned>, (ReplicaId, Outcome)> {
        let mut newest = heard
            .iter()
            .filter_map(|(_, heard)| match heard {
                Heard::Value(found) => Some(found.clone()),
                Heard::Stamp(_) => None,
            })
            .fold(known, Versioned::newest);
        // Each fetch turns a stamp into a value at least as new, so this
        // ends; the bound is for a replica that answers nonsense.
        for _ in 0..heard.len() {
            let newer = heard
                .iter_mut()
                .filter(|(_, h)| {
                    matches!(h, Heard::Stamp(Some(_))) && h.stamp() > newest.as_ref().map(stamp_of)
                })
                .max_by_key(|(_, h)| h.stamp());
            let Some((id, entry)) = newer else {
                break;
            };
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.ask_replica(*id, ReplicaAsk::Read(key), timeout).await {
                Outcome::Answered(found) => {
                    *entry = Heard::Value(found.clone());
                    newest = Versioned::newest(newest, found);
                }
                miss => return Err((*id, miss)),
            }
        }
        Ok(newest)
    }

    /// Asks every replica of the key what it holds, without repairing
    /// anything: the console's `where`.
    pub async fn inspect(
        self: &Arc<Self>,
        request: InspectRequest,
    ) -> Result<InspectReply, KvError> {
        let key = checked_key(request.key)?;
        let replicas = self.ring.replicas_for(key);
        let timeout = self.limits.read_timeout;
        let mut fan = self.fan_out(replicas, ReplicaAsk::Read(key), false, timeout);
        fan.gather(None).await;
        let outcome_of = |id: ReplicaId| match fan.outcomes.iter().find(|(r, _)| *r == id) {
            Some((_, Outcome::Answered(found))) => replica_holding::Outcome::Holding(Holding {
                found: found.clone(),
            }),
            Some((_, Outcome::Failed(kind, reason))) => {
                replica_holding::Outcome::Unreachable(format!("{}: {reason}", kind.as_str()))
            }
            Some((_, Outcome::NoAnswer(reason))) => {
                replica_holding::Outcome::Unreachable(reason.clone())
            }
            Some((_, Outcome::Digest(_))) => {
                replica_holding::Outcome::Unreachable("answered with a digest".to_string())
            }
            Some((_, Outcome::Stale(_))) => {
                replica_holding::Outcome::Unreachable("answered a read as a write".to_string())
            }
            None => replica_holding::Outcome::Unreachable(no_answer_within(timeout)),
        };
        Ok(InspectReply {
            replicas: replicas
                .iter()
                .map(|&replica_id| ReplicaHolding {
                    replica_id,
                    outcome: Some(outcome_of(replica_id)),
                })
                .collect(),
        })
    }

    /// The write's timestamp. After a restart, waits until the wall clock
    /// has passed what the previous run may have issued; waits briefly if
    /// the clock's lease on disk is being renewed.
    async fn stamp(&self) -> Result<u64, KvError> {
        self.stamp_by(Instant::now() + LEASE_WAIT.max(self.limits.write_timeout))
            .await
    }

    /// `stamp`, waiting at most until `deadline`.
    async fn stamp_by(&self, deadline: Instant) -> Result<u64, KvError> {
        loop {
            match self.clock.next() {
                Ok(timestamp) => return Ok(timestamp),
                Err(ClockRefusal::Held { until }) => {
                    let wait = Duration::from_micros(until.saturating_sub(wall_micros()) + 1);
                    if Instant::now() + wait > deadline {
                        return Err(KvError::internal(format!(
                            "replica {} restarted with its write clock held until {until}, {} ms from now; \
                             it takes no puts until then (nothing was written; another coordinator can take the put)",
                            self.self_id,
                            wait.as_millis()
                        )));
                    }
                    rt::sleep(wait).await;
                }
                Err(ClockRefusal::LeaseBehind { lease_until }) if Instant::now() >= deadline => {
                    return Err(KvError::internal(format!(
                        "the write clock reached its lease ({lease_until}) and the lease on disk was not renewed in time; \
                         the data disk may be slow or failing (nothing was written)"
                    )))
                }
                Err(ClockRefusal::LeaseBehind { .. }) => rt::sleep(Duration::from_millis(1)).await,
                // The clock observed a stamp at the fence: wait until the
                // wall clock lets it go on (at most the maximum offset).
                Err(ClockRefusal::FarAhead { next, wall }) => {
                    let wait = Duration::from_micros(
                        next.saturating_sub(wall.saturating_add(max_offset_micros())),
                    );
                    if Instant::now() + wait > deadline {
                        return Err(KvError::internal(format!(
                            "replica {}'s write clock is at the clock fence, {} ms ahead of its wall clock, \
                             and would not move on in time (nothing was written; another coordinator can take the put)",
                            self.self_id,
                            next.saturating_sub(wall) / 1_000
                        )));
                    }
                    rt::sleep(wait.max(Duration::from_micros(1))).await;
                }
            }
        }
    }

    /// Whether a read may count on replica `id`'s copy of `key`, by what
    /// it last said of itself: a replica that lost its data serves none
    /// until it has rebuilt the key, and one never heard from serves none.
    fn can_read_from(&self, id: ReplicaId, key: u8) -> bool {
        self.peers.membership().can_serve(id, key)
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
                .filter(|&id| self.peers.is_up(id) && !self.can_read_from(id, key))
                .collect();
            if replicas.len() - rebuilding.len() < need {
                return Err(KvError::unavailable(format!(
                    "{level} get of key {key} needs {need} of its replicas {}, but {} rebuilding after losing its data and may not serve it yet (nothing was read)",
                    list(replicas),
                    if rebuilding.len() == 1 { format!("{} is", rebuilding[0]) } else { format!("{} are", list(&rebuilding)) },
                )));
            }
        }
        let count_up = || replicas.iter().filter(|&&id| self.peers.is_up(id)).count();
        if count_up() < need {
            // Not from a stale view: try the missing replicas once first.
            let down: Vec<ReplicaId> = replicas
                .iter()
                .copied()
                .filter(|&id| !self.peers.is_up(id))
                .collect();
            self.peers.refresh(&down, REFRESH_WAIT).await;
        }
        let usable = |id: ReplicaId| {
            self.peers.is_up(id) && (op.writes() || self.peers.membership().can_serve(id, key))
        };
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

    /// Sends `ask` to every target at once; `fan.gather` collects the
    /// outcomes. Each ask runs in its own task, which finishes (and stores
    /// its hint, if `hint_misses` and the write missed) whether or not
    /// anyone still waits for it.
    fn fan_out(
        self: &Arc<Self>,
        targets: &[ReplicaId],
        ask: ReplicaAsk,
        hint_misses: bool,
        timeout: Duration,
    ) -> FanOut {
        let asks = targets.iter().map(|&id| (id, ask.clone())).collect();
        self.fan_out_asks(asks, hint_misses, timeout)
    }

    /// `fan_out` with an ask of its own for each target.
    fn fan_out_asks(
        self: &Arc<Self>,
        asks: Vec<(ReplicaId, ReplicaAsk)>,
        hint_misses: bool,
        timeout: Duration,
    ) -> FanOut {
        let (report, arriving) = rt::unbounded::<(ReplicaId, Outcome)>();
        let superseded = Arc::new(AtomicBool::new(false));
        let mut outcomes = Vec::new();
        let mut waiting = Vec::with_capacity(asks.len());
        for (target, ask) in asks {
            // This replica's own copy is read from memory at once: no task.
            if let (ReplicaAsk::Read(key), true) = (&ask, target == self.self_id) {
                outcomes.push((target, Outcome::Answered(self.local.read(*key))));
                continue;
            }
            waiting.push(target);
            let (coordinator, report) = (self.clone(), report.clone());
            let holds = match &ask {
                // Two copies of the value per target until the ask ends:
                // the ask's own, and its encoded frame (or WAL record).
                ReplicaAsk::Write(_, version, _) => {
                    Some(self.budget.charge_background(2 * version.value.len()))
                }
                ReplicaAsk::Read(_) | ReplicaAsk::Digest(_) => None,
            };
            let superseded = superseded.clone();
            rt::spawn(async move {
                let _holds = holds;
                let outcome = coordinator.ask_replica(target, ask.clone(), timeout).await;
                if let (ReplicaAsk::Write(key, version, _), true) = (ask, hint_misses) {
                    // A replica that answered "stale" holds something newer:
                    // it missed nothing.
                    let missed = matches!(outcome, Outcome::Failed(..) | Outcome::NoAnswer(_));
                    let superseded = superseded.load(Ordering::SeqCst);
                    if missed && !superseded && target != coordinator.self_id {
                        let version = Arc::unwrap_or_clone(version);
                        if let Err(error) = coordinator.hints.store(target, key, version).await {
                            crate::error!("cannot store a hint for replica {target}: {error}");
                        }
                    }
                }
                let _ = report.send((target, outcome)).await;
            });
        }
        FanOut {
            arriving,
            outcomes,
            waiting,
            deadline: Instant::now() + timeout,
            report,
            reserve: None,
            superseded,
        }
    }

    /// Carries out one ask on one replica: this one directly, others over
    /// their peer connection. A reply of the wrong type is a failure, never
    /// an acknowledgement.
    async fn ask_replica(&self, target: ReplicaId, ask: ReplicaAsk, timeout: Duration) -> Outcome {
        if target == self.self_id {
            return match ask {
                // Bounded like a peer call; if the disk is slow the write
                // still lands (the WAL thread applies it), just unawaited.
                ReplicaAsk::Write(key, version, of) => {
                    // This replica's own copy is checked like any other: a
                    // repair of a version beyond the clock fence is refused
                    // here too, and a stale client write is not acknowledged.
                    let version = Arc::unwrap_or_clone(version);
                    if let Err(error) = check_stamp(&version, self.self_id) {
                        return Outcome::Failed(error.kind, error.message);
                    }
                    if of == WriteOf::Client {
                        if let Some(held) = self.local.newer_than(key, &version) {
                            return Outcome::Stale(stamp_of(&held));
                        }
                    }
                    match rt::timeout(timeout, self.local.write(key, version)).await {
                        Some(Ok(())) => Outcome::Answered(None),
                        Some(Err(error)) => Outcome::Failed(error.kind, error.message),
                        None => Outcome::NoAnswer(no_answer_within(timeout)),
                    }
                }
                ReplicaAsk::Read(key) => Outcome::Answered(self.local.read(key)),
                ReplicaAsk::Digest(key) => {
                    Outcome::Digest(self.local.read(key).as_ref().map(stamp_of))
                }
            };
        }
        let Some(peer) = self.peers.get(target) else {
            return Outcome::Failed(
                ErrorKind::Internal,
                format!("replica {target} is not in the ring"),
            );
        };
        let (body, expects) = match ask {
            ReplicaAsk::Write(key, version, of) => (
                Body::ReplicaWrite(ReplicaWrite {
                    key: Some(u32::from(key)),
                    version: Some(Arc::unwrap_or_clone(version)),
                    client_write: of == WriteOf::Client,
                }),
                "replica write",
            ),
            ReplicaAsk::Read(key) => (
                Body::ReplicaRead(ReplicaRead {
                    key: Some(u32::from(key)),
                    digest_only: false,
                }),
                "replica read",
            ),
            ReplicaAsk::Digest(key) => (
                Body::ReplicaRead(ReplicaRead {
                    key: Some(u32::from(key)),
                    digest_only: true,
                }),
                "replica digest read",
            ),
        };
        match (expects, peer.call(body, timeout).await) {
            ("replica write", Ok(Body::ReplicaWriteAck(ack))) => match ack.held_newer {
                Some(held) => Outcome::Stale((held.timestamp_micros, held.coordinator_id)),
                None => Outcome::Answered(None),
            },
            ("replica read", Ok(Body::ReplicaReadReply(reply))) => Outcome::Answered(reply.found),
            // A value where a digest was asked for is as good, and better.
            ("replica digest read", Ok(Body::ReplicaReadReply(reply))) => match reply.found {
                Some(version) => Outcome::Answered(Some(version)),
                None => Outcome::Digest(
                    reply
                        .digest
                        .map(|digest| (digest.timestamp_micros, digest.coordinator_id)),
                ),
            },
            (_, Ok(other)) => Outcome::Failed(
                ErrorKind::Internal,
                format!("answered a {expects} with a {}", other.kind_name()),
            ),
            // A replica that timed out itself may still apply the write.
            (_, Err(CallError::Refused(error))) if error.kind == ErrorKind::Timeout => {
                Outcome::NoAnswer(error.message)
            }
            (_, Err(CallError::Refused(error))) => Outcome::Failed(error.kind, error.message),
            (_, Err(CallError::Disconnected(reason))) => Outcome::NoAnswer(reason),
            (_, Err(CallError::TimedOut)) => Outcome::NoAnswer(no_answer_within(timeout)),
        }
    }

    /// The error a request ends in when too few replicas answered, chosen
    /// from what the others did: INVALID if one refused the request as
    /// invalid (retrying cannot help), TIMEOUT if any gave no answer (a
    /// write may have landed there), INTERNAL if every miss was a failure.
    fn shortfall(
        &self,
        op: Op,
        key: u8,
        level: Consistency,
        need: usize,
        fan: &FanOut,
        timeout: Duration,
    ) -> KvError {
        let misses = fan.misses(timeout);
        let mut answered: Vec<ReplicaId> = fan.answers().iter().map(|(id, _)| *id).collect();
        answered.sort_unstable();
        let kind = if misses
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Failed(ErrorKind::Invalid, _)))
        {
            ErrorKind::Invalid
        } else if misses
            .iter()
            .any(|(_, o)| matches!(o, Outcome::NoAnswer(_)))
        {
            ErrorKind::Timeout
        } else {
            ErrorKind::Internal
        };
        let later = if self.mode.hinted_handoff() {
            ", and hints may still deliver it to the others"
        } else {
            ""
        };
        let effect = match (op.writes(), kind, answered.is_empty()) {
            (false, _, _) => String::new(),
            (true, ErrorKind::Timeout, _) => {
                "; the write may have been applied on some replicas".to_string()
            }
            (true, _, true) => format!("; no replica applied the write yet{later}"),
            (true, _, false) => format!("; the write was applied on {}{later}", list(&answered)),
        };
        KvError {
            kind,
            message: format!(
                "{level} {} of key {key}: {} of {need} replicas answered ({}){effect}",
                op.name(),
                answered.len(),
                describe(&misses),
            ),
        }
    }
}

/// Whether a replica's answer is older than the newest version seen (a
/// replica that holds nothing is older than any version).
fn is_older(held: &Option<Versioned>, newest: &Option<Versioned>) -> bool {
    match (held, newest) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(held), Some(newest)) => held.lww_cmp(newest).is_lt(),
    }
}

/// "replica 2: no answer within 2000 ms; replica 3: INVALID: ..."
fn describe(misses: &[(ReplicaId, Outcome)]) -> String {
    misses
        .iter()
        .map(|(id, outcome)| match outcome {
            Outcome::Failed(kind, reason) => format!("replica {id}: {}: {reason}", kind.as_str()),
            Outcome::NoAnswer(reason) => format!("replica {id}: {reason}"),
            Outcome::Stale((timestamp, coordinator)) => {
                format!("replica {id}: stale: it holds ({timestamp}, coordinator {coordinator})")
            }
            Outcome::Answered(_) | Outcome::Digest(_) => format!("replica {id}: answered"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a replica is missing from the answers, whichever of the request's
/// timer and the peer call's timer fired first.
fn no_answer_within(timeout: Duration) -> String {
    format!("no answer within {} ms", timeout.as_millis())
}

fn list(ids: &[ReplicaId]) -> String {
    if ids.is_empty() {
        return "none".to_string();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
