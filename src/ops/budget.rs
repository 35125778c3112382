//! A budget of bytes held for requests and replies across all of a
//! replica's connections, so that many clients sending large values at once
//! cannot make it allocate without bound.
//!
//! Every frame read is charged until its request is done, and every reply
//! until it is written to its socket. A frame that does not arrive whole is
//! charged as soon as its length is read, before its body is, and waits
//! for room first (`reserve`): so frames still arriving count, and many
//! connections each sending a large frame at once cannot pass the budget
//! by more than one frame. Past the budget, each connection that holds
//! bytes also stops reading until enough is freed; nothing waits on itself,
//! and the replica never aborts a request for memory.
//! Writes that go on after their request was answered (to replicas a put
//! did not wait for) are charged too, as background bytes, until they end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::ops::rt;

/// How often a connection waiting for room looks again.
const RECHECK: Duration = Duration::from_millis(1);

/// Bytes held across all connections, and the limit.
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// Bytes held by work that outlives its request: the writes a ONE or
    /// QUORUM put goes on sending to the replicas it did not wait for.
    background: Held,
    /// Whether the budget has been reported full since it last had room.
    reported: AtomicBool,
}

/// Background bytes charged to the budget; given back when dropped.
pub struct BackgroundCharge {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Drop for BackgroundCharge {
    fn drop(&mut self) {
        self.budget.release(&self.budget.background, self.bytes);
    }
}

/// The bytes one connection holds: its share of the budget.
#[derive(Default)]
pub struct Held(AtomicUsize);

impl Held {
    /// The bytes held now.
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
            background: Held::default(),
            reported: AtomicBool::new(false),
        }
    }

    /// Counts bytes held by background work until the returned charge is
    /// dropped. They are not any connection's, so they never stop a reader
    /// by themselves, but they fill the budget, and past it the connections
    /// that hold bytes (the ones sending the writes) stop reading.
    pub fn charge_background(self: &Arc<Self>, bytes: usize) -> BackgroundCharge {
        self.charge(&self.background, bytes);
        BackgroundCharge {
            budget: self.clone(),
            bytes,
        }
    }

    /// The budget's size in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now, across every connection.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Counts `bytes` against the budget, on behalf of `held`.
    pub fn charge(&self, held: &Held, bytes: usize) {
        held.0.fetch_add(bytes, Ordering::SeqCst);
        self.used.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Waits until `room` bytes fit in the budget, then counts them on
    /// behalf of `held`, for a frame of `bytes`: called once a frame's
    /// length is known and before its body is read, so frames still
    /// arriving are counted before they are allocated. `room` is what the
    /// frame may grow into while its request runs (a put's copies for its
    /// replicas), so that many frames admitted at once cannot together pass
    /// the budget once their requests run. It fits while the budget would
    /// not pass its limit, or when nothing at all is held (a frame larger
    /// than the whole budget goes alone). `bytes` names the frame in the
    /// log line of a wait. Peers never wait: their writes are how client
    /// requests, and so the budget, drain.
    pub async fn reserve(
        &self,
        held: &Held,
        bytes: usize,
        room: usize,
        from_peer: bool,
        remote: &(dyn std::fmt::Display + Sync),
    ) {
        loop {
            let used = self.used();
            let fits = from_peer || used == 0 || used.saturating_add(room) <= self.limit;
            if !fits {
                if !self.reported.swap(true, Ordering::SeqCst) {
                    crate::warn!(
                        "memory budget of {} bytes reached ({} held): {remote} waits to read a frame of {bytes} bytes until some are freed",
                        self.limit,
                        used
                    );
                }
                rt::sleep(RECHECK).await;
                continue;
            }
            if self
                .used
                .compare_exchange(used, used + room, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                held.0.fetch_add(room, Ordering::SeqCst);
                return;
            }
        }
    }

    /// Gives back `bytes` charged on behalf of `held`.
    pub fn release(&self, held: &Held, bytes: usize) {
        held.0.fetch_sub(bytes, Ordering::SeqCst);
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Returns once the connection that holds `held` may read another
    /// frame: at once while the budget has room or it holds nothing. A
    /// client connection also waits while background writes hold more than
    /// half the budget: they are what its earlier requests left behind, and
    /// they drain by themselves (each ends within the write timeout). Peer
    /// connections never wait for that, since they are how it drains.
    pub async fn room_for(
        &self,
        held: &Held,
        from_peer: bool,
        remote: &(dyn std::fmt::Display + Sync),
    ) {
        while self.must_wait(held, from_peer) {
            if !self.reported.swap(true, Ordering::SeqCst) {
                crate::warn!(
                    "memory budget of {} bytes reached ({} held, {} by writes still on their way): connections holding bytes, {remote} first, stop reading until some are freed",
                    self.limit,
                    self.used(),
                    self.background.0.load(Ordering::SeqCst)
                );
            }
            rt::sleep(RECHECK).await;
        }
        if self.used() <= self.limit {
            self.reported.store(false, Ordering::SeqCst);
        }
    }

    fn must_wait(&self, held: &Held, from_peer: bool) -> bool {
        let over = self.used() > self.limit && held.0.load(Ordering::SeqCst) > 0;
        let backlog = !from_peer && self.background.0.load(Ordering::SeqCst) > self.limit / 2;
        over || backlog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_waits_only_while_over_budget_and_holding_bytes() {
        let budget = MemoryBudget::new(100);
        let (busy, idle) = (Held::default(), Held::default());
        budget.charge(&busy, 150);
        rt::block_on(async {
            // Holding nothing: never waits, even over budget.
            assert!(rt::timeout(
                Duration::from_millis(200),
                budget.room_for(&idle, false, &"idle")
            )
            .await
            .is_some());
            // Holding bytes over budget: waits until they are released.
            assert!(rt::timeout(
                Duration::from_millis(50),
                budget.room_for(&busy, false, &"busy")
            )
            .await
            .is_none());
            budget.release(&busy, 100);
            assert!(rt::timeout(
                Duration::from_millis(200),
                budget.room_for(&busy, false, &"busy")
            )
            .await
            .is_some());
        });
        budget.release(&busy, 50);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_frame_is_reserved_only_when_it_fits_or_goes_alone() {
        let budget = MemoryBudget::new(100);
        let (first, second, peer) = (Held::default(), Held::default(), Held::default());
        rt::block_on(async {
            let reserve = |held, bytes, from_peer| {
                rt::timeout(
                    Duration::from_millis(50),
                    budget.reserve(held, bytes, bytes, from_peer, &"test"),
                )
            };
            // Larger than the whole budget: goes alone.
            assert!(reserve(&first, 150, false).await.is_some());
            assert_eq!(first.bytes(), 150);
            // Nothing more fits until it is given back, but a peer goes on.
            assert!(reserve(&second, 10, false).await.is_none());
            assert!(reserve(&peer, 10, true).await.is_some());
            budget.release(&first, 150);
            assert!(reserve(&second, 90, false).await.is_some());
            assert!(reserve(&first, 1, false).await.is_none());
        });
        assert_eq!(budget.used(), 100);
    }
}
