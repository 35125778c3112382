//! What a replica does with each request it receives, whoever sent it: a
//! client's get/put/delete/inspect/status goes to the coordinator, `repair`
//! to anti-entropy; a peer's write, read, digest or ping is answered from
//! this replica's own store.
//!
//! Every failure becomes a typed `Error` reply; nothing here can take the
//! connection, let alone the process, down.

use crate::cluster::replica_write::{checked_replica_write, held_key};
use crate::cluster::ring::Ring;
use crate::metrics::Gauges;
use crate::protocol::error::KvError;
use crate::protocol::proto::{
    Ballot, Consistency, PaxosAccepted, PaxosPrepare, PaxosPromise, PaxosPropose, ReplicaId,
    Versioned,
};
use crate::protocol::proto::{
    Body, DigestEntry, MetricsReply, PeerView, Pong, ReplicaRead, ReplicaReadReply, ReplicaWrite,
    ReplicaWriteAck, StatusReply,
};
use crate::server::Node;
use crate::storage::clock::wall_micros;
use crate::storage::clock_fence::check_stamp;
use crate::storage::paxos::{ballot_of, stamp_of_ballot, BallotStamp};

impl Node {
    /// Answers one request body with a reply body (possibly an `Error`).
    pub async fn answer(&self, body: Option<Body>) -> Body {
        let outcome = match body {
            None => Err(KvError::invalid("the envelope has no body")),
            Some(body) => self.dispatch(body).await,
        };
        outcome.unwrap_or_else(|error| Body::Error(error.into()))
    }

    async fn dispatch(&self, body: Body) -> Result<Body, KvError> {
        match body {
            Body::Get(request) => self.coordinator.get(request).await.map(Body::GetReply),
            Body::Put(request) => {
                refuse_serial(request.consistency, "put")?;
                self.coordinator.put(request).await.map(Body::PutReply)
            }
            Body::Delete(request) => {
                refuse_serial(request.consistency, "delete")?;
                self.coordinator
                    .delete(request)
                    .await
                    .map(Body::DeleteReply)
            }
            Body::Cas(request) => self.coordinator.cas(request).await.map(Body::CasReply),
            Body::PaxosPrepare(prepare) => self.prepare(prepare).await.map(Body::PaxosPromise),
            Body::PaxosPropose(propose) => self.propose(propose).await.map(Body::PaxosAccepted),
            Body::Repair(_) => Ok(Body::RepairReply(self.anti_entropy.round().await)),
            Body::Digest(digest) => self.anti_entropy.answer(digest).map(Body::DigestReply),
            Body::Inspect(request) => self
                .coordinator
                .inspect(request)
                .await
                .map(Body::InspectReply),
            Body::Status(_) => Ok(Body::StatusReply(Box::new(self.status()))),
            Body::Metrics(_) => Ok(Body::MetricsReply(Box::new(self.metrics_reply()))),
            Body::ReplicaWrite(write) => self.apply_write(write).await.map(Body::ReplicaWriteAck),
            Body::ReplicaRead(read) => self.read_local(read).map(Body::ReplicaReadReply),
            Body::Ping(ping) => Ok(Body::Pong(Pong {
                replica_id: self.self_id,
                hello: Some(self.peers.membership().hello_for(ping.sender_id)),
                wall_micros: Some(wall_micros()),
            })),
            reply => Err(KvError::invalid(format!(
                "a {} is a reply, not a request",
                reply.kind_name()
            ))),
        }
    }

    /// A Paxos prepare from a coordinator: promise (durably) or refuse,
    /// and say what this replica accepted and holds for the key.
    async fn prepare(&self, prepare: PaxosPrepare) -> Result<PaxosPromise, KvError> {
        let key = held_key(&self.ring, self.self_id, prepare.key)?;
        let ballot = checked_ballot(&self.ring, self.self_id, prepare.ballot.as_ref())?;
        let promise = self.local.prepare(key, ballot).await?;
        let (accepted_ballot, accepted) = match promise.accepted {
            Some((ballot, version)) => (Some(ballot_of(ballot)), Some(version)),
            None => (None, None),
        };
        Ok(PaxosPromise {
            promised: promise.promised,
            promised_ballot: promise.promised_ballot.map(ballot_of),
            accepted,
            accepted_ballot,
            current: promise.current,
        })
    }

    /// A Paxos proposal from a coordinator: accept it (durably) unless a
    /// higher ballot was promised.
    async fn propose(&self, propose: PaxosPropose) -> Result<PaxosAccepted, KvError> {
        let (key, proposal) = checked_replica_write(
            &self.ring,
            self.self_id,
            self.limits.max_value_bytes,
            propose.key,
            propose.proposal,
        )?;
        let ballot = checked_ballot(&self.ring, self.self_id, propose.ballot.as_ref())?;
        let (accepted, promised) = self.local.propose(key, ballot, proposal).await?;
        Ok(PaxosAccepted {
            accepted,
            promised_ballot: promised.map(ballot_of),
        })
    }

    async fn apply_write(&self, write: ReplicaWrite) -> Result<ReplicaWriteAck, KvError> {
        let (key, version) = checked_replica_write(
            &self.ring,
            self.self_id,
            self.limits.max_value_bytes,
            write.key,
            write.version,
        )?;
        // A client write older than what this replica holds is stale: it
        // would change nothing here. The answer says what is held; the
        // coordinator, which stamped the write above what a quorum held,
        // counts it (unless the stamp held is beyond the clock fence).
        if write.client_write {
            if let Some(held) = self.local.newer_than(key, &version) {
                return Ok(ReplicaWriteAck {
                    held_newer: Some(DigestEntry {
                        key: u32::from(key),
                        timestamp_micros: held.timestamp_micros,
                        coordinator_id: held.coordinator_id,
                    }),
                });
            }
        }
        // Before the write becomes readable, so that no put through this
        // replica can be stamped below a value it already serves.
        self.clock.observe(version.timestamp_micros);
        // Bounded like the coordinator's own wait: with a hung disk, a
        // peer's writes end as TIMEOUT instead of piling up as tasks. A
        // write that reached the WAL thread still lands.
        let timeout = self.limits.write_timeout;
        match crate::ops::rt::timeout(timeout, self.local.write(key, version)).await {
            Some(outcome) => outcome?,
            None => {
                return Err(KvError::timeout(format!(
                "replica {} could not make the write durable within {} ms; it may still be applied",
                self.self_id,
                timeout.as_millis()
            )))
            }
        }
        Ok(ReplicaWriteAck { held_newer: None })
    }

    fn read_local(&self, read: ReplicaRead) -> Result<ReplicaReadReply, KvError> {
        let key = held_key(&self.ring, self.self_id, read.key)?;
        if let Some(refusal) = self.peers.membership().refusal_to_serve(key) {
            return Err(KvError::unavailable(refusal));
        }
        let found = self.local.read(key);
        if read.digest_only {
            return Ok(ReplicaReadReply {
                found: None,
                digest: found.map(|version| DigestEntry {
                    key: u32::from(key),
                    timestamp_micros: version.timestamp_micros,
                    coordinator_id: version.coordinator_id,
                }),
            });
        }
        Ok(ReplicaReadReply {
            found,
            digest: None,
        })
    }

    /// The counters `status --metrics` and the Prometheus endpoint show.
    pub fn metrics_reply(&self) -> MetricsReply {
        let (anti_entropy_rounds, anti_entropy_fixes) = self.anti_entropy.counts();
        self.metrics.reply(Gauges {
            replica_id: self.self_id,
            repairs_sent: self
                .coordinator
                .stats
                .repairs_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            hints_pending: self.hints.pending_total() as u64,
            anti_entropy_rounds,
            anti_entropy_fixes,
        })
    }

    fn status(&self) -> StatusReply {
        let (rounds, fixes) = self.anti_entropy.counts();
        StatusReply {
            replica_id: self.self_id,
            keys_held: self.local.keys_held() as u32,
            wal_bytes: self.local.wal_bytes(),
            peers: self
                .peers
                .view()
                .into_iter()
                .map(|(replica_id, up)| {
                    let standing = self.peers.membership().standing(replica_id);
                    PeerView {
                        replica_id,
                        up,
                        hints_pending: self.hints.pending_for(replica_id) as u64,
                        refused: self.peers.down_reason(replica_id),
                        state: standing.state as i32,
                        incarnation: standing.incarnation,
                        unreadable_keys: standing.unreadable_keys,
                    }
                })
                .collect(),
            repair_mode: self.mode.as_str().to_string(),
            repairs_sent: self
                .coordinator
                .stats
                .repairs_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            anti_entropy_rounds: rounds,
            anti_entropy_fixes: fixes,
            identity: Some(self.peers.membership().own_hello()),
            rebuild_waiting_for: self.peers.membership().rebuild_waiting_for(),
            clock_fence: self.peers.clock_offsets().fence().unwrap_or_default(),
            peer_clock_offsets: self.peers.clock_offsets().for_status(),
        }
    }
}

/// Puts and deletes name a level; SERIAL is for gets, and a write that
/// must see the current value is a compare-and-set.
fn refuse_serial(level: i32, op: &str) -> Result<(), KvError> {
    if level == Consistency::Serial as i32 {
        return Err(KvError::invalid(format!(
            "a {op} cannot be SERIAL: SERIAL is for gets; to write only if the key holds a given value, use cas"
        )));
    }
    Ok(())
}

/// A ballot from a Paxos prepare: present, from a coordinator in the ring,
/// and within the clock fence (a ballot is a timestamp like any other).
fn checked_ballot(
    ring: &Ring,
    self_id: ReplicaId,
    ballot: Option<&Ballot>,
) -> Result<BallotStamp, KvError> {
    let Some(ballot) = ballot else {
        return Err(KvError::invalid("the prepare has no ballot"));
    };
    if ring.member(ballot.coordinator_id).is_none() {
        return Err(KvError::invalid(format!(
            "the ballot names coordinator {}, which is not in the ring",
            ballot.coordinator_id
        )));
    }
    let as_version = Versioned {
        value: String::new(),
        timestamp_micros: ballot.micros,
        coordinator_id: ballot.coordinator_id,
        tombstone: false,
    };
    check_stamp(&as_version, self_id)?;
    Ok(stamp_of_ballot(ballot))
}
