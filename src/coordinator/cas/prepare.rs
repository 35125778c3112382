//! The first phase of a Paxos round: a prepare with a ballot above every
//! one seen, and the promises it gathers. A majority of promises makes a
//! `Round`: the key's current version (the read travels with the prepare)
//! and any proposal some coordinator left unfinished. Nothing here writes.

use std::time::Instant;

use crate::coordinator::link::{stamp_of, Outcome, Promise, ReplicaAsk, ReplicaLink, Stamp};
use crate::coordinator::write::describe;
use crate::coordinator::Coordinator;
use crate::protocol::error::KvError;
use crate::protocol::proto::{ReplicaId, Versioned};

/// What a prepare round found, with a majority of promises.
pub(super) struct Round {
    pub(super) ballot: Stamp,
    /// The newest version among the promises: the key's current version.
    pub(super) current: Option<Versioned>,
    /// The replicas that promised, with the stamp of what each holds.
    pub(super) promisers: Vec<(ReplicaId, Option<Stamp>)>,
    /// The accepted proposal with the highest ballot, if it is newer than
    /// every current version: a proposal left unfinished.
    pub(super) in_progress: Option<Versioned>,
}

/// How a prepare ended.
enum Prepared {
    /// A majority promised.
    Round(Round),
    /// A replica had promised this higher ballot.
    Preempted(Stamp),
    /// Too few replicas answered: why.
    Short(String),
}

impl<L: ReplicaLink> Coordinator<L> {
    /// Prepares ballots above `seen`, backing off after each preemption,
    /// until a majority promises one (`Ok`) or too few replicas answer
    /// (`Err` with why). Each prepare is one more `attempt`.
    pub(super) async fn promised_round(
        &self,
        key: u8,
        targets: &[ReplicaId],
        seen: &mut Stamp,
        attempt: &mut u32,
        deadline: Instant,
    ) -> Result<Result<Round, String>, KvError> {
        loop {
            *attempt += 1;
            match self.prepare(key, targets, *seen, deadline).await? {
                Prepared::Round(round) => return Ok(Ok(round)),
                Prepared::Preempted(higher) => {
                    *seen = (*seen).max(higher);
                    self.back_off(*attempt, deadline).await;
                }
                Prepared::Short(why) => return Ok(Err(why)),
            }
        }
    }

    /// Sends a prepare with a ballot above `seen` and collects promises
    /// until a majority promised or that can no longer happen.
    async fn prepare(
        &self,
        key: u8,
        targets: &[ReplicaId],
        seen: Stamp,
        deadline: Instant,
    ) -> Result<Prepared, KvError> {
        let need = self.majority(key);
        let effect = "the write may have been applied on some replicas below that version";
        let ballot = (
            self.restamp_above(key, seen, deadline, effect).await?,
            self.self_id,
        );
        let ballot = if ballot > seen {
            ballot
        } else {
            (seen.0 + 1, self.self_id)
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut fan = self.fan_out(targets, ReplicaAsk::Prepare(key, ballot), false, remaining);
        fan.gather_while(|outcomes| promised(outcomes).len() < need)
            .await;
        let promises = promised(&fan.outcomes);
        if promises.len() < need {
            let higher = fan
                .outcomes
                .iter()
                .filter_map(|(_, outcome)| match outcome {
                    Outcome::Promised(promise) if !promise.promised => promise.promised_ballot,
                    _ => None,
                })
                .max();
            return Ok(match higher {
                Some(higher) => Prepared::Preempted(higher),
                None => Prepared::Short(format!(
                    "{} of {need} replicas promised ({})",
                    promises.len(),
                    describe(&fan.misses(remaining))
                )),
            });
        }
        let current = promises
            .iter()
            .map(|(_, promise)| promise.current.clone())
            .fold(None, Versioned::newest);
        let newest_accepted = promises
            .iter()
            .filter_map(|(_, promise)| promise.accepted.clone())
            .max_by_key(|(ballot, _)| *ballot)
            .map(|(_, version)| version);
        let in_progress = newest_accepted.filter(|accepted| match &current {
            None => true,
            Some(current) => accepted.lww_cmp(current).is_gt(),
        });
        Ok(Prepared::Round(Round {
            ballot,
            current,
            promisers: promises
                .iter()
                .map(|(id, promise)| (*id, promise.current.as_ref().map(stamp_of)))
                .collect(),
            in_progress,
        }))
    }
}

/// The promises among the outcomes so far.
fn promised(outcomes: &[(ReplicaId, Outcome)]) -> Vec<(ReplicaId, &Promise)> {
    outcomes
        .iter()
        .filter_map(|(id, outcome)| match outcome {
            Outcome::Promised(promise) if promise.promised => Some((*id, &**promise)),
            _ => None,
        })
        .collect()
}
