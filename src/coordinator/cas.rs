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

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coordinator::link::{stamp_of, Outcome, ReplicaAsk, ReplicaLink, Stamp, WriteOf};
use crate::coordinator::write::describe;
use crate::coordinator::Coordinator;
use crate::metrics::Op;
use crate::ops::rt;
use crate::protocol::checks::{checked_key, checked_value};
use crate::protocol::error::KvError;
use crate::protocol::proto::{CasReply, CasRequest, Consistency, ReplicaId, Versioned};
use crate::storage::clock::wall_micros;

/// The longest pause between a round that met a higher ballot and the
/// next, drawn at random below it so two coordinators fall out of step.
const MAX_BACK_OFF: Duration = Duration::from_millis(20);

/// What a prepare round found, with a majority of promises.
struct Round {
    ballot: Stamp,
    /// The newest version among the promises: the key's current version.
    current: Option<Versioned>,
    /// The replicas that promised, with the stamp of what each holds.
    promisers: Vec<(ReplicaId, Option<Stamp>)>,
    /// The accepted proposal with the highest ballot, if it is newer than
    /// every current version: a proposal left unfinished.
    in_progress: Option<Versioned>,
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

/// How a proposal ended.
enum Proposed {
    /// A majority accepted it and a majority holds it committed.
    Committed,
    /// A replica had promised this higher ballot. Whether some replica
    /// may have accepted it all the same (one did, or one did not answer).
    Preempted(Stamp, bool),
    /// Too few answers in time: it may or may not be chosen.
    Unknown(String),
}

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

    /// Prepares ballots above `seen`, backing off after each preemption,
    /// until a majority promises one (`Ok`) or too few replicas answer
    /// (`Err` with why). Each prepare is one more `attempt`.
    async fn promised_round(
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
        let ballot = (self.restamp_above(key, seen, deadline).await?, self.self_id);
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

    /// Proposes `version` under `ballot`; once a majority accepted it,
    /// commits it (an ordinary write, hinted to replicas that miss it) and
    /// waits until a majority holds it.
    async fn propose(
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
    async fn repair_promisers(
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

    /// Waits a random moment, longer with each attempt, before a new round
    /// after meeting a higher ballot (never past the deadline).
    async fn back_off(&self, attempt: u32, deadline: Instant) {
        let ceiling = MAX_BACK_OFF.as_micros().min(1_000 << attempt.min(10)) as u64;
        let seed = wall_micros() ^ u64::from(self.self_id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let pause = Duration::from_micros(mix(seed) % ceiling.max(1));
        let left = deadline.saturating_duration_since(Instant::now());
        rt::sleep(pause.min(left)).await;
    }
}

/// The promises among the outcomes so far.
fn promised(
    outcomes: &[(ReplicaId, Outcome)],
) -> Vec<(ReplicaId, &crate::coordinator::link::Promise)> {
    outcomes
        .iter()
        .filter_map(|(id, outcome)| match outcome {
            Outcome::Promised(promise) if promise.promised => Some((*id, &**promise)),
            _ => None,
        })
        .collect()
}

/// How many replicas accepted the proposal so far.
fn accepted(outcomes: &[(ReplicaId, Outcome)]) -> usize {
    outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Accepted(true, _)))
        .count()
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

/// A 64-bit mix (splitmix64's finaliser) for the back-off's randomness:
/// no crate, and good enough to keep two coordinators out of step.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
