//! A budget of bytes held for requests and replies across all of a
//! replica's connections, so that many clients sending large values at once
//! cannot make it allocate without bound.
//!
//! Every frame read is charged until its request is done, and every reply
//! until it is written to its socket. Past the budget, each connection that
//! holds bytes stops reading until enough is freed; a connection that holds
//! nothing may still read one frame, so no connection is starved, nothing
//! waits on itself, and the replica never aborts a request for memory. The
//! budget can therefore be exceeded by at most one frame per connection.
//! Writes that go on after their request was answered (to replicas a put
//! did not wait for) are charged too, as background bytes, until they end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::rt;

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

    /// Bytes held now, across every connection.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Counts `bytes` against the budget, on behalf of `held`.
    pub fn charge(&self, held: &Held, bytes: usize) {
        held.0.fetch_add(bytes, Ordering::SeqCst);
        self.used.fetch_add(bytes, Ordering::SeqCst);
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
}
