//! This replica's links to the other replicas: one pooled, multiplexed
//! connection per peer, and the up/down view that decides UNAVAILABLE.
//!
//! A peer is up once it has answered something, and down from the moment a
//! connection to it fails, breaks or stops answering pings. A prober task per
//! peer pings it every second while it is up and tries to reach it every
//! quarter second while it is down, so a restarted replica is seen within
//! moments and a killed one as soon as its socket closes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::mux::{CallError, MuxConnection};
use crate::proto::{Body, Ping};
use crate::ring::{ReplicaId, Ring};
use crate::rt;

/// Timing of connections and liveness probes.
#[derive(Clone, Debug)]
pub struct PeerTiming {
    /// How long to wait for a TCP connection to a peer.
    pub connect_timeout: Duration,
    /// Time between pings to a peer that is up.
    pub ping_interval: Duration,
    /// A ping not answered in this time marks the peer down.
    pub ping_timeout: Duration,
    /// Time between attempts to reach a peer that is down.
    pub retry_interval: Duration,
    /// Frames from peers above this size are refused.
    pub max_frame_bytes: usize,
}

impl Default for PeerTiming {
    fn default() -> Self {
        PeerTiming {
            connect_timeout: Duration::from_millis(500),
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(1),
            retry_interval: Duration::from_millis(250),
            max_frame_bytes: crate::frame::DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// Whether we believe a peer is up. Shared with the peer's connection, whose
/// reader marks the peer down the moment the stream breaks.
struct Liveness {
    id: ReplicaId,
    addr: String,
    up: AtomicBool,
    /// Counts connections opened; a connection's break marks the peer down
    /// only if no newer connection has been opened since.
    connections_opened: AtomicU64,
}

impl Liveness {
    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            crate::info!("peer {} at {} is up", self.id, self.addr);
        }
    }

    fn mark_down(&self, reason: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            crate::warn!("peer {} at {} is down: {reason}", self.id, self.addr);
        }
    }

    fn connection_broke(&self, connection_number: u64, reason: &str) {
        if self.connections_opened.load(Ordering::Relaxed) == connection_number {
            self.mark_down(reason);
        }
    }
}

/// One other replica: where it is, whether we think it is up, and the
/// connection we share for all requests to it.
pub struct Peer {
    liveness: Arc<Liveness>,
    connection: rt::AsyncMutex<Option<Arc<MuxConnection>>>,
    timing: PeerTiming,
}

impl Peer {
    /// Whether this replica believes the peer is up.
    pub fn is_up(&self) -> bool {
        self.liveness.up.load(Ordering::Relaxed)
    }

    /// Sends a request over the shared connection (opening it if needed)
    /// and waits up to `timeout` for the reply. Updates the up/down view
    /// from what happened.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, CallError> {
        let connection = match self.connection().await {
            Ok(connection) => connection,
            Err(reason) => {
                self.liveness.mark_down(&reason);
                return Err(CallError::Disconnected(reason));
            }
        };
        let outcome = connection.call(body, timeout).await;
        match &outcome {
            Ok(_) | Err(CallError::Refused(_)) => self.liveness.mark_up(),
            Err(CallError::Disconnected(reason)) => self.liveness.mark_down(reason),
            Err(CallError::TimedOut) => {}
        }
        outcome
    }

    async fn connection(&self) -> Result<Arc<MuxConnection>, String> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_broken()) {
            return Ok(connection.clone());
        }
        let liveness = self.liveness.clone();
        let number = self
            .liveness
            .connections_opened
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let connection = MuxConnection::connect(
            &self.liveness.addr,
            self.timing.connect_timeout,
            self.timing.max_frame_bytes,
            move |reason| liveness.connection_broke(number, reason),
        )
        .await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Whether the connection is still delivering replies, so the ping is
    /// only late behind them.
    async fn busy_but_alive(&self) -> bool {
        let slot = self.connection.lock().await;
        slot.as_ref()
            .is_some_and(|connection| connection.heard_within(self.timing.ping_timeout))
    }

    /// Closes the shared connection at once, so that its reader reports
    /// the break now rather than after a newer connection is up.
    async fn close_connection(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            connection.close();
        }
    }

    /// Pings the peer for as long as the process runs.
    async fn probe_forever(self: Arc<Self>, self_id: ReplicaId) {
        loop {
            let ping = Body::Ping(Ping { sender_id: self_id });
            let answered = match self.call(ping, self.timing.ping_timeout).await {
                Ok(_) => true,
                Err(CallError::TimedOut) if self.busy_but_alive().await => true,
                Err(CallError::TimedOut) => {
                    self.liveness.mark_down("did not answer a ping in time");
                    // A connection that stopped answering is not reused.
                    self.close_connection().await;
                    false
                }
                Err(_) => false,
            };
            let pause = if answered {
                self.timing.ping_interval
            } else {
                self.timing.retry_interval
            };
            rt::sleep(pause).await;
        }
    }
}

/// Every other replica in the ring, indexed by id.
pub struct Peers {
    self_id: ReplicaId,
    by_id: Vec<Option<Arc<Peer>>>,
}

impl Peers {
    /// Links to every member of the ring but `self_id`, all believed down
    /// until they answer. Call `start_probing` to begin pinging them.
    pub fn new(ring: &Ring, self_id: ReplicaId, timing: PeerTiming) -> Peers {
        let by_id = ring
            .members()
            .iter()
            .map(|member| {
                (member.id != self_id).then(|| {
                    Arc::new(Peer {
                        liveness: Arc::new(Liveness {
                            id: member.id,
                            addr: member.addr.clone(),
                            up: AtomicBool::new(false),
                            connections_opened: AtomicU64::new(0),
                        }),
                        connection: rt::AsyncMutex::new(None),
                        timing: timing.clone(),
                    })
                })
            })
            .collect();
        Peers { self_id, by_id }
    }

    /// Starts one prober task per peer.
    pub fn start_probing(&self) {
        for peer in self.by_id.iter().flatten() {
            rt::spawn(peer.clone().probe_forever(self.self_id));
        }
    }

    /// The peer with this id; `None` for this replica itself.
    pub fn get(&self, id: ReplicaId) -> Option<&Arc<Peer>> {
        self.by_id.get(id as usize).and_then(Option::as_ref)
    }

    /// Whether `id` is up: this replica always is.
    pub fn is_up(&self, id: ReplicaId) -> bool {
        id == self.self_id || self.get(id).is_some_and(|peer| peer.is_up())
    }

    /// (id, up) for every other replica, in id order.
    pub fn view(&self) -> Vec<(ReplicaId, bool)> {
        self.by_id
            .iter()
            .flatten()
            .map(|peer| (peer.liveness.id, peer.is_up()))
            .collect()
    }
}
