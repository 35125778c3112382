//! The generated protobuf types of `schema/kv.proto` and `schema/storage.proto`,
//! plus the small conversions every side needs: naming a level, ordering
//! versions. The checks that turn wire values into typed errors are in
//! `checks`.

#![allow(missing_docs, clippy::all)]

use std::cmp::Ordering;
use std::fmt;

include!(concat!(env!("OUT_DIR"), "/ringkv.rs"));

pub use envelope::Body;

/// Replica ids are small integers 0..N-1, in ring order: the position in
/// the cluster file that every `replica_id` field on the wire names.
pub type ReplicaId = u32;

/// The largest key; keys are 0..=255.
pub const MAX_KEY: u32 = 255;

impl Consistency {
    /// How many of `replication_factor` replicas must answer at this level.
    pub fn required_acks(self, replication_factor: usize) -> usize {
        match self {
            Consistency::One | Consistency::Unspecified => 1,
            Consistency::Quorum | Consistency::Serial => replication_factor / 2 + 1,
            Consistency::All => replication_factor,
        }
    }

    /// The name users type and see.
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Unspecified => "UNSPECIFIED",
            Consistency::One => "ONE",
            Consistency::Quorum => "QUORUM",
            Consistency::All => "ALL",
            Consistency::Serial => "SERIAL",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl DataState {
    /// The word for the state in logs, `status` and the identity file.
    pub fn name(self) -> &'static str {
        match self {
            DataState::New => "new",
            DataState::Rebuilding => "rebuilding",
            DataState::Settled | DataState::Unspecified => "settled",
        }
    }
}

impl Versioned {
    /// The last-write-wins order: timestamp first, then coordinator id, so
    /// two replicas comparing the same pair of versions always agree. The
    /// value breaks what is left of a tie, which only a misbehaving client
    /// can cause, so that even then every replica keeps the same version.
    pub fn lww_cmp(&self, other: &Versioned) -> Ordering {
        (
            self.timestamp_micros,
            self.coordinator_id,
            self.tombstone,
            &self.value,
        )
            .cmp(&(
                other.timestamp_micros,
                other.coordinator_id,
                other.tombstone,
                &other.value,
            ))
    }

    /// The newest of two optional versions.
    pub fn newest(a: Option<Versioned>, b: Option<Versioned>) -> Option<Versioned> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.lww_cmp(&a) == Ordering::Greater {
                b
            } else {
                a
            }),
            (a, None) => a,
            (None, b) => b,
        }
    }
}

impl Body {
    /// A short name for logs and "unexpected message" errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Body::Get(_) => "get",
            Body::Put(_) => "put",
            Body::Inspect(_) => "inspect",
            Body::Status(_) => "status",
            Body::Delete(_) => "delete",
            Body::Repair(_) => "repair",
            Body::Metrics(_) => "metrics",
            Body::Auth(_) => "auth",
            Body::GetReply(_) => "get reply",
            Body::PutReply(_) => "put reply",
            Body::InspectReply(_) => "inspect reply",
            Body::StatusReply(_) => "status reply",
            Body::DeleteReply(_) => "delete reply",
            Body::RepairReply(_) => "repair reply",
            Body::MetricsReply(_) => "metrics reply",
            Body::AuthReply(_) => "auth reply",
            Body::ReplicaWrite(_) => "replica write",
            Body::ReplicaWriteAck(_) => "replica write ack",
            Body::ReplicaRead(_) => "replica read",
            Body::ReplicaReadReply(_) => "replica read reply",
            Body::Ping(_) => "ping",
            Body::Pong(_) => "pong",
            Body::Digest(_) => "digest",
            Body::DigestReply(_) => "digest reply",
            Body::Cas(_) => "cas request",
            Body::CasReply(_) => "cas reply",
            Body::PaxosPrepare(_) => "paxos prepare",
            Body::PaxosPromise(_) => "paxos promise",
            Body::PaxosPropose(_) => "paxos propose",
            Body::PaxosAccepted(_) => "paxos accepted",
            Body::Error(_) => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(ts: u64, coordinator: u32, value: &str) -> Versioned {
        Versioned {
            value: value.to_string(),
            timestamp_micros: ts,
            coordinator_id: coordinator,
            tombstone: false,
        }
    }

    #[test]
    fn a_tombstone_is_ordered_like_any_version() {
        let put = version(10, 1, "x");
        let delete = Versioned {
            tombstone: true,
            ..version(11, 0, "")
        };
        assert_eq!(
            Versioned::newest(Some(put.clone()), Some(delete.clone())),
            Some(delete.clone())
        );
        let later_put = version(12, 0, "y");
        assert_eq!(
            Versioned::newest(Some(delete), Some(later_put.clone())),
            Some(later_put)
        );
    }

    #[test]
    fn newer_timestamp_wins_and_ties_break_by_coordinator() {
        let old = version(10, 3, "old");
        let new = version(11, 0, "new");
        assert_eq!(
            Versioned::newest(Some(old.clone()), Some(new.clone())),
            Some(new.clone())
        );
        assert_eq!(Versioned::newest(Some(new.clone()), Some(old)), Some(new));
        let tie_low = version(10, 1, "low");
        let tie_high = version(10, 2, "high");
        assert_eq!(
            Versioned::newest(Some(tie_high.clone()), Some(tie_low.clone())),
            Some(tie_high.clone())
        );
        assert_eq!(
            Versioned::newest(Some(tie_low), Some(tie_high.clone())),
            Some(tie_high)
        );
    }
}
