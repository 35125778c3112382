//! Anti-entropy: ring neighbours compare what they hold and exchange what
//! is newer, so replicas converge even when hints were dropped (too old,
//! past the bound) and no read came along to repair them.
//!
//! The keyspace is 256 keys, so the digest is simply the (timestamp,
//! coordinator) stamp of every key the two replicas share: no Merkle tree.
//! A round with one neighbour is one request: the asker sends its digest,
//! the neighbour answers with the versions it holds newer and the keys for
//! which the asker is newer, and the asker applies the former and writes
//! the latter to it as ordinary replica writes. Everything exchanged is a
//! timestamped version merged by last-write-wins, so a round can never
//! make anything older.
//!
//! Rounds run every `--anti-entropy-secs` (60 s by default) with the
//! replica's predecessor and successor on the ring, and on demand through a
//! `Repair` request (`ringkv repair`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::peers::Peers;
use crate::cluster::replica_write::checked_replica_write;
use crate::cluster::ring::Ring;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::mux::CallError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{
    Body, DigestEntry, DigestReply, DigestRequest, KeyVersion, RepairReply, ReplicaWrite,
};
use crate::storage::clock::WriteClock;
use crate::storage::durable::LocalReplica;

/// The most value bytes one digest reply carries; what is left over goes
/// in the next round. Keeps the reply well inside the frame limit.
const REPLY_VALUE_BUDGET: usize = 8 * 1024 * 1024;

/// One replica's side of anti-entropy.
pub struct AntiEntropy {
    self_id: ReplicaId,
    ring: Arc<Ring>,
    local: Arc<LocalReplica>,
    peers: Arc<Peers>,
    clock: Arc<WriteClock>,
    max_value_bytes: usize,
    timeout: Duration,
    rounds: AtomicU64,
    fixes: AtomicU64,
    /// One round at a time: a periodic round and `ringkv repair` queue.
    in_round: rt::AsyncMutex<()>,
}

impl AntiEntropy {
    /// Anti-entropy for replica `self_id`; peer calls wait up to `timeout`.
    pub fn new(
        self_id: ReplicaId,
        ring: Arc<Ring>,
        local: Arc<LocalReplica>,
        peers: Arc<Peers>,
        clock: Arc<WriteClock>,
        max_value_bytes: usize,
        timeout: Duration,
    ) -> AntiEntropy {
        AntiEntropy {
            self_id,
            ring,
            local,
            peers,
            clock,
            max_value_bytes,
            timeout,
            rounds: AtomicU64::new(0),
            fixes: AtomicU64::new(0),
            in_round: rt::AsyncMutex::new(()),
        }
    }

    /// (rounds completed, versions sent or taken) since start, for status.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.rounds.load(Ordering::Relaxed),
            self.fixes.load(Ordering::Relaxed),
        )
    }

    /// Runs a round every `interval` for as long as the process runs.
    pub async fn run_forever(self: Arc<Self>, interval: Duration) {
        loop {
            rt::sleep(interval).await;
            let reply = self.round().await;
            let fixed = reply.versions_sent + reply.versions_received;
            if fixed > 0 || !reply.unreachable.is_empty() {
                crate::info!(
                    "anti-entropy round: sent {}, took {}{}",
                    reply.versions_sent,
                    reply.versions_received,
                    if reply.unreachable.is_empty() {
                        String::new()
                    } else {
                        format!("; skipped {}", reply.unreachable.join("; "))
                    }
                );
            }
        }
    }

    /// The replicas this one compares with: its predecessor and successor.
    fn neighbours(&self) -> Vec<ReplicaId> {
        let n = self.ring.members().len() as ReplicaId;
        let mut neighbours = vec![(self.self_id + n - 1) % n, (self.self_id + 1) % n];
        neighbours.dedup();
        neighbours.retain(|&id| id != self.self_id);
        neighbours
    }

    /// The keys both this replica and `other` hold.
    fn shared_keys(&self, other: ReplicaId) -> Vec<u8> {
        (0..=255u8)
            .filter(|&key| {
                let replicas = self.ring.replicas_for(key);
                replicas.contains(&self.self_id) && replicas.contains(&other)
            })
            .collect()
    }

    /// One round with every neighbour.
    pub async fn round(&self) -> RepairReply {
        let _one_at_a_time = self.in_round.lock().await;
        let mut reply = RepairReply::default();
        for neighbour in self.neighbours() {
            match self.exchange(neighbour).await {
                Ok((sent, received)) => {
                    reply.versions_sent += sent;
                    reply.versions_received += received;
                }
                Err(reason) => reply
                    .unreachable
                    .push(format!("replica {neighbour}: {reason}")),
            }
        }
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.fixes.fetch_add(
            u64::from(reply.versions_sent + reply.versions_received),
            Ordering::Relaxed,
        );
        reply
    }

    /// Takes from `peer` every version of the keys both hold that is newer
    /// than ours: exchanges until one exchange takes nothing (a reply is
    /// bounded, so a large store takes several), at most `max_exchanges`.
    /// Returns the versions taken, or why the pull did not complete.
    pub async fn pull(&self, peer: ReplicaId, max_exchanges: usize) -> Result<u32, String> {
        let mut taken = 0;
        for _ in 0..max_exchanges {
            let (_, received) = self.exchange(peer).await?;
            if received == 0 {
                return Ok(taken);
            }
            taken += received;
        }
        Err(format!(
            "replica {peer} still had newer versions after {max_exchanges} exchanges"
        ))
    }

    /// Compares with one neighbour; returns (versions sent, versions taken).
    async fn exchange(&self, neighbour: ReplicaId) -> Result<(u32, u32), String> {
        let peer = self
            .peers
            .get(neighbour)
            .ok_or_else(|| "not in the ring".to_string())?;
        let shared = self.shared_keys(neighbour);
        let entries = shared
            .iter()
            .filter_map(|&key| {
                self.local.read(key).map(|version| DigestEntry {
                    key: u32::from(key),
                    timestamp_micros: version.timestamp_micros,
                    coordinator_id: version.coordinator_id,
                })
            })
            .collect();
        let digest = Body::Digest(DigestRequest {
            sender_id: self.self_id,
            entries,
        });
        let answer = match peer.call(digest, self.timeout).await {
            Ok(Body::DigestReply(answer)) => answer,
            Ok(other) => return Err(format!("answered a digest with a {}", other.kind_name())),
            Err(error) => return Err(call_failure(error)),
        };
        let mut received = 0;
        for KeyVersion { key, version } in answer.newer {
            let (key, version) = checked_replica_write(
                &self.ring,
                self.self_id,
                self.max_value_bytes,
                Some(key),
                version,
            )
            .map_err(|e| format!("sent an unacceptable version: {e}"))?;
            if !shared.contains(&key) {
                return Err(format!("sent key {key}, which it does not hold"));
            }
            self.clock.observe(version.timestamp_micros);
            self.local
                .write(key, version)
                .await
                .map_err(|e| format!("could not apply what it sent: {e}"))?;
            received += 1;
        }
        let mut sent = 0;
        for key in answer.wanted {
            let Ok(key) = u8::try_from(key) else { continue };
            let Some(version) = self.local.read(key).filter(|_| shared.contains(&key)) else {
                continue;
            };
            let write = Body::ReplicaWrite(ReplicaWrite {
                key: Some(u32::from(key)),
                version: Some(version),
                client_write: false,
            });
            match peer.call(write, self.timeout).await {
                Ok(Body::ReplicaWriteAck(_)) => sent += 1,
                Ok(other) => return Err(format!("answered a write with a {}", other.kind_name())),
                Err(error) => return Err(call_failure(error)),
            }
        }
        Ok((sent, received))
    }

    /// Answers a neighbour's digest: what we hold newer, and what we want.
    pub fn answer(&self, digest: DigestRequest) -> Result<DigestReply, KvError> {
        let sender = digest.sender_id;
        if sender == self.self_id || self.ring.member(sender).is_none() {
            return Err(KvError::invalid(format!(
                "a digest from replica {sender}, which is not another member of the ring"
            )));
        }
        let theirs: HashMap<u32, (u64, u32)> = digest
            .entries
            .iter()
            .map(|e| (e.key, (e.timestamp_micros, e.coordinator_id)))
            .collect();
        let mut reply = DigestReply::default();
        let mut budget = REPLY_VALUE_BUDGET;
        for key in self.shared_keys(sender) {
            let ours = self.local.read(key);
            let our_stamp = ours
                .as_ref()
                .map(|v| (v.timestamp_micros, v.coordinator_id));
            let their_stamp = theirs.get(&u32::from(key)).copied();
            if our_stamp > their_stamp {
                let Some(version) = ours else { continue };
                if version.value.len() > budget {
                    continue;
                }
                budget -= version.value.len();
                reply.newer.push(KeyVersion {
                    key: u32::from(key),
                    version: Some(version),
                });
            } else if their_stamp > our_stamp {
                reply.wanted.push(u32::from(key));
            }
        }
        Ok(reply)
    }
}

fn call_failure(error: CallError) -> String {
    match error {
        CallError::Refused(error) => error.to_string(),
        CallError::Disconnected(reason) => reason,
        CallError::TimedOut => "no answer in time".to_string(),
    }
}
