//! One peer's link: the state its prober, its requests and its
//! connections' readers share, and the only transitions that change whether
//! the peer is counted up (up, down, a connection in use broke).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::mux::MuxConnection;
use crate::protocol::proto::ReplicaId;

/// Whether a peer is believed up, and the connections in use to it. Shared
/// with those connections' readers, which report a break the moment they
/// see one.
pub(super) struct PeerLink {
    pub(super) id: ReplicaId,
    pub(super) addr: String,
    pub(super) up: AtomicBool,
    /// Carries requests to the peer.
    pub(super) requests: Mutex<Option<Arc<MuxConnection>>>,
    /// Carries only the prober's pings.
    pub(super) pings: Mutex<Option<Arc<MuxConnection>>>,
    /// When the peer last spoke to us (a hello or a request), so that a
    /// probe failing just then (the peer said hello before it opened its
    /// port) does not mark it down.
    pub(super) heard_at: Mutex<Option<Instant>>,
    /// Counts finished probes, so a request can wait for one fresh attempt.
    pub(super) probes_done: AtomicU64,
    /// Wakes the prober early (a hello arrived); holds at most one wake-up.
    pub(super) wake: (rt::Sender<()>, rt::Receiver<()>),
    /// Where transitions to up are announced.
    up_events: rt::Sender<ReplicaId>,
    /// Why it was last counted down, for `status`.
    pub(super) down_reason: Mutex<String>,
    /// What last went wrong with it (a connection that broke, a probe that
    /// failed), cleared by a probe that succeeds: a request that finds it
    /// up but with no connection says this rather than only that none
    /// opened.
    pub(super) trouble: Mutex<Option<String>>,
}

impl PeerLink {
    /// The link to peer `id` at `addr`, believed down until it answers,
    /// announcing its transitions to up on `up_events`.
    pub(super) fn new(id: ReplicaId, addr: String, up_events: rt::Sender<ReplicaId>) -> PeerLink {
        PeerLink {
            id,
            addr,
            up: AtomicBool::new(false),
            requests: Mutex::new(None),
            pings: Mutex::new(None),
            heard_at: Mutex::new(None),
            probes_done: AtomicU64::new(0),
            wake: rt::bounded(1),
            up_events,
            down_reason: Mutex::new("not reached yet".to_string()),
            trouble: Mutex::new(None),
        }
    }

    /// Counts the peer up, announcing it if it was down.
    pub(super) fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            crate::info!("peer {} at {} is up", self.id, self.addr);
            let _ = self.up_events.try_send(self.id);
        }
    }

    /// Counts the peer down for `reason`, which `status` shows.
    pub(super) fn mark_down(&self, reason: &str) {
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
    pub(super) fn connection_broke(&self, role: Role, connection_id: u64, reason: &str) {
        self.note_trouble(reason);
        let in_use = lock(self.slot(role))
            .as_ref()
            .is_some_and(|c| c.id() == connection_id);
        if in_use {
            self.mark_down(reason);
        }
    }

    /// Remembers what last went wrong, for a request that finds no connection.
    pub(super) fn note_trouble(&self, reason: &str) {
        *lock(&self.trouble) = Some(reason.to_string());
    }

    /// Where the connection in `role` is kept.
    pub(super) fn slot(&self, role: Role) -> &Mutex<Option<Arc<MuxConnection>>> {
        match role {
            Role::Requests => &self.requests,
            Role::Pings => &self.pings,
        }
    }
}

/// The live connection in a slot, if any.
pub(super) fn live(slot: &Mutex<Option<Arc<MuxConnection>>>) -> Option<Arc<MuxConnection>> {
    lock(slot).as_ref().filter(|c| !c.is_broken()).cloned()
}

/// Which of a peer's two connections.
#[derive(Clone, Copy)]
pub(super) enum Role {
    Requests,
    Pings,
}
