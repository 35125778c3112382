//! The seam between the coordinator's rules and the replicas: the
//! `ReplicaLink` trait (ask replica R this, within this time, and get an
//! `Outcome`), the asks and outcomes it carries, and `ClusterLink`, the real
//! link: this replica's own store for its own copy, the peer connections
//! for the others, and the hints log for writes they missed.
//!
//! Everything the quorum rules know of the replicas passes through the
//! trait, so the rules can be checked against scripted replicas with no
//! socket and no disk. What the trait must never do is decide anything the
//! rules decide: it carries one ask and reports what happened, typed, and a
//! reply of the wrong type is a failure here, never an acknowledgement.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::hints::Hints;
use crate::cluster::peers::Peers;
use crate::ops::rt;
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::mux::CallError;
use crate::protocol::proto::{
    Body, PaxosPrepare, PaxosPropose, ReplicaId, ReplicaRead, ReplicaWrite, Versioned,
};
use crate::storage::clock_fence::check_stamp;
use crate::storage::durable::LocalReplica;
use crate::storage::paxos::{ballot_of, stamp_of_ballot};

/// What orders versions, without their values: (timestamp, coordinator).
pub type Stamp = (u64, ReplicaId);

/// The stamp of a version.
pub fn stamp_of(version: &Versioned) -> Stamp {
    (version.timestamp_micros, version.coordinator_id)
}

/// Whether a write carries a client's put or delete, or copies a version
/// that already exists (a repair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOf {
    /// A client's put or delete: a replica holding something newer answers
    /// "stale", with what it holds, rather than a plain acknowledgement.
    Client,
    /// A read repair: the newest version seen, copied as it is.
    Repair,
}

/// What a coordinator asks of one replica of a key.
#[derive(Clone, Debug)]
pub enum ReplicaAsk {
    /// Write this version of the key. The version is shared by every
    /// target's ask: each copies it only to encode it (or to queue it for
    /// its own log).
    Write(u8, Arc<Versioned>, WriteOf),
    /// Read the key's value.
    Read(u8),
    /// A digest read: the stamp of what the replica holds, not the value.
    Digest(u8),
    /// A Paxos prepare of the key with this ballot (its read included).
    Prepare(u8, Stamp),
    /// A Paxos proposal of this version under this ballot.
    Propose(u8, Stamp, Arc<Versioned>),
}

/// What a replica answered a Paxos prepare.
#[derive(Clone, Debug, PartialEq)]
pub struct Promise {
    /// Whether it promised the ballot.
    pub promised: bool,
    /// The highest ballot it has promised.
    pub promised_ballot: Option<Stamp>,
    /// The proposal it accepted with the highest ballot, and that ballot.
    pub accepted: Option<(Stamp, Versioned)>,
    /// Its current version of the key.
    pub current: Option<Versioned>,
}

/// What one replica did with one ask.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It answered: the version it holds (reads) or nothing (writes).
    Answered(Option<Versioned>),
    /// It answered a digest read: the stamp of what it holds.
    Digest(Option<Stamp>),
    /// It holds a version newer than the client write it was sent (this
    /// stamp), so it did not apply it. The write path counts this as an
    /// acknowledgement unless the stamp is beyond the clock fence.
    Stale(Stamp),
    /// It answered a Paxos prepare.
    Promised(Box<Promise>),
    /// It answered a Paxos proposal: whether it accepted, and the highest
    /// ballot it has promised.
    Accepted(bool, Option<Stamp>),
    /// It refused or failed with a typed error: a write did not land there.
    Failed(ErrorKind, String),
    /// No answer (down, disconnected, timed out): a write may or may not
    /// have landed there.
    NoAnswer(String),
}

impl Outcome {
    /// Whether the replica answered the ask as asked (a read or digest
    /// answer, or a write's acknowledgement).
    pub fn answered(&self) -> bool {
        matches!(
            self,
            Outcome::Answered(_)
                | Outcome::Digest(_)
                | Outcome::Promised(_)
                | Outcome::Accepted(..)
        )
    }
}

/// How the coordinator reaches the replicas of a key. Small on purpose:
/// one ask at a time, the up/down view, who may serve reads, hints, and
/// the clock fence.
pub trait ReplicaLink: Send + Sync + 'static {
    /// Carries out `ask` on replica `target`, giving up after `timeout`.
    fn ask(
        &self,
        target: ReplicaId,
        ask: ReplicaAsk,
        timeout: Duration,
    ) -> impl Future<Output = Outcome> + Send;

    /// `target`'s copy of `key` if it can be read at once, with no task
    /// and no wait (this replica's own copy); None otherwise.
    fn read_now(&self, _target: ReplicaId, _key: u8) -> Option<Option<Versioned>> {
        None
    }

    /// Whether replica `id` is believed up.
    fn is_up(&self, id: ReplicaId) -> bool;

    /// Whether a read may count on replica `id`'s copy of `key`, by what
    /// it last said of itself: one rebuilding after losing its data may
    /// not, nor one never heard from.
    fn may_serve(&self, id: ReplicaId, key: u8) -> bool;

    /// Tries the replicas in `down` once more, waiting at most `wait`.
    fn refresh(&self, down: &[ReplicaId], wait: Duration) -> impl Future<Output = ()> + Send;

    /// Keeps `version` of `key` durably for `target`, which missed it.
    fn store_hint(
        &self,
        target: ReplicaId,
        key: u8,
        version: Versioned,
    ) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Why this replica must not coordinate writes now (its clock is off
    /// from its peers'), or None.
    fn write_fence(&self) -> Option<String>;
}

/// The real link: this replica's store, its peers, its hints.
pub struct ClusterLink {
    self_id: ReplicaId,
    local: Arc<LocalReplica>,
    peers: Arc<Peers>,
    hints: Arc<Hints>,
}

impl ClusterLink {
    /// The link of replica `self_id`.
    pub fn new(
        self_id: ReplicaId,
        local: Arc<LocalReplica>,
        peers: Arc<Peers>,
        hints: Arc<Hints>,
    ) -> Self {
        ClusterLink {
            self_id,
            local,
            peers,
            hints,
        }
    }

    /// An ask of this replica's own copy: checked like any other replica's
    /// (a repair of a version beyond the clock fence is refused here too,
    /// and a stale client write is not acknowledged), and bounded like a
    /// peer call: if the disk is slow the write still lands (the WAL thread
    /// applies it), just unawaited.
    async fn ask_own(&self, ask: ReplicaAsk, timeout: Duration) -> Outcome {
        match ask {
            ReplicaAsk::Write(key, version, of) => {
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
            ReplicaAsk::Digest(key) => Outcome::Digest(self.local.read(key).as_ref().map(stamp_of)),
            ReplicaAsk::Prepare(key, ballot) => {
                match rt::timeout(timeout, self.local.prepare(key, ballot)).await {
                    Some(Ok(promise)) => Outcome::Promised(Box::new(Promise {
                        promised: promise.promised,
                        promised_ballot: promise.promised_ballot,
                        accepted: promise.accepted,
                        current: promise.current,
                    })),
                    Some(Err(error)) => Outcome::Failed(error.kind, error.message),
                    None => Outcome::NoAnswer(no_answer_within(timeout)),
                }
            }
            ReplicaAsk::Propose(key, ballot, proposal) => {
                let proposal = Arc::unwrap_or_clone(proposal);
                if let Err(error) = check_stamp(&proposal, self.self_id) {
                    return Outcome::Failed(error.kind, error.message);
                }
                match rt::timeout(timeout, self.local.propose(key, ballot, proposal)).await {
                    Some(Ok((accepted, promised))) => Outcome::Accepted(accepted, promised),
                    Some(Err(error)) => Outcome::Failed(error.kind, error.message),
                    None => Outcome::NoAnswer(no_answer_within(timeout)),
                }
            }
        }
    }
}

impl ReplicaLink for ClusterLink {
    async fn ask(&self, target: ReplicaId, ask: ReplicaAsk, timeout: Duration) -> Outcome {
        if target == self.self_id {
            return self.ask_own(ask, timeout).await;
        }
        let Some(peer) = self.peers.get(target) else {
            return Outcome::Failed(
                ErrorKind::Internal,
                format!("replica {target} is not in the ring"),
            );
        };
        let (body, expects) = request_of(ask);
        outcome_of_reply(expects, peer.call(body, timeout).await, timeout)
    }

    fn read_now(&self, target: ReplicaId, key: u8) -> Option<Option<Versioned>> {
        (target == self.self_id).then(|| self.local.read(key))
    }

    fn is_up(&self, id: ReplicaId) -> bool {
        self.peers.is_up(id)
    }

    fn may_serve(&self, id: ReplicaId, key: u8) -> bool {
        self.peers.membership().can_serve(id, key)
    }

    async fn refresh(&self, down: &[ReplicaId], wait: Duration) {
        self.peers.refresh(down, wait).await;
    }

    async fn store_hint(
        &self,
        target: ReplicaId,
        key: u8,
        version: Versioned,
    ) -> Result<(), KvError> {
        self.hints.store(target, key, version).await
    }

    fn write_fence(&self) -> Option<String> {
        self.peers.clock_offsets().fence()
    }
}

/// What a replica is sent for an ask, and the name of the request, which
/// says which reply it expects.
pub(super) fn request_of(ask: ReplicaAsk) -> (Body, Expects) {
    match ask {
        ReplicaAsk::Write(key, version, of) => (
            Body::ReplicaWrite(ReplicaWrite {
                key: Some(u32::from(key)),
                version: Some(Arc::unwrap_or_clone(version)),
                client_write: of == WriteOf::Client,
            }),
            Expects::WriteAck,
        ),
        ReplicaAsk::Read(key) => (
            Body::ReplicaRead(ReplicaRead {
                key: Some(u32::from(key)),
                digest_only: false,
            }),
            Expects::Value,
        ),
        ReplicaAsk::Digest(key) => (
            Body::ReplicaRead(ReplicaRead {
                key: Some(u32::from(key)),
                digest_only: true,
            }),
            Expects::Digest,
        ),
        ReplicaAsk::Prepare(key, ballot) => (
            Body::PaxosPrepare(PaxosPrepare {
                key: Some(u32::from(key)),
                ballot: Some(ballot_of(ballot)),
            }),
            Expects::Promise,
        ),
        ReplicaAsk::Propose(key, ballot, proposal) => (
            Body::PaxosPropose(PaxosPropose {
                key: Some(u32::from(key)),
                proposal: Some(Arc::unwrap_or_clone(proposal)),
                ballot: Some(ballot_of(ballot)),
            }),
            Expects::Acceptance,
        ),
    }
}

/// Which reply a replica request expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expects {
    WriteAck,
    Value,
    Digest,
    Promise,
    Acceptance,
}

impl Expects {
    fn name(self) -> &'static str {
        match self {
            Expects::WriteAck => "replica write",
            Expects::Value => "replica read",
            Expects::Digest => "replica digest read",
            Expects::Promise => "paxos prepare",
            Expects::Acceptance => "paxos proposal",
        }
    }
}

/// The outcome of a peer call: a reply of the type the request expects is
/// an answer; any other reply is a failure, never an acknowledgement.
pub(super) fn outcome_of_reply(
    expects: Expects,
    reply: Result<Body, CallError>,
    timeout: Duration,
) -> Outcome {
    match (expects, reply) {
        (Expects::WriteAck, Ok(Body::ReplicaWriteAck(ack))) => match ack.held_newer {
            Some(held) => Outcome::Stale((held.timestamp_micros, held.coordinator_id)),
            None => Outcome::Answered(None),
        },
        (Expects::Value, Ok(Body::ReplicaReadReply(reply))) => Outcome::Answered(reply.found),
        // A value where a digest was asked for is as good, and better.
        (Expects::Digest, Ok(Body::ReplicaReadReply(reply))) => match reply.found {
            Some(version) => Outcome::Answered(Some(version)),
            None => Outcome::Digest(
                reply
                    .digest
                    .map(|digest| (digest.timestamp_micros, digest.coordinator_id)),
            ),
        },
        (Expects::Promise, Ok(Body::PaxosPromise(promise))) => {
            Outcome::Promised(Box::new(Promise {
                promised: promise.promised,
                promised_ballot: promise.promised_ballot.as_ref().map(stamp_of_ballot),
                accepted: promise
                    .accepted_ballot
                    .as_ref()
                    .map(stamp_of_ballot)
                    .zip(promise.accepted),
                current: promise.current,
            }))
        }
        (Expects::Acceptance, Ok(Body::PaxosAccepted(reply))) => Outcome::Accepted(
            reply.accepted,
            reply.promised_ballot.as_ref().map(stamp_of_ballot),
        ),
        (_, Ok(other)) => Outcome::Failed(
            ErrorKind::Internal,
            format!("answered a {} with a {}", expects.name(), other.kind_name()),
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

/// Why a replica is missing from the answers, whichever of the request's
/// timer and the peer call's timer fired first.
pub fn no_answer_within(timeout: Duration) -> String {
    format!("no answer within {} ms", timeout.as_millis())
}
