//! Puts and deletes: stamping the version, sending it to every replica of
//! the key at once, answering once the level's count acknowledged it,
//! stamping it again above a replica's "stale" answer and resending, and
//! the error a request ends in when too few replicas answered (its kind
//! and a message saying which replicas applied a write).
//!
//! Nothing here writes before the availability check and the clock have
//! agreed: a refused write wrote nothing anywhere.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coordinator::fan_out::FanOut;
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

    /// The write path shared by put and delete.
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
        let mut timestamp_micros = self.stamp().await?;
        // Restamping after a stale answer happens within this too.
        let timeout = self.limits.write_timeout;
        let deadline = Instant::now() + timeout;
        let hint_misses = self.mode.hinted_handoff();
        let replicas = self.ring.replicas_for(key);
        let down: Vec<ReplicaId> = replicas
            .iter()
            .copied()
            .filter(|&id| !self.link.is_up(id))
            .collect();
        loop {
            let version = Versioned {
                value: value.clone(),
                timestamp_micros,
                coordinator_id: self.self_id,
                tombstone,
            };
            let mut fan = self.fan_out(
                replicas,
                ReplicaAsk::Write(key, Arc::new(version), WriteOf::Client),
                hint_misses,
                deadline.saturating_duration_since(Instant::now()),
            );
            // A replica holds something newer than this stamp: unless the
            // level is already met, stamp the write again above it and
            // send it again to every replica of the key. A stamp more than
            // twice the maximum offset ahead of this clock is not chased:
            // no replica within the offset of this clock could have
            // acknowledged it under the fence (it was stored before the
            // fence, or its replica's clock is fenced), so that replica
            // just does not count toward the level.
            let horizon = wall_micros().saturating_add(2 * max_offset_micros());
            fan.gather_unless_stale(need, horizon).await;
            // The gathering stops at the first stale answer or at `need`
            // acknowledgements, so a stale answer never comes with `need`
            // of them: `<` and `<=` read the same here.
            if let (Some(held), true) = (fan.newest_stale(horizon), fan.answered() < need) {
                fan.superseded.store(true, Ordering::SeqCst);
                self.metrics.stale_write_retry();
                timestamp_micros = self.restamp_above(key, held, deadline).await?;
                continue;
            }
            if hint_misses {
                // Replicas known to be down fail at once; their hints are
                // durable before the client hears back.
                fan.gather_until_reported(&down).await;
            }
            return if fan.answered() >= need {
                Ok(timestamp_micros)
            } else {
                Err(self.shortfall(op, key, level, need, &fan, timeout))
            };
        }
    }

    /// A new stamp for a write that a replica answered "stale" to, above
    /// the stamp `held` it holds. The clock observes `held`, but the fence
    /// stops it at the maximum offset past the wall clock: if `held` is
    /// beyond that (stamped by a clock ahead of this one), this waits for
    /// the wall clock, until the request's deadline.
    pub(super) async fn restamp_above(
        &self,
        key: u8,
        held: Stamp,
        deadline: Instant,
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
                     write timeout ends first; the write may have been applied on some replicas below that version",
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
