//! One-line descriptions of everything ringkv writes, for people and for
//! scripts: protocol envelopes, write-ahead-log records and hint records.
//! `ringkv dump` prints them; nothing here reads files or sockets.
//!
//! A description is a kind and an ordered list of named fields. The text
//! form is `kind name=value ...` with strings quoted (as `where` quotes
//! values) and timestamps followed by their UTC time; the JSON form is one
//! object per line with the same names, so a script and a person read the
//! same facts.

use std::fmt::Write as _;

use crate::ops::logging::utc_timestamp;
use crate::protocol::proto::{
    hint_record, log_record, replica_holding, Body, Consistency, Envelope, HintRecord, LogRecord,
    ReplicaReadReply, Versioned,
};

/// One field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A number.
    Num(u64),
    /// Text a user or client chose (a value, an error message): quoted.
    Text(String),
    /// A word from a fixed vocabulary (a level, an error kind): bare.
    Word(String),
    /// A yes/no fact.
    Flag(bool),
    /// A timestamp in microseconds since the epoch: shown with its UTC time.
    Time(u64),
}

/// What one envelope or record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// What it is: `put`, `replica write`, `hint stored`, ...
    pub kind: String,
    /// Its contents, in a fixed order.
    pub fields: Vec<(&'static str, Field)>,
}

impl Description {
    fn new(kind: &str) -> Self {
        Description {
            kind: kind.to_string(),
            fields: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: Field) -> Self {
        self.fields.push((name, value));
        self
    }

    fn with_key(self, key: Option<u32>) -> Self {
        match key {
            Some(key) => self.with("key", Field::Num(u64::from(key))),
            None => self.with("key", Field::Word("missing".into())),
        }
    }

    fn with_level(self, level: i32) -> Self {
        let name = match Consistency::try_from(level) {
            Ok(level) => level.name().to_string(),
            Err(_) => format!("unknown({level})"),
        };
        self.with("consistency", Field::Word(name))
    }

    fn with_hello(self, hello: Option<&crate::protocol::proto::Hello>) -> Self {
        let Some(hello) = hello else {
            return self.with("hello", Field::Flag(false));
        };
        let state = crate::protocol::proto::DataState::try_from(hello.state).map_or_else(
            |_| format!("unknown({})", hello.state),
            |s| s.name().to_string(),
        );
        let described = self
            .with("cluster", Field::Text(hello.cluster.clone()))
            .with(
                "members_digest",
                Field::Word(format!("{:016x}", hello.members_digest)),
            )
            .with(
                "incarnation",
                Field::Word(format!("{:016x}", hello.incarnation)),
            )
            .with("state", Field::Word(state))
            .with(
                "known",
                Field::Word(format!("{:016x}", hello.known_incarnation)),
            );
        if hello.unreadable_keys.is_empty() {
            described
        } else {
            described.with(
                "unreadable_keys",
                Field::Num(hello.unreadable_keys.len() as u64),
            )
        }
    }

    fn with_ballot(
        self,
        name: &'static str,
        ballot: Option<&crate::protocol::proto::Ballot>,
    ) -> Self {
        match ballot {
            Some(ballot) => self.with(name, Field::Time(ballot.micros)).with(
                "ballot_coordinator",
                Field::Num(u64::from(ballot.coordinator_id)),
            ),
            None => self.with(name, Field::Word("none".into())),
        }
    }

    fn with_version(self, version: Option<&Versioned>) -> Self {
        let Some(version) = version else {
            return self.with("found", Field::Flag(false));
        };
        let described = if version.tombstone {
            self.with("tombstone", Field::Flag(true))
        } else {
            self.with("value", Field::Text(version.value.clone()))
        };
        described
            .with("timestamp", Field::Time(version.timestamp_micros))
            .with("coordinator", Field::Num(u64::from(version.coordinator_id)))
    }

    /// `kind name=value ...`
    pub fn text(&self) -> String {
        let mut line = self.kind.clone();
        for (name, value) in &self.fields {
            let _ = match value {
                Field::Num(n) => write!(line, " {name}={n}"),
                Field::Text(text) => write!(line, " {name}={text:?}"),
                Field::Word(word) => write!(line, " {name}={word}"),
                Field::Flag(flag) => write!(line, " {name}={flag}"),
                Field::Time(micros) => {
                    write!(line, " {name}={micros} ({})", utc_timestamp(*micros))
                }
            };
        }
        line
    }

    /// One JSON object: `prefix` fields (where it was found), then `kind`,
    /// then the fields. A timestamp also gets `NAME_utc`.
    pub fn json(&self, prefix: &[(&str, Field)]) -> String {
        let mut object = String::from("{");
        let mut first = true;
        let mut put = |name: &str, value: &Field| {
            if !first {
                object.push(',');
            }
            first = false;
            object.push_str(&json_string(name));
            object.push(':');
            match value {
                Field::Num(n) | Field::Time(n) => {
                    let _ = write!(object, "{n}");
                }
                Field::Text(text) | Field::Word(text) => object.push_str(&json_string(text)),
                Field::Flag(flag) => {
                    let _ = write!(object, "{flag}");
                }
            }
            if let Field::Time(micros) = value {
                let _ = write!(
                    object,
                    ",{}:{}",
                    json_string(&format!("{name}_utc")),
                    json_string(&utc_timestamp(*micros))
                );
            }
        };
        for (name, value) in prefix {
            put(name, value);
        }
        put("kind", &Field::Word(self.kind.clone()));
        for (name, value) in &self.fields {
            put(name, value);
        }
        object.push('}');
        object
    }
}

/// A JSON string literal: quoted, with quotes, backslashes and control
/// characters escaped. Every JSON ringkv prints builds its strings here.
pub fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// What a protocol envelope says.
pub fn envelope(envelope: &Envelope) -> Description {
    let description = match &envelope.body {
        None => Description::new("empty envelope"),
        Some(body) => body_description(body),
    };
    Description {
        kind: description.kind,
        fields: std::iter::once(("request_id", Field::Num(envelope.request_id)))
            .chain(description.fields)
            .collect(),
    }
}

fn body_description(body: &Body) -> Description {
    let d = Description::new(body.kind_name());
    match body {
        Body::Get(get) => d.with_key(get.key).with_level(get.consistency),
        Body::Put(put) => d
            .with_key(put.key)
            .with("value", Field::Text(put.value.clone()))
            .with_level(put.consistency),
        Body::Delete(delete) => d.with_key(delete.key).with_level(delete.consistency),
        Body::Inspect(inspect) => d.with_key(inspect.key),
        Body::Status(_) | Body::Repair(_) | Body::Metrics(_) => d,
        Body::AuthReply(reply) => d.with("secret_required", Field::Flag(reply.secret_required)),
        // Stale: not an acknowledgement; the replica holds this newer stamp.
        Body::ReplicaWriteAck(ack) => match &ack.held_newer {
            Some(held) => d
                .with("stale", Field::Flag(true))
                .with("held_timestamp", Field::Time(held.timestamp_micros))
                .with(
                    "held_coordinator",
                    Field::Num(u64::from(held.coordinator_id)),
                ),
            None => d,
        },
        // The secret itself is never printed.
        Body::Auth(auth) => match auth.replica_id {
            Some(id) => d.with("replica", Field::Num(u64::from(id))),
            None => d.with("as", Field::Word("client".into())),
        },
        Body::GetReply(reply) => d.with_version(reply.found.as_ref()),
        Body::PutReply(reply) => d.with("timestamp", Field::Time(reply.timestamp_micros)),
        Body::DeleteReply(reply) => d.with("timestamp", Field::Time(reply.timestamp_micros)),
        Body::InspectReply(reply) => {
            let holdings: Vec<String> = reply
                .replicas
                .iter()
                .map(|r| {
                    let what = match &r.outcome {
                        Some(replica_holding::Outcome::Holding(h)) => match &h.found {
                            Some(v) if v.tombstone => format!("deleted@{}", v.timestamp_micros),
                            Some(v) => format!("{:?}@{}", v.value, v.timestamp_micros),
                            None => "none".to_string(),
                        },
                        Some(replica_holding::Outcome::Unreachable(why)) => {
                            format!("unreachable({why})")
                        }
                        None => "no answer".to_string(),
                    };
                    format!("{}:{what}", r.replica_id)
                })
                .collect();
            d.with("replicas", Field::Text(holdings.join(" ")))
        }
        Body::StatusReply(status) => d
            .with("replica", Field::Num(u64::from(status.replica_id)))
            .with("keys", Field::Num(u64::from(status.keys_held)))
            .with("wal_bytes", Field::Num(status.wal_bytes))
            .with("repair_mode", Field::Text(status.repair_mode.clone())),
        Body::MetricsReply(reply) => d
            .with("replica", Field::Num(u64::from(reply.replica_id)))
            .with(
                "requests",
                Field::Num(reply.requests.iter().map(|r| r.count).sum()),
            )
            .with(
                "errors",
                Field::Num(reply.errors.iter().map(|e| e.count).sum()),
            )
            .with("wal_batches", Field::Num(reply.wal_batches))
            .with("wal_records", Field::Num(reply.wal_records)),
        Body::RepairReply(reply) => d
            .with("sent", Field::Num(u64::from(reply.versions_sent)))
            .with("took", Field::Num(u64::from(reply.versions_received))),
        Body::ReplicaWrite(write) if write.client_write => d
            .with_key(write.key)
            .with_version(write.version.as_ref())
            .with("client_write", Field::Flag(true)),
        Body::ReplicaWrite(write) => d.with_key(write.key).with_version(write.version.as_ref()),
        Body::ReplicaRead(read) if read.digest_only => {
            d.with_key(read.key).with("digest_only", Field::Flag(true))
        }
        Body::ReplicaRead(read) => d.with_key(read.key),
        Body::ReplicaReadReply(ReplicaReadReply {
            found: None,
            digest: Some(digest),
        }) => d
            .with("digest", Field::Flag(true))
            .with("timestamp", Field::Time(digest.timestamp_micros))
            .with("coordinator", Field::Num(u64::from(digest.coordinator_id))),
        Body::ReplicaReadReply(reply) => d.with_version(reply.found.as_ref()),
        Body::Ping(ping) => d
            .with("sender", Field::Num(u64::from(ping.sender_id)))
            .with_hello(ping.hello.as_ref()),
        Body::Pong(pong) => {
            let d = d.with("replica", Field::Num(u64::from(pong.replica_id)));
            let d = match pong.wall_micros {
                Some(wall) => d.with("wall", Field::Time(wall)),
                None => d,
            };
            d.with_hello(pong.hello.as_ref())
        }
        Body::Cas(cas) => {
            let d = d.with_key(cas.key);
            let d = match &cas.expected {
                Some(expected) => d.with("expected", Field::Text(expected.clone())),
                None => d.with("expected", Field::Word("none".into())),
            };
            d.with("value", Field::Text(cas.value.clone()))
        }
        Body::CasReply(reply) if reply.applied => d
            .with("applied", Field::Flag(true))
            .with("timestamp", Field::Time(reply.timestamp_micros)),
        Body::CasReply(reply) => d
            .with("applied", Field::Flag(false))
            .with_version(reply.current.as_ref()),
        Body::PaxosPrepare(prepare) => d
            .with_key(prepare.key)
            .with_ballot("ballot", prepare.ballot.as_ref()),
        Body::PaxosPromise(promise) => {
            let d = d
                .with("promised", Field::Flag(promise.promised))
                .with_ballot("promised_ballot", promise.promised_ballot.as_ref());
            let d = match &promise.accepted {
                Some(accepted) => d
                    .with("accepted", Field::Time(accepted.timestamp_micros))
                    .with("accepted_value", Field::Text(accepted.value.clone())),
                None => d,
            };
            d.with_version(promise.current.as_ref())
        }
        Body::PaxosPropose(propose) => d
            .with_key(propose.key)
            .with_ballot("ballot", propose.ballot.as_ref())
            .with_version(propose.proposal.as_ref()),
        Body::PaxosAccepted(accepted) => d
            .with("accepted", Field::Flag(accepted.accepted))
            .with_ballot("promised_ballot", accepted.promised_ballot.as_ref()),
        Body::Digest(digest) => d
            .with("sender", Field::Num(u64::from(digest.sender_id)))
            .with("entries", Field::Num(digest.entries.len() as u64)),
        Body::DigestReply(reply) => d
            .with("newer", Field::Num(reply.newer.len() as u64))
            .with("wanted", Field::Num(reply.wanted.len() as u64)),
        Body::Error(error) => {
            let kind = crate::protocol::error::KvError::from(error.clone()).kind;
            d.with("error", Field::Word(kind.as_str().to_string()))
                .with("message", Field::Text(error.message.clone()))
        }
    }
}

/// What a replica's write-ahead-log record says.
pub fn log_record(record: &LogRecord) -> Description {
    match &record.entry {
        Some(log_record::Entry::Write(write)) => {
            let kind = match &write.version {
                Some(v) if v.tombstone => "delete",
                _ => "write",
            };
            Description::new(kind)
                .with_key(write.key)
                .with_version(write.version.as_ref())
        }
        Some(log_record::Entry::Paxos(state)) => {
            let d = Description::new("paxos")
                .with("key", Field::Num(u64::from(state.key)))
                .with_ballot("promised", state.promised.as_ref());
            match &state.accepted {
                Some(accepted) => d
                    .with_ballot("accepted_ballot", state.accepted_ballot.as_ref())
                    .with_version(Some(accepted)),
                None => d,
            }
        }
        None => Description::new("unknown record"),
    }
}

/// What a hints-log record says.
pub fn hint_record(record: &HintRecord) -> Description {
    let (kind, hint) = match &record.entry {
        Some(hint_record::Entry::Stored(hint)) => ("hint", hint),
        Some(hint_record::Entry::Removed(hint)) => ("hint removed", hint),
        None => return Description::new("unknown record"),
    };
    Description::new(kind)
        .with("for_replica", Field::Num(u64::from(hint.target)))
        .with_key(Some(hint.key))
        .with_version(hint.version.as_ref())
        .with("stored_at", Field::Time(hint.stored_at_micros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::proto::{PutRequest, ReplicaWrite};

    fn version(value: &str, tombstone: bool) -> Versioned {
        Versioned {
            value: value.into(),
            timestamp_micros: 1_764_383_629_123_456,
            coordinator_id: 2,
            tombstone,
        }
    }

    #[test]
    fn a_put_reads_as_text_and_as_json() {
        let put = Envelope {
            request_id: 7,
            body: Some(Body::Put(PutRequest {
                key: Some(10),
                value: "say \"hi\"\n".into(),
                consistency: Consistency::Quorum as i32,
            })),
        };
        let described = envelope(&put);
        assert_eq!(
            described.text(),
            "put request_id=7 key=10 value=\"say \\\"hi\\\"\\n\" consistency=QUORUM"
        );
        assert_eq!(
            described.json(&[("offset", Field::Num(0))]),
            "{\"offset\":0,\"kind\":\"put\",\"request_id\":7,\"key\":10,\"value\":\"say \\\"hi\\\"\\n\",\"consistency\":\"QUORUM\"}"
        );
    }

    #[test]
    fn log_records_show_timestamps_in_utc_and_tombstones_as_deletes() {
        let record = LogRecord {
            entry: Some(log_record::Entry::Write(ReplicaWrite {
                key: Some(3),
                version: Some(version("", true)),
                client_write: false,
            })),
        };
        assert_eq!(
            log_record(&record).text(),
            "delete key=3 tombstone=true timestamp=1764383629123456 (2025-11-29T02:33:49.123456Z) coordinator=2"
        );
        let json = log_record(&record).json(&[]);
        assert!(
            json.contains("\"timestamp_utc\":\"2025-11-29T02:33:49.123456Z\""),
            "{json}"
        );
    }

    #[test]
    fn a_stale_answer_shows_the_stamp_the_replica_holds() {
        let stale = Envelope {
            request_id: 9,
            body: Some(Body::ReplicaWriteAck(
                crate::protocol::proto::ReplicaWriteAck {
                    held_newer: Some(crate::protocol::proto::DigestEntry {
                        key: 10,
                        timestamp_micros: 1_764_383_629_123_456,
                        coordinator_id: 2,
                    }),
                },
            )),
        };
        let text = envelope(&stale).text();
        assert!(
            text.contains("stale=true held_timestamp=1764383629123456")
                && text.ends_with("held_coordinator=2"),
            "{text}"
        );
    }

    #[test]
    fn json_strings_escape_control_characters() {
        assert_eq!(json_string("a\u{1}b"), "\"a\\u0001b\"");
    }
}
