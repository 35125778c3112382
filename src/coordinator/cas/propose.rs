//! The second phase of a Paxos round: a proposal under the promised
//! ballot, and the acceptances it gathers. Once a majority accepted it, the
//! proposal is chosen and is committed (`commit`); otherwise it says why
//! not, and whether some replica may have accepted it all the same.

use std::sync::Arc;
use std::time::Instant;

use crate::coordinator::link::{Outcome, ReplicaAsk, ReplicaLink, Stamp};
use crate::coordinator::write::describe;
use crate::coordinator::Coordinator;
use crate::protocol::proto::{ReplicaId, Versioned};

/// How a proposal ended.
pub(super) enum Proposed {
    /// A majority accepted it and a majority holds it committed.
    Committed,
    /// A replica had promised this higher ballot. Whether some replica
    /// may have accepted it all the same (one did, or one did not answer).
    Preempted(Stamp, bool),
    /// Too few answers in time: it may or may not be chosen.
    Unknown(String),
}

impl<L: ReplicaLink> Coordinator<L> {
    /// Proposes `version` under `ballot`; once a majority accepted it,
    /// commits it (an ordinary write, hinted to replicas that miss it) and
    /// waits until a majority holds it.
    pub(super) async fn propose(
        &self,
        key: u8,
        targets: &[ReplicaId],
        ballot: Stamp,
        version: Versioned,
        deadline: Instant,
    ) -> Proposed {
        let need = self.majority(key);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let proposal = Arc::new(version);
        let mut fan = self.fan_out(
            targets,
            ReplicaAsk::Propose(key, ballot, proposal.clone()),
            false,
            remaining,
        );
        fan.gather_while(|outcomes| accepted(outcomes) < need).await;
        if accepted(&fan.outcomes) < need {
            let higher = fan
                .outcomes
                .iter()
                .filter_map(|(_, outcome)| match outcome {
                    Outcome::Accepted(false, promised) => *promised,
                    _ => None,
                })
                .max();
            let maybe_accepted = accepted(&fan.outcomes) > 0
                || fan.outcomes.len() < targets.len()
                || fan
                    .outcomes
                    .iter()
                    .any(|(_, outcome)| !matches!(outcome, Outcome::Accepted(..)));
            return match higher {
                Some(higher) => Proposed::Preempted(higher, maybe_accepted),
                None => Proposed::Unknown(format!(
                    "{} of {need} replicas accepted the proposal ({})",
                    accepted(&fan.outcomes),
                    describe(&fan.misses(remaining))
                )),
            };
        }
        self.commit(key, proposal, deadline).await
    }
}

/// How many replicas accepted the proposal so far.
fn accepted(outcomes: &[(ReplicaId, Outcome)]) -> usize {
    outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Accepted(true, _)))
        .count()
}
