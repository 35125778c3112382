//! What a replica does with each request it receives, whoever sent it: a
//! client's get/put/inspect/status goes to the coordinator; a peer's write,
//! read or ping is answered from this replica's own store.
//!
//! Every failure becomes a typed `Error` reply; nothing here can take the
//! connection, let alone the process, down.

use std::sync::Arc;

use crate::clock::{latest_believable, WriteClock, MAX_CLOCK_LEAD};
use crate::coordinator::{Coordinator, Limits};
use crate::error::KvError;
use crate::peers::Peers;
use crate::proto::{
    checked_key, checked_value, Body, PeerView, Pong, ReplicaRead, ReplicaReadReply, ReplicaWrite,
    ReplicaWriteAck, StatusReply,
};
use crate::replica::LocalReplica;
use crate::ring::{ReplicaId, Ring};

/// Everything a connection task needs to answer requests.
pub struct Node {
    /// This replica's id.
    pub self_id: ReplicaId,
    /// Carries out client requests.
    pub coordinator: Arc<Coordinator>,
    /// This replica's own durable copy of its keys.
    pub local: Arc<LocalReplica>,
    /// The up/down view, for status.
    pub peers: Arc<Peers>,
    /// The ring: which keys this replica holds, which coordinators exist.
    pub ring: Arc<Ring>,
    /// The coordinator clock, moved past every timestamp this replica stores.
    pub clock: Arc<WriteClock>,
    /// Value size limit, also enforced on writes from peers.
    pub limits: Limits,
    /// Frames above this size are refused and the connection closed.
    pub max_frame_bytes: usize,
    /// Requests one connection may have in progress at once; the reader
    /// stops reading until one finishes.
    pub max_requests_per_connection: usize,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
}

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
            Body::Put(request) => self.coordinator.put(request).await.map(Body::PutReply),
            Body::Inspect(request) => self
                .coordinator
                .inspect(request)
                .await
                .map(Body::InspectReply),
            Body::Status(_) => Ok(Body::StatusReply(self.status())),
            Body::ReplicaWrite(write) => self.apply_write(write).await.map(Body::ReplicaWriteAck),
            Body::ReplicaRead(read) => self.read_local(read).map(Body::ReplicaReadReply),
            Body::Ping(_) => Ok(Body::Pong(Pong {
                replica_id: self.self_id,
            })),
            reply => Err(KvError::invalid(format!(
                "a {} is a reply, not a request",
                reply.kind_name()
            ))),
        }
    }

    async fn apply_write(&self, write: ReplicaWrite) -> Result<ReplicaWriteAck, KvError> {
        let key = self.held_key(write.key)?;
        let Some(version) = write.version else {
            return Err(KvError::invalid("the replica write has no version"));
        };
        checked_value(&version.value, self.limits.max_value_bytes)?;
        if self.ring.member(version.coordinator_id).is_none() {
            return Err(KvError::invalid(format!(
                "the write names coordinator {}, which is not in the ring",
                version.coordinator_id
            )));
        }
        if version.timestamp_micros > latest_believable() {
            return Err(KvError::invalid(format!(
                "the write's timestamp {} is more than {} s ahead of this replica's clock",
                version.timestamp_micros,
                MAX_CLOCK_LEAD.as_secs()
            )));
        }
        // Before the write becomes readable, so that no put through this
        // replica can be stamped below a value it already serves.
        self.clock.observe(version.timestamp_micros);
        self.local.write(key, version).await?;
        Ok(ReplicaWriteAck {})
    }

    fn read_local(&self, read: ReplicaRead) -> Result<ReplicaReadReply, KvError> {
        let key = self.held_key(read.key)?;
        Ok(ReplicaReadReply {
            found: self.local.read(key),
        })
    }

    /// A key from a replica message, which must be one this replica holds: a
    /// misrouted write would otherwise sit where no read looks for it.
    fn held_key(&self, key: Option<u32>) -> Result<u8, KvError> {
        let key = checked_key(key)?;
        if !self.ring.replicas_for(key).contains(&self.self_id) {
            return Err(KvError::invalid(format!(
                "replica {} does not hold key {key} (its replicas are {:?})",
                self.self_id,
                self.ring.replicas_for(key)
            )));
        }
        Ok(key)
    }

    fn status(&self) -> StatusReply {
        StatusReply {
            replica_id: self.self_id,
            keys_held: self.local.keys_held() as u32,
            wal_bytes: self.local.wal_bytes(),
            peers: self
                .peers
                .view()
                .into_iter()
                .map(|(replica_id, up)| PeerView { replica_id, up })
                .collect(),
        }
    }
}
