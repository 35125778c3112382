//! Delivery: each replica's hints sent to it, oldest first, as soon as it
//! is seen up and then every tick while any remain; one delivery at a time
//! per replica. A delivered hint is removed; a refused one is dropped; any
//! other failure pauses that replica's delivery until the next tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Hints, PendingHint};
use crate::cluster::peers::Peers;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::mux::CallError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{Body, ReplicaWrite};

/// How often pending hints are retried, and expired ones dropped.
const DELIVERY_TICK: Duration = Duration::from_secs(1);

impl Hints {
    /// Delivers hints for as long as the process runs: to a replica as soon
    /// as it is seen up, and to every replica with hints each tick.
    pub async fn deliver_forever(self: Arc<Self>, peers: Arc<Peers>, timeout: Duration) {
        let came_up = peers.up_events();
        let mut next_tick = Instant::now() + DELIVERY_TICK;
        loop {
            let until_tick = next_tick.saturating_duration_since(Instant::now());
            let mut targets = match rt::timeout(until_tick, came_up.recv()).await {
                Some(Ok(id)) => vec![id],
                Some(Err(_)) => return,
                None => {
                    // A fixed schedule: peers coming up often cannot put
                    // off the retries and expiry of everyone else's hints.
                    next_tick = Instant::now() + DELIVERY_TICK;
                    self.drop_expired();
                    lock(&self.pending).keys().copied().collect()
                }
            };
            while let Ok(id) = came_up.try_recv() {
                targets.push(id);
            }
            for target in targets {
                if self.pending_for(target) == 0 || !peers.is_up(target) {
                    continue;
                }
                if !lock(&self.delivering).insert(target) {
                    continue;
                }
                let (hints, peers) = (self.clone(), peers.clone());
                rt::spawn(async move {
                    hints.deliver_to(target, &peers, timeout).await;
                    lock(&hints.delivering).remove(&target);
                });
            }
        }
    }

    /// Sends `target` its hints, oldest first, until they are all delivered
    /// or one fails (the rest wait for the next tick).
    async fn deliver_to(&self, target: ReplicaId, peers: &Peers, timeout: Duration) {
        let Some(peer) = peers.get(target) else {
            return;
        };
        let mut queue: Vec<(u8, PendingHint)> = lock(&self.pending)
            .get(&target)
            .map(|by_key| by_key.iter().map(|(k, h)| (*k, h.clone())).collect())
            .unwrap_or_default();
        queue.sort_by(|a, b| a.1.version.lww_cmp(&b.1.version));
        let (mut delivered, total) = (0, queue.len());
        for (key, hint) in queue {
            if self.is_expired(&hint) {
                self.remove(target, key, &hint, Some("it is older than the hint window"))
                    .await;
                continue;
            }
            let write = Body::ReplicaWrite(ReplicaWrite {
                key: Some(u32::from(key)),
                version: Some(hint.version.clone()),
                client_write: false,
            });
            match peer.call(write, timeout).await {
                Ok(Body::ReplicaWriteAck(_)) => {
                    self.remove(target, key, &hint, None).await;
                    self.metrics.hint_delivered();
                    delivered += 1;
                }
                Err(CallError::Refused(KvError {
                    kind: ErrorKind::Invalid,
                    message,
                })) => {
                    let why = format!("replica {target} refused it: {message}");
                    self.remove(target, key, &hint, Some(&why)).await;
                }
                outcome => {
                    let why = match outcome {
                        Ok(other) => format!("it answered with a {}", other.kind_name()),
                        Err(CallError::Refused(error)) => error.to_string(),
                        Err(CallError::Disconnected(reason)) => reason,
                        Err(CallError::TimedOut) => "no answer in time".to_string(),
                    };
                    crate::warn!(
                        "hint delivery to replica {target} paused after {delivered} of {total}: {why}"
                    );
                    return;
                }
            }
        }
        if delivered > 0 {
            crate::info!("delivered {delivered} hints to replica {target}");
        }
    }
}
