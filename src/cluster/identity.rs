//! Whose data a data directory holds: `DIR/identity`, written and synced
//! on the directory's first start, before anything else, and checked on
//! every start after.
//!
//! It names the cluster, the replica, the members of the cluster file the
//! directory was created with, and a random incarnation id. A start whose
//! cluster file or `--id` does not match refuses, naming both sides: a data
//! directory moved to the wrong replica, or another cluster's, never
//! serves. The incarnation tells peers whether this is the replica they
//! knew: a new or wiped directory, or one whose write-ahead log is gone,
//! gets a new incarnation, and peers that knew an earlier one make it
//! rebuild (`rebuild.rs`) before it serves reads.
//!
//! The file is text, one `field value` per line, ending with a CRC-32 of
//! the lines above it, and is only ever replaced whole
//! (`durable_file::replace`), as its data state changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cluster::ring::Ring;
use crate::protocol::proto::DataState;
use crate::protocol::proto::ReplicaId;

/// The identity file's name inside the data directory.
pub const IDENTITY_FILE: &str = "identity";

/// The one format this module writes and reads.
const FORMAT: u32 = 1;

/// What a data directory says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's name when the directory was created.
    pub cluster: String,
    /// The replica it belongs to.
    pub replica_id: ReplicaId,
    /// Every member of the cluster file it was created with: (id, address).
    pub members: Vec<(ReplicaId, String)>,
    /// `Ring::members_digest` of those members.
    pub members_digest: u64,
    /// Random, drawn when the directory was created or lost its log.
    pub incarnation: u64,
    /// Whether its data is whole (see `DataState`).
    pub state: DataState,
    /// Earlier incarnations of this replica it rebuilt (or is rebuilding)
    /// the data of.
    pub replaces: Vec<u64>,
    /// While rebuilding: the peers it has pulled its shared keys from.
    pub pulled: Vec<ReplicaId>,
}

/// How the identity came to be, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The directory had one, and it matches.
    Found,
    /// The directory was new (or empty): a first start.
    Created,
    /// The directory had an identity but its write-ahead log was gone: the
    /// data is lost, so it starts as a new incarnation of the same replica.
    LogLost {
        /// The incarnation whose data was lost.
        previous: u64,
    },
    /// The directory held a write-ahead log from before identities existed:
    /// it is adopted as it is.
    Adopted,
}

impl Identity {
    /// A new incarnation of replica `id` of `ring`.
    fn new(ring: &Ring, id: ReplicaId, replaces: Vec<u64>) -> Identity {
        Identity {
            cluster: ring.name().to_string(),
            replica_id: id,
            members: members_of(ring),
            members_digest: ring.members_digest(),
            incarnation: random_incarnation(),
            state: DataState::New,
            replaces,
            pulled: Vec::new(),
        }
    }

    /// Reads `DIR/identity`; `None` if there is none.
    pub fn read(data_dir: &Path) -> Result<Option<Identity>, String> {
        let path = data_dir.join(IDENTITY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text)
                .map(Some)
                .map_err(|e| format!("{} is damaged ({e}); it is replaced whole, so it was edited or its disk is failing", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Replaces `DIR/identity` with this one, durably.
    pub fn save(&self, data_dir: &Path) -> Result<(), String> {
        let path = data_dir.join(IDENTITY_FILE);
        crate::storage::durable_file::replace(&path, render(self).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Opens the identity of the replica `id` of `ring` in `data_dir`
    /// (created if missing): the one recorded there if it matches, a new
    /// one on a first start or when the log is gone. A directory of another
    /// cluster or replica is refused with one line saying what to do.
    pub fn open(data_dir: &Path, ring: &Ring, id: ReplicaId) -> Result<(Identity, Origin), String> {
        wal::create_durably(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let has_log = log_present(&data_dir.join("wal"))?;
        let (identity, origin) = match Identity::read(data_dir)? {
            Some(recorded) => {
                check(&recorded, data_dir, ring, id)?;
                if has_log {
                    return Ok((recorded, Origin::Found));
                }
                let mut replaces = recorded.replaces.clone();
                replaces.push(recorded.incarnation);
                // Its data is certainly gone: it rebuilds before it serves.
                let mut lost = Identity::new(ring, id, replaces);
                lost.state = DataState::Rebuilding;
                (
                    lost,
                    Origin::LogLost {
                        previous: recorded.incarnation,
                    },
                )
            }
            None if has_log => {
                let mut adopted = Identity::new(ring, id, Vec::new());
                adopted.state = DataState::Settled;
                (adopted, Origin::Adopted)
            }
            None => (Identity::new(ring, id, Vec::new()), Origin::Created),
        };
        identity.save(data_dir)?;
        Ok((identity, origin))
    }
}

/// Refuses a recorded identity that is not this replica's of this cluster.
fn check(recorded: &Identity, data_dir: &Path, ring: &Ring, id: ReplicaId) -> Result<(), String> {
    let dir = data_dir.display();
    if recorded.cluster != ring.name() {
        return Err(format!(
            "{dir} belongs to cluster '{}' (members {}), but the cluster file names cluster '{}' (members {}): start each replica on its own data directory (or an empty one, which rebuilds from its peers), with the same cluster file on every replica",
            recorded.cluster,
            describe_members(&recorded.members),
            ring.name(),
            describe_members(&members_of(ring))
        ));
    }
    if recorded.replica_id != id {
        return Err(format!(
            "{dir} belongs to replica {} of cluster '{}', not replica {id}: start replica {id} on its own data directory (or an empty one, which rebuilds from its peers)",
            recorded.replica_id, recorded.cluster
        ));
    }
    if recorded.members_digest != ring.members_digest() {
        return Err(format!(
            "{dir} was created with members {}, but the cluster file lists {}: every replica must use the same cluster file",
            describe_members(&recorded.members),
            describe_members(&members_of(ring))
        ));
    }
    Ok(())
}

/// Whether `wal_dir` holds at least one segment.
fn log_present(wal_dir: &Path) -> Result<bool, String> {
    let entries = match std::fs::read_dir(wal_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot read {}: {e}", wal_dir.display())),
    };
    Ok(entries
        .flatten()
        .any(|entry| entry.file_name().to_string_lossy().ends_with(".wal")))
}

fn members_of(ring: &Ring) -> Vec<(ReplicaId, String)> {
    ring.members()
        .iter()
        .map(|m| (m.id, m.addr.clone()))
        .collect()
}

fn describe_members(members: &[(ReplicaId, String)]) -> String {
    members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn render(identity: &Identity) -> String {
    let mut text = String::from(
        "# ringkv data directory identity: written on its first start, replaced as its\n\
         # data state changes. Do not edit it or copy it to another replica.\n",
    );
    let _ = writeln!(text, "format {FORMAT}");
    let _ = writeln!(text, "cluster {}", identity.cluster);
    let _ = writeln!(text, "replica {}", identity.replica_id);
    for (id, addr) in &identity.members {
        let _ = writeln!(text, "member {id} {addr}");
    }
    let _ = writeln!(text, "members-digest {:016x}", identity.members_digest);
    let _ = writeln!(text, "incarnation {:016x}", identity.incarnation);
    let _ = writeln!(text, "state {}", identity.state.name());
    let replaces: Vec<String> = identity
        .replaces
        .iter()
        .map(|i| format!("{i:016x}"))
        .collect();
    let _ = writeln!(text, "replaces {}", replaces.join(" "));
    let pulled: Vec<String> = identity.pulled.iter().map(ToString::to_string).collect();
    let _ = writeln!(text, "pulled {}", pulled.join(" "));
    crate::storage::durable_file::with_crc(text)
}

fn parse(text: &str) -> Result<Identity, String> {
    let body = crate::storage::durable_file::checked(text)?;
    let mut identity = Identity {
        cluster: String::new(),
        replica_id: 0,
        members: Vec::new(),
        members_digest: 0,
        incarnation: 0,
        state: DataState::Settled,
        replaces: Vec::new(),
        pulled: Vec::new(),
    };
    let hex = |v: &str| u64::from_str_radix(v, 16).map_err(|_| format!("'{v}' is not hex"));
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (field, value) = line.split_once(' ').unwrap_or((line, ""));
        match field {
            "format" if value == FORMAT.to_string() => {}
            "format" => return Err(format!("format {value} is not one this version reads")),
            "cluster" => identity.cluster = value.to_string(),
            "replica" => {
                identity.replica_id = value.parse().map_err(|_| "bad replica id".to_string())?
            }
            "member" => {
                let (id, addr) = value.split_once(' ').ok_or("bad member line")?;
                let id = id.parse().map_err(|_| "bad member id".to_string())?;
                identity.members.push((id, addr.to_string()));
            }
            "members-digest" => identity.members_digest = hex(value)?,
            "incarnation" => identity.incarnation = hex(value)?,
            "state" => {
                identity.state = match value {
                    "new" => DataState::New,
                    "rebuilding" => DataState::Rebuilding,
                    "settled" => DataState::Settled,
                    other => return Err(format!("unknown state '{other}'")),
                }
            }
            "replaces" => {
                identity.replaces = value
                    .split_whitespace()
                    .map(hex)
                    .collect::<Result<_, _>>()?
            }
            "pulled" => {
                identity.pulled = value
                    .split_whitespace()
                    .map(|v| v.parse().map_err(|_| format!("bad peer id '{v}'")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown field '{other}'")),
        }
    }
    if identity.cluster.is_empty() || identity.incarnation == 0 {
        return Err("it names no cluster or no incarnation".to_string());
    }
    Ok(identity)
}

/// 64 random bits, never 0 (0 means "never seen" on the wire): from the
/// kernel, or, where it cannot be read, from the clock and the process id.
fn random_incarnation() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    let mut value = u64::from_le_bytes(bytes);
    if !from_kernel {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        value = nanos ^ (u64::from(std::process::id()) << 32);
    }
    value.max(1)
}

/// Where the identity of `data_dir` lives, for messages.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &str) -> Ring {
        Ring::parse(text).expect("ring")
    }

    const FOUR: &str = "0 127.0.0.1:1\n1 127.0.0.1:2\n2 127.0.0.1:3\n3 127.0.0.1:4\n";

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringkv-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_first_start_creates_it_and_later_starts_find_the_same() {
        let dir = scratch("first");
        let (created, origin) = Identity::open(&dir, &ring(FOUR), 2).expect("create");
        assert_eq!(origin, Origin::Created);
        assert_eq!(created.state, DataState::New);
        // With a log beside it, the next start finds it unchanged.
        std::fs::create_dir_all(dir.join("wal")).expect("wal");
        std::fs::write(dir.join("wal").join("00000000000000000001.wal"), b"x").expect("seg");
        let (found, origin) = Identity::open(&dir, &ring(FOUR), 2).expect("find");
        assert_eq!((found, origin), (created, Origin::Found));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_replica_cluster_or_member_list_is_refused() {
        let dir = scratch("refused");
        Identity::open(&dir, &ring(FOUR), 0).expect("create");
        let error = Identity::open(&dir, &ring(FOUR), 1).expect_err("wrong replica");
        assert!(
            error.contains("belongs to replica 0") && error.contains("not replica 1"),
            "{error}"
        );
        let named = format!("cluster other\n{FOUR}");
        let error = Identity::open(&dir, &ring(&named), 0).expect_err("wrong cluster");
        assert!(error.contains("cluster 'other'"), "{error}");
        let five = format!("{FOUR}4 127.0.0.1:5\n");
        let five = ring(&five);
        // A fifth member changes the derived name too: name it alike.
        let mut same_name = format!("cluster {}\n", ring(FOUR).name());
        same_name.push_str(&format!("{FOUR}4 127.0.0.1:5\n"));
        assert_ne!(five.members_digest(), ring(FOUR).members_digest());
        let error = Identity::open(&dir, &ring(&same_name), 0).expect_err("members");
        assert!(error.contains("4=127.0.0.1:5"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lost_log_is_a_new_incarnation_that_replaces_the_old() {
        let dir = scratch("lost");
        let (first, _) = Identity::open(&dir, &ring(FOUR), 3).expect("create");
        // No segment was ever written: as if the log was lost.
        let (second, origin) = Identity::open(&dir, &ring(FOUR), 3).expect("reopen");
        assert_eq!(
            origin,
            Origin::LogLost {
                previous: first.incarnation
            }
        );
        assert_ne!(second.incarnation, first.incarnation);
        assert_eq!(second.replaces, vec![first.incarnation]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_field_survives_a_round_trip_and_damage_is_refused() {
        let identity = Identity {
            cluster: "c".to_string(),
            replica_id: 1,
            members: vec![(0, "a:1".to_string()), (1, "b:2".to_string())],
            members_digest: 0xdead_beef,
            incarnation: 42,
            state: DataState::Rebuilding,
            replaces: vec![7, 8],
            pulled: vec![0, 3],
        };
        let text = render(&identity);
        assert_eq!(parse(&text).expect("parse"), identity);
        let damaged = text.replace("replica 1", "replica 2");
        assert!(parse(&damaged).expect_err("damaged").contains("checksum"));
    }
}
