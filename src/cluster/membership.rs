//! Who this replica agrees its peers are, and which replicas (itself
//! included) may serve reads of which keys.
//!
//! Every ping and pong carries a `Hello`: cluster name, members digest,
//! replica id, incarnation and data state. A peer whose hello names another
//! cluster, another member list or another id than the one at its address
//! is refused and counted down, with the reason kept for `status` and
//! logged once per change.
//!
//! Incarnations. This replica remembers, durably in `DIR/peers`, the
//! incarnation it last knew each peer by, and tells each peer in every
//! hello which incarnation it knew of *it*. A replica whose data directory
//! is new (`NEW`) and hears of an earlier incarnation of itself has lost
//! its data: it becomes `REBUILDING` and pulls its keys from the other
//! replicas (`rebuild.rs`); a key becomes readable on it once both other
//! replicas of the key have answered its pull. A `NEW` replica that every
//! peer confirms as never seen before (a new cluster) becomes `SETTLED`
//! at once, and serves reads meanwhile. Peers that knew an earlier
//! incarnation count the new one for no read until it reports its own
//! rebuild, and accept it as the replica they knew once it reports that
//! rebuild finished. A replica presenting an unknown incarnation that is
//! neither new nor rebuilding (a data directory copied from elsewhere) is
//! refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cluster::identity::Identity;
use crate::cluster::ring::Ring;
use crate::ops::lock::lock;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{DataState, Hello};

/// The file of incarnations this replica knows its peers by.
pub const PEERS_FILE: &str = "peers";

/// What this replica knows of one peer.
#[derive(Default)]
struct PeerRecord {
    /// The incarnation it was last accepted as; durable. 0: never seen.
    known: u64,
    /// Its latest accepted hello.
    seen: Option<Hello>,
    /// Why its latest hello was refused, while it is.
    refused: Option<String>,
}

/// This replica's own identity and what follows from it.
struct Own {
    identity: Identity,
    /// NEW: peers that answered knowing no earlier incarnation of us.
    confirmed: Vec<ReplicaId>,
    /// REBUILDING: keys that some other replica of has not been pulled from.
    unreadable: Vec<bool>,
    /// A peer that knew us by an incarnation this directory never was, for
    /// logging it once.
    disowned_by: Option<(ReplicaId, u64)>,
}

/// The agreement between this replica and its peers.
pub struct Membership {
    self_id: ReplicaId,
    ring: std::sync::Arc<Ring>,
    data_dir: PathBuf,
    own: Mutex<Own>,
    peers: Vec<Mutex<PeerRecord>>,
    /// What `DIR/peers` holds. Locked after a peer's record, never before.
    known_file: Mutex<BTreeMap<ReplicaId, u64>>,
}

/// What `status` shows about one peer.
#[derive(Clone, Debug, Default)]
pub struct PeerStanding {
    /// Why it is refused, or empty.
    pub refused: String,
    /// Its data state as last reported.
    pub state: DataState,
    /// The incarnation it was last accepted as.
    pub incarnation: u64,
    /// How many keys it reported it may not serve yet.
    pub unreadable_keys: u32,
}

impl Membership {
    /// The agreement of replica `self_id`, whose data directory holds
    /// `identity`, with the incarnations recorded in `DIR/peers`.
    pub fn open(
        data_dir: &Path,
        ring: std::sync::Arc<Ring>,
        self_id: ReplicaId,
        identity: Identity,
    ) -> Result<Membership, String> {
        let known = read_known(data_dir)?;
        let peers = ring
            .members()
            .iter()
            .map(|member| {
                Mutex::new(PeerRecord {
                    known: known.get(&member.id).copied().unwrap_or(0),
                    ..PeerRecord::default()
                })
            })
            .collect();
        let mut own = Own {
            identity,
            confirmed: Vec::new(),
            unreadable: vec![false; 256],
            disowned_by: None,
        };
        refresh_unreadable(&mut own, &ring, self_id);
        Ok(Membership {
            self_id,
            ring,
            data_dir: data_dir.to_path_buf(),
            own: Mutex::new(own),
            peers,
            known_file: Mutex::new(known),
        })
    }

    /// The hello this replica sends `to` (a ping or a pong).
    pub fn hello_for(&self, to: ReplicaId) -> Hello {
        let mut hello = self.own_hello();
        hello.known_incarnation = self.record(to).map_or(0, |r| lock(r).known);
        hello
    }

    /// This replica's identity and data state, as it tells its peers.
    pub fn own_hello(&self) -> Hello {
        let own = lock(&self.own);
        let identity = &own.identity;
        Hello {
            cluster: identity.cluster.clone(),
            members_digest: identity.members_digest,
            replica_id: self.self_id,
            incarnation: identity.incarnation,
            state: identity.state as i32,
            replaces: identity.replaces.clone(),
            unreadable_keys: (0..256u32)
                .filter(|&key| own.unreadable[key as usize])
                .collect(),
            known_incarnation: 0,
        }
    }

    /// Checks a hello from `from` (in a ping it sent, or a pong to ours)
    /// and takes what it says: its state, and what it knew of us. Returns
    /// why it is refused; a refusal is logged when it first happens.
    pub fn accept(&self, from: ReplicaId, hello: Option<&Hello>) -> Result<(), String> {
        let Some(record) = self.record(from).filter(|_| from != self.self_id) else {
            return Err(format!(
                "replica {from} is not another member of this replica's cluster file"
            ));
        };
        let outcome = self.judge(from, hello, &mut lock(record));
        let mut record = lock(record);
        match &outcome {
            Err(reason) if record.refused.as_deref() != Some(reason.as_str()) => {
                crate::warn!("refusing replica {from}: {reason}");
                record.refused = Some(reason.clone());
            }
            Err(_) => {}
            Ok(()) => {
                if record.refused.take().is_some() {
                    crate::info!("replica {from}'s hello matches this replica's again");
                }
            }
        }
        drop(record);
        if let (Ok(()), Some(hello)) = (&outcome, hello) {
            self.heard_what_they_knew(from, hello.known_incarnation);
        }
        outcome
    }

    /// The checks of `accept`, and the peer's record brought up to date.
    fn judge(
        &self,
        from: ReplicaId,
        hello: Option<&Hello>,
        record: &mut PeerRecord,
    ) -> Result<(), String> {
        let Some(hello) = hello else {
            return Err(
                "its ping carries no identity (Hello): it is not a replica of this version"
                    .to_string(),
            );
        };
        if hello.replica_id != from {
            return Err(format!(
                "the replica at replica {from}'s address says it is replica {}: the cluster files disagree",
                hello.replica_id
            ));
        }
        if hello.members_digest != self.ring.members_digest() {
            return Err(format!(
                "its cluster file lists other members (digest {:016x}, ours {:016x}; cluster '{}', ours '{}'): every replica must use the same cluster file",
                hello.members_digest,
                self.ring.members_digest(),
                hello.cluster,
                self.ring.name()
            ));
        }
        if hello.cluster != self.ring.name() {
            return Err(format!(
                "it belongs to cluster '{}', this replica to '{}'",
                hello.cluster,
                self.ring.name()
            ));
        }
        let state = DataState::try_from(hello.state).unwrap_or(DataState::Unspecified);
        let known = record.known;
        let record_it = known == 0
            || (known != hello.incarnation
                && hello.replaces.contains(&known)
                && state == DataState::Settled);
        if known != 0
            && known != hello.incarnation
            && !hello.replaces.contains(&known)
            && state != DataState::New
        {
            return Err(format!(
                "it presents data incarnation {:016x}, but this replica knew it as {known:016x}, and it is neither new nor rebuilding: its data directory is not the one it had (another cluster's, or an old copy); to rebuild it, start it on an empty data directory",
                hello.incarnation
            ));
        }
        if record_it && known != hello.incarnation {
            self.save_known(from, hello.incarnation)?;
            record.known = hello.incarnation;
            if known != 0 {
                crate::info!(
                    "replica {from} finished rebuilding: incarnation {:016x} replaces {known:016x}",
                    hello.incarnation
                );
            }
        }
        let mut seen = hello.clone();
        seen.unreadable_keys.sort_unstable();
        record.seen = Some(seen);
        Ok(())
    }

    /// A peer told us the incarnation it knew us by: a NEW replica learns
    /// from it whether it lost data (an earlier incarnation) or is new.
    fn heard_what_they_knew(&self, from: ReplicaId, known: u64) {
        let mut own = lock(&self.own);
        let identity = &own.identity;
        let ours =
            known == 0 || known == identity.incarnation || identity.replaces.contains(&known);
        let (state, incarnation) = (identity.state, identity.incarnation);
        match (state, ours) {
            (DataState::New, true) => {
                if !own.confirmed.contains(&from) {
                    own.confirmed.push(from);
                }
                let everyone = self
                    .ring
                    .members()
                    .iter()
                    .all(|m| m.id == self.self_id || own.confirmed.contains(&m.id));
                if everyone {
                    own.identity.state = DataState::Settled;
                    self.save_own(&own);
                    crate::info!(
                        "every peer confirmed this replica's data directory as new: settled"
                    );
                }
            }
            (DataState::New | DataState::Rebuilding, false) => {
                let was_new = state == DataState::New;
                own.identity.replaces.push(known);
                own.identity.state = DataState::Rebuilding;
                refresh_unreadable(&mut own, &self.ring, self.self_id);
                self.save_own(&own);
                if was_new {
                    crate::warn!(
                        "replica {from} knew this replica as incarnation {known:016x}: its data was lost; rebuilding from its peers (no key is served until both of its other replicas have sent their copies)"
                    );
                }
            }
            (_, false) => {
                if own.disowned_by != Some((from, known)) {
                    own.disowned_by = Some((from, known));
                    crate::error!(
                        "replica {from} knew this replica as incarnation {known:016x}, but this data directory ({}) is incarnation {:016x}: it is not the data directory this replica had, and peers refuse it; to rebuild, start on an empty data directory",
                        self.data_dir.display(),
                        incarnation
                    );
                }
            }
            (_, true) => {}
        }
    }

    /// Whether replica `id` may serve a read of `key`: this replica by its
    /// own rebuild state, a peer by the last hello it accepted from it.
    pub fn can_serve(&self, id: ReplicaId, key: u8) -> bool {
        if id == self.self_id {
            return !lock(&self.own).unreadable[usize::from(key)];
        }
        let Some(record) = self.record(id) else {
            return false;
        };
        let record = lock(record);
        let Some(seen) = record.seen.as_ref().filter(|_| record.refused.is_none()) else {
            return false;
        };
        let rebuilding = seen.state == DataState::Rebuilding as i32;
        if record.known != 0 && record.known != seen.incarnation {
            // A new incarnation of a replica we knew: it lost its data, and
            // serves nothing until it says it is rebuilding from it.
            if !(rebuilding && seen.replaces.contains(&record.known)) {
                return false;
            }
        }
        !(rebuilding && seen.unreadable_keys.binary_search(&u32::from(key)).is_ok())
    }

    /// Why this replica may not serve `key` now, if it may not.
    pub fn refusal_to_serve(&self, key: u8) -> Option<String> {
        if self.can_serve(self.self_id, key) {
            return None;
        }
        let waiting: Vec<String> = self
            .rebuild_waiting_for()
            .into_iter()
            .filter(|id| self.ring.replicas_for(key).contains(id))
            .map(|id| id.to_string())
            .collect();
        Some(format!(
            "replica {} is rebuilding after losing its data: it serves key {key} once replicas {} have sent it their copies",
            self.self_id,
            waiting.join(",")
        ))
    }

    /// Whether this replica is rebuilding.
    pub fn rebuilding(&self) -> bool {
        lock(&self.own).identity.state == DataState::Rebuilding
    }

    /// While rebuilding: the peers that share keys with this replica and
    /// have not yet been pulled from, in id order.
    pub fn rebuild_waiting_for(&self) -> Vec<ReplicaId> {
        let own = lock(&self.own);
        if own.identity.state != DataState::Rebuilding {
            return Vec::new();
        }
        self.sharing_peers()
            .into_iter()
            .filter(|id| !own.identity.pulled.contains(id))
            .collect()
    }

    /// Records, durably, that every key shared with `peer` has been pulled
    /// from it; the rebuild ends once every peer that shares keys has been.
    /// Returns how many keys are still unreadable.
    pub fn pulled_from(&self, peer: ReplicaId) -> Result<usize, String> {
        let mut own = lock(&self.own);
        if own.identity.state != DataState::Rebuilding {
            return Ok(0);
        }
        if !own.identity.pulled.contains(&peer) {
            own.identity.pulled.push(peer);
            own.identity.pulled.sort_unstable();
        }
        let done = self
            .sharing_peers()
            .iter()
            .all(|id| own.identity.pulled.contains(id));
        if done {
            own.identity.state = DataState::Settled;
            own.identity.pulled.clear();
        }
        // Durable before any key it makes readable is served.
        own.identity.save(&self.data_dir)?;
        refresh_unreadable(&mut own, &self.ring, self.self_id);
        if done {
            crate::info!(
                "rebuild finished: every key has been pulled from both of its other replicas"
            );
        }
        Ok(own.unreadable.iter().filter(|&&u| u).count())
    }

    /// What `status` shows about peer `id`.
    pub fn standing(&self, id: ReplicaId) -> PeerStanding {
        let Some(record) = self.record(id) else {
            return PeerStanding::default();
        };
        let record = lock(record);
        let seen = record.seen.as_ref();
        PeerStanding {
            refused: record.refused.clone().unwrap_or_default(),
            state: seen
                .and_then(|s| DataState::try_from(s.state).ok())
                .unwrap_or(DataState::Unspecified),
            incarnation: record.known,
            unreadable_keys: seen.map_or(0, |s| s.unreadable_keys.len() as u32),
        }
    }

    /// Why peer `id`'s last hello was refused, while it is.
    pub fn refusal_of(&self, id: ReplicaId) -> Option<String> {
        self.record(id).and_then(|r| lock(r).refused.clone())
    }

    /// A one-line description of this replica's data state for the log.
    pub fn describe_own(&self) -> String {
        let own = lock(&self.own);
        format!(
            "cluster '{}', replica {}, incarnation {:016x}, {}",
            own.identity.cluster,
            self.self_id,
            own.identity.incarnation,
            own.identity.state.name()
        )
    }

    fn record(&self, id: ReplicaId) -> Option<&Mutex<PeerRecord>> {
        self.peers.get(id as usize)
    }

    /// Peers that hold at least one key this replica holds.
    fn sharing_peers(&self) -> Vec<ReplicaId> {
        let mut sharing: Vec<ReplicaId> = (0..=255u8)
            .map(|key| self.ring.replicas_for(key))
            .filter(|replicas| replicas.contains(&self.self_id))
            .flat_map(|replicas| replicas.iter().copied())
            .filter(|&id| id != self.self_id)
            .collect();
        sharing.sort_unstable();
        sharing.dedup();
        sharing
    }

    fn save_own(&self, own: &Own) {
        if let Err(error) = own.identity.save(&self.data_dir) {
            crate::error!("{error}");
        }
    }

    /// Records, durably in `DIR/peers`, that `peer` is known as `incarnation`.
    fn save_known(&self, peer: ReplicaId, incarnation: u64) -> Result<(), String> {
        let mut known = lock(&self.known_file);
        known.insert(peer, incarnation);
        let mut text = String::from(
            "# ringkv: the incarnation this replica last knew each peer by. Replaced whole.\n",
        );
        for (id, incarnation) in known.iter() {
            text.push_str(&format!("peer {id} {incarnation:016x}\n"));
        }
        let path = self.data_dir.join(PEERS_FILE);
        crate::storage::durable_file::replace(
            &path,
            crate::storage::durable_file::with_crc(text).as_bytes(),
        )
        .map_err(|e| format!("cannot record peer incarnations in {}: {e}", path.display()))
    }
}

/// Recomputes which keys this replica may not serve: while rebuilding, those
/// with another replica not yet pulled from.
fn refresh_unreadable(own: &mut Own, ring: &Ring, self_id: ReplicaId) {
    let rebuilding = own.identity.state == DataState::Rebuilding;
    for key in 0..=255u8 {
        let replicas = ring.replicas_for(key);
        own.unreadable[usize::from(key)] = rebuilding
            && replicas.contains(&self_id)
            && replicas
                .iter()
                .any(|&id| id != self_id && !own.identity.pulled.contains(&id));
    }
}

/// The incarnations recorded in `DIR/peers`; empty if there is no file.
fn read_known(data_dir: &Path) -> Result<BTreeMap<ReplicaId, u64>, String> {
    let path = data_dir.join(PEERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let damaged = |why: String| {
        format!(
            "{} is damaged ({why}); it is replaced whole, so it was edited or its disk is failing",
            path.display()
        )
    };
    let body = crate::storage::durable_file::checked(&text).map_err(damaged)?;
    let mut known = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut fields = line.split_whitespace();
        let parsed = match (fields.next(), fields.next(), fields.next()) {
            (Some("peer"), Some(id), Some(incarnation)) => id
                .parse::<ReplicaId>()
                .ok()
                .zip(u64::from_str_radix(incarnation, 16).ok()),
            _ => None,
        };
        let (id, incarnation) = parsed.ok_or_else(|| damaged(format!("line '{line}'")))?;
        known.insert(id, incarnation);
    }
    Ok(known)
}
