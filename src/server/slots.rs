//! Connection allowances, counted apart for clients and for peers, so that
//! clients can never lock replicas out of each other: with every client
//! slot taken, a new connection may still come in on the peer allowance,
//! on probation: its first frame must show it is a replica (a hello ping,
//! or authentication as a replica) within `PROBATION`, or it is refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection on probation has to show it is a replica.
pub const PROBATION: Duration = Duration::from_secs(2);

/// Open connections of each kind, and the limits.
pub struct ConnectionSlots {
    clients: AtomicUsize,
    peers: AtomicUsize,
    max_clients: usize,
    max_peers: usize,
}

/// What a connection counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Client,
    /// Counted against the peer allowance until it shows it is a peer.
    Probation,
    Peer,
}

/// One connection's slot; given back when dropped.
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    class: Class,
}

impl ConnectionSlots {
    /// Allowances of `max_clients` and `max_peers` connections.
    pub fn new(max_clients: usize, max_peers: usize) -> Arc<ConnectionSlots> {
        Arc::new(ConnectionSlots {
            clients: AtomicUsize::new(0),
            peers: AtomicUsize::new(0),
            max_clients,
            max_peers,
        })
    }

    /// A slot for a new connection: a client slot while there are any, else
    /// a peer slot on probation, else none (refuse the connection).
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let class = if take(&self.clients, self.max_clients) {
            Class::Client
        } else if take(&self.peers, self.max_peers) {
            Class::Probation
        } else {
            return None;
        };
        Some(Slot {
            slots: self.clone(),
            class,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.clients.load(Ordering::SeqCst) + self.peers.load(Ordering::SeqCst)
    }
}

/// Takes one of `max` from `counter`, if one is free.
fn take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Slot {
    /// Whether this connection must show it is a replica to stay.
    pub fn on_probation(&self) -> bool {
        self.class == Class::Probation
    }

    /// The connection showed it is a replica: move it to the peer
    /// allowance if there is room (otherwise it keeps its client slot).
    pub fn become_peer(&mut self) {
        match self.class {
            Class::Peer => {}
            Class::Probation => self.class = Class::Peer,
            Class::Client => {
                if take(&self.slots.peers, self.slots.max_peers) {
                    self.slots.clients.fetch_sub(1, Ordering::SeqCst);
                    self.class = Class::Peer;
                }
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let counter = match self.class {
            Class::Client => &self.slots.clients,
            Class::Probation | Class::Peer => &self.slots.peers,
        };
        counter.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_keep_their_allowance_when_clients_fill_theirs() {
        let slots = ConnectionSlots::new(2, 2);
        let clients: Vec<Slot> = (0..2).map(|_| slots.admit().expect("client")).collect();
        assert!(clients.iter().all(|slot| !slot.on_probation()));
        let mut late = slots.admit().expect("on probation");
        assert!(late.on_probation());
        late.become_peer();
        assert!(!late.on_probation());
        let another = slots.admit().expect("the second peer slot");
        assert!(slots.admit().is_none(), "both allowances are full");
        assert_eq!(slots.open(), 4);
        drop(another);
        drop(clients);
        assert_eq!(slots.open(), 1);
        // A client slot that turns out to be a peer moves over.
        let mut peer = slots.admit().expect("client slot");
        peer.become_peer();
        let _c1 = slots.admit().expect("client slot freed by the move");
        let _c2 = slots.admit().expect("client slot");
        assert!(slots.admit().is_none());
    }
}
