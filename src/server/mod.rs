//! The server layer: the replica as a network service. The accept loop
//! (`listener`), connection allowances for clients and peers (`slots`), one
//! task per connection (`connection`), what a connection may send
//! (`access`), and the dispatch of each request to the coordinator, the
//! cluster or this replica's own store (`handler`). `Node` holds the parts
//! every connection shares. It uses every layer below it and none uses it.

pub mod access;
pub mod connection;
pub mod handler;
pub mod listener;
pub mod metrics_http;
pub mod slots;

pub use listener::serve;

use std::sync::Arc;

use crate::cluster::anti_entropy::AntiEntropy;
use crate::cluster::hints::Hints;
use crate::cluster::peers::Peers;
use crate::cluster::repair_mode::RepairMode;
use crate::cluster::ring::Ring;
use crate::coordinator::{Coordinator, Limits};
use crate::metrics::Metrics;
use crate::protocol::proto::ReplicaId;
use crate::storage::clock::WriteClock;
use crate::storage::durable::LocalReplica;

/// Everything a connection task needs to answer requests.
pub struct Node {
    /// This replica's id.
    pub self_id: ReplicaId,
    /// Carries out client requests.
    pub coordinator: Arc<Coordinator>,
    /// This replica's own durable copy of its keys.
    pub local: Arc<LocalReplica>,
    /// The up/down view: hellos and requests from peers mark them up.
    pub peers: Arc<Peers>,
    /// Hints held for peers, for status.
    pub hints: Arc<Hints>,
    /// Digest exchanges with ring neighbours.
    pub anti_entropy: Arc<AntiEntropy>,
    /// Which convergence mechanisms run, for status.
    pub mode: RepairMode,
    /// The ring: which keys this replica holds, which coordinators exist.
    pub ring: Arc<Ring>,
    /// The coordinator clock, moved past every timestamp this replica stores.
    pub clock: Arc<WriteClock>,
    /// Value size limit, also enforced on writes from peers.
    pub limits: Limits,
    /// Frames above this size are refused and the connection closed.
    pub max_frame_bytes: usize,
    /// A frame started must be finished within this; idling between
    /// frames is not limited.
    pub frame_read_timeout: std::time::Duration,
    /// Requests one connection may have in progress at once; the reader
    /// stops reading until one finishes.
    pub max_requests_per_connection: usize,
    /// Client connections served at once; more are refused.
    pub max_connections: usize,
    /// Peer connections served at once, apart from the clients' allowance.
    pub max_peer_connections: usize,
    /// The connections open now, counted against those allowances; shared
    /// with the metrics endpoint, which reports how many are open.
    pub connections: Arc<slots::ConnectionSlots>,
    /// Bytes held for requests and replies across all connections.
    pub budget: Arc<crate::ops::budget::MemoryBudget>,
    /// The cluster's shared secret, if connections must authenticate.
    pub secret: Option<Vec<u8>>,
    /// Set on SIGTERM or SIGINT: stop taking requests, finish the rest.
    pub shutdown: Arc<crate::ops::shutdown::Shutdown>,
    /// This replica's counters, for `status --metrics`.
    pub metrics: Arc<Metrics>,
}
