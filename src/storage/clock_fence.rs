//! The clock fence: how far this replica trusts clocks, its own included.
//!
//! Last-write-wins lets a timestamp from a clock running ahead shadow every
//! later write of its key until the clocks catch up, so the cluster bounds
//! how far ahead a timestamp may be: the maximum clock offset
//! (`--max-clock-offset-ms`, 500 ms by default, as in CockroachDB).
//! - A write (a client write, a repair, a hint, an anti-entropy copy)
//!   stamped further ahead of this replica's wall clock is refused, with
//!   an error naming the coordinator and how far ahead it is
//!   (`check_stamp`). A version stored before the fence is still served
//!   to reads, and nothing it carries moves this replica's clock or lease
//!   past the fence (`WriteClock::observe` stops there).
//! - Each replica measures its peers' clocks in its pings
//!   (`ClockOffsets::record_pong`). A replica whose clock is further than the
//!   maximum offset from a majority of its peers' clocks is the one that
//!   is wrong: it stops coordinating writes (`ClockOffsets::fence`), says
//!   why in its log once per change and in `status`, and resumes by itself
//!   once its clock agrees again. It still serves reads and replica writes.
//!
//! Nothing here blocks or touches the disk; a measurement is a few words
//! under a mutex, taken once per ping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ops::lock::lock;
use crate::protocol::error::KvError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{PeerClockOffset, Versioned};
use crate::storage::clock::{max_offset_micros, wall_micros};

/// A measurement older than this is not counted: the peer stopped
/// answering pings (they come every second), so its clock is unknown.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// A peer's clock offset from this replica's wall clock, as one ping saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    /// The peer's wall clock minus this replica's, in microseconds.
    pub micros: i64,
    /// The true offset is within this of `micros`: half the round trip.
    pub uncertainty: u64,
}

impl Offset {
    /// Estimates a peer's offset from a ping sent at `sent` (this replica's
    /// wall clock), answered with the peer's wall clock `pong_wall`, and
    /// received `round_trip` later. The peer read its clock somewhere in
    /// the round trip; the midpoint is the best guess, off by at most half
    /// the round trip either way.
    pub fn estimate(sent: u64, round_trip: Duration, pong_wall: u64) -> Offset {
        let round_trip = round_trip.as_micros() as u64;
        let midpoint = sent.saturating_add(round_trip / 2);
        Offset {
            micros: (i128::from(pong_wall) - i128::from(midpoint))
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            uncertainty: round_trip.div_ceil(2),
        }
    }

    /// Whether the clocks are surely further apart than `max_offset`
    /// microseconds: even the closest offset the measurement allows is
    /// beyond it. A slow ping therefore never fences a replica.
    pub fn beyond(&self, max_offset: u64) -> bool {
        self.micros.unsigned_abs().saturating_sub(self.uncertainty) > max_offset
    }
}

struct Measured {
    offset: Offset,
    at: Instant,
}

/// Every peer's measured clock offset, and whether this replica is fenced.
pub struct ClockOffsets {
    self_id: ReplicaId,
    /// Indexed by replica id; None for this replica and unmeasured peers.
    by_peer: Mutex<Vec<Option<Measured>>>,
    /// Whether the fence was up when last looked at, so that a change is
    /// logged once, not at every ping.
    fenced: Mutex<bool>,
}

impl ClockOffsets {
    /// No measurements yet for the `members` replicas of the ring.
    pub fn new(self_id: ReplicaId, members: usize) -> ClockOffsets {
        ClockOffsets {
            self_id,
            by_peer: Mutex::new((0..members).map(|_| None).collect()),
            fenced: Mutex::new(false),
        }
    }

    /// Records what a pong said: the ping left at `sent` (wall clock) and
    /// came back `round_trip` later carrying the peer's wall clock.
    pub fn record_pong(&self, peer: ReplicaId, sent: u64, round_trip: Duration, pong_wall: u64) {
        self.record(
            peer,
            Offset::estimate(sent, round_trip, pong_wall),
            Instant::now(),
        );
        let _ = self.fence();
    }

    fn record(&self, peer: ReplicaId, offset: Offset, at: Instant) {
        if peer == self.self_id {
            return;
        }
        if let Some(slot) = lock(&self.by_peer).get_mut(peer as usize) {
            *slot = Some(Measured { offset, at });
        }
    }

    /// Each peer's offset measured within the last `FRESH_FOR`, in id order.
    pub fn measured(&self) -> Vec<(ReplicaId, Offset)> {
        self.measured_at(Instant::now())
    }

    fn measured_at(&self, now: Instant) -> Vec<(ReplicaId, Offset)> {
        lock(&self.by_peer)
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| {
                slot.as_ref()
                    .filter(|m| now.saturating_duration_since(m.at) < FRESH_FOR)
                    .map(|m| (id as ReplicaId, m.offset))
            })
            .collect()
    }

    /// The offsets for `status`.
    pub fn for_status(&self) -> Vec<PeerClockOffset> {
        self.measured()
            .into_iter()
            .map(|(replica_id, offset)| PeerClockOffset {
                replica_id,
                offset_micros: offset.micros,
                uncertainty_micros: offset.uncertainty,
            })
            .collect()
    }

    /// Why this replica must not coordinate writes now, or None. Logs the
    /// change when the answer changes.
    pub fn fence(&self) -> Option<String> {
        let peers = lock(&self.by_peer).len().saturating_sub(1);
        let reason = fence_reason(&self.measured(), peers, max_offset_micros());
        let mut fenced = lock(&self.fenced);
        if *fenced != reason.is_some() {
            *fenced = reason.is_some();
            match &reason {
                Some(reason) => crate::error!("clock fence: stops coordinating writes: {reason}"),
                None => crate::info!(
                    "clock fence: this clock is within {} ms of a majority of its peers again; coordinating writes",
                    max_offset_micros() / 1_000
                ),
            }
        }
        reason
    }
}

/// Why a replica whose peers' clocks measured `measured` must not
/// coordinate writes: a majority of its `peers` (all of them, measured or
/// not, so that a replica that sees only one peer cannot be outvoted by it)
/// are surely further than `max_offset` microseconds from its clock.
pub fn fence_reason(
    measured: &[(ReplicaId, Offset)],
    peers: usize,
    max_offset: u64,
) -> Option<String> {
    let off: Vec<String> = measured
        .iter()
        .filter(|(_, offset)| offset.beyond(max_offset))
        .map(|(id, offset)| format!("replica {id} {}", describe_offset(offset.micros)))
        .collect();
    if peers == 0 || off.len() < peers / 2 + 1 {
        return None;
    }
    Some(format!(
        "this replica's clock is further than the maximum clock offset ({} ms) from {} of its {peers} peers' clocks ({})",
        max_offset / 1_000,
        off.len(),
        off.join(", ")
    ))
}

/// "400 ms behind" / "10000 ms ahead", said of the peer relative to us.
fn describe_offset(micros: i64) -> String {
    let ms = micros.unsigned_abs() / 1_000;
    if micros < 0 {
        format!("is {ms} ms behind")
    } else {
        format!("is {ms} ms ahead")
    }
}

/// Refuses a version stamped further ahead of this replica's wall clock
/// than the maximum offset: it would win every later write of its key
/// until the clocks caught up. `receiver` names this replica in the error.
pub fn check_stamp(version: &Versioned, receiver: ReplicaId) -> Result<(), KvError> {
    check_stamp_at(version, receiver, wall_micros(), max_offset_micros())
}

fn check_stamp_at(
    version: &Versioned,
    receiver: ReplicaId,
    wall: u64,
    max_offset: u64,
) -> Result<(), KvError> {
    let ahead = version.timestamp_micros.saturating_sub(wall);
    if ahead <= max_offset {
        return Ok(());
    }
    Err(KvError::invalid(format!(
        "clock fence: the write of coordinator {} is stamped {} ms ahead of replica {receiver}'s clock \
         (timestamp {}), more than the maximum clock offset of {} ms; refused",
        version.coordinator_id,
        ahead / 1_000,
        version.timestamp_micros,
        max_offset / 1_000
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 500_000;

    #[test]
    fn the_offset_is_taken_at_the_midpoint_within_half_the_round_trip() {
        // Sent at 1_000_000, back 2 ms later; the peer said 1_401_000: its
        // clock read at our 1_001_000 is 400 ms ahead, give or take 1 ms.
        let offset = Offset::estimate(1_000_000, Duration::from_millis(2), 1_401_000);
        assert_eq!(
            offset,
            Offset {
                micros: 400_000,
                uncertainty: 1_000
            }
        );
        let behind = Offset::estimate(10_000_000, Duration::from_micros(101), 9_000_050);
        assert_eq!(behind.micros, -1_000_000);
        assert_eq!(behind.uncertainty, 51, "rounded up, never understated");
    }

    #[test]
    fn only_an_offset_surely_beyond_the_maximum_counts() {
        let at = |micros, uncertainty| Offset {
            micros,
            uncertainty,
        };
        assert!(!at(500_000, 0).beyond(MAX));
        assert!(at(500_001, 0).beyond(MAX));
        assert!(at(-500_001, 0).beyond(MAX));
        // A slow ping: it might be within the maximum, so it does not count.
        assert!(!at(600_000, 100_000).beyond(MAX));
        assert!(at(600_001, 100_000).beyond(MAX));
    }

    #[test]
    fn a_replica_is_fenced_when_a_majority_of_its_peers_disagree_with_its_clock() {
        let off = Offset {
            micros: -10_000_000,
            uncertainty: 100,
        };
        let near = Offset {
            micros: 300_000,
            uncertainty: 100,
        };
        // The fast replica sees all three peers 10 s behind.
        let reason = fence_reason(&[(0, off), (1, off), (2, off)], 3, MAX).expect("fenced");
        assert!(reason.contains("3 of its 3 peers"), "{reason}");
        assert!(reason.contains("replica 1 is 10000 ms behind"), "{reason}");
        // Two of three is a majority too.
        assert!(fence_reason(&[(0, off), (1, off), (2, near)], 3, MAX).is_some());
        // A correct replica sees only the fast one off: not fenced.
        assert_eq!(
            fence_reason(&[(0, off), (1, near), (2, near)], 3, MAX),
            None
        );
        // One peer measured, and off: one of three is no majority.
        assert_eq!(fence_reason(&[(3, off)], 3, MAX), None);
        assert_eq!(fence_reason(&[], 3, MAX), None);
    }

    #[test]
    fn stale_measurements_are_forgotten_and_the_fence_comes_down_by_itself() {
        let offsets = ClockOffsets::new(3, 4);
        let off = Offset {
            micros: 2_000_000,
            uncertainty: 10,
        };
        let long_ago = Instant::now() - FRESH_FOR - Duration::from_secs(1);
        for peer in 0..3 {
            offsets.record(peer, off, long_ago);
        }
        assert_eq!(offsets.fence(), None, "old measurements do not count");
        for peer in 0..3 {
            offsets.record(peer, off, Instant::now());
        }
        assert!(offsets.fence().is_some());
        // The clock is set right: the next pings agree.
        for peer in 0..3 {
            offsets.record(
                peer,
                Offset {
                    micros: 1_000,
                    uncertainty: 10,
                },
                Instant::now(),
            );
        }
        assert_eq!(offsets.fence(), None);
        // A replica never measures itself.
        offsets.record(3, off, Instant::now());
        assert_eq!(offsets.measured().len(), 3);
    }

    #[test]
    fn a_stamp_further_ahead_than_the_maximum_offset_is_refused_naming_its_coordinator() {
        let version = |timestamp_micros| Versioned {
            value: "v".into(),
            timestamp_micros,
            coordinator_id: 2,
            tombstone: false,
        };
        let wall = 1_000_000_000;
        assert!(check_stamp_at(&version(wall + MAX), 1, wall, MAX).is_ok());
        assert!(check_stamp_at(&version(wall - 60_000_000), 1, wall, MAX).is_ok());
        let error = check_stamp_at(&version(wall + 9 * 60 * 1_000_000), 1, wall, MAX)
            .expect_err("nine minutes ahead");
        assert_eq!(error.kind, crate::protocol::error::ErrorKind::Invalid);
        assert!(
            error
                .message
                .contains("coordinator 2 is stamped 540000 ms ahead of replica 1's clock"),
            "{error}"
        );
    }
}
