//! The pause after a round met a higher ballot: random, growing with each
//! attempt, so two coordinators contending for a key fall out of step
//! instead of preempting each other forever.

use std::time::{Duration, Instant};

use crate::coordinator::link::ReplicaLink;
use crate::coordinator::Coordinator;
use crate::ops::rt;
use crate::storage::clock::wall_micros;

/// The longest pause between a round that met a higher ballot and the
/// next, drawn at random below it so two coordinators fall out of step.
const MAX_BACK_OFF: Duration = Duration::from_millis(20);

impl<L: ReplicaLink> Coordinator<L> {
    /// Waits a random moment, longer with each attempt, before a new round
    /// after meeting a higher ballot (never past the deadline).
    pub(super) async fn back_off(&self, attempt: u32, deadline: Instant) {
        let ceiling = MAX_BACK_OFF.as_micros().min(1_000 << attempt.min(10)) as u64;
        let seed = wall_micros() ^ u64::from(self.self_id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let pause = Duration::from_micros(mix(seed) % ceiling.max(1));
        let left = deadline.saturating_duration_since(Instant::now());
        rt::sleep(pause.min(left)).await;
    }
}

/// A 64-bit mix (splitmix64's finaliser) for the back-off's randomness:
/// no crate, and good enough to keep two coordinators out of step.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
