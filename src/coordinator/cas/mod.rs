//! Compare-and-set and SERIAL gets: Paxos among the key's replicas, a
//! majority of them deciding.
//!
//! A round is a prepare with a ballot from the write clock (above every
//! ballot and stamp this coordinator has seen for the key), to which each
//! replica answers with a promise, what it has accepted, and its current
//! version: the read travels with the prepare. With a majority of
//! promises, an accepted proposal newer than every current version is a
//! proposal some coordinator left unfinished: it is proposed again under
//! this ballot and committed before anything else. Then the current value
//! (the newest among the promises) is made to stand on every promising
//! replica, so what the round read is on a majority. A SERIAL get answers
//! with it; a cas compares it with the expected value and, if they match,
//! proposes the new value stamped with the ballot, and once a majority
//! accepted it, commits it: an ordinary write of the version, acknowledged
//! by a majority before the answer, so QUORUM gets see it and read repair,
//! hints and anti-entropy carry it like any write. Uncontended, a cas takes
//! three round trips (prepare, propose, commit) and a SERIAL get one.
//!
//! A round that meets a higher ballot waits a random moment and starts
//! again above it, within the request's timeout. Every proposal of this
//! cas that was not accepted by a majority may still be finished by a
//! later round (ours or another coordinator's): a finished proposal keeps
//! its version's stamp, so a later round recognises any of them as chosen
//! (it is current, or in progress) and answers APPLIED. If instead a newer
//! version is current, ours may have been finished and written over, or
//! never chosen: the answer is a TIMEOUT that says the outcome is unknown.
//! A round that finds the condition false while such proposals may linger
//! (and nothing newer is current) first has a majority accept the current
//! version under its own, higher ballot, after which none of them can ever
//! be chosen, and only then answers NOT APPLIED. When the time runs out
//! with such a proposal unsettled, the answer is a TIMEOUT that says the
//! outcome is unknown.
//!
//! The parts: `prepare` (ballots and promises), `propose` (a proposal and
//! its acceptances), `commit` (making a chosen or read value stand on a
//! majority), `back_off` (the pause after meeting a higher ballot). This
//! file holds the two requests built of those rounds, and who takes part.

mod back_off;
mod commit;
mod prepare;
mod propose;

use std::sync::Arc;
use std::time::Instant;

use crate::coordinator::link::{stamp_of, ReplicaLink, Stamp};
use crate::coordinator::Coordinator;
use crate::metrics::Op;
use crate::protocol::checks::{checked_key, checked_value};
use crate::protocol::error::KvError;
use crate::protocol::proto::{CasReply, CasRequest, Consistency, ReplicaId, Versioned};
use propose::Proposed;

impl<L: ReplicaLink> Coordinator<L> {
    /// Writes the request's value only if the key holds the expected one.
    pub async fn cas(self: &Arc<Self>, request: CasRequest) -> Result<CasReply, KvError> {
        let counted = self.metrics.request(Op::Cas, Consistency::Serial as i32);
        counted.finish(self.cas_counted(request).await)
    }

    async fn cas_counted(&self, request: CasRequest) -> Result<CasReply, KvError> {
        let key = checked_key(request.key)?;
        checked_value(&request.value, self.limits.max_value_bytes)?;
        if let Some(reason) = self.link.write_fence() {
            return Err(KvError::internal(format!(
                "clock fence: replica {} does not coordinate writes: {reason}. Nothing was written; \
                 another coordinator can take the cas",
                self.self_id
            )));
        }
        let targets = self.paxos_targets(key, Op::Cas).await?;
        // The stamps of this cas's proposals whose fate is not known yet:
        // any of them may still be chosen, by a later round of anyone's.
        let mut mine: Vec<Stamp> = Vec::new();
        match self.cas_rounds(key, &request, &targets, &mut mine).await {
            // Once a proposal may linger, no failure says "nothing written".
            Err(error) if !mine.is_empty() && !error.message.contains("outcome is unknown") => {
                Err(KvError::timeout(format!(
                    "{}; a proposal of this cas was sent, so it may or may not have been applied (the outcome is unknown)",
                    error.message
                )))
            }
            outcome => outcome,
        }
    }

    /// The rounds of one cas, until it is applied, refused, or the time is
    /// up; `mine` collects its proposals whose fate is unknown.
    async fn cas_rounds(
        &self,
        key: u8,
        request: &CasRequest,
        targets: &[ReplicaId],
        mine: &mut Vec<Stamp>,
    ) -> Result<CasReply, KvError> {
        let targets = targets.to_vec();
        let deadline = Instant::now() + self.limits.write_timeout;
        let mut seen: Stamp = (0, 0);
        let mut attempt = 0u32;
        let unsettled = |mine: &[Stamp], why: &str| {
            if mine.is_empty() {
                KvError::timeout(format!("cas of key {key}: {why}; nothing was written"))
            } else {
                KvError::timeout(format!(
                    "cas of key {key}: {why}; its proposal may or may not have been applied (the outcome is unknown)"
                ))
            }
        };
        loop {
            let round = match self
                .promised_round(key, &targets, &mut seen, &mut attempt, deadline)
                .await?
            {
                Ok(round) => round,
                Err(why) => return Err(unsettled(mine, &why)),
            };
            if let Some(unfinished) = round.in_progress.clone() {
                let stamp = stamp_of(&unfinished);
                let ours = mine.contains(&stamp);
                match self
                    .propose(key, &targets, round.ballot, unfinished, deadline)
                    .await
                {
                    Proposed::Committed if ours => return Ok(applied(stamp)),
                    Proposed::Committed => continue,
                    Proposed::Preempted(higher, _) => {
                        seen = seen.max(higher);
                        self.back_off(attempt, deadline).await;
                        continue;
                    }
                    Proposed::Unknown(why) => return Err(unsettled(mine, &why)),
                }
            }
            self.repair_promisers(key, &round, deadline).await?;
            let current_stamp = round.current.as_ref().map(stamp_of);
            if let Some(stamp) = current_stamp.filter(|stamp| mine.contains(stamp)) {
                return Ok(applied(stamp));
            }
            // A version newer than a proposal of ours is current: ours may
            // have been finished by another round and written over since,
            // or never chosen. No replica can tell which any more.
            if let (Some(current), Some(&earliest)) = (current_stamp, mine.iter().min()) {
                if current > earliest {
                    return Err(unsettled(
                        mine,
                        "a proposal of this cas was accepted by too few replicas before another coordinator's ballot, and the key has a newer value since",
                    ));
                }
            }
            if !holds(request.expected.as_deref(), round.current.as_ref()) {
                if !mine.is_empty() {
                    // Settle the lingering proposal before saying no.
                    let seal = round.current.clone().unwrap_or(Versioned {
                        value: String::new(),
                        timestamp_micros: round.ballot.0,
                        coordinator_id: round.ballot.1,
                        tombstone: true,
                    });
                    match self
                        .propose(key, &targets, round.ballot, seal, deadline)
                        .await
                    {
                        Proposed::Committed => {}
                        Proposed::Preempted(higher, _) => {
                            seen = seen.max(higher);
                            self.back_off(attempt, deadline).await;
                            continue;
                        }
                        Proposed::Unknown(why) => return Err(unsettled(mine, &why)),
                    }
                }
                return Ok(CasReply {
                    applied: false,
                    current: round.current.filter(|version| !version.tombstone),
                    timestamp_micros: 0,
                });
            }
            if current_stamp.is_some_and(|stamp| stamp >= round.ballot) {
                // A version stamped ahead of this clock: a ballot above it.
                seen = seen.max(current_stamp.unwrap_or_default());
                continue;
            }
            let proposal = Versioned {
                value: request.value.clone(),
                timestamp_micros: round.ballot.0,
                coordinator_id: round.ballot.1,
                tombstone: false,
            };
            mine.push(round.ballot);
            match self
                .propose(key, &targets, round.ballot, proposal, deadline)
                .await
            {
                Proposed::Committed => return Ok(applied(round.ballot)),
                Proposed::Preempted(higher, maybe_accepted) => {
                    if !maybe_accepted {
                        // Every replica refused it: it cannot linger.
                        mine.pop();
                    }
                    seen = seen.max(higher);
                    self.back_off(attempt, deadline).await;
                }
                Proposed::Unknown(why) => return Err(unsettled(mine, &why)),
            }
        }
    }

    /// A SERIAL get: a Paxos round that finishes any proposal left in
    /// progress, then answers with the current value, which it has made to
    /// stand on a majority.
    pub(super) async fn serial_get(&self, key: u8) -> Result<Option<Versioned>, KvError> {
        let targets = self.paxos_targets(key, Op::Get).await?;
        let deadline = Instant::now() + self.limits.read_timeout;
        let mut seen: Stamp = (0, 0);
        let mut attempt = 0u32;
        loop {
            let round = match self
                .promised_round(key, &targets, &mut seen, &mut attempt, deadline)
                .await?
            {
                Ok(round) => round,
                Err(why) => {
                    return Err(KvError::timeout(format!("SERIAL get of key {key}: {why}")))
                }
            };
            if let Some(unfinished) = round.in_progress.clone() {
                match self
                    .propose(key, &targets, round.ballot, unfinished, deadline)
                    .await
                {
                    Proposed::Committed => continue,
                    Proposed::Preempted(higher, _) => {
                        seen = seen.max(higher);
                        self.back_off(attempt, deadline).await;
                        continue;
                    }
                    Proposed::Unknown(why) => {
                        return Err(KvError::timeout(format!(
                            "SERIAL get of key {key}: finishing a proposal left in progress: {why}"
                        )))
                    }
                }
            }
            self.repair_promisers(key, &round, deadline).await?;
            if let Some(version) = &round.current {
                self.clock.observe(version.timestamp_micros);
            }
            return Ok(round.current.filter(|version| !version.tombstone));
        }
    }

    /// The replicas of `key` that take part in its Paxos rounds: those that
    /// may serve it (a replica rebuilding after lost data has lost its
    /// promises too), at least a majority of them up, or UNAVAILABLE.
    async fn paxos_targets(&self, key: u8, op: Op) -> Result<Vec<ReplicaId>, KvError> {
        let need = self.check_available(key, Consistency::Serial, op).await?;
        let targets: Vec<ReplicaId> = self
            .ring
            .replicas_for(key)
            .iter()
            .copied()
            .filter(|&id| self.link.may_serve(id, key))
            .collect();
        if targets.iter().filter(|&&id| self.link.is_up(id)).count() < need {
            return Err(KvError::unavailable(format!(
                "{} of key {key} needs {need} of its replicas, up and holding the key whole; only {:?} may take part (nothing was written)",
                op.name(),
                targets
            )));
        }
        Ok(targets)
    }

    /// How many of the key's replicas make a majority.
    fn majority(&self, key: u8) -> usize {
        Consistency::Serial.required_acks(self.ring.replicas_for(key).len())
    }
}

/// Whether the key's current version meets the cas's condition: it holds
/// `expected`, or (None) holds no value.
fn holds(expected: Option<&str>, current: Option<&Versioned>) -> bool {
    let value = current
        .filter(|version| !version.tombstone)
        .map(|version| version.value.as_str());
    value == expected
}

/// The answer of a cas whose proposal, stamped `stamp`, was chosen.
fn applied(stamp: Stamp) -> CasReply {
    CasReply {
        applied: true,
        current: None,
        timestamp_micros: stamp.0,
    }
}
