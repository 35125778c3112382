//! This replica's links to the other replicas: one pooled, multiplexed
//! connection per peer, and the up/down view that decides UNAVAILABLE.
//!
//! A peer is up once it has answered a ping, or the moment it says hello
//! (the first ping on any connection it opens to us: `heard_from`), and
//! down from the moment one of its connections fails or breaks, or it
//! leaves a ping unanswered for the ping timeout. A prober task per peer
//! owns connecting. It keeps two connections: one for requests, and one
//! that carries only its pings, so a ping never waits behind a burst of
//! requests on either side and a busy replica does not look dead. Each new
//! connection starts with a hello ping. The prober pings every second while
//! the peer is up and tries to reach it every quarter second while it is
//! down; a hello from the peer wakes it at once, so a restarted replica and
//! its peers see each other within a round trip of its start.
//!
//! Requests only ever use the request connection the prober keeps, and only
//! while the peer is up; otherwise they fail at once, so nothing queues
//! behind a replica that is down. The one wait: a peer that said hello is up
//! before our prober's connection to it is open, and a request waits for
//! that connection (a loopback connect, at most the connect timeout).
//!
//! Every transition to up is announced on `up_events`, which is how hinted
//! handoff learns that a replica is back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::membership::Membership;
use crate::cluster::ring::Ring;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::protocol::mux::{CallError, FrameLimits, MuxConnection};
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{AuthRequest, Body, Ping};
use crate::storage::clock::wall_micros;
use crate::storage::clock_fence::ClockOffsets;

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

/// A peer that said hello within this time is starting, not down: a probe
/// that cannot reach it yet (its port is not open) does not mark it down.
/// Longer than a start takes between its hellos and opening its port
/// (`STARTUP_PROBE_LIMIT`).
const HELLO_GRACE: Duration = Duration::from_secs(3);

/// The longest a starting replica waits for its first round of probes
/// before it opens its port.
const STARTUP_PROBE_LIMIT: Duration = Duration::from_secs(1);

/// The shortest gap between connection attempts to one peer.
const QUICK_RETRY: Duration = Duration::from_millis(10);

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
    /// When the peer last spoke to us (a hello or a request), so that a
    /// probe failing just then (the peer said hello before it opened its
    /// port) does not mark it down.
    heard_at: Mutex<Option<Instant>>,
    /// Counts finished probes, so a request can wait for one fresh attempt.
    probes_done: AtomicU64,
    /// Wakes the prober early (a hello arrived); holds at most one wake-up.
    wake: (rt::Sender<()>, rt::Receiver<()>),
    /// Where transitions to up are announced.
    up_events: rt::Sender<ReplicaId>,
    /// Why it was last counted down, for `status`.
    down_reason: Mutex<String>,
    /// What last went wrong with it (a connection that broke, a probe that
    /// failed), cleared by a probe that succeeds: a request that finds it
    /// up but with no connection says this rather than only that none
    /// opened.
    trouble: Mutex<Option<String>>,
}

impl PeerLink {
    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            crate::info!("peer {} at {} is up", self.id, self.addr);
            let _ = self.up_events.try_send(self.id);
        }
    }

    fn mark_down(&self, reason: &str) {
        self.note_trouble(reason);
        reason.clone_into(&mut lock(&self.down_reason));
        if self.up.swap(false, Ordering::SeqCst) {
            crate::warn!("peer {} at {} is down: {reason}", self.id, self.addr);
        }
    }

    /// A connection broke. It marks the peer down only if it is the
    /// connection in use in that role: a late report about an old
    /// connection cannot undo what its replacement showed, and one closed
    /// before it was ever used (its hello was refused) leaves the reason
    /// the prober gave.
    fn connection_broke(&self, role: Role, connection_id: u64, reason: &str) {
        self.note_trouble(reason);
        let in_use = lock(self.slot(role))
            .as_ref()
            .is_some_and(|c| c.id() == connection_id);
        if in_use {
            self.mark_down(reason);
        }
    }

    fn note_trouble(&self, reason: &str) {
        *lock(&self.trouble) = Some(reason.to_string());
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

/// Which of a peer's two connections.
#[derive(Clone, Copy)]
enum Role {
    Requests,
    Pings,
}

/// One other replica: where it is, whether we think it is up, and the
/// connection we share for all requests to it.
pub struct Peer {
    self_id: ReplicaId,
    /// The cluster's secret, proved on every connection before its hello.
    secret: Option<Arc<[u8]>>,
    /// Checks the identity in the peer's pongs, and gives ours.
    membership: Arc<Membership>,
    link: Arc<PeerLink>,
    timing: PeerTiming,
    /// Where the peer's clock offset, measured by each ping, is kept.
    offsets: Arc<ClockOffsets>,
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
        let started = Instant::now();
        let connection = loop {
            if !self.is_up() {
                return Err(CallError::Disconnected(format!(
                    "replica {} at {} is believed down",
                    self.link.id, self.link.addr
                )));
            }
            if let Some(connection) = live(&self.link.requests) {
                break connection;
            }
            // Up by its hello or its last probe, with no connection open.
            if started.elapsed() >= timeout.min(self.timing.connect_timeout) {
                let trouble = lock(&self.link.trouble)
                    .as_ref()
                    .map_or(String::new(), |reason| format!(" (last: {reason})"));
                return Err(CallError::Disconnected(format!(
                    "replica {} at {} is counted up but no connection to it opened in time{trouble}",
                    self.link.id, self.link.addr
                )));
            }
            rt::sleep(Duration::from_millis(1)).await;
        };
        let remaining = timeout.saturating_sub(started.elapsed());
        connection.call(body, remaining).await
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
        if let Err(reason) = self.introduce(&connection).await {
            connection.close();
            return Err(reason);
        }
        *lock(self.link.slot(role)) = Some(connection.clone());
        Ok(connection)
    }

    /// Proves the secret (when there is one) and says hello on a new
    /// connection, and checks that the replica answering is the one the
    /// cluster file names, of the same cluster, requiring the same secret.
    async fn introduce(&self, connection: &MuxConnection) -> Result<(), String> {
        let timeout = self.timing.ping_timeout;
        if let Some(secret) = &self.secret {
            let auth = Body::Auth(AuthRequest {
                secret: secret.to_vec(),
                replica_id: Some(self.self_id),
            });
            match connection.call(auth, timeout).await {
                Ok(Body::AuthReply(reply)) if reply.secret_required => {}
                Ok(Body::AuthReply(_)) => {
                    return Err(format!(
                        "replica {} does not require the cluster's secret (started without --secret-file?): anyone could have written to it",
                        self.link.id
                    ))
                }
                Ok(other) => {
                    return Err(format!(
                        "answered authentication with a {}",
                        other.kind_name()
                    ))
                }
                Err(CallError::Refused(error)) => {
                    return Err(format!("refused our authentication: {error}"))
                }
                Err(CallError::TimedOut) => {
                    return Err("did not answer our authentication in time".to_string())
                }
                Err(CallError::Disconnected(reason)) => return Err(reason),
            }
        }
        match connection.call(self.ping(), timeout).await {
            Ok(Body::Pong(pong)) => self.membership.accept(self.link.id, pong.hello.as_ref()),
            Ok(other) => Err(format!("answered its hello with a {}", other.kind_name())),
            Err(CallError::Refused(error)) => Err(format!("refused our hello: {error}")),
            Err(CallError::TimedOut) => Err("did not answer its hello in time".to_string()),
            Err(CallError::Disconnected(reason)) => Err(reason),
        }
    }

    /// A ping, with this replica's hello.
    fn ping(&self) -> Body {
        Body::Ping(Ping {
            sender_id: self.self_id,
            hello: Some(self.membership.hello_for(self.link.id)),
        })
    }

    /// Keeps both connections open and the up/down view current for as long
    /// as the process runs: connects while the peer is down, pings it while
    /// it is up.
    async fn probe_forever(self: Arc<Self>) {
        loop {
            if self.probe_and_mark().await {
                rt::sleep(QUICK_RETRY).await;
            } else {
                self.pause().await;
            }
        }
    }

    /// One probe, and the up/down view it implies. Returns whether to try
    /// again at once rather than after the usual pause.
    async fn probe_and_mark(&self) -> bool {
        let retry_soon = self.probe_and_judge().await;
        self.link.probes_done.fetch_add(1, Ordering::SeqCst);
        retry_soon
    }

    async fn probe_and_judge(&self) -> bool {
        match self.probe_once().await {
            Ok(()) => {
                *lock(&self.link.trouble) = None;
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
                false
            }
            // The peer said hello a moment ago (it says hello before it
            // opens its port): it is starting, not down; try again soon.
            Err(reason) if self.heard_recently() => {
                self.link.note_trouble(&reason);
                true
            }
            Err(reason) => {
                self.link.mark_down(&reason);
                false
            }
        }
    }

    fn heard_recently(&self) -> bool {
        let heard_at = *lock(&self.link.heard_at);
        heard_at.is_some_and(|at| at.elapsed() < HELLO_GRACE)
    }

    /// Sleeps a ping interval while the peer is up, or a retry interval
    /// once it is down (cut short if it goes down meanwhile), so a quick
    /// restart is noticed within a retry interval. A hello from the peer
    /// ends the pause at once.
    async fn pause(&self) {
        let mut slept = Duration::ZERO;
        loop {
            if let Some(Ok(())) =
                rt::timeout(self.timing.retry_interval, self.link.wake.1.recv()).await
            {
                return;
            }
            slept += self.timing.retry_interval;
            if !self.is_up() || slept >= self.timing.ping_interval {
                return;
            }
        }
    }

    /// Makes sure both connections are open, then pings over the ping one.
    async fn probe_once(&self) -> Result<(), String> {
        let pings = self.ensure_connection(Role::Pings).await?;
        self.ensure_connection(Role::Requests).await?;
        let (sent_wall, sent) = (wall_micros(), Instant::now());
        let answered = match pings.call(self.ping(), self.timing.ping_timeout).await {
            Ok(Body::Pong(pong)) => {
                if let Some(pong_wall) = pong.wall_micros {
                    self.offsets
                        .record_pong(self.link.id, sent_wall, sent.elapsed(), pong_wall);
                }
                self.membership.accept(self.link.id, pong.hello.as_ref())
            }
            // A replica that is stopping refuses requests, pings included:
            // it is still there until its connections close.
            Ok(_) | Err(CallError::Refused(_)) => Ok(()),
            Err(CallError::TimedOut) => Err("did not answer a ping in time".to_string()),
            Err(CallError::Disconnected(reason)) => return Err(reason),
        };
        match answered {
            Ok(()) => Ok(()),
            Err(reason) => {
                // Connections to a peer that stopped answering are not
                // reused: close them now, which also fails what waits on them.
                // Requests still waiting on them are told why.
                for role in [Role::Requests, Role::Pings] {
                    if let Some(connection) = lock(self.link.slot(role)).take() {
                        connection.close_because(&reason);
                    }
                }
                Err(reason)
            }
        }
    }
}

/// Every other replica in the ring, indexed by id.
pub struct Peers {
    self_id: ReplicaId,
    membership: Arc<Membership>,
    by_id: Vec<Option<Arc<Peer>>>,
    up_events: rt::Receiver<ReplicaId>,
    offsets: Arc<ClockOffsets>,
}

impl Peers {
    /// Links to every member of the ring but `self_id`, all believed down
    /// until they answer. Call `probe_all_once`, then `start_probing`.
    pub fn new(
        ring: &Ring,
        self_id: ReplicaId,
        timing: PeerTiming,
        secret: Option<Arc<[u8]>>,
        membership: Arc<Membership>,
    ) -> Peers {
        let (announce_up, up_events) = rt::unbounded();
        let offsets = Arc::new(ClockOffsets::new(self_id, ring.members().len()));
        let by_id = ring
            .members()
            .iter()
            .map(|member| {
                (member.id != self_id).then(|| {
                    Arc::new(Peer {
                        self_id,
                        secret: secret.clone(),
                        membership: membership.clone(),
                        link: Arc::new(PeerLink {
                            id: member.id,
                            addr: member.addr.clone(),
                            up: AtomicBool::new(false),
                            requests: Mutex::new(None),
                            pings: Mutex::new(None),
                            heard_at: Mutex::new(None),
                            probes_done: AtomicU64::new(0),
                            wake: rt::bounded(1),
                            up_events: announce_up.clone(),
                            down_reason: Mutex::new("not reached yet".to_string()),
                            trouble: Mutex::new(None),
                        }),
                        timing: timing.clone(),
                        offsets: offsets.clone(),
                    })
                })
            })
            .collect();
        Peers {
            self_id,
            membership,
            by_id,
            up_events,
            offsets,
        }
    }

    /// Tries every peer once, all at once, and returns when each has
    /// answered or failed, or after `STARTUP_PROBE_LIMIT`: a replica opens
    /// for requests only after this, so its first request already sees
    /// every peer that is running as up (the peers, in turn, heard its
    /// hello and count it up). A hung peer cannot hold the start for long;
    /// its prober goes on in the background.
    pub async fn probe_all_once(&self) {
        let probes: Vec<_> = self
            .by_id
            .iter()
            .flatten()
            .map(|peer| {
                let peer = peer.clone();
                rt::spawn(async move { peer.probe_and_mark().await })
            })
            .collect();
        let _ = rt::timeout(STARTUP_PROBE_LIMIT, async {
            for probe in probes {
                probe.await;
            }
        })
        .await;
    }

    /// Starts one prober task per peer.
    pub fn start_probing(&self) {
        for peer in self.by_id.iter().flatten() {
            rt::spawn(peer.clone().probe_forever());
        }
    }

    /// A ping from `ping.sender_id`: checks its hello (refusing another
    /// cluster's replica, a replica with another member list, or one that
    /// lost its data and presents a directory that is not new), and on
    /// success counts it as `heard_from`. `first` is whether it is the
    /// first ping on its connection (its hello).
    pub fn ping_from(
        &self,
        ping: &crate::protocol::proto::Ping,
        first: bool,
    ) -> Result<(), String> {
        let from = ping.sender_id;
        if let Some(hello) = &ping.hello {
            if hello.replica_id != from {
                return Err(format!(
                    "the ping says replica {from} but its hello says replica {}",
                    hello.replica_id
                ));
            }
        }
        self.membership.accept(from, ping.hello.as_ref())?;
        self.heard_from(from, first);
        Ok(())
    }

    /// The agreement with the peers: identities and data states.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Whether replica `id` may serve a read of `key` now: up (this replica
    /// always is), and not rebuilding it.
    pub fn can_serve(&self, id: ReplicaId, key: u8) -> bool {
        self.is_up(id) && self.membership.can_serve(id, key)
    }

    /// Why peer `id` is counted down, for `status`: a refusal of its hello,
    /// or the last failure seen.
    pub fn down_reason(&self, id: ReplicaId) -> String {
        match (self.membership.refusal_of(id), self.get(id)) {
            (Some(refused), _) => refused,
            (None, Some(peer)) if !peer.is_up() => lock(&peer.link.down_reason).clone(),
            _ => String::new(),
        }
    }

    /// A peer spoke to us: its hello (the first ping on a connection it
    /// opened), or any later request on such a connection. It is up from
    /// now on (until a probe or a broken connection says otherwise), and if
    /// it was down its prober connects at once. Only a hello starts the
    /// grace in which a failing probe does not mark it down: a peer that
    /// can talk to us but that we cannot reach must still count as down.
    pub fn heard_from(&self, id: ReplicaId, hello: bool) {
        let Some(peer) = self.get(id) else {
            return;
        };
        if hello {
            *lock(&peer.link.heard_at) = Some(Instant::now());
        }
        if !peer.is_up() {
            let _ = peer.link.wake.0.try_send(());
            peer.link.mark_up();
        }
    }

    /// Asks the probers of `ids` to try them now, and waits up to
    /// `max_wait` for all of them to be up; returns whether they are. A
    /// coordinator calls this before answering UNAVAILABLE, so that the
    /// answer never rests on a view older than one connection attempt:
    /// replicas that started at the same moment could otherwise miss each
    /// other's hello and wait a whole retry interval to meet.
    pub async fn refresh(&self, ids: &[ReplicaId], max_wait: Duration) -> bool {
        let started = Instant::now();
        let asked: Vec<(&Arc<Peer>, u64)> = ids
            .iter()
            .filter_map(|&id| self.get(id))
            .map(|peer| {
                let done = peer.link.probes_done.load(Ordering::SeqCst);
                let _ = peer.link.wake.0.try_send(());
                (peer, done)
            })
            .collect();
        loop {
            if ids.iter().all(|&id| self.is_up(id)) {
                return true;
            }
            // Every asked peer has finished a probe since: its answer is in.
            let all_probed = asked
                .iter()
                .all(|(peer, done)| peer.link.probes_done.load(Ordering::SeqCst) > *done);
            if all_probed || started.elapsed() >= max_wait {
                return ids.iter().all(|&id| self.is_up(id));
            }
            rt::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Announces each peer's transition to up (for hint delivery). One
    /// consumer only: every clone shares the same queue.
    pub fn up_events(&self) -> rt::Receiver<ReplicaId> {
        self.up_events.clone()
    }

    /// The peer with this id; `None` for this replica itself.
    pub fn get(&self, id: ReplicaId) -> Option<&Arc<Peer>> {
        self.by_id.get(id as usize).and_then(Option::as_ref)
    }

    /// The peers' clock offsets, as the pings measure them, and the fence
    /// they decide.
    pub fn clock_offsets(&self) -> &Arc<ClockOffsets> {
        &self.offsets
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
