//! The checks a replica makes of a version that another replica sends it
//! (a coordinator's write, a read repair, a hint, an anti-entropy fix), and
//! of the key of a replica read: shared by the server, which answers peers,
//! and anti-entropy, which takes versions from them.

use crate::cluster::ring::Ring;
use crate::protocol::checks::{checked_key, checked_value};
use crate::protocol::error::KvError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::Versioned;
use crate::storage::clock_fence::check_stamp;

/// Checks a write that arrives from another replica (a coordinator's write,
/// a repair, a hint, an anti-entropy fix): a key this replica holds, a value
/// within the limit, a coordinator in the ring, a timestamp within the
/// clock fence (`clock_fence::check_stamp`).
pub fn checked_replica_write(
    ring: &Ring,
    self_id: ReplicaId,
    max_value_bytes: usize,
    key: Option<u32>,
    version: Option<Versioned>,
) -> Result<(u8, Versioned), KvError> {
    let key = held_key(ring, self_id, key)?;
    let Some(version) = version else {
        return Err(KvError::invalid("the replica write has no version"));
    };
    checked_value(&version.value, max_value_bytes)?;
    if ring.member(version.coordinator_id).is_none() {
        return Err(KvError::invalid(format!(
            "the write names coordinator {}, which is not in the ring",
            version.coordinator_id
        )));
    }
    check_stamp(&version, self_id)?;
    Ok((key, version))
}

/// A key from a replica message, which must be one this replica holds: a
/// misrouted write would otherwise sit where no read looks for it.
pub fn held_key(ring: &Ring, self_id: ReplicaId, key: Option<u32>) -> Result<u8, KvError> {
    let key = checked_key(key)?;
    if !ring.replicas_for(key).contains(&self_id) {
        return Err(KvError::invalid(format!(
            "replica {self_id} does not hold key {key} (its replicas are {:?})",
            ring.replicas_for(key)
        )));
    }
    Ok(key)
}
