//! Making a value stand on a majority with ordinary writes: the commit of
//! a chosen proposal (to every replica of the key, hinted to those that
//! miss it), and the repair of promising replicas that hold something
//! older than what the round read. Both wait for a majority before a round
//! may answer, so QUORUM gets see what a cas or a SERIAL get answered.

use std::sync::Arc;
use std::time::Instant;

use super::prepare::Round;
use super::propose::Proposed;
use crate::coordinator::link::{stamp_of, ReplicaAsk, ReplicaLink, WriteOf};
use crate::coordinator::write::describe;
use crate::coordinator::Coordinator;
use crate::protocol::error::KvError;
use crate::protocol::proto::{ReplicaId, Versioned};

impl<L: ReplicaLink> Coordinator<L> {
    /// Commits a chosen proposal: writes it to the key's replicas (hinted
    /// to those that miss it) and waits until a majority holds it.
    pub(super) async fn commit(
        &self,
        key: u8,
        proposal: Arc<Versioned>,
        deadline: Instant,
    ) -> Proposed {
        let need = self.majority(key);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let replicas = self.ring.replicas_for(key);
        let mut commit = self.fan_out(
            replicas,
            ReplicaAsk::Write(key, proposal, WriteOf::Repair),
            self.mode.hinted_handoff(),
            remaining,
        );
        commit.gather(Some(need)).await;
        if commit.answered() >= need {
            Proposed::Committed
        } else {
            Proposed::Unknown(format!(
                "the proposal was chosen, but only {} of {need} replicas acknowledged its commit ({})",
                commit.answered(),
                describe(&commit.misses(remaining))
            ))
        }
    }

    /// Makes the round's current version stand on a majority: writes it to
    /// the promising replicas that hold something older, and waits until
    /// enough of them hold it.
    pub(super) async fn repair_promisers(
        &self,
        key: u8,
        round: &Round,
        deadline: Instant,
    ) -> Result<(), KvError> {
        let Some(current) = &round.current else {
            return Ok(());
        };
        let newest = stamp_of(current);
        let stale: Vec<ReplicaId> = round
            .promisers
            .iter()
            .filter(|(_, held)| held.is_none_or(|held| held < newest))
            .map(|(id, _)| *id)
            .collect();
        let holders = round.promisers.len() - stale.len();
        let need = self.majority(key);
        if stale.is_empty() || holders >= need {
            return Ok(());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut repair = self.fan_out(
            &stale,
            ReplicaAsk::Write(key, Arc::new(current.clone()), WriteOf::Repair),
            false,
            remaining,
        );
        repair.gather(Some(need - holders)).await;
        if holders + repair.answered() < need {
            return Err(KvError::timeout(format!(
                "key {key}: the value read could not be written to a majority in time ({}); nothing new was written",
                describe(&repair.misses(remaining))
            )));
        }
        Ok(())
    }
}
