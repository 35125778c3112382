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
//!
//! The parts: `link` (one peer's up flag, connections and last trouble,
//! and the transitions between up and down), `peer` (a request to one
//! peer, and the hello that opens each connection), `prober` (the task per
//! peer that connects and pings). This file holds `Peers`, the collection
//! the coordinator, the server and the cluster tasks ask.

mod link;
mod peer;
mod prober;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::membership::Membership;
use crate::cluster::ring::Ring;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::proto::ReplicaId;
use crate::storage::clock_fence::ClockOffsets;
use link::PeerLink;
pub use peer::Peer;

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

/// The longest a starting replica waits for its first round of probes
/// before it opens its port.
const STARTUP_PROBE_LIMIT: Duration = Duration::from_secs(1);

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
                        link: Arc::new(PeerLink::new(
                            member.id,
                            member.addr.clone(),
                            announce_up.clone(),
                        )),
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
