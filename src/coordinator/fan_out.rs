//! Asking several replicas at once and collecting what they do: one task
//! per ask, each reporting its `Outcome` on the request's own channel, and
//! a `FanOut` that gathers them until the level's count answered, every
//! replica answered or failed, or the deadline passed. A read's fan-out
//! also keeps the replicas it did not ask yet (its spares): it asks one
//! when an asked replica fails, and all of them once the speculation delay
//! passes.
//!
//! A write's ask that misses (failed or no answer) stores a hint in its
//! own task, before it reports the miss, so that whoever waits for the
//! report knows the hint is durable. An ask finishes whether or not anyone
//! still waits for it: outcomes that arrive after the request was answered
//! can still be collected (background read repair does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coordinator::link::{no_answer_within, stamp_of, Outcome, ReplicaAsk, ReplicaLink};
use crate::coordinator::read::Heard;
use crate::coordinator::Coordinator;
use crate::ops::rt;
use crate::protocol::proto::ReplicaId;

/// One ask sent to several replicas at once, and the outcomes so far.
pub(super) struct FanOut<L: ReplicaLink> {
    arriving: rt::Receiver<(ReplicaId, Outcome)>,
    pub(super) outcomes: Vec<(ReplicaId, Outcome)>,
    pub(super) waiting: Vec<ReplicaId>,
    pub(super) deadline: Instant,
    /// Where the asks report; kept for the spares a read may add.
    report: rt::Sender<(ReplicaId, Outcome)>,
    /// Replicas not asked yet, and how to ask them (reads only).
    pub(super) reserve: Option<Reserve<L>>,
}

/// The spares of a read that asked only the replicas its level needs.
pub(super) struct Reserve<L> {
    pub(super) link: Arc<L>,
    pub(super) key: u8,
    pub(super) spares: Vec<ReplicaId>,
    /// The replica last asked for the value (the others send digests): if
    /// it fails, a spare is asked for the value in its place. None when
    /// only digests are wanted (a write learning the newest stamp).
    pub(super) value_from: Option<ReplicaId>,
    /// When every spare is asked if the answers are not all in.
    pub(super) speculate_at: Instant,
}

impl<L: ReplicaLink> Coordinator<L> {
    /// Sends `ask` to every target at once; `fan.gather` collects the
    /// outcomes. Each ask runs in its own task, which finishes (and stores
    /// its hint, if `hint_misses` and the write missed) whether or not
    /// anyone still waits for it.
    pub(super) fn fan_out(
        &self,
        targets: &[ReplicaId],
        ask: ReplicaAsk,
        hint_misses: bool,
        timeout: Duration,
    ) -> FanOut<L> {
        let asks = targets.iter().map(|&id| (id, ask.clone())).collect();
        self.fan_out_asks(asks, hint_misses, timeout)
    }

    /// `fan_out` with an ask of its own for each target.
    pub(super) fn fan_out_asks(
        &self,
        asks: Vec<(ReplicaId, ReplicaAsk)>,
        hint_misses: bool,
        timeout: Duration,
    ) -> FanOut<L> {
        let (report, arriving) = rt::unbounded::<(ReplicaId, Outcome)>();
        let mut outcomes = Vec::new();
        let mut waiting = Vec::with_capacity(asks.len());
        for (target, ask) in asks {
            // This replica's own copy is read from memory at once: no task.
            if let ReplicaAsk::Read(key) | ReplicaAsk::Digest(key) = &ask {
                if let Some(found) = self.link.read_now(target, *key) {
                    let outcome = match ask {
                        ReplicaAsk::Digest(_) => Outcome::Digest(found.as_ref().map(stamp_of)),
                        _ => Outcome::Answered(found),
                    };
                    outcomes.push((target, outcome));
                    continue;
                }
            }
            waiting.push(target);
            let holds = match &ask {
                // Two copies of the value per target until the ask ends:
                // the ask's own, and its encoded frame (or WAL record).
                ReplicaAsk::Write(_, version, _) => {
                    Some(self.budget.charge_background(2 * version.value.len()))
                }
                ReplicaAsk::Propose(_, _, proposal) => {
                    Some(self.budget.charge_background(2 * proposal.value.len()))
                }
                ReplicaAsk::Read(_) | ReplicaAsk::Digest(_) | ReplicaAsk::Prepare(..) => None,
            };
            let (link, report) = (self.link.clone(), report.clone());
            let self_id = self.self_id;
            rt::spawn(async move {
                let _holds = holds;
                let outcome = link.ask(target, ask.clone(), timeout).await;
                if let (ReplicaAsk::Write(key, version, _), true) = (ask, hint_misses) {
                    // A replica that answered "stale" holds something newer:
                    // it missed nothing.
                    let missed = matches!(outcome, Outcome::Failed(..) | Outcome::NoAnswer(_));
                    if missed && target != self_id {
                        let version = Arc::unwrap_or_clone(version);
                        if let Err(error) = link.store_hint(target, key, version).await {
                            crate::error!("cannot store a hint for replica {target}: {error}");
                        }
                    }
                }
                let _ = report.send((target, outcome)).await;
            });
        }
        FanOut {
            arriving,
            outcomes,
            waiting,
            deadline: Instant::now() + timeout,
            report,
            reserve: None,
        }
    }
}

impl<L: ReplicaLink> FanOut<L> {
    /// Replicas that answered, with what they answered.
    pub(super) fn answers(&self) -> Vec<(ReplicaId, Heard)> {
        self.outcomes
            .iter()
            .filter_map(|(id, outcome)| match outcome {
                Outcome::Answered(version) => Some((*id, Heard::Value(version.clone()))),
                Outcome::Digest(stamp) => Some((*id, Heard::Stamp(*stamp))),
                _ => None,
            })
            .collect()
    }

    /// How many replicas answered as asked.
    pub(super) fn answered(&self) -> usize {
        self.outcomes.iter().filter(|(_, o)| o.answered()).count()
    }

    /// Collects outcomes until `need` replicas answered (None: until every
    /// replica answered or failed) or the deadline passed. Once failures
    /// have made success impossible, it still collects what is in flight,
    /// so that the error can say which replicas did take a write.
    pub(super) async fn gather(&mut self, need: Option<usize>) {
        while !self.waiting.is_empty() {
            if need.is_some_and(|need| self.answered() >= need) || !self.receive_one().await {
                return;
            }
        }
    }

    /// Collects outcomes while `go_on` says so of those in so far, until
    /// every replica answered or failed, or the deadline passed.
    pub(super) async fn gather_while(&mut self, go_on: impl Fn(&[(ReplicaId, Outcome)]) -> bool) {
        while !self.waiting.is_empty() && go_on(&self.outcomes) {
            if !self.receive_one().await {
                return;
            }
        }
    }

    /// Collects outcomes until none of `these` is still waiting (or the
    /// deadline passed).
    pub(super) async fn gather_until_reported(&mut self, these: &[ReplicaId]) {
        while self.waiting.iter().any(|id| these.contains(id)) {
            if !self.receive_one().await {
                return;
            }
        }
    }

    /// Records the next outcome to arrive; false once the deadline passed.
    /// A failure brings in a spare; so does the speculation delay, for
    /// every spare left.
    async fn receive_one(&mut self) -> bool {
        loop {
            let speculate_at = self
                .reserve
                .as_ref()
                .filter(|reserve| !reserve.spares.is_empty())
                .map(|reserve| reserve.speculate_at);
            let until = speculate_at.map_or(self.deadline, |at| at.min(self.deadline));
            let remaining = until.saturating_duration_since(Instant::now());
            match rt::timeout(remaining, self.arriving.recv()).await {
                Some(Ok((replica, outcome))) => {
                    self.waiting.retain(|&id| id != replica);
                    if !outcome.answered() {
                        let value_lost = self
                            .reserve
                            .as_ref()
                            .is_some_and(|reserve| reserve.value_from == Some(replica));
                        self.ask_spares(1, value_lost);
                    }
                    self.outcomes.push((replica, outcome));
                    return true;
                }
                Some(Err(_)) => return false,
                // (`<` or `<=`: no two instants compare equal in practice.)
                None if speculate_at.is_some() && Instant::now() < self.deadline => {
                    let wants_value = self
                        .reserve
                        .as_ref()
                        .is_some_and(|reserve| reserve.value_from.is_some());
                    let value_missing = wants_value
                        && !self
                            .outcomes
                            .iter()
                            .any(|(_, outcome)| matches!(outcome, Outcome::Answered(_)));
                    self.ask_spares(usize::MAX, value_missing);
                }
                None => return false,
            }
        }
    }

    /// Asks up to `count` spares, in the plan's order, for digests; the
    /// first for the value instead if `for_value` (the value is missing).
    fn ask_spares(&mut self, count: usize, for_value: bool) {
        let Some(reserve) = self.reserve.as_mut() else {
            return;
        };
        let count = count.min(reserve.spares.len());
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        let asked: Vec<ReplicaId> = reserve.spares.drain(..count).collect();
        for (index, target) in asked.into_iter().enumerate() {
            let ask = if index == 0 && for_value {
                reserve.value_from = Some(target);
                ReplicaAsk::Read(reserve.key)
            } else {
                ReplicaAsk::Digest(reserve.key)
            };
            self.waiting.push(target);
            let (link, report) = (reserve.link.clone(), self.report.clone());
            rt::spawn(async move {
                let outcome = link.ask(target, ask, timeout).await;
                let _ = report.send((target, outcome)).await;
            });
        }
    }

    /// Records that `replica`, counted as answered, failed after all (its
    /// value could not be fetched), and asks a spare for the value.
    pub(super) fn answer_failed(&mut self, replica: ReplicaId, miss: Outcome) {
        if let Some(entry) = self.outcomes.iter_mut().find(|(id, _)| *id == replica) {
            entry.1 = miss;
        }
        self.ask_spares(1, true);
    }

    /// Every replica that has not answered, and why: failures with their
    /// kind, and the ones still waiting as no answer.
    pub(super) fn misses(&self, timeout: Duration) -> Vec<(ReplicaId, Outcome)> {
        let mut misses: Vec<(ReplicaId, Outcome)> = self
            .outcomes
            .iter()
            .filter(|(_, o)| !o.answered())
            .cloned()
            .collect();
        misses.extend(
            self.waiting
                .iter()
                .map(|&id| (id, Outcome::NoAnswer(no_answer_within(timeout)))),
        );
        misses
    }
}
