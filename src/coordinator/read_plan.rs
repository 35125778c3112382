//! Which replicas a get asks, and when it asks more.
//!
//! A read needs answers from the level's count of replicas (one for ONE,
//! two for QUORUM, three for ALL), and asking more than that costs a
//! message, a task and a reply on two machines for nothing, most of the
//! time. So a get asks only as many replicas as its level needs: this
//! replica first when it holds the key (its copy is read from memory), then
//! the others that are up, in a turn that rotates from one read of the key
//! to the next, so that the other replicas take turns being read (and, if
//! stale, repaired by the blocking read repair of QUORUM and ALL). The
//! replicas not asked are spares:
//!
//! - a spare is asked at once when an asked replica fails or drops (for the
//!   value, if that replica was the one sending it);
//! - every spare is asked when the answers have not all come within the
//!   speculation delay (`--speculative-read-ms`), so a replica that hangs
//!   without its link breaking costs a read that delay (and a round trip
//!   if the value must then be fetched), not its timeout.
//!
//! Background read repair wants the opposite: to hear from every replica.
//! So a share of reads (`--read-repair-chance`) asks every replica of the
//! key, and repairs the late ones after answering, as Cassandra's
//! `read_repair_chance` did before 4.0. The share follows the repair mode:
//! every read in `read-repair` mode, where reads are what converges
//! replicas, one in ten in `both`, none in `hinted-handoff`.

use std::time::Duration;

use crate::cluster::repair_mode::RepairMode;
use crate::protocol::proto::ReplicaId;

/// Parts per million: the unit of the read-repair chance.
const MILLION: u64 = 1_000_000;

/// The read-repair chance of `--repair both` when none is given.
pub const DEFAULT_BOTH_CHANCE: f64 = 0.1;

/// The speculation delay when none is given.
pub const DEFAULT_SPECULATE_AFTER: Duration = Duration::from_millis(10);

/// How a coordinator spreads its reads: set once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPolicy {
    /// The share of reads that ask every replica, in parts per million.
    everyone_per_million: u64,
    /// How long a read waits for the replicas it asked before it asks
    /// the spares too.
    pub speculate_after: Duration,
}

/// The replicas one read asks now, and the ones it keeps in reserve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    /// Asked at once, this replica first if it holds the key.
    pub ask: Vec<ReplicaId>,
    /// Asked only if one of `ask` fails or the speculation delay passes.
    pub spares: Vec<ReplicaId>,
    /// Whether this read asks every replica and repairs late answers in
    /// the background.
    pub everyone: bool,
}

impl ReadPolicy {
    /// The policy for a repair mode, with the chance given on the command
    /// line (or the mode's default). A chance of background repair makes no
    /// sense where the mode has none, so that is refused.
    pub fn new(
        mode: RepairMode,
        chance: Option<f64>,
        speculate_after: Duration,
    ) -> Result<Self, String> {
        let chance = match (chance, mode) {
            (Some(c), _) if !(0.0..=1.0).contains(&c) => {
                return Err(format!(
                    "--read-repair-chance must be between 0 and 1, not {c}"
                ))
            }
            (Some(c), RepairMode::HintedHandoff) if c > 0.0 => {
                return Err(format!(
                    "--read-repair-chance {c} needs a repair mode with read repair \
                     (read-repair or both), not hinted-handoff"
                ))
            }
            (Some(c), _) => c,
            (None, RepairMode::ReadRepair) => 1.0,
            (None, RepairMode::Both) => DEFAULT_BOTH_CHANCE,
            (None, RepairMode::HintedHandoff) => 0.0,
        };
        Ok(ReadPolicy {
            everyone_per_million: (chance * MILLION as f64).round() as u64,
            speculate_after,
        })
    }

    /// The share of reads that ask every replica, for the start log line.
    pub fn chance(&self) -> f64 {
        self.everyone_per_million as f64 / MILLION as f64
    }

    /// The plan of read number `turn` of key replicas `replicas`, of which
    /// `is_up` says which are believed up. Reads that ask everyone are
    /// spread evenly: the chance's share of every whole period of turns
    /// (every 10 turns at 0.1), never bunched.
    pub fn plan(
        &self,
        self_id: ReplicaId,
        replicas: &[ReplicaId],
        need: usize,
        turn: u64,
        is_up: impl Fn(ReplicaId) -> bool,
    ) -> ReadPlan {
        let everyone = (turn % MILLION) * self.everyone_per_million % MILLION
            < self.everyone_per_million
            || need >= replicas.len();
        // One vector, no intermediate ones: this runs for every get.
        let mut order: Vec<ReplicaId> = Vec::with_capacity(replicas.len());
        if replicas.contains(&self_id) {
            order.push(self_id);
        }
        let others = replicas.len() - order.len();
        let start = (turn % others.max(1) as u64) as usize;
        let first_other = order.len();
        order.extend(
            replicas
                .iter()
                .copied()
                .filter(|&id| id != self_id)
                .cycle()
                .skip(start)
                .take(others),
        );
        // Up ones first, keeping the turn's order (a stable sort: every
        // replica stays in the plan exactly once whatever the view does).
        order[first_other..].sort_by_key(|&id| !is_up(id));
        let asked = if everyone {
            order.len()
        } else {
            need.min(order.len())
        };
        let spares = order.split_off(asked);
        ReadPlan {
            ask: order,
            spares,
            everyone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RepairMode, chance: Option<f64>) -> ReadPolicy {
        ReadPolicy::new(mode, chance, DEFAULT_SPECULATE_AFTER).expect("policy")
    }

    #[test]
    fn a_holder_asks_itself_first_and_only_what_the_level_needs() {
        let p = policy(RepairMode::HintedHandoff, None);
        let plan = p.plan(1, &[0, 1, 2], 1, 0, |_| true);
        assert_eq!(plan.ask, vec![1]);
        assert_eq!(plan.spares.len(), 2);
        assert!(!plan.everyone);
        let plan = p.plan(1, &[0, 1, 2], 2, 0, |_| true);
        assert_eq!(plan.ask.len(), 2);
        assert_eq!(plan.ask[0], 1);
    }

    #[test]
    fn the_remote_replica_asked_rotates_from_read_to_read() {
        let p = policy(RepairMode::HintedHandoff, None);
        let firsts: Vec<ReplicaId> = (0..4)
            .map(|t| p.plan(3, &[0, 1, 2], 1, t, |_| true).ask[0])
            .collect();
        assert_eq!(firsts, vec![0, 1, 2, 0]);
        let seconds: Vec<ReplicaId> = (0..2)
            .map(|t| p.plan(0, &[0, 1, 2], 2, t, |_| true).ask[1])
            .collect();
        assert_eq!(seconds, vec![1, 2]);
    }

    #[test]
    fn replicas_believed_down_are_asked_last() {
        let p = policy(RepairMode::HintedHandoff, None);
        for turn in 0..6 {
            let plan = p.plan(3, &[0, 1, 2], 2, turn, |id| id != 1);
            assert!(!plan.ask.contains(&1), "turn {turn}: {plan:?}");
            assert_eq!(plan.spares, vec![1]);
        }
    }

    #[test]
    fn all_asks_everyone_whatever_the_chance() {
        let p = policy(RepairMode::HintedHandoff, None);
        let plan = p.plan(3, &[0, 1, 2], 3, 0, |_| true);
        assert_eq!(plan.ask.len(), 3);
        assert!(plan.spares.is_empty() && plan.everyone);
    }

    #[test]
    fn the_chance_is_the_share_of_reads_that_ask_everyone() {
        let count = |p: ReadPolicy| {
            (0..1000)
                .filter(|&t| p.plan(0, &[0, 1, 2], 2, t, |_| true).everyone)
                .count()
        };
        assert_eq!(count(policy(RepairMode::Both, None)), 100);
        assert_eq!(count(policy(RepairMode::ReadRepair, None)), 1000);
        assert_eq!(count(policy(RepairMode::HintedHandoff, None)), 0);
        assert_eq!(count(policy(RepairMode::Both, Some(0.25))), 250);
        assert_eq!(count(policy(RepairMode::Both, Some(0.0))), 0);
        assert_eq!(policy(RepairMode::Both, None).chance(), 0.1);
        assert_eq!(policy(RepairMode::ReadRepair, None).chance(), 1.0);
        assert_eq!(policy(RepairMode::Both, Some(0.25)).chance(), 0.25);
    }

    #[test]
    fn the_read_counter_may_wrap() {
        let p = policy(RepairMode::Both, None);
        for turn in [u64::MAX - 1, u64::MAX] {
            let plan = p.plan(0, &[0, 1, 2], 2, turn, |_| true);
            assert_eq!(plan.ask.len() + plan.spares.len(), 3);
        }
    }

    #[test]
    fn a_chance_out_of_range_or_without_read_repair_is_refused() {
        let refuse = |mode, c| ReadPolicy::new(mode, Some(c), DEFAULT_SPECULATE_AFTER).unwrap_err();
        assert!(refuse(RepairMode::Both, 1.5).contains("between 0 and 1"));
        assert!(refuse(RepairMode::Both, -0.1).contains("between 0 and 1"));
        assert!(refuse(RepairMode::HintedHandoff, 0.5).contains("hinted-handoff"));
        assert!(ReadPolicy::new(
            RepairMode::HintedHandoff,
            Some(0.0),
            DEFAULT_SPECULATE_AFTER
        )
        .is_ok());
    }
}
