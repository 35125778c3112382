//! Puts and deletes, as multi-writer ABD writes: learning the newest stamp
//! a quorum of the key's replicas holds (digest reads), stamping the
//! version above it, sending it once to every replica of the key,
//! answering once the level's count acknowledged it ("stale" answers
//! included), and the error a request ends in when too few replicas
//! answered (its kind and a message saying which replicas applied a
//! write).
//!
//! Nothing here writes before the availability check, the quorum's stamps
//! and the clock have agreed: a refused write wrote nothing anywhere.
//!
//! Why the stamp read comes first, at the cost of a round trip: a write
//! sent at once with this clock's stamp is linearizable when every
//! replica of a quorum applies it, but not when one answers with a newer
//! stamp from a write that had finished before this one began (this clock
//! is behind). A replica that did not have the newer version yet may have
//! applied this write, and a get that started before the newer write
//! finished could have read this one there and returned it; gets after it
//! return the newer write again, which finished before this one began.
//! Neither failing this write nor stamping it again undoes that read.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coordinator::fan_out::{FanOut, Reserve};
use crate::coordinator::link::{Outcome, ReplicaAsk, ReplicaLink, Stamp, WriteOf};
use crate::coordinator::{list, Coordinator};
use crate::metrics::Op;
use crate::ops::rt;
use crate::protocol::checks::{checked_key, checked_value};
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::proto::{
    Consistency, DeleteReply, DeleteRequest, PutReply, PutRequest, ReplicaId, Versioned,
};
use crate::storage::clock::{max_offset_micros, wall_micros, ClockRefusal};

/// How long a put waits for the clock's lease to be renewed.
const LEASE_WAIT: Duration = Duration::from_secs(1);

impl<L: ReplicaLink> Coordinator<L> {
    /// Stamps the value and answers once `level` replicas made it durable.
    pub async fn put(self: &Arc<Self>, request: PutRequest) -> Result<PutReply, KvError> {
        let counted = self.metrics.request(Op::Put, request.consistency);
        counted.finish(self.put_counted(request).await)
    }

    /// Stamps a tombstone and answers once `level` replicas made it durable.
    pub async fn delete(self: &Arc<Self>, request: DeleteRequest) -> Result<DeleteReply, KvError> {
        let counted = self.metrics.request(Op::Delete, request.consistency);
        counted.finish(self.delete_counted(request).await)
    }

    async fn put_counted(&self, request: PutRequest) -> Result<PutReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        checked_value(&request.value, self.limits.max_value_bytes)?;
        let timestamp_micros = self
            .write(key, level, Op::Put, request.value, false)
            .await?;
        Ok(PutReply { timestamp_micros })
    }

    async fn delete_counted(&self, request: DeleteRequest) -> Result<DeleteReply, KvError> {
        let key = checked_key(request.key)?;
        let level = Consistency::from_wire(request.consistency)?;
        let timestamp_micros = self
            .write(key, level, Op::Delete, String::new(), true)
            .await?;
        Ok(DeleteReply { timestamp_micros })
    }

    /// The write path shared by put and delete: learn the newest stamp a
    /// quorum of the key's replicas holds, stamp the write above it, send
    /// it to every replica of the key, and count the acknowledgements.
    async fn write(
        &self,
        key: u8,
        level: Consistency,
        op: Op,
        value: String,
        tombstone: bool,
    ) -> Result<u64, KvError> {
        if let Some(reason) = self.link.write_fence() {
            return Err(KvError::internal(format!(
                "clock fence: replica {} does not coordinate writes: {reason}. Nothing was written; \
                 another coordinator can take the {}",
                self.self_id,
                op.name()
            )));
        }
        let need = self.check_available(key, level, op).await?;
        let timeout = self.limits.write_timeout;
        // Learning the stamp to beat, and waiting out the clock fence to
        // beat it, happen within this; the writes then have the timeout.
        let deadline = Instant::now() + timeout;
        let held = self.newest_held(key, level, op, need, deadline).await?;
        let timestamp_micros = self.stamp_above_held(key, held, deadline).await?;
        let hint_misses = self.mode.hinted_handoff();
        let replicas = self.ring.replicas_for(key);
        let down: Vec<ReplicaId> = replicas
            .iter()
            .copied()
            .filter(|&id| !self.link.is_up(id))
            .collect();
        let version = Versioned {
            value,
            timestamp_micros,
            coordinator_id: self.self_id,
            tombstone,
        };
        let mut fan = self.fan_out(
            replicas,
            ReplicaAsk::Write(key, Arc::new(version), WriteOf::Client),
            hint_misses,
            timeout,
        );
        // A replica that answers "stale" holds a version newer than this
        // stamp, which is above everything a quorum held when this write
        // started: that version comes from a write that had not finished
        // (nor been read) then, so this write is ordered just before it
        // and the replica counts as acknowledging (it holds this write or
        // something that legitimately supersedes it). It is never stamped
        // again: its version may already have been read, and a second,
        // higher stamp would let it come back after the newer version was
        // read. A stamp more than twice the maximum offset ahead of this
        // clock is different: no replica within the offset could have
        // acknowledged it under the fence (it was stored before the
        // fence), so that replica just does not count toward the level.
        let horizon = wall_micros().saturating_add(2 * max_offset_micros());
        fan.gather_while(|outcomes| acknowledgements(outcomes, horizon) < need)
            .await;
        if hint_misses {
            // Replicas known to be down fail at once; their hints are
            // durable before the client hears back.
            fan.gather_until_reported(&down).await;
        }
        for (_, outcome) in fan.outcomes.iter_mut() {
            if acknowledges(outcome, horizon) {
                *outcome = Outcome::Answered(None);
            }
        }
        if fan.answered() >= need {
            Ok(timestamp_micros)
        } else {
            Err(self.shortfall(op, key, level, need, &fan, timeout))
        }
    }

    /// The newest stamp held by a quorum of the key's replicas (as many as
    /// the level needs, at most a majority), asked by digest read: the
    /// first phase of a multi-writer ABD write. Every write acknowledged,
    /// and every version a QUORUM get returned, before this write started
    /// is held by a quorum, which meets this one, so stamping above the
    /// answer orders this write after all of them whatever the skew
    /// between clocks. Stamps more than twice the maximum offset ahead of
    /// this clock are not chased (see `write`). Nothing is written here.
    async fn newest_held(
        &self,
        key: u8,
        level: Consistency,
        op: Op,
        need: usize,
        deadline: Instant,
    ) -> Result<Option<Stamp>, KvError> {
        let replicas = self.ring.replicas_for(key);
        let majority = Consistency::Quorum.required_acks(replicas.len());
        let quorum = need.min(majority);
        // A replica rebuilding after losing its data may not know the
        // newest stamp: like a get, this never counts on it.
        let servable: Vec<ReplicaId> = replicas
            .iter()
            .copied()
            .filter(|&id| self.can_read_from(id, key))
            .collect();
        let up = servable.iter().filter(|&&id| self.link.is_up(id)).count();
        if up < quorum {
            return Err(KvError::unavailable(format!(
                "{level} {} of key {key} first asks {quorum} of its replicas {} what they hold, but only {up} \
                 of them {} up and not rebuilding after losing their data (nothing was written)",
                op.name(),
                list(replicas),
                if up == 1 { "is" } else { "are" },
            )));
        }
        let turn = self.read_turns[usize::from(key)].fetch_add(1, Ordering::Relaxed);
        let mut plan = self
            .read_policy
            .plan(self.self_id, &servable, quorum, turn, |id| {
                self.link.is_up(id)
            });
        // Only as many as the quorum, whatever share of gets asks everyone.
        let mut spares = plan.ask.split_off(quorum.min(plan.ask.len()));
        spares.append(&mut plan.spares);
        let timeout = self.limits.write_timeout;
        let asks = plan
            .ask
            .iter()
            .map(|&id| (id, ReplicaAsk::Digest(key)))
            .collect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut fan = self.fan_out_asks(asks, false, remaining);
        if !spares.is_empty() {
            fan.reserve = Some(Reserve {
                link: self.link.clone(),
                key,
                spares,
                value_from: None,
                speculate_at: Instant::now() + self.read_policy.speculate_after,
            });
        }
        fan.gather(Some(quorum)).await;
        let heard = fan.answers();
        if heard.len() < quorum {
            let misses = fan.misses(timeout);
            return Err(KvError {
                kind: shortfall_kind(&misses),
                message: format!(
                    "{level} {} of key {key}: {} of the {quorum} replicas needed said what they hold ({}); \
                     nothing was written",
                    op.name(),
                    heard.len(),
                    describe(&misses),
                ),
            });
        }
        let horizon = wall_micros().saturating_add(2 * max_offset_micros());
        Ok(heard
            .iter()
            .filter_map(|(_, heard)| heard.stamp())
            .filter(|stamp| stamp.0 <= horizon)
            .max())
    }

    /// The write's stamp: above `held` (the newest stamp its quorum
    /// holds), waiting out the clock fence until `deadline` if `held` is
    /// further ahead of this clock than the maximum offset.
    async fn stamp_above_held(
        &self,
        key: u8,
        held: Option<Stamp>,
        deadline: Instant,
    ) -> Result<u64, KvError> {
        let Some(held) = held else {
            return self.stamp().await;
        };
        // This clock was behind a replica's: the write is stamped above
        // what the clock would have given it.
        if held.0 >= wall_micros().max(self.clock.last_issued().saturating_add(1)) {
            self.metrics.stale_write_retry();
        }
        self.restamp_above(key, held, deadline, "nothing was written")
            .await
    }

    /// A stamp above the stamp `held` that a replica holds. The clock
    /// observes `held`, but the fence stops it at the maximum offset past
    /// the wall clock: if `held` is beyond that (stamped by a clock ahead
    /// of this one), this waits for the wall clock, until the request's
    /// deadline; `effect` says what the request has done if it cannot.
    pub(super) async fn restamp_above(
        &self,
        key: u8,
        held: Stamp,
        deadline: Instant,
        effect: &str,
    ) -> Result<u64, KvError> {
        loop {
            self.clock.observe(held.0);
            let stamp = self.stamp_by(deadline).await?;
            // Strictly above: an equal timestamp would leave the order to
            // the coordinator ids. (Having observed `held`, the clock only
            // issues `held.0` itself if the wall clock sits on that very
            // microsecond, which no test can arrange.)
            if stamp > held.0 {
                return Ok(stamp);
            }
            // Until just past `held` (waking a microsecond early only
            // loops once more, so cargo-mutants cannot see the `+ 1`, nor
            // `>` against `>=` between the instants below).
            let wait = Duration::from_micros(held.0 - stamp + 1);
            if Instant::now() + wait > deadline {
                return Err(KvError::timeout(format!(
                    "key {key} holds a version stamped {} by coordinator {}, {} ms ahead of replica {}'s clock: \
                     a stamp above it would be more than the maximum clock offset ({} ms) ahead, and the \
                     timeout ends first; {effect}",
                    held.0,
                    held.1,
                    held.0.saturating_sub(wall_micros()) / 1_000,
                    self.self_id,
                    max_offset_micros() / 1_000
                )));
            }
            rt::sleep(wait).await;
        }
    }

    /// The write's timestamp. After a restart, waits until the wall clock
    /// has passed what the previous run may have issued; waits briefly if
    /// the clock's lease on disk is being renewed.
    async fn stamp(&self) -> Result<u64, KvError> {
        self.stamp_by(Instant::now() + LEASE_WAIT.max(self.limits.write_timeout))
            .await
    }

    /// `stamp`, waiting at most until `deadline`.
    ///
    /// (cargo-mutants cannot see `>` against `>=` between instants, nor a
    /// wait a microsecond short, which only loops once more; the refusal at
    /// the fence lasts under a microsecond, too short for a test to catch.)
    pub(super) async fn stamp_by(&self, deadline: Instant) -> Result<u64, KvError> {
        loop {
            match self.clock.next() {
                Ok(timestamp) => return Ok(timestamp),
                Err(ClockRefusal::Held { until }) => {
                    let wait = Duration::from_micros(until.saturating_sub(wall_micros()) + 1);
                    if Instant::now() + wait > deadline {
                        return Err(KvError::internal(format!(
                            "replica {} restarted with its write clock held until {until}, {} ms from now; \
                             it takes no puts until then (nothing was written; another coordinator can take the put)",
                            self.self_id,
                            wait.as_millis()
                        )));
                    }
                    rt::sleep(wait).await;
                }
                Err(ClockRefusal::LeaseBehind { lease_until }) if Instant::now() >= deadline => {
                    return Err(KvError::internal(format!(
                        "the write clock reached its lease ({lease_until}) and the lease on disk was not renewed in time; \
                         the data disk may be slow or failing (nothing was written)"
                    )))
                }
                Err(ClockRefusal::LeaseBehind { .. }) => rt::sleep(Duration::from_millis(1)).await,
                // The clock observed a stamp at the fence: wait until the
                // wall clock lets it go on (at most the maximum offset).
                Err(ClockRefusal::FarAhead { next, wall }) => {
                    let wait = Duration::from_micros(
                        next.saturating_sub(wall.saturating_add(max_offset_micros())),
                    );
                    if Instant::now() + wait > deadline {
                        return Err(KvError::internal(format!(
                            "replica {}'s write clock is at the clock fence, {} ms ahead of its wall clock, \
                             and would not move on in time (nothing was written; another coordinator can take the put)",
                            self.self_id,
                            next.saturating_sub(wall) / 1_000
                        )));
                    }
                    rt::sleep(wait.max(Duration::from_micros(1))).await;
                }
            }
        }
    }

    /// The error a request ends in when too few replicas answered, chosen
    /// from what the others did: INVALID if one refused the request as
    /// invalid (retrying cannot help), TIMEOUT if any gave no answer (a
    /// write may have landed there), INTERNAL if every miss was a failure.
    pub(super) fn shortfall(
        &self,
        op: Op,
        key: u8,
        level: Consistency,
        need: usize,
        fan: &FanOut<L>,
        timeout: Duration,
    ) -> KvError {
        let misses = fan.misses(timeout);
        let mut answered: Vec<ReplicaId> = fan.answers().iter().map(|(id, _)| *id).collect();
        answered.sort_unstable();
        let kind = shortfall_kind(&misses);
        let later = if self.mode.hinted_handoff() {
            ", and hints may still deliver it to the others"
        } else {
            ""
        };
        let effect = match (op.writes(), kind, answered.is_empty()) {
            (false, _, _) => String::new(),
            (true, ErrorKind::Timeout, _) => {
                "; the write may have been applied on some replicas".to_string()
            }
            (true, _, true) => format!("; no replica applied the write yet{later}"),
            (true, _, false) => format!("; the write was applied on {}{later}", list(&answered)),
        };
        KvError {
            kind,
            message: format!(
                "{level} {} of key {key}: {} of {need} replicas answered ({}){effect}",
                op.name(),
                answered.len(),
                describe(&misses),
            ),
        }
    }
}

/// Whether a client write's outcome counts toward its level: an
/// acknowledgement, or "stale" with a stamp up to `horizon` (see `write`).
pub(super) fn acknowledges(outcome: &Outcome, horizon: u64) -> bool {
    match outcome {
        Outcome::Stale(held) => held.0 <= horizon,
        other => other.answered(),
    }
}

/// How many of `outcomes` count toward a client write's level.
pub(super) fn acknowledgements(outcomes: &[(ReplicaId, Outcome)], horizon: u64) -> usize {
    outcomes
        .iter()
        .filter(|(_, outcome)| acknowledges(outcome, horizon))
        .count()
}

/// The kind of a shortfall's error: INVALID if a replica refused the
/// request as invalid, TIMEOUT if any gave no answer, INTERNAL otherwise.
pub(super) fn shortfall_kind(misses: &[(ReplicaId, Outcome)]) -> ErrorKind {
    if misses
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Failed(ErrorKind::Invalid, _)))
    {
        ErrorKind::Invalid
    } else if misses
        .iter()
        .any(|(_, o)| matches!(o, Outcome::NoAnswer(_)))
    {
        ErrorKind::Timeout
    } else {
        ErrorKind::Internal
    }
}

/// "replica 2: no answer within 2000 ms; replica 3: INVALID: ..."
pub(super) fn describe(misses: &[(ReplicaId, Outcome)]) -> String {
    misses
        .iter()
        .map(|(id, outcome)| match outcome {
            Outcome::Failed(kind, reason) => format!("replica {id}: {}: {reason}", kind.as_str()),
            Outcome::NoAnswer(reason) => format!("replica {id}: {reason}"),
            Outcome::Stale((timestamp, coordinator)) => {
                format!("replica {id}: stale: it holds ({timestamp}, coordinator {coordinator})")
            }
            Outcome::Promised(promise) if !promise.promised => {
                format!("replica {id}: promised a higher ballot")
            }
            Outcome::Accepted(false, _) => format!("replica {id}: promised a higher ballot"),
            Outcome::Answered(_)
            | Outcome::Digest(_)
            | Outcome::Promised(_)
            | Outcome::Accepted(..) => format!("replica {id}: answered"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
