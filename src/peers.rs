//! This replica's links to the other replicas: one pooled, multiplexed
//! connection per peer, and the up/down view that decides UNAVAILABLE.
//!
//! A peer is up once it has answered a ping, and down from the moment a
//! connection to it fails or breaks, or it leaves a ping unanswered while
//! sending nothing else. A prober task per peer owns connecting: it pings
//! the peer every second while it is up and tries to reach it every quarter
//! second while it is down, so a restarted replica is seen within moments
//! and a killed one as soon as its socket closes. Requests only ever use the
//! connection the prober keeps; with none, they fail at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    connection: Mutex<Option<Arc<MuxConnection>>>,
    timing: PeerTiming,
}

impl Peer {
    /// Whether this replica believes the peer is up.
    pub fn is_up(&self) -> bool {
        self.liveness.up.load(Ordering::Relaxed)
    }

    /// Sends a request over the shared connection and waits up to `timeout`
    /// for the reply. Fails at once if there is no live connection: only
    /// the prober connects, so requests never queue behind a connect to a
    /// replica that is down or unreachable.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, CallError> {
        let Some(connection) = self.live_connection() else {
            return Err(CallError::Disconnected(format!(
                "no connection to {}: it is believed down",
                self.liveness.addr
            )));
        };
        let outcome = connection.call(body, timeout).await;
        if let Err(CallError::Disconnected(reason)) = &outcome {
            self.liveness.mark_down(reason);
        }
        outcome
    }

    fn live_connection(&self) -> Option<Arc<MuxConnection>> {
        lock(&self.connection)
            .as_ref()
            .filter(|connection| !connection.is_broken())
            .cloned()
    }

    /// Opens a new shared connection, replacing any broken one.
    async fn connect(&self) -> Result<Arc<MuxConnection>, String> {
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
        *lock(&self.connection) = Some(connection.clone());
        Ok(connection)
    }

    /// Closes the shared connection at once, so that its reader reports
    /// the break now rather than after a newer connection is up.
    fn close_connection(&self) {
        if let Some(connection) = lock(&self.connection).take() {
            connection.close();
        }
    }

    /// Keeps the connection open and the up/down view current for as long
    /// as the process runs: connects while the peer is down, pings it while
    /// it is up.
    async fn probe_forever(self: Arc<Self>, self_id: ReplicaId) {
        loop {
            let pause = match self.probe_once(self_id).await {
                Ok(()) => self.timing.ping_interval,
                Err(reason) => {
                    self.liveness.mark_down(&reason);
                    self.timing.retry_interval
                }
            };
            rt::sleep(pause).await;
        }
    }

    /// One ping, over a new connection if there is no live one.
    async fn probe_once(&self, self_id: ReplicaId) -> Result<(), String> {
        let connection = match self.live_connection() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let ping = Body::Ping(Ping { sender_id: self_id });
        match connection.call(ping, self.timing.ping_timeout).await {
            Ok(_) | Err(CallError::Refused(_)) => {}
            // Late behind a burst of replies, but the peer is alive.
            Err(CallError::TimedOut) if connection.heard_within(self.timing.ping_timeout) => {}
            Err(CallError::TimedOut) => {
                // A connection that stopped answering is not reused.
                self.close_connection();
                return Err("did not answer a ping in time".to_string());
            }
            Err(CallError::Disconnected(reason)) => return Err(reason),
        }
        self.liveness.mark_up();
        Ok(())
    }
}

fn lock(slot: &Mutex<Option<Arc<MuxConnection>>>) -> MutexGuard<'_, Option<Arc<MuxConnection>>> {
    // Each critical section is one load or store of the slot, so a
    // poisoned lock still guards a consistent value.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
                        connection: Mutex::new(None),
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
