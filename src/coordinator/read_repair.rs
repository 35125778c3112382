//! Read repair: what a get does when the replicas it heard from disagree.
//!
//! Blocking: when the answers that decide a QUORUM or ALL read disagree,
//! the newest version is written to the stale ones among them (and, if one
//! refuses, to the key's replicas that did not decide the read) before the
//! client hears back, and the read answers only once the level's count of
//! replicas hold it; otherwise it answers TIMEOUT. No later read at that
//! level, through any coordinator, can then return anything older.
//!
//! Background: a read that asked every replica waits, after answering,
//! for the late ones, and brings each that holds something older up to the
//! newest version seen, never delaying the client. A repair is an
//! ordinary timestamped write, so it can never overwrite something newer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::coordinator::fan_out::FanOut;
use crate::coordinator::link::{ReplicaAsk, ReplicaLink, WriteOf};
use crate::coordinator::read::Heard;
use crate::coordinator::write::describe;
use crate::coordinator::Coordinator;
use crate::protocol::error::KvError;
use crate::protocol::proto::{Consistency, ReplicaId, Versioned};

impl<L: ReplicaLink> Coordinator<L> {
    /// Writes `newest` to the replicas among `deciding` that hold something
    /// older, and returns them once the level's count of replicas hold it.
    /// TIMEOUT if that cannot be reached by `deadline`.
    pub(super) async fn repair_before_answering(
        &self,
        key: u8,
        level: Consistency,
        need: usize,
        newest: &Versioned,
        deciding: &[(ReplicaId, Heard)],
        deadline: Instant,
    ) -> Result<Vec<ReplicaId>, KvError> {
        let known = Some(newest.clone());
        let stale: Vec<ReplicaId> = deciding
            .iter()
            .filter(|(_, heard)| heard.is_older_than(&known))
            .map(|(id, _)| *id)
            .collect();
        if stale.is_empty() {
            return Ok(stale);
        }
        let timeout = self.limits.read_timeout;
        let holders = deciding.len() - stale.len();
        let mut repair = self.send_repair(key, &stale, newest, deadline);
        repair.gather(Some(need.saturating_sub(holders))).await;
        let mut held_by = holders + repair.answered();
        let mut misses = repair.misses(timeout);
        if held_by < need {
            // A stale replica refused the repair (its clock fence, say,
            // when the stamp is further ahead of its clock than the
            // maximum offset): the key's replicas that did not decide
            // this read may hold the version already, or take it.
            let others: Vec<ReplicaId> = self
                .ring
                .replicas_for(key)
                .iter()
                .copied()
                .filter(|id| deciding.iter().all(|(decided, _)| decided != id))
                .collect();
            if !others.is_empty() {
                let mut spare = self.send_repair(key, &others, newest, deadline);
                // With three replicas and at least two deciding, `others`
                // is one replica, so any count from 1 up waits for it
                // alike (cargo-mutants' `+` and `/` here cannot be seen).
                spare.gather(Some(need - held_by)).await;
                held_by += spare.answered();
                misses.extend(spare.misses(timeout));
            }
        }
        if held_by < need {
            return Err(KvError::timeout(format!(
                "{level} get of key {key}: the replicas that answered disagreed, and read repair \
                 reached only {held_by} of the {need} needed before the timeout ({})",
                describe(&misses)
            )));
        }
        Ok(stale)
    }

    /// Sends `version` to `targets` as a repair, counted for `status`.
    fn send_repair(
        &self,
        key: u8,
        targets: &[ReplicaId],
        version: &Versioned,
        deadline: Instant,
    ) -> FanOut<L> {
        self.stats
            .repairs_sent
            .fetch_add(targets.len() as u64, Ordering::Relaxed);
        self.fan_out(
            targets,
            ReplicaAsk::Write(key, Arc::new(version.clone()), WriteOf::Repair),
            false,
            deadline.saturating_duration_since(Instant::now()),
        )
    }

    /// After a read was answered: waits for the replicas that had not
    /// answered yet, and brings every replica that answered with something
    /// older than the newest version seen up to it. `already` were repaired
    /// to `answered` before the client got its answer.
    pub(super) async fn repair_in_background(
        self: Arc<Self>,
        key: u8,
        mut fan: FanOut<L>,
        answered: Option<Versioned>,
        already: Vec<ReplicaId>,
    ) {
        fan.gather(None).await;
        let mut answers = fan.answers();
        let deadline = Instant::now() + self.limits.read_timeout;
        let Ok(newest) = self
            .newest_of(key, &mut answers, answered.clone(), deadline)
            .await
        else {
            return;
        };
        let Some(version) = newest.clone() else {
            return;
        };
        let stale: Vec<ReplicaId> = answers
            .iter()
            .filter(|(id, heard)| {
                heard.is_older_than(&newest) && !(already.contains(id) && newest == answered)
            })
            .map(|(id, _)| *id)
            .collect();
        if stale.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.limits.write_timeout;
        let mut repair = self.send_repair(key, &stale, &version, deadline);
        repair.gather(None).await;
    }
}
