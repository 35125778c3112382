//! Unit tests of the coordinator's rules against scripted replicas: a
//! `ScriptedLink` stands in for the peer connections, the local store and
//! the hints log, so "2 answers INVALID, 1 is silent for 50 ms, 0 holds an
//! older version" is a few lines and runs in milliseconds, with no socket
//! and no disk. Each replica serves asks like a real one (last write wins,
//! "stale" for a client write older than what it holds) unless its script
//! says otherwise; every ask and every hint is recorded for the asserts.
//!
//! The ring is the default one: four replicas, key 10 on 0, 1, 2 (owner
//! first) and key 200 on 3, 0, 1. The coordinator is replica 3 unless a
//! test says otherwise, so for key 10 every replica is a remote one.

mod cas;
mod cluster_link;
mod fan_out;
mod reads;
mod repairs;
mod skew;
mod stamps;
mod writes;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::cluster::repair_mode::RepairMode;
use crate::cluster::ring::Ring;
use crate::coordinator::link::{
    no_answer_within, stamp_of, Outcome, Promise, ReplicaAsk, ReplicaLink, Stamp,
};
use crate::coordinator::read_plan::ReadPolicy;
use crate::coordinator::{no_reads_yet, Coordinator, CoordinatorStats, Limits};
use crate::metrics::Metrics;
use crate::ops::budget::MemoryBudget;
use crate::ops::rt;
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::proto::{
    Consistency, DeleteRequest, GetRequest, PutRequest, ReplicaId, Versioned,
};
use crate::storage::clock::{wall_micros, WriteClock};

/// The key most tests use: replicas 0, 1, 2.
pub(super) const KEY: u8 = 10;

/// What a scripted replica does with one kind of ask.
#[derive(Clone, Debug)]
pub(super) enum Act {
    /// What a real replica does.
    Serve,
    /// Fails with this kind of error.
    Fail(ErrorKind),
    /// Never answers: the ask ends at its timeout with no answer.
    Silent,
    /// Hangs well past its timeout, reporting nothing until then, like an
    /// ask whose own timer failed: only the request's deadline ends it.
    Hang,
    /// Answers this, whatever was asked.
    Answer(Outcome),
}

/// One scripted replica.
#[derive(Clone, Debug)]
pub(super) struct Scripted {
    /// What it holds, by key.
    pub held: HashMap<u8, Versioned>,
    /// Its Paxos acceptor state, by key: the highest ballot promised, and
    /// the accepted proposal with its ballot.
    pub promised: HashMap<u8, Stamp>,
    pub accepted: HashMap<u8, (Stamp, Versioned)>,
    /// What it does with prepares, and with proposals.
    pub prepares: Act,
    pub proposals: Act,
    /// How long it takes to answer anything.
    pub delay: Duration,
    pub writes: Act,
    /// What it does with its next writes, one each, before `writes`.
    pub next_writes: VecDeque<Act>,
    pub reads: Act,
    pub digests: Act,
    /// Whether the coordinator believes it up.
    pub up: bool,
    /// Whether it may serve reads (false: rebuilding after losing its data).
    pub serves: bool,
}

impl Default for Scripted {
    fn default() -> Self {
        Scripted {
            held: HashMap::new(),
            promised: HashMap::new(),
            accepted: HashMap::new(),
            prepares: Act::Serve,
            proposals: Act::Serve,
            delay: Duration::ZERO,
            writes: Act::Serve,
            next_writes: VecDeque::new(),
            reads: Act::Serve,
            digests: Act::Serve,
            up: true,
            serves: true,
        }
    }
}

/// Which kind of ask a replica was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    ClientWrite,
    Repair,
    Read,
    Digest,
    Prepare,
    Propose,
}

/// One ask a replica was sent.
#[derive(Clone, Debug)]
pub(super) struct Asked {
    pub target: ReplicaId,
    pub kind: Kind,
    /// The stamp of a write's version.
    pub stamp: Option<u64>,
    /// When, since the link was made.
    pub at: Duration,
}

/// Scripted replicas behind the coordinator's seam.
pub(super) struct ScriptedLink {
    replicas: Mutex<Vec<Scripted>>,
    asked: Mutex<Vec<Asked>>,
    hints: Mutex<Vec<(ReplicaId, u8, Versioned)>>,
    refreshed: Mutex<Vec<ReplicaId>>,
    /// Replicas that come up when the coordinator tries them again.
    up_on_refresh: Mutex<Vec<ReplicaId>>,
    fence: Mutex<Option<String>>,
    started: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ScriptedLink {
    fn new(count: usize) -> Self {
        ScriptedLink {
            replicas: Mutex::new(vec![Scripted::default(); count]),
            asked: Mutex::new(Vec::new()),
            hints: Mutex::new(Vec::new()),
            refreshed: Mutex::new(Vec::new()),
            up_on_refresh: Mutex::new(Vec::new()),
            fence: Mutex::new(None),
            started: Instant::now(),
        }
    }

    /// Changes replica `id`'s script.
    pub fn script(&self, id: ReplicaId, change: impl FnOnce(&mut Scripted)) {
        change(&mut lock(&self.replicas)[id as usize]);
    }

    /// What replica `id` holds of `key`.
    pub fn held(&self, id: ReplicaId, key: u8) -> Option<Versioned> {
        lock(&self.replicas)[id as usize].held.get(&key).cloned()
    }

    /// Every ask so far, in the order they were sent.
    pub fn asked(&self) -> Vec<Asked> {
        lock(&self.asked).clone()
    }

    /// The replicas sent asks of `kind`, in order.
    pub fn asked_of(&self, kind: Kind) -> Vec<ReplicaId> {
        self.asked()
            .iter()
            .filter(|asked| asked.kind == kind)
            .map(|asked| asked.target)
            .collect()
    }

    /// The kinds of ask replica `id` was sent, in order.
    pub fn asks_to(&self, id: ReplicaId) -> Vec<Kind> {
        self.asked()
            .iter()
            .filter(|asked| asked.target == id)
            .map(|asked| asked.kind)
            .collect()
    }

    /// The hints stored so far: (for replica, key, version).
    pub fn hints(&self) -> Vec<(ReplicaId, u8, Versioned)> {
        lock(&self.hints).clone()
    }

    pub fn refreshed(&self) -> Vec<ReplicaId> {
        lock(&self.refreshed).clone()
    }

    pub fn up_on_refresh(&self, id: ReplicaId) {
        lock(&self.up_on_refresh).push(id);
    }

    pub fn fence(&self, reason: &str) {
        *lock(&self.fence) = Some(reason.to_string());
    }

    /// What a real replica answers.
    fn serve(&self, target: ReplicaId, ask: &ReplicaAsk) -> Outcome {
        let mut replicas = lock(&self.replicas);
        let held = &mut replicas[target as usize].held;
        match ask {
            ReplicaAsk::Write(key, version, of) => {
                let holding = held.get(key).cloned();
                if let Some(newer) = holding
                    .as_ref()
                    .filter(|h| h.lww_cmp(version).is_gt() && *of == super::link::WriteOf::Client)
                {
                    return Outcome::Stale(stamp_of(newer));
                }
                if let Some(newest) = Versioned::newest(holding, Some((**version).clone())) {
                    held.insert(*key, newest);
                }
                Outcome::Answered(None)
            }
            ReplicaAsk::Read(key) => Outcome::Answered(held.get(key).cloned()),
            ReplicaAsk::Digest(key) => Outcome::Digest(held.get(key).map(stamp_of)),
            ReplicaAsk::Prepare(key, ballot) => {
                let replica = &mut replicas[target as usize];
                let promised = replica.promised.get(key).is_none_or(|held| ballot > held);
                if promised {
                    replica.promised.insert(*key, *ballot);
                }
                Outcome::Promised(Box::new(Promise {
                    promised,
                    promised_ballot: replica.promised.get(key).copied(),
                    accepted: replica.accepted.get(key).cloned(),
                    current: replica.held.get(key).cloned(),
                }))
            }
            ReplicaAsk::Propose(key, ballot, proposal) => {
                let replica = &mut replicas[target as usize];
                if replica.promised.get(key).is_some_and(|held| held > ballot) {
                    return Outcome::Accepted(false, replica.promised.get(key).copied());
                }
                replica.promised.insert(*key, *ballot);
                replica
                    .accepted
                    .insert(*key, (*ballot, (**proposal).clone()));
                Outcome::Accepted(true, Some(*ballot))
            }
        }
    }
}

impl ReplicaLink for ScriptedLink {
    async fn ask(&self, target: ReplicaId, ask: ReplicaAsk, timeout: Duration) -> Outcome {
        let (kind, stamp) = match &ask {
            ReplicaAsk::Write(_, version, of) => (
                match of {
                    super::link::WriteOf::Client => Kind::ClientWrite,
                    super::link::WriteOf::Repair => Kind::Repair,
                },
                Some(version.timestamp_micros),
            ),
            ReplicaAsk::Read(_) => (Kind::Read, None),
            ReplicaAsk::Digest(_) => (Kind::Digest, None),
            ReplicaAsk::Prepare(_, ballot) => (Kind::Prepare, Some(ballot.0)),
            ReplicaAsk::Propose(_, _, proposal) => (Kind::Propose, Some(proposal.timestamp_micros)),
        };
        lock(&self.asked).push(Asked {
            target,
            kind,
            stamp,
            at: self.started.elapsed(),
        });
        let (delay, act) = {
            let mut replicas = lock(&self.replicas);
            let replica = &mut replicas[target as usize];
            let act = match kind {
                Kind::ClientWrite | Kind::Repair => replica
                    .next_writes
                    .pop_front()
                    .unwrap_or_else(|| replica.writes.clone()),
                Kind::Read => replica.reads.clone(),
                Kind::Digest => replica.digests.clone(),
                Kind::Prepare => replica.prepares.clone(),
                Kind::Propose => replica.proposals.clone(),
            };
            (replica.delay, act)
        };
        if matches!(act, Act::Hang) {
            rt::sleep(timeout * 10).await;
            return Outcome::NoAnswer("hung".to_string());
        }
        if matches!(act, Act::Silent) || delay >= timeout {
            rt::sleep(timeout).await;
            return Outcome::NoAnswer(no_answer_within(timeout));
        }
        rt::sleep(delay).await;
        match act {
            Act::Serve => self.serve(target, &ask),
            Act::Fail(kind) => Outcome::Failed(kind, format!("scripted {}", kind.as_str())),
            Act::Answer(outcome) => outcome,
            Act::Silent | Act::Hang => unreachable!("handled above"),
        }
    }

    fn is_up(&self, id: ReplicaId) -> bool {
        lock(&self.replicas)[id as usize].up
    }

    fn may_serve(&self, id: ReplicaId, _key: u8) -> bool {
        lock(&self.replicas)[id as usize].serves
    }

    async fn refresh(&self, down: &[ReplicaId], _wait: Duration) {
        lock(&self.refreshed).extend_from_slice(down);
        let coming = lock(&self.up_on_refresh).clone();
        for id in coming {
            lock(&self.replicas)[id as usize].up = true;
        }
    }

    async fn store_hint(
        &self,
        target: ReplicaId,
        key: u8,
        version: Versioned,
    ) -> Result<(), KvError> {
        lock(&self.hints).push((target, key, version));
        Ok(())
    }

    fn write_fence(&self) -> Option<String> {
        lock(&self.fence).clone()
    }
}

/// How a test coordinator is set up.
pub(super) struct Setup {
    pub self_id: ReplicaId,
    pub mode: RepairMode,
    /// The share of reads that ask every replica.
    pub everyone: f64,
    pub speculate_after: Duration,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            self_id: 3,
            mode: RepairMode::Both,
            everyone: 0.0,
            speculate_after: Duration::from_millis(10),
            write_timeout: Duration::from_millis(300),
            read_timeout: Duration::from_millis(300),
        }
    }
}

/// A coordinator over four scripted replicas, and their link.
pub(super) fn coordinator(setup: Setup) -> (Arc<Coordinator<ScriptedLink>>, Arc<ScriptedLink>) {
    let ring = Ring::parse("0 127.0.0.1:1\n1 127.0.0.1:2\n2 127.0.0.1:3\n3 127.0.0.1:4\n")
        .expect("a valid ring");
    let link = Arc::new(ScriptedLink::new(4));
    let read_policy = ReadPolicy::new(setup.mode, Some(setup.everyone), setup.speculate_after)
        .expect("a valid read policy");
    let coordinator = Coordinator {
        self_id: setup.self_id,
        ring: Arc::new(ring),
        link: link.clone(),
        clock: Arc::new(WriteClock::new()),
        mode: setup.mode,
        read_policy,
        read_turns: no_reads_yet(),
        limits: Limits {
            write_timeout: setup.write_timeout,
            read_timeout: setup.read_timeout,
            max_value_bytes: 1024,
        },
        metrics: Arc::new(Metrics::new()),
        budget: Arc::new(MemoryBudget::new(1 << 30)),
        stats: CoordinatorStats {
            repairs_sent: AtomicU64::new(0),
        },
    };
    (Arc::new(coordinator), link)
}

/// A version of `value` stamped `timestamp` by `coordinator`.
pub(super) fn version(value: &str, timestamp: u64, coordinator: ReplicaId) -> Versioned {
    Versioned {
        value: value.to_string(),
        timestamp_micros: timestamp,
        coordinator_id: coordinator,
        tombstone: false,
    }
}

/// A version stamped `ms_ago` milliseconds before now by replica 0.
pub(super) fn recent(value: &str, ms_ago: u64) -> Versioned {
    version(value, wall_micros() - ms_ago * 1_000, 0)
}

pub(super) fn put(
    coordinator: &Arc<Coordinator<ScriptedLink>>,
    key: u8,
    value: &str,
    level: Consistency,
) -> Result<u64, KvError> {
    rt::block_on(coordinator.put(PutRequest {
        key: Some(u32::from(key)),
        value: value.to_string(),
        consistency: level as i32,
    }))
    .map(|reply| reply.timestamp_micros)
}

pub(super) fn delete(
    coordinator: &Arc<Coordinator<ScriptedLink>>,
    key: u8,
    level: Consistency,
) -> Result<u64, KvError> {
    rt::block_on(coordinator.delete(DeleteRequest {
        key: Some(u32::from(key)),
        consistency: level as i32,
    }))
    .map(|reply| reply.timestamp_micros)
}

/// The value a get answers (None: not found).
pub(super) fn get(
    coordinator: &Arc<Coordinator<ScriptedLink>>,
    key: u8,
    level: Consistency,
) -> Result<Option<String>, KvError> {
    rt::block_on(coordinator.get(GetRequest {
        key: Some(u32::from(key)),
        consistency: level as i32,
    }))
    .map(|reply| reply.found.map(|found| found.value))
}

/// Lets the asks still in flight (and background repairs) finish.
pub(super) fn settle(for_ms: u64) {
    rt::block_on(rt::sleep(Duration::from_millis(for_ms)));
}

/// Waits (up to five seconds, generous for a loaded machine) until
/// `done` holds: for asks a request sends after it has answered, such as
/// the write to the replica a quorum did not wait for.
pub(super) fn settle_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for {what}");
        settle(1);
    }
}

/// The error of a request that should have failed.
pub(super) fn failed<T: std::fmt::Debug>(result: Result<T, KvError>) -> KvError {
    match result {
        Ok(answer) => panic!("expected an error, got {answer:?}"),
        Err(error) => error,
    }
}
