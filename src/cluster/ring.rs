//! The static ring: which replicas exist, where they listen, and which three
//! of them hold each key.
//!
//! Partitioning is byte-ordered, as Cassandra's ByteOrderedPartitioner: with
//! N replicas, replica i owns keys [i*256/N, (i+1)*256/N - 1]. A key lives on
//! its owner and the next `REPLICATION_FACTOR - 1` replicas clockwise. The
//! whole placement is computed once, into a 256-entry table.

use std::fmt;
use std::path::Path;

use crate::protocol::proto::ReplicaId;

/// Copies of each key; DESIGN.md fixes it at 3.
pub const REPLICATION_FACTOR: usize = 3;

/// One line of the cluster file: a replica and the address it listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The replica's id; also its position on the ring.
    pub id: ReplicaId,
    /// `HOST:PORT` for clients and peers alike.
    pub addr: String,
}

/// The ring: members in id order and the precomputed placement of every key.
#[derive(Clone, Debug)]
pub struct Ring {
    /// The cluster's name: from a `cluster NAME` line, or derived from the
    /// members. Two clusters' replicas refuse each other by it.
    name: String,
    /// A digest of every member's id and address, so that replicas whose
    /// cluster files differ in any member notice it in each other's hello.
    members_digest: u64,
    members: Vec<Member>,
    /// `placement[key]` is the key's replicas, owner first.
    placement: Vec<Vec<ReplicaId>>,
}

/// Why a cluster file was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct RingError(pub String);

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RingError {}

impl Ring {
    /// Reads and checks a cluster file (`ID HOST:PORT` per line, `#` starts
    /// a comment).
    pub fn load(path: &Path) -> Result<Ring, RingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RingError(format!("cannot read cluster file {}: {e}", path.display())))?;
        Ring::parse(&text).map_err(|e| RingError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses cluster-file text. Ids must be exactly 0..N-1 (in any line
    /// order), addresses distinct, and N at least the replication factor.
    /// One optional `cluster NAME` line names the cluster.
    pub fn parse(text: &str) -> Result<Ring, RingError> {
        let mut members: Vec<Member> = Vec::new();
        let mut name = None;
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("cluster ") {
                name = Some(checked_name(rest.trim(), line_no, name.is_some())?);
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(id), Some(addr), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(RingError(format!(
                    "line {line_no}: expected 'ID HOST:PORT', got '{line}'"
                )));
            };
            let id: ReplicaId = id.parse().map_err(|_| {
                RingError(format!("line {line_no}: replica id '{id}' is not a number"))
            })?;
            if !addr.contains(':') {
                return Err(RingError(format!(
                    "line {line_no}: address '{addr}' is not HOST:PORT"
                )));
            }
            if members.iter().any(|m| m.id == id) {
                return Err(RingError(format!(
                    "line {line_no}: replica {id} is listed twice"
                )));
            }
            if members.iter().any(|m| m.addr == addr) {
                return Err(RingError(format!(
                    "line {line_no}: address {addr} is listed twice"
                )));
            }
            members.push(Member {
                id,
                addr: addr.to_string(),
            });
        }
        members.sort_by_key(|m| m.id);
        if members.len() < REPLICATION_FACTOR {
            return Err(RingError(format!(
                "{} replicas listed; at least {REPLICATION_FACTOR} are needed for replication factor {REPLICATION_FACTOR}",
                members.len()
            )));
        }
        if members.len() > 256 {
            return Err(RingError("more than 256 replicas for 256 keys".to_string()));
        }
        if let Some((expected, member)) = members
            .iter()
            .enumerate()
            .find(|(position, member)| member.id as usize != *position)
        {
            return Err(RingError(format!(
                "replica ids must be 0..{}: replica {expected} is missing (found {})",
                members.len() - 1,
                member.id
            )));
        }
        Ok(Ring::from_members(name, members))
    }

    fn from_members(name: Option<String>, members: Vec<Member>) -> Ring {
        let members_digest = digest_of(&members);
        let name = name.unwrap_or_else(|| format!("ringkv-{:08x}", members_digest >> 32));
        let n = members.len();
        let placement = (0..256usize)
            .map(|key| {
                let owner = (0..n)
                    .rev()
                    .find(|&i| i * 256 / n <= key)
                    .expect("replica 0's range starts at key 0");
                (0..REPLICATION_FACTOR)
                    .map(|step| ((owner + step) % n) as ReplicaId)
                    .collect()
            })
            .collect();
        Ring {
            name,
            members_digest,
            members,
            placement,
        }
    }

    /// The cluster's name: the file's `cluster NAME` line, or
    /// `ringkv-XXXXXXXX` from the members digest when it has none.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A digest of every member's id and address (64-bit FNV-1a over one
    /// `ID ADDR` line per member, in id order): equal exactly when two
    /// cluster files list the same members at the same addresses.
    pub fn members_digest(&self) -> u64 {
        self.members_digest
    }

    /// The key's replicas, owner first, then clockwise.
    pub fn replicas_for(&self, key: u8) -> &[ReplicaId] {
        &self.placement[key as usize]
    }

    /// Every member, in id order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with this id, if the ring has one.
    pub fn member(&self, id: ReplicaId) -> Option<&Member> {
        self.members.get(id as usize)
    }

    /// The inclusive key range a replica owns (is the first replica for).
    pub fn owned_range(&self, id: ReplicaId) -> (u8, u8) {
        let n = self.members.len();
        let i = id as usize;
        let first = i * 256 / n;
        let last = (i + 1) * 256 / n - 1;
        (first as u8, last as u8)
    }
}

/// A cluster name: one token of letters, digits, `-`, `_` or `.`.
fn checked_name(name: &str, line_no: usize, seen: bool) -> Result<String, RingError> {
    if seen {
        return Err(RingError(format!(
            "line {line_no}: a second 'cluster' line"
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(RingError(format!(
            "line {line_no}: cluster name '{name}' must be 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(name.to_string())
}

/// 64-bit FNV-1a over `ID ADDR\n` for each member in id order. Not a
/// defence against forgery (the secret is); it tells honest mistakes apart.
fn digest_of(members: &[Member]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for member in members {
        for byte in format!("{} {}\n", member.id, member.addr).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR: &str = "# the default cluster\n0 127.0.0.1:7000\n1 127.0.0.1:7001\n\n2 127.0.0.1:7002 # third\n3 127.0.0.1:7003\n";

    #[test]
    fn four_replicas_split_the_keys_in_quarters_with_wrap_around() {
        let ring = Ring::parse(FOUR).expect("valid");
        assert_eq!(ring.replicas_for(10), &[0, 1, 2]);
        assert_eq!(ring.replicas_for(63), &[0, 1, 2]);
        assert_eq!(ring.replicas_for(64), &[1, 2, 3]);
        assert_eq!(ring.replicas_for(130), &[2, 3, 0]);
        assert_eq!(ring.replicas_for(200), &[3, 0, 1]);
        assert_eq!(ring.replicas_for(255), &[3, 0, 1]);
        assert_eq!(ring.owned_range(0), (0, 63));
        assert_eq!(ring.owned_range(3), (192, 255));
    }

    #[test]
    fn owners_match_the_documented_ranges_for_other_sizes() {
        for n in 3..=7usize {
            let text: String = (0..n).map(|i| format!("{i} h:{}\n", 7000 + i)).collect();
            let ring = Ring::parse(&text).expect("valid");
            for id in 0..n as ReplicaId {
                let (first, last) = ring.owned_range(id);
                for key in first..=last {
                    assert_eq!(ring.replicas_for(key)[0], id, "n={n} key={key}");
                }
            }
        }
    }

    #[test]
    fn bad_cluster_files_are_refused_with_the_line() {
        let err = |text: &str| Ring::parse(text).expect_err("must be refused").0;
        assert!(err("0 a:1\n1 b:1\nx c:1\n").contains("line 3"));
        assert!(err("0 a:1\n1 b:1\n").contains("at least 3"));
        assert!(err("0 a:1\n1 b:1\n3 c:1\n").contains("replica 2 is missing"));
        assert!(err("0 a:1\n0 b:1\n1 c:1\n").contains("listed twice"));
        assert!(err("0 a:1\n1 a:1\n2 c:1\n").contains("listed twice"));
        assert!(err("0 a:1 extra\n").contains("expected 'ID HOST:PORT'"));
        assert!(err("0 nocolon\n").contains("HOST:PORT"));
        assert!(err("cluster a\ncluster b\n0 a:1\n1 b:1\n2 c:1\n").contains("second"));
        assert!(err("cluster a b\n0 a:1\n1 b:1\n2 c:1\n").contains("cluster name"));
    }

    #[test]
    fn the_name_and_digest_tell_cluster_files_apart() {
        let ring = |text: &str| Ring::parse(text).expect("valid");
        let four = ring(FOUR);
        assert!(four.name().starts_with("ringkv-"), "{}", four.name());
        // Comments, blank lines and line order do not matter.
        let reordered =
            ring("3 127.0.0.1:7003\n2 127.0.0.1:7002\n1 127.0.0.1:7001\n0 127.0.0.1:7000\n");
        assert_eq!(reordered.members_digest(), four.members_digest());
        assert_eq!(reordered.name(), four.name());
        // Two addresses swapped, or a fifth member, change the digest.
        let swapped =
            ring("0 127.0.0.1:7001\n1 127.0.0.1:7000\n2 127.0.0.1:7002\n3 127.0.0.1:7003\n");
        assert_ne!(swapped.members_digest(), four.members_digest());
        let five = ring(&format!("{FOUR}4 127.0.0.1:7004\n"));
        assert_ne!(five.members_digest(), four.members_digest());
        let named = ring(&format!("cluster prod-eu.1\n{FOUR}"));
        assert_eq!(named.name(), "prod-eu.1");
        assert_eq!(named.members_digest(), four.members_digest());
    }
}
