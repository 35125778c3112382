//! A replica's side of compare-and-set: the Paxos acceptor state of each
//! key, what it has promised and what it has accepted.
//!
//! The rules an acceptor keeps, which make a chosen value unique: it
//! promises a ballot only if it is higher than every ballot promised
//! before, and accepts a proposal only if no higher ballot was promised.
//! Both are durable in the write-ahead log before the answer leaves
//! (`durable::DurableStore::prepare`, `propose`), so a replica never
//! forgets a promise across a crash. A committed proposal is an ordinary
//! version (stamped with its ballot) written like any other, so reads,
//! repairs, hints and anti-entropy carry it.

use std::sync::Mutex;

use crate::ops::lock::lock;
use crate::protocol::proto::{Ballot, PaxosState, ReplicaId, Versioned};

/// A ballot as the pair that orders it: (micros, coordinator id), the
/// same order as a version's stamp.
pub type BallotStamp = (u64, ReplicaId);

/// The stamp of a wire ballot.
pub fn stamp_of_ballot(ballot: &Ballot) -> BallotStamp {
    (ballot.micros, ballot.coordinator_id)
}

/// A wire ballot from its stamp.
pub fn ballot_of(stamp: BallotStamp) -> Ballot {
    Ballot {
        micros: stamp.0,
        coordinator_id: stamp.1,
    }
}

/// What one key's acceptor holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AcceptorState {
    /// The highest ballot promised.
    pub promised: Option<BallotStamp>,
    /// The accepted proposal with the highest ballot, and that ballot.
    pub accepted: Option<(BallotStamp, Versioned)>,
}

impl AcceptorState {
    /// Takes `other` in: the higher promise, the accepted proposal with the
    /// higher ballot (replay and the WAL thread both merge this way, so the
    /// order records arrive in does not matter).
    pub fn merge(&mut self, other: AcceptorState) {
        self.promised = self.promised.max(other.promised);
        let newer = match (&self.accepted, &other.accepted) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((held, _)), Some((offered, _))) => offered > held,
        };
        if newer {
            self.accepted = other.accepted;
        }
    }

    /// Whether it has anything to remember.
    pub fn is_empty(&self) -> bool {
        self.promised.is_none() && self.accepted.is_none()
    }

    /// As a log record's payload message.
    pub fn to_record(&self, key: u8) -> PaxosState {
        PaxosState {
            key: u32::from(key),
            promised: self.promised.map(ballot_of),
            accepted: self.accepted.as_ref().map(|(_, version)| version.clone()),
            accepted_ballot: self.accepted.as_ref().map(|(ballot, _)| ballot_of(*ballot)),
        }
    }

    /// From a log record's message.
    pub fn from_record(record: PaxosState) -> Result<(u8, AcceptorState), String> {
        let key = u8::try_from(record.key)
            .map_err(|_| format!("paxos record for key {}, beyond 255", record.key))?;
        Ok((
            key,
            AcceptorState {
                promised: record.promised.as_ref().map(stamp_of_ballot),
                accepted: record
                    .accepted
                    .zip(record.accepted_ballot.as_ref().map(stamp_of_ballot))
                    .map(|(version, ballot)| (ballot, version)),
            },
        ))
    }
}

/// Every key's acceptor state, in memory; changed only by the WAL thread,
/// after the change is durable.
pub struct PaxosStore {
    keys: Mutex<Vec<AcceptorState>>,
}

impl Default for PaxosStore {
    fn default() -> Self {
        PaxosStore {
            keys: Mutex::new(vec![AcceptorState::default(); 256]),
        }
    }
}

impl PaxosStore {
    /// The acceptor state of `key`.
    pub fn get(&self, key: u8) -> AcceptorState {
        lock(&self.keys)[usize::from(key)].clone()
    }

    /// Merges a durable change into `key`'s state.
    pub fn merge(&self, key: u8, change: AcceptorState) {
        lock(&self.keys)[usize::from(key)].merge(change);
    }

    /// Every key with a state, for a checkpoint.
    pub fn all(&self) -> Vec<(u8, AcceptorState)> {
        lock(&self.keys)
            .iter()
            .enumerate()
            .filter(|(_, state)| !state.is_empty())
            .map(|(key, state)| (key as u8, state.clone()))
            .collect()
    }

    /// The highest ballot micros anywhere in the store, so that a restarted
    /// coordinator's clock starts past every ballot it promised or accepted.
    pub fn newest_micros(&self) -> u64 {
        lock(&self.keys)
            .iter()
            .flat_map(|state| {
                [
                    state.promised.map(|b| b.0),
                    state.accepted.as_ref().map(|(ballot, _)| ballot.0),
                ]
            })
            .flatten()
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(micros: u64, value: &str) -> Versioned {
        Versioned {
            value: value.to_string(),
            timestamp_micros: micros,
            coordinator_id: 1,
            tombstone: false,
        }
    }

    #[test]
    fn merging_keeps_the_highest_promise_and_the_newest_acceptance() {
        let mut state = AcceptorState {
            promised: Some((10, 1)),
            accepted: Some(((8, 1), proposal(8, "old"))),
        };
        state.merge(AcceptorState {
            promised: Some((5, 2)),
            accepted: Some(((4, 2), proposal(4, "older"))),
        });
        assert_eq!(state.promised, Some((10, 1)));
        let value = |state: &AcceptorState| state.accepted.as_ref().map(|(_, v)| v.value.clone());
        assert_eq!(value(&state), Some("old".to_string()));
        // A proposal finished under a higher ballot keeps its version.
        state.merge(AcceptorState {
            promised: Some((12, 0)),
            accepted: Some(((12, 0), proposal(8, "old"))),
        });
        assert_eq!(state.promised, Some((12, 0)));
        assert_eq!(state.accepted.as_ref().map(|(b, _)| *b), Some((12, 0)));
        let (key, back) = AcceptorState::from_record(state.to_record(7)).expect("record");
        assert_eq!((key, back), (7, state));
    }
}
