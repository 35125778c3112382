//! This replica's links to the other replicas: one pooled, multiplexed
//! connection per peer, and the up/down view that decides UNAVAILABLE.
//!
//! A peer is up once it has answered a ping, and down from the moment its
//! connection fails or breaks, or it leaves a ping unanswered while sending
//! nothing else. A prober task per peer owns connecting: it pings the peer
//! every second while it is up and tries to reach it every quarter second
//! while it is down, so a restarted replica is seen within moments and a
//! killed one as soon as its socket closes. Requests only ever use the
//! connection the prober keeps, and only while the peer is up; otherwise
//! they fail at once, so nothing queues behind a replica that is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::mux::{CallError, FrameLimits, MuxConnection};
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
    /// A ping not answered in this time, with nothing else heard from the
    /// peer meanwhile, marks the peer down.
    pub ping_timeout: Duration,
    /// Time between attempts to reach a peer that is down.
    pub retry_interval: Duration,
}

impl Default for PeerTiming {
    fn default() -> Self {
        PeerTiming {
            connect_timeout: Duration::from_millis(500),
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(1),
            retry_interval: Duration::from_millis(250),
        }
    }
}

/// Peers send each other one value per request or reply.
const PEER_FRAME_LIMITS: FrameLimits = FrameLimits {
    request_bytes: DEFAULT_MAX_FRAME_BYTES,
    reply_bytes: DEFAULT_MAX_FRAME_BYTES,
};

/// Whether a peer is believed up, and the connection in use to it. Shared
/// with that connection's reader, which reports a break the moment it sees
/// one.
struct PeerLink {
    id: ReplicaId,
    addr: String,
    up: AtomicBool,
    connection: Mutex<Option<Arc<MuxConnection>>>,
}

impl PeerLink {
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

    /// A connection broke. It marks the peer down unless a newer connection
    /// is already working, so a late report about an old connection cannot
    /// undo what the new one showed.
    fn connection_broke(&self, connection_id: u64, reason: &str) {
        let newer_is_working = self
            .slot()
            .as_ref()
            .is_some_and(|c| c.id() != connection_id && !c.is_broken());
        if !newer_is_working {
            self.mark_down(reason);
        }
    }

    fn live_connection(&self) -> Option<Arc<MuxConnection>> {
        self.slot().as_ref().filter(|c| !c.is_broken()).cloned()
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<MuxConnection>>> {
        // Each critical section is one load or store of the slot, so a
        // poisoned lock still guards a consistent value.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One other replica: where it is, whether we think it is up, and the
/// connection we share for all requests to it.
pub struct Peer {
    link: Arc<PeerLink>,
    timing: PeerTiming,
}

impl Peer {
    /// Whether this replica believes the peer is up.
    pub fn is_up(&self) -> bool {
        self.link.up.load(Ordering::Relaxed)
    }

    /// Sends a request over the shared connection and waits up to `timeout`
    /// for the reply. Fails at once if the peer is believed down or there
    /// is no live connection.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, CallError> {
        let connection = self.link.live_connection().filter(|_| self.is_up());
        let Some(connection) = connection else {
            return Err(CallError::Disconnected(format!(
                "replica {} at {} is believed down",
                self.link.id, self.link.addr
            )));
        };
        connection.call(body, timeout).await
    }

    /// Opens a new shared connection, replacing any broken one.
    async fn connect(&self) -> Result<Arc<MuxConnection>, String> {
        let link = self.link.clone();
        let connection = MuxConnection::connect(
            &self.link.addr,
            self.timing.connect_timeout,
            PEER_FRAME_LIMITS,
            move |connection_id, reason| link.connection_broke(connection_id, reason),
        )
        .await?;
        *self.link.slot() = Some(connection.clone());
        Ok(connection)
    }

    /// Closes the shared connection at once, so that its reader reports
    /// the break now rather than after a newer connection is up.
    fn close_connection(&self) {
        if let Some(connection) = self.link.slot().take() {
            connection.close();
        }
    }

    /// Keeps the connection open and the up/down view current for as long
    /// as the process runs: connects while the peer is down, pings it while
    /// it is up.
    async fn probe_forever(self: Arc<Self>, self_id: ReplicaId) {
        loop {
            let pause = match self.probe_once(self_id).await {
                Ok(()) => {
                    self.link.mark_up();
                    self.timing.ping_interval
                }
                Err(reason) => {
                    self.link.mark_down(&reason);
                    self.timing.retry_interval
                }
            };
            rt::sleep(pause).await;
        }
    }

    /// One ping, over a new connection if there is no live one.
    async fn probe_once(&self, self_id: ReplicaId) -> Result<(), String> {
        let connection = match self.link.live_connection() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let ping = Body::Ping(Ping { sender_id: self_id });
        match connection.call(ping, self.timing.ping_timeout).await {
            Ok(_) | Err(CallError::Refused(_)) => Ok(()),
            // Late behind a burst of replies, but the peer is alive.
            Err(CallError::TimedOut) if connection.heard_within(self.timing.ping_timeout) => Ok(()),
            Err(CallError::TimedOut) => {
                // A connection that stopped answering is not reused.
                self.close_connection();
                Err("did not answer a ping in time".to_string())
            }
            Err(CallError::Disconnected(reason)) => Err(reason),
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
                        link: Arc::new(PeerLink {
                            id: member.id,
                            addr: member.addr.clone(),
                            up: AtomicBool::new(false),
                            connection: Mutex::new(None),
                        }),
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
            .map(|peer| (peer.link.id, peer.is_up()))
            .collect()
    }
}
