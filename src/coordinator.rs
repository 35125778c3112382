//! Coordinating client requests: any replica can take any get or put and
//! carry it out on the key's replicas at the level the client asked for.
//!
//! Each request keeps all of its state in its own future: its targets, its
//! reply channel, its deadline. Nothing is shared between requests but the
//! ring, the peer links and this replica's store, so concurrent requests
//! cannot see each other's answers.
//!
//! UNAVAILABLE is decided before anything is sent, from the up/down view: in
//! that case nothing is written anywhere. Otherwise the request goes to all
//! of the key's replicas at once (one that is down fails at once, and is
//! recorded as having missed it) and is answered as soon as the level's
//! number of replicas have answered, so ONE really is faster than QUORUM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{ClockRefusal, WriteClock};
use crate::error::KvError;
use crate::mux::CallError;
use crate::peers::Peers;
use crate::proto::{
    checked_key, checked_value, replica_holding, Body, Consistency, GetReply, GetRequest, Holding,
    InspectReply, InspectRequest, PutReply, PutRequest, ReplicaHolding, ReplicaRead, ReplicaWrite,
    Versioned,
};
use crate::replica::LocalReplica;
use crate::ring::{ReplicaId, Ring};
use crate::rt;

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

/// How long a put waits for the clock's lease to be renewed.
const LEASE_WAIT: Duration = Duration::from_secs(1);

/// What a coordinator asks of one replica of a key.
#[derive(Clone)]
enum ReplicaAsk {
    Write(u8, Versioned),
    Read(u8),
}

/// When a fan-out stops gathering answers.
#[derive(Clone, Copy)]
enum Wait {
    /// Once this many replicas succeeded, or that can no longer happen.
    ForAcks(usize),
    /// Once every replica answered or failed: `where` reports them all.
    ForEveryone,
}

/// One replica's answer: the version it holds (reads) or nothing (writes).
type ReplicaAnswer = Result<Option<Versioned>, String>;

/// The answers a request gathered before it had enough or ran out of time.
struct Gathered {
    answers: Vec<(ReplicaId, Option<Versioned>)>,
    failures: Vec<(ReplicaId, String)>,
    unanswered: Vec<ReplicaId>,
}

/// Carries out client requests on the ring.
pub struct Coordinator {
    self_id: ReplicaId,
    ring: Arc<Ring>,
    local: Arc<LocalReplica>,
    peers: Arc<Peers>,
    clock: Arc<WriteClock>,
    limits: Limits,
}

impl Coordinator {
    /// A coordinator for replica `self_id`.
    pub fn new(
        self_id: ReplicaId,
        ring: Arc<Ring>,
        local: Arc<LocalReplica>,
        peers: Arc<Peers>,
        clock: Arc<WriteClock>,
        limits: Limits,
    ) -> Self {
        Coordinator {
            self_id,
            ring,
            local,
            peers,
            clock,
            limits,
        }
    }

    /// Stamps the write and answers once `level` replicas made it durable.
    pub async fn put(self: &Arc<Self>, request: PutRequest) -> Result<PutReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        checked_value(&request.value, self.limits.max_value_bytes)?;
        let need = self.check_available(key, level, "put")?;
        let timestamp_micros = self.stamp().await?;
        let version = Versioned {
            value: request.value,
            timestamp_micros,
            coordinator_id: self.self_id,
        };
        let gathered = self
            .fan_out(
                self.ring.replicas_for(key),
                ReplicaAsk::Write(key, version),
                Wait::ForAcks(need),
                self.limits.write_timeout,
            )
            .await;
        if gathered.answers.len() >= need {
            Ok(PutReply { timestamp_micros })
        } else {
            Err(self.too_few_answers(
                "put",
                key,
                level,
                need,
                &gathered,
                self.limits.write_timeout,
            ))
        }
    }

    /// Answers with the newest version among the first `level` replicas to answer.
    pub async fn get(self: &Arc<Self>, request: GetRequest) -> Result<GetReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        let need = self.check_available(key, level, "get")?;
        let gathered = self
            .fan_out(
                self.ring.replicas_for(key),
                ReplicaAsk::Read(key),
                Wait::ForAcks(need),
                self.limits.read_timeout,
            )
            .await;
        if gathered.answers.len() < need {
            return Err(self.too_few_answers(
                "get",
                key,
                level,
                need,
                &gathered,
                self.limits.read_timeout,
            ));
        }
        let found = gathered
            .answers
            .into_iter()
            .map(|(_, version)| version)
            .fold(None, Versioned::newest);
        Ok(GetReply { found })
    }

    /// Asks every replica of the key what it holds, without repairing
    /// anything: the console's `where`.
    pub async fn inspect(
        self: &Arc<Self>,
        request: InspectRequest,
    ) -> Result<InspectReply, KvError> {
        let key = checked_key(request.key)?;
        let replicas = self.ring.replicas_for(key);
        let gathered = self
            .fan_out(
                replicas,
                ReplicaAsk::Read(key),
                Wait::ForEveryone,
                self.limits.read_timeout,
            )
            .await;
        let outcome_of = |id: ReplicaId| {
            if let Some((_, found)) = gathered
                .answers
                .iter()
                .find(|(answered, _)| *answered == id)
            {
                replica_holding::Outcome::Holding(Holding {
                    found: found.clone(),
                })
            } else if let Some((_, reason)) =
                gathered.failures.iter().find(|(failed, _)| *failed == id)
            {
                replica_holding::Outcome::Unreachable(reason.clone())
            } else {
                replica_holding::Outcome::Unreachable(no_answer_within(self.limits.read_timeout))
            }
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

    /// The put's timestamp. Waits briefly if the clock's lease on disk is
    /// being renewed (after a jump of the clock, the renewer needs a moment).
    async fn stamp(&self) -> Result<u64, KvError> {
        let deadline = Instant::now() + LEASE_WAIT;
        loop {
            match self.clock.next() {
                Ok(timestamp) => return Ok(timestamp),
                Err(ClockRefusal::LeaseBehind { lease_until }) if Instant::now() >= deadline => {
                    return Err(KvError::internal(format!(
                        "the write clock reached its lease ({lease_until}) and the lease on disk was not renewed within {} ms; the data disk may be slow or failing",
                        LEASE_WAIT.as_millis()
                    )))
                }
                Err(ClockRefusal::LeaseBehind { .. }) => rt::sleep(Duration::from_millis(5)).await,
                Err(ClockRefusal::FarAhead { next, wall }) => {
                    return Err(KvError::internal(format!(
                        "replica {}'s wall clock is {} s behind timestamps it issued or stored before it restarted; \
                         it takes no puts until its clock catches up (nothing was written; another coordinator can take the put)",
                        self.self_id,
                        next.saturating_sub(wall) / 1_000_000
                    )))
                }
            }
        }
    }

    /// How many answers the level needs from the key's replicas, or
    /// UNAVAILABLE if fewer than that are believed up. Decided from the
    /// up/down view alone, before anything is sent.
    fn check_available(&self, key: u8, level: Consistency, what: &str) -> Result<usize, KvError> {
        let replicas = self.ring.replicas_for(key);
        let need = level.required_acks(replicas.len());
        let (up, down): (Vec<ReplicaId>, Vec<ReplicaId>) =
            replicas.iter().partition(|&&id| self.peers.is_up(id));
        if up.len() < need {
            return Err(KvError::unavailable(format!(
                "{level} {what} of key {key} needs {need} of its replicas {} but only {} up ({}); down: {}",
                list(replicas),
                if up.len() == 1 { "1 is".to_string() } else { format!("{} are", up.len()) },
                list(&up),
                list(&down),
            )));
        }
        Ok(need)
    }

    /// Sends `ask` to every target at once and gathers answers until `wait`
    /// is satisfied, success has become impossible, or `timeout` passes.
    /// Requests still in flight then finish in the background.
    async fn fan_out(
        self: &Arc<Self>,
        targets: &[ReplicaId],
        ask: ReplicaAsk,
        wait: Wait,
        timeout: Duration,
    ) -> Gathered {
        let deadline = Instant::now() + timeout;
        let (answer_to, answers) = rt::unbounded();
        for &target in targets {
            let (coordinator, ask, answer_to) = (self.clone(), ask.clone(), answer_to.clone());
            rt::spawn(async move {
                let answer = coordinator.ask_replica(target, ask, timeout).await;
                let _ = answer_to.send((target, answer)).await;
            });
        }
        drop(answer_to);
        let mut gathered = Gathered {
            answers: Vec::new(),
            failures: Vec::new(),
            unanswered: targets.to_vec(),
        };
        while !gathered.unanswered.is_empty() {
            if let Wait::ForAcks(need) = wait {
                let hopeless = gathered.answers.len() + gathered.unanswered.len() < need;
                if gathered.answers.len() >= need || hopeless {
                    break;
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(Ok((replica, answer))) = rt::timeout(remaining, answers.recv()).await else {
                break;
            };
            gathered.unanswered.retain(|&id| id != replica);
            match answer {
                Ok(version) => gathered.answers.push((replica, version)),
                Err(reason) => gathered.failures.push((replica, reason)),
            }
        }
        gathered
    }

    /// Carries out one ask on one replica: this one directly, others over
    /// their peer connection.
    async fn ask_replica(
        &self,
        target: ReplicaId,
        ask: ReplicaAsk,
        timeout: Duration,
    ) -> ReplicaAnswer {
        if target == self.self_id {
            return match ask {
                // Bounded like a peer call; if the disk is slow the write
                // still lands (the WAL thread applies it), just unawaited.
                ReplicaAsk::Write(key, version) => {
                    match rt::timeout(timeout, self.local.write(key, version)).await {
                        Some(outcome) => outcome.map(|()| None).map_err(|e| e.to_string()),
                        None => Err(no_answer_within(timeout)),
                    }
                }
                ReplicaAsk::Read(key) => Ok(self.local.read(key)),
            };
        }
        let Some(peer) = self.peers.get(target) else {
            return Err(format!("replica {target} is not in the ring"));
        };
        let body = match ask {
            ReplicaAsk::Write(key, version) => Body::ReplicaWrite(ReplicaWrite {
                key: Some(u32::from(key)),
                version: Some(version),
            }),
            ReplicaAsk::Read(key) => Body::ReplicaRead(ReplicaRead {
                key: Some(u32::from(key)),
            }),
        };
        match peer.call(body, timeout).await {
            Ok(Body::ReplicaWriteAck(_)) => Ok(None),
            Ok(Body::ReplicaReadReply(reply)) => Ok(reply.found),
            Ok(other) => Err(format!("answered with an unexpected {}", other.kind_name())),
            Err(CallError::Refused(error)) => Err(error.to_string()),
            Err(CallError::Disconnected(reason)) => Err(reason),
            Err(CallError::TimedOut) => Err(no_answer_within(timeout)),
        }
    }

    /// The TIMEOUT a request ends in when too few replicas answered.
    fn too_few_answers(
        &self,
        what: &str,
        key: u8,
        level: Consistency,
        need: usize,
        gathered: &Gathered,
        timeout: Duration,
    ) -> KvError {
        let mut reasons: Vec<String> = gathered
            .failures
            .iter()
            .map(|(id, reason)| format!("replica {id}: {reason}"))
            .collect();
        reasons.extend(
            gathered
                .unanswered
                .iter()
                .map(|id| format!("replica {id}: {}", no_answer_within(timeout))),
        );
        let effect = if what == "put" {
            "; the write may have been applied on some replicas"
        } else {
            ""
        };
        KvError::timeout(format!(
            "{level} {what} of key {key}: {} of {need} replicas answered ({}){effect}",
            gathered.answers.len(),
            reasons.join("; "),
        ))
    }
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
