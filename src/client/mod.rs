//! The client library the console, `ringkv bench` and the tests share: typed get, put, inspect and status calls against one coordinator.
//!
//! One multiplexed connection, opened on first use and reopened after it
//! breaks, so a client survives its coordinator restarting. Every failure is
//! a `KvError` with the same kinds the replicas use on the wire.

pub mod console;
pub mod editor;
pub mod serial;

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ring::REPLICATION_FACTOR;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::protocol::mux::{CallError, FrameLimits, MuxConnection};
use crate::protocol::proto::{
    AuthRequest, Body, CasReply, CasRequest, Consistency, DeleteRequest, GetRequest, InspectReply,
    InspectRequest, MetricsReply, MetricsRequest, PutRequest, RepairReply, RepairRequest,
    StatusReply, StatusRequest, Versioned,
};

/// A request fits any replica's frame limit; a reply may be larger: the
/// answer to `where` carries up to one value per replica of the key.
pub(crate) const CLIENT_FRAME_LIMITS: FrameLimits = FrameLimits {
    request_bytes: DEFAULT_MAX_FRAME_BYTES,
    reply_bytes: REPLICATION_FACTOR * DEFAULT_MAX_FRAME_BYTES,
};

/// How long a client waits for its coordinator by default: longer than the
/// replicas' own 2 s request timeouts, so their typed TIMEOUT arrives first.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a client waits for the coordinator to take its connection.
/// A closed port is refused at once; this bounds a host that drops the
/// connection attempt. Within it, the client waits as long as its request
/// timeout, so a client told to be patient is patient here too (on a
/// loaded machine, a burst of connections can take seconds to be taken).
pub(crate) const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one coordinator.
pub struct Client {
    addr: String,
    timeout: Duration,
    /// Proved on every new connection, if the cluster requires it.
    secret: Option<Vec<u8>>,
    connection: rt::AsyncMutex<Option<Arc<MuxConnection>>>,
}

impl Client {
    /// A client of the coordinator at `addr`; connects on first use.
    pub fn new(addr: impl Into<String>) -> Client {
        Client {
            addr: addr.into(),
            timeout: DEFAULT_CLIENT_TIMEOUT,
            secret: None,
            connection: rt::AsyncMutex::new(None),
        }
    }

    /// Authenticates every connection with the cluster's secret
    /// (`--secret-file`), as a client.
    pub fn with_secret(mut self, secret: Option<Vec<u8>>) -> Client {
        self.secret = secret;
        self
    }

    /// Changes how long each request waits for an answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The key's value at `level`: `None` if no replica asked holds it, or
    /// the newest version is a delete.
    pub async fn get(&self, key: u32, level: Consistency) -> Result<Option<Versioned>, KvError> {
        found(self.call(get_request(key, level)).await?)
    }

    /// Writes the value at `level`; returns the timestamp it was given.
    pub async fn put(&self, key: u32, value: &str, level: Consistency) -> Result<u64, KvError> {
        put_stamp(self.call(put_request(key, value, level)).await?)
    }

    /// Writes `value` only if the key holds `expected` (None: only if it
    /// holds no value). A TIMEOUT means the outcome is unknown.
    pub async fn cas(
        &self,
        key: u32,
        expected: Option<&str>,
        value: &str,
    ) -> Result<CasReply, KvError> {
        cas_outcome(self.call(cas_request(key, expected, value)).await?)
    }

    /// Deletes the key at `level` (writes a tombstone); returns the
    /// timestamp it was given.
    pub async fn delete(&self, key: u32, level: Consistency) -> Result<u64, KvError> {
        let request = Body::Delete(DeleteRequest {
            key: Some(key),
            consistency: level as i32,
        });
        match self.call(request).await? {
            Body::DeleteReply(reply) => Ok(reply.timestamp_micros),
            other => Err(unexpected(other)),
        }
    }

    /// Runs one anti-entropy round on the coordinator, with its neighbours.
    pub async fn repair(&self) -> Result<RepairReply, KvError> {
        match self.call(Body::Repair(RepairRequest {})).await? {
            Body::RepairReply(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// What each replica of the key holds locally.
    pub async fn inspect(&self, key: u32) -> Result<InspectReply, KvError> {
        match self
            .call(Body::Inspect(InspectRequest { key: Some(key) }))
            .await?
        {
            Body::InspectReply(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// The coordinator's own state and its view of its peers.
    pub async fn status(&self) -> Result<StatusReply, KvError> {
        match self.call(Body::Status(StatusRequest {})).await? {
            Body::StatusReply(reply) => Ok(*reply),
            other => Err(unexpected(other)),
        }
    }

    /// The coordinator's counters since it started (`status --metrics`):
    /// requests, errors, latency percentiles, WAL batches, hints, repairs.
    pub async fn metrics(&self) -> Result<MetricsReply, KvError> {
        match self.call(Body::Metrics(MetricsRequest {})).await? {
            Body::MetricsReply(reply) => Ok(*reply),
            other => Err(unexpected(other)),
        }
    }

    /// Sends any request body and returns the reply body; typed errors from
    /// the coordinator come back as `Err`.
    pub async fn call(&self, body: Body) -> Result<Body, KvError> {
        let effect = write_effect(&body);
        let connection = self.connection().await?;
        let outcome = connection.call(body, self.timeout).await;
        reply_or_error(&self.addr, self.timeout, effect, outcome)
    }

    async fn connection(&self) -> Result<Arc<MuxConnection>, KvError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_broken()) {
            return Ok(connection.clone());
        }
        let connection = MuxConnection::connect(
            &self.addr,
            self.timeout.min(MAX_CONNECT_TIMEOUT),
            CLIENT_FRAME_LIMITS,
            |_, _| {},
        )
        .await
        .map_err(|reason| KvError::unavailable(format!("coordinator unreachable: {reason}")))?;
        if let Some(secret) = &self.secret {
            let outcome = connection.call(auth_request(secret), self.timeout).await;
            authenticated(&self.addr, outcome)?;
        }
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// A get of `key` at `level`.
pub fn get_request(key: u32, level: Consistency) -> Body {
    Body::Get(GetRequest {
        key: Some(key),
        consistency: level as i32,
    })
}

/// A put of `value` to `key` at `level`.
pub fn put_request(key: u32, value: &str, level: Consistency) -> Body {
    Body::Put(PutRequest {
        key: Some(key),
        value: value.to_string(),
        consistency: level as i32,
    })
}

/// A compare-and-set of `key` from `expected` to `value`.
pub fn cas_request(key: u32, expected: Option<&str>, value: &str) -> Body {
    Body::Cas(CasRequest {
        key: Some(key),
        expected: expected.map(str::to_string),
        value: value.to_string(),
    })
}

/// What a get's reply says the key holds.
pub fn found(reply: Body) -> Result<Option<Versioned>, KvError> {
    match reply {
        Body::GetReply(reply) => Ok(reply.found),
        other => Err(unexpected(other)),
    }
}

/// The timestamp a put's reply says the value was given.
pub fn put_stamp(reply: Body) -> Result<u64, KvError> {
    match reply {
        Body::PutReply(reply) => Ok(reply.timestamp_micros),
        other => Err(unexpected(other)),
    }
}

/// A compare-and-set's reply.
pub fn cas_outcome(reply: Body) -> Result<CasReply, KvError> {
    match reply {
        Body::CasReply(reply) => Ok(reply),
        other => Err(unexpected(other)),
    }
}

/// What an error adds about a request with no answer: a write may have
/// been applied all the same.
fn write_effect(body: &Body) -> &'static str {
    if matches!(body, Body::Put(_) | Body::Delete(_)) {
        "; the write may have been applied"
    } else {
        ""
    }
}

/// The reply to a request to the coordinator at `addr`, or the client's
/// error for what became of it.
pub(crate) fn reply_or_error(
    addr: &str,
    timeout: Duration,
    effect: &str,
    outcome: Result<Body, CallError>,
) -> Result<Body, KvError> {
    match outcome {
        Ok(reply) => Ok(reply),
        Err(CallError::Refused(error)) => Err(error),
        Err(CallError::Disconnected(reason)) => Err(KvError::timeout(format!(
            "lost the connection to the coordinator at {addr} before it answered ({reason}){effect}"
        ))),
        Err(CallError::TimedOut) => Err(KvError::timeout(format!(
            "the coordinator at {addr} did not answer within {} ms{effect}",
            timeout.as_millis()
        ))),
    }
}

/// The first request on a connection to a cluster that requires a secret.
pub(crate) fn auth_request(secret: &[u8]) -> Body {
    Body::Auth(AuthRequest {
        secret: secret.to_vec(),
        replica_id: None,
    })
}

/// Whether the coordinator at `addr` took the secret, from its answer to
/// `auth_request`: a coordinator that does not require one is refused too,
/// since anyone could have written to it.
pub(crate) fn authenticated(addr: &str, outcome: Result<Body, CallError>) -> Result<(), KvError> {
    match outcome {
        Ok(Body::AuthReply(reply)) if reply.secret_required => Ok(()),
        Ok(Body::AuthReply(_)) => Err(KvError::unauthenticated(format!(
            "the replica at {addr} does not require the secret you gave (was it started without --secret-file?): anyone could have written to it, so it is not used"
        ))),
        Ok(other) => Err(unexpected(other)),
        Err(CallError::Refused(error)) => Err(error),
        Err(error) => Err(KvError::unavailable(format!(
            "coordinator at {addr} did not complete authentication: {error:?}"
        ))),
    }
}

fn unexpected(body: Body) -> KvError {
    KvError::internal(format!(
        "the coordinator answered with an unexpected {}",
        body.kind_name()
    ))
}
