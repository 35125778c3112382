//! Gets and `where`: asking the replicas `read_plan` chooses (one for the
//! value, the others for digests), fetching a replica's value when its
//! digest is newer than every value heard, and taking the newest version
//! among the first `level` answers. The repairs that follow a read that
//! saw disagreement are in `read_repair`.
//!
//! A get's answer is always decided by `level` replicas that did answer:
//! a replica whose newer value cannot be fetched counts as missed, and a
//! spare takes its place. A replica rebuilding after losing its data is
//! never asked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::coordinator::fan_out::{FanOut, Reserve};
use crate::coordinator::link::{
    no_answer_within, stamp_of, Outcome, ReplicaAsk, ReplicaLink, Stamp,
};
use crate::coordinator::read_plan::ReadPlan;
use crate::coordinator::Coordinator;
use crate::metrics::Op;
use crate::protocol::checks::checked_key;
use crate::protocol::error::KvError;
use crate::protocol::proto::{
    replica_holding, Consistency, GetReply, GetRequest, Holding, InspectReply, InspectRequest,
    ReplicaHolding, ReplicaId, Versioned,
};

/// What a read heard from one replica: its version, or only its stamp.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Heard {
    Value(Option<Versioned>),
    Stamp(Option<Stamp>),
}

impl Heard {
    pub(super) fn stamp(&self) -> Option<Stamp> {
        match self {
            Heard::Value(found) => found.as_ref().map(stamp_of),
            Heard::Stamp(stamp) => *stamp,
        }
    }

    /// Whether this replica holds something older than `newest` (holding
    /// nothing is older than any version). A stamp equal to the newest's
    /// is the same version.
    pub(super) fn is_older_than(&self, newest: &Option<Versioned>) -> bool {
        match self {
            Heard::Value(held) => is_older(held, newest),
            Heard::Stamp(stamp) => match newest {
                None => false,
                Some(newest) => stamp.is_none_or(|stamp| stamp < stamp_of(newest)),
            },
        }
    }
}

impl<L: ReplicaLink> Coordinator<L> {
    /// Answers with the newest version among the first `level` replicas to
    /// answer, after making sure (at QUORUM and ALL) that `level` replicas
    /// hold it.
    pub async fn get(self: &Arc<Self>, request: GetRequest) -> Result<GetReply, KvError> {
        let counted = self.metrics.request(Op::Get, request.consistency);
        counted.finish(self.get_counted(request).await)
    }

    async fn get_counted(self: &Arc<Self>, request: GetRequest) -> Result<GetReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        if level == Consistency::Serial {
            let found = self.serial_get(key).await?;
            return Ok(GetReply { found });
        }
        let need = self.check_available(key, level, Op::Get).await?;
        let (plan, mut fan) = self.start_read(key, need);
        let (newest, deciding) = self.decide(key, level, need, &mut fan).await?;
        if let Some(version) = &newest {
            // A put through this coordinator after this read beats what it read.
            self.clock.observe(version.timestamp_micros);
        }
        let stale = match &newest {
            Some(version) => {
                self.repair_before_answering(key, level, need, version, &deciding, fan.deadline)
                    .await?
            }
            None => Vec::new(),
        };
        // Only a read that asked every replica repairs the late ones; with
        // every replica already heard from, the blocking repair has done
        // all there is to do: no task.
        if plan.everyone && self.mode.background_read_repair() && !fan.waiting.is_empty() {
            fan.reserve = None;
            let (coordinator, repaired) = (self.clone(), newest.clone());
            crate::ops::rt::spawn(async move {
                coordinator
                    .repair_in_background(key, fan, repaired, stale)
                    .await
            });
        }
        Ok(GetReply {
            found: newest.filter(|version| !version.tombstone),
        })
    }

    /// Asks the replicas the read plan chooses: the first for the value
    /// (this one, when it holds the key), the others for digests, with the
    /// rest kept as spares.
    fn start_read(&self, key: u8, need: usize) -> (ReadPlan, FanOut<L>) {
        let turn = self.read_turns[usize::from(key)].fetch_add(1, Ordering::Relaxed);
        // A replica rebuilding the key after losing its data is never asked.
        let replicas = self.ring.replicas_for(key);
        let servable: Vec<ReplicaId>;
        let replicas = if replicas.iter().all(|&id| self.can_read_from(id, key)) {
            replicas
        } else {
            servable = replicas
                .iter()
                .copied()
                .filter(|&id| self.can_read_from(id, key))
                .collect();
            &servable
        };
        let mut plan = self
            .read_policy
            .plan(self.self_id, replicas, need, turn, |id| self.link.is_up(id));
        let asks = plan
            .ask
            .iter()
            .enumerate()
            .map(|(i, &id)| match i {
                0 => (id, ReplicaAsk::Read(key)),
                _ => (id, ReplicaAsk::Digest(key)),
            })
            .collect();
        let mut fan = self.fan_out_asks(asks, false, self.limits.read_timeout);
        if !plan.spares.is_empty() {
            fan.reserve = Some(Reserve {
                link: self.link.clone(),
                key,
                spares: std::mem::take(&mut plan.spares),
                value_from: plan.ask.first().copied(),
                speculate_at: Instant::now() + self.read_policy.speculate_after,
            });
        }
        (plan, fan)
    }

    /// The newest version among `need` answers, and those answers. A
    /// replica whose digest is the newest but whose value cannot be
    /// fetched counts as missed, and a spare takes its place.
    async fn decide(
        &self,
        key: u8,
        level: Consistency,
        need: usize,
        fan: &mut FanOut<L>,
    ) -> Result<(Option<Versioned>, Vec<(ReplicaId, Heard)>), KvError> {
        loop {
            fan.gather(Some(need)).await;
            let mut deciding = fan.answers();
            if deciding.len() < need {
                let timeout = self.limits.read_timeout;
                return Err(self.shortfall(Op::Get, key, level, need, fan, timeout));
            }
            match self.newest_of(key, &mut deciding, None, fan.deadline).await {
                Ok(newest) => return Ok((newest, deciding)),
                Err((replica, miss)) => fan.answer_failed(replica, miss),
            }
        }
    }

    /// The newest version among what a read heard (and `known`, a version
    /// already in hand). Where a digest is newer than every value heard,
    /// that replica's value is fetched, and its entry in `heard` becomes the
    /// value. Fails with the replica's miss if such a fetch fails.
    pub(super) async fn newest_of(
        &self,
        key: u8,
        heard: &mut [(ReplicaId, Heard)],
        known: Option<Versioned>,
        deadline: Instant,
    ) -> Result<Option<Versioned>, (ReplicaId, Outcome)> {
        let mut newest = heard
            .iter()
            .filter_map(|(_, heard)| match heard {
                Heard::Value(found) => Some(found.clone()),
                Heard::Stamp(_) => None,
            })
            .fold(known, Versioned::newest);
        // Each fetch turns a stamp into a value at least as new, so this
        // ends; the bound is for a replica that answers nonsense.
        for _ in 0..heard.len() {
            let newer = heard
                .iter_mut()
                .filter(|(_, h)| {
                    matches!(h, Heard::Stamp(Some(_))) && h.stamp() > newest.as_ref().map(stamp_of)
                })
                .max_by_key(|(_, h)| h.stamp());
            let Some((id, entry)) = newer else {
                break;
            };
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.link.ask(*id, ReplicaAsk::Read(key), timeout).await {
                Outcome::Answered(found) => {
                    *entry = Heard::Value(found.clone());
                    newest = Versioned::newest(newest, found);
                }
                miss => return Err((*id, miss)),
            }
        }
        Ok(newest)
    }

    /// Asks every replica of the key what it holds, without repairing
    /// anything: the console's `where`.
    pub async fn inspect(
        self: &Arc<Self>,
        request: InspectRequest,
    ) -> Result<InspectReply, KvError> {
        let key = checked_key(request.key)?;
        let replicas = self.ring.replicas_for(key);
        let timeout = self.limits.read_timeout;
        let mut fan = self.fan_out(replicas, ReplicaAsk::Read(key), false, timeout);
        fan.gather(None).await;
        let outcome_of = |id: ReplicaId| match fan.outcomes.iter().find(|(r, _)| *r == id) {
            Some((_, Outcome::Answered(found))) => replica_holding::Outcome::Holding(Holding {
                found: found.clone(),
            }),
            Some((_, Outcome::Failed(kind, reason))) => {
                replica_holding::Outcome::Unreachable(format!("{}: {reason}", kind.as_str()))
            }
            Some((_, Outcome::NoAnswer(reason))) => {
                replica_holding::Outcome::Unreachable(reason.clone())
            }
            Some((_, Outcome::Digest(_))) => {
                replica_holding::Outcome::Unreachable("answered with a digest".to_string())
            }
            Some((_, Outcome::Stale(_) | Outcome::Promised(_) | Outcome::Accepted(..))) => {
                replica_holding::Outcome::Unreachable(
                    "answered a read with another reply".to_string(),
                )
            }
            None => replica_holding::Outcome::Unreachable(no_answer_within(timeout)),
        };
        Ok(InspectReply {
            replicas: replicas
                .iter()
                .map(|&replica_id| ReplicaHolding {
                    replica_id,
                    outcome: Some(outcome_of(replica_id)),
                })
                .collect(),
        })
    }
}

/// Whether a replica's answer is older than the newest version seen (a
/// replica that holds nothing is older than any version).
pub(super) fn is_older(held: &Option<Versioned>, newest: &Option<Versioned>) -> bool {
    match (held, newest) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(held), Some(newest)) => held.lww_cmp(newest).is_lt(),
    }
}
