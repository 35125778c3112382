//! This replica's links to the other replicas: one pooled, multiplexed
//! connection per peer, and the up/down view that decides UNAVAILABLE.
//!
//! A peer is up once it has answered a ping, and down from the moment one of
//! its connections fails or breaks, or it leaves a ping unanswered for the
//! ping timeout. A prober task per peer owns connecting. It keeps two
//! connections: one for requests, and one that carries only its pings, so a
//! ping never waits behind a burst of requests on either side and a busy
//! replica does not look dead. It pings every second while the peer is up
//! and tries to reach it every quarter second while it is down, so a
//! restarted replica is seen within moments and a killed one as soon as its
//! sockets close. Requests only ever use the request connection the prober
//! keeps, and only while the peer is up; otherwise they fail at once, so
//! nothing queues behind a replica that is down.

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
    /// A ping not answered in this time marks the peer down.
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

/// Whether a peer is believed up, and the connections in use to it. Shared
/// with those connections' readers, which report a break the moment they
/// see one.
struct PeerLink {
    id: ReplicaId,
    addr: String,
    up: AtomicBool,
    /// Carries requests to the peer.
    requests: Mutex<Option<Arc<MuxConnection>>>,
    /// Carries only the prober's pings.
    pings: Mutex<Option<Arc<MuxConnection>>>,
}

impl PeerLink {
    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            crate::info!("peer {} at {} is up", self.id, self.addr);
        }
    }

    fn mark_down(&self, reason: &str) {
        if self.up.swap(false, Ordering::SeqCst) {
            crate::warn!("peer {} at {} is down: {reason}", self.id, self.addr);
        }
    }

    /// A connection broke. It marks the peer down unless the connection in
    /// that role has already been replaced by a working one, so a late report
    /// about an old connection cannot undo what the new one showed.
    fn connection_broke(&self, role: Role, connection_id: u64, reason: &str) {
        let replaced = lock(self.slot(role))
            .as_ref()
            .is_some_and(|c| c.id() != connection_id && !c.is_broken());
        if !replaced {
            self.mark_down(reason);
        }
    }

    fn slot(&self, role: Role) -> &Mutex<Option<Arc<MuxConnection>>> {
        match role {
            Role::Requests => &self.requests,
            Role::Pings => &self.pings,
        }
    }
}

/// The live connection in a slot, if any.
fn live(slot: &Mutex<Option<Arc<MuxConnection>>>) -> Option<Arc<MuxConnection>> {
    lock(slot).as_ref().filter(|c| !c.is_broken()).cloned()
}

fn lock(slot: &Mutex<Option<Arc<MuxConnection>>>) -> MutexGuard<'_, Option<Arc<MuxConnection>>> {
    // Each critical section is one load or store of the slot, so a
    // poisoned lock still guards a consistent value.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which of a peer's two connections.
#[derive(Clone, Copy)]
enum Role {
    Requests,
    Pings,
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
        self.link.up.load(Ordering::SeqCst)
    }

    /// Sends a request over the shared connection and waits up to `timeout`
    /// for the reply. Fails at once if the peer is believed down or there
    /// is no live connection.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, CallError> {
        let connection = live(&self.link.requests).filter(|_| self.is_up());
        let Some(connection) = connection else {
            return Err(CallError::Disconnected(format!(
                "replica {} at {} is believed down",
                self.link.id, self.link.addr
            )));
        };
        connection.call(body, timeout).await
    }

    /// The live connection in a role, opening a new one if there is none.
    async fn ensure_connection(&self, role: Role) -> Result<Arc<MuxConnection>, String> {
        if let Some(connection) = live(self.link.slot(role)) {
            return Ok(connection);
        }
        let link = self.link.clone();
        let connection = MuxConnection::connect(
            &self.link.addr,
            self.timing.connect_timeout,
            PEER_FRAME_LIMITS,
            move |connection_id, reason| link.connection_broke(role, connection_id, reason),
        )
        .await?;
        *lock(self.link.slot(role)) = Some(connection.clone());
        Ok(connection)
    }

    /// Keeps both connections open and the up/down view current for as long
    /// as the process runs: connects while the peer is down, pings it while
    /// it is up.
    async fn probe_forever(self: Arc<Self>, self_id: ReplicaId) {
        loop {
            match self.probe_once(self_id).await {
                Ok(()) => {
                    self.link.mark_up();
                    // A break reported while the ping was in flight would
                    // have been overwritten just now: look again.
                    let broken = [Role::Requests, Role::Pings]
                        .iter()
                        .any(|&role| live(self.link.slot(role)).is_none());
                    if broken {
                        self.link
                            .mark_down("a connection broke as the peer answered");
                    }
                }
                Err(reason) => self.link.mark_down(&reason),
            }
            self.pause().await;
        }
    }

    /// Sleeps a ping interval while the peer is up, or a retry interval
    /// once it is down (cut short if it goes down meanwhile), so a quick
    /// restart is noticed within a retry interval.
    async fn pause(&self) {
        let mut slept = Duration::ZERO;
        loop {
            rt::sleep(self.timing.retry_interval).await;
            slept += self.timing.retry_interval;
            if !self.is_up() || slept >= self.timing.ping_interval {
                return;
            }
        }
    }

    /// Makes sure both connections are open, then pings over the ping one.
    async fn probe_once(&self, self_id: ReplicaId) -> Result<(), String> {
        let pings = self.ensure_connection(Role::Pings).await?;
        self.ensure_connection(Role::Requests).await?;
        let ping = Body::Ping(Ping { sender_id: self_id });
        match pings.call(ping, self.timing.ping_timeout).await {
            Ok(_) | Err(CallError::Refused(_)) => Ok(()),
            Err(CallError::TimedOut) => {
                // Connections to a peer that stopped answering are not
                // reused: close them now, which also fails what waits on them.
                for role in [Role::Requests, Role::Pings] {
                    if let Some(connection) = lock(self.link.slot(role)).take() {
                        connection.close();
                    }
                }
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
                            requests: Mutex::new(None),
                            pings: Mutex::new(None),
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
