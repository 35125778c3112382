//! The client library the console, `ringkv bench` and the tests share: typed get, put, inspect and status calls against one coordinator.
//!
//! One multiplexed connection, opened on first use and reopened after it
//! breaks, so a client survives its coordinator restarting. Every failure is
//! a `KvError` with the same kinds the replicas use on the wire.

pub mod console;
pub mod editor;

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
const CLIENT_FRAME_LIMITS: FrameLimits = FrameLimits {
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
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
        let request = Body::Get(GetRequest {
            key: Some(key),
            consistency: level as i32,
        });
        match self.call(request).await? {
            Body::GetReply(reply) => Ok(reply.found),
            other => Err(unexpected(other)),
        }
    }

    /// Writes the value at `level`; returns the timestamp it was given.
    pub async fn put(&self, key: u32, value: &str, level: Consistency) -> Result<u64, KvError> {
        let request = Body::Put(PutRequest {
            key: Some(key),
            value: value.to_string(),
            consistency: level as i32,
        });
        match self.call(request).await? {
            Body::PutReply(reply) => Ok(reply.timestamp_micros),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `value` only if the key holds `expected` (None: only if it
    /// holds no value). A TIMEOUT means the outcome is unknown.
    pub async fn cas(
        &self,
        key: u32,
        expected: Option<&str>,
        value: &str,
    ) -> Result<CasReply, KvError> {
        let request = Body::Cas(CasRequest {
            key: Some(key),
            expected: expected.map(str::to_string),
            value: value.to_string(),
        });
        match self.call(request).await? {
            Body::CasReply(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
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
        let effect = if matches!(body, Body::Put(_) | Body::Delete(_)) {
            "; the write may have been applied"
        } else {
            ""
        };
        let connection = self.connection().await?;
        match connection.call(body, self.timeout).await {
            Ok(reply) => Ok(reply),
            Err(CallError::Refused(error)) => Err(error),
            Err(CallError::Disconnected(reason)) => Err(KvError::timeout(format!(
                "lost the connection to the coordinator at {} before it answered ({reason}){effect}",
                self.addr
            ))),
            Err(CallError::TimedOut) => Err(KvError::timeout(format!(
                "the coordinator at {} did not answer within {} ms{effect}",
                self.addr,
                self.timeout.as_millis()
            ))),
        }
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
            let auth = Body::Auth(AuthRequest {
                secret: secret.clone(),
                replica_id: None,
            });
            match connection.call(auth, self.timeout).await {
                Ok(Body::AuthReply(reply)) if reply.secret_required => {}
                Ok(Body::AuthReply(_)) => {
                    return Err(KvError::unauthenticated(format!(
                        "the replica at {} does not require the secret you gave (was it started without --secret-file?): anyone could have written to it, so it is not used",
                        self.addr
                    )))
                }
                Ok(other) => return Err(unexpected(other)),
                Err(CallError::Refused(error)) => return Err(error),
                Err(error) => {
                    return Err(KvError::unavailable(format!(
                        "coordinator at {} did not complete authentication: {error:?}",
                        self.addr
                    )))
                }
            }
        }
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

fn unexpected(body: Body) -> KvError {
    KvError::internal(format!(
        "the coordinator answered with an unexpected {}",
        body.kind_name()
    ))
}
