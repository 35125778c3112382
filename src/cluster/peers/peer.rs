//! One other replica as the rest of this one sees it: a request sent over
//! the connection its prober keeps open, and the hello (with the secret,
//! when there is one) that opens every new connection. A request never
//! opens a connection itself, so nothing queues behind a replica that is
//! down.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::{live, PeerLink, Role};
use super::PeerTiming;
use crate::cluster::membership::Membership;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::protocol::mux::{CallError, FrameLimits, MuxConnection};
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{AuthRequest, Body, Ping};
use crate::storage::clock_fence::ClockOffsets;

/// Peers send each other one value per request or reply.
const PEER_FRAME_LIMITS: FrameLimits = FrameLimits {
    request_bytes: DEFAULT_MAX_FRAME_BYTES,
    reply_bytes: DEFAULT_MAX_FRAME_BYTES,
};

/// One other replica: where it is, whether we think it is up, and the
/// connection we share for all requests to it.
pub struct Peer {
    pub(super) self_id: ReplicaId,
    /// The cluster's secret, proved on every connection before its hello.
    pub(super) secret: Option<Arc<[u8]>>,
    /// Checks the identity in the peer's pongs, and gives ours.
    pub(super) membership: Arc<Membership>,
    pub(super) link: Arc<PeerLink>,
    pub(super) timing: PeerTiming,
    /// Where the peer's clock offset, measured by each ping, is kept.
    pub(super) offsets: Arc<ClockOffsets>,
}

impl Peer {
    /// Whether this replica believes the peer is up.
    pub fn is_up(&self) -> bool {
        self.link.up.load(Ordering::SeqCst)
    }

    /// Sends a request over the shared connection and waits up to `timeout`
    /// for the reply. Fails at once if the peer is believed down or there
    /// is no live connection.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, CallError> {
        let started = Instant::now();
        let connection = loop {
            if !self.is_up() {
                return Err(CallError::Disconnected(format!(
                    "replica {} at {} is believed down",
                    self.link.id, self.link.addr
                )));
            }
            if let Some(connection) = live(&self.link.requests) {
                break connection;
            }
            // Up by its hello or its last probe, with no connection open.
            if started.elapsed() >= timeout.min(self.timing.connect_timeout) {
                let trouble = lock(&self.link.trouble)
                    .as_ref()
                    .map_or(String::new(), |reason| format!(" (last: {reason})"));
                return Err(CallError::Disconnected(format!(
                    "replica {} at {} is counted up but no connection to it opened in time{trouble}",
                    self.link.id, self.link.addr
                )));
            }
            rt::sleep(Duration::from_millis(1)).await;
        };
        let remaining = timeout.saturating_sub(started.elapsed());
        connection.call(body, remaining).await
    }

    /// The live connection in a role, opening a new one if there is none.
    pub(super) async fn ensure_connection(&self, role: Role) -> Result<Arc<MuxConnection>, String> {
        if let Some(connection) = live(self.link.slot(role)) {
            return Ok(connection);
        }
        let link = self.link.clone();
        let connection = MuxConnection::connect(
            &self.link.addr,
            self.timing.connect_timeout,
            PEER_FRAME_LIMITS,
            move |connection_id, reason| link.connection_broke(role, connection_id, reason),
        )
        .await?;
        if let Err(reason) = self.introduce(&connection).await {
            connection.close();
            return Err(reason);
        }
        *lock(self.link.slot(role)) = Some(connection.clone());
        Ok(connection)
    }

    /// Proves the secret (when there is one) and says hello on a new
    /// connection, and checks that the replica answering is the one the
    /// cluster file names, of the same cluster, requiring the same secret.
    async fn introduce(&self, connection: &MuxConnection) -> Result<(), String> {
        let timeout = self.timing.ping_timeout;
        if let Some(secret) = &self.secret {
            let auth = Body::Auth(AuthRequest {
                secret: secret.to_vec(),
                replica_id: Some(self.self_id),
            });
            match connection.call(auth, timeout).await {
                Ok(Body::AuthReply(reply)) if reply.secret_required => {}
                Ok(Body::AuthReply(_)) => {
                    return Err(format!(
                        "replica {} does not require the cluster's secret (started without --secret-file?): anyone could have written to it",
                        self.link.id
                    ))
                }
                Ok(other) => {
                    return Err(format!(
                        "answered authentication with a {}",
                        other.kind_name()
                    ))
                }
                Err(CallError::Refused(error)) => {
                    return Err(format!("refused our authentication: {error}"))
                }
                Err(CallError::TimedOut) => {
                    return Err("did not answer our authentication in time".to_string())
                }
                Err(CallError::Disconnected(reason)) => return Err(reason),
            }
        }
        match connection.call(self.ping(), timeout).await {
            Ok(Body::Pong(pong)) => self.membership.accept(self.link.id, pong.hello.as_ref()),
            Ok(other) => Err(format!("answered its hello with a {}", other.kind_name())),
            Err(CallError::Refused(error)) => Err(format!("refused our hello: {error}")),
            Err(CallError::TimedOut) => Err("did not answer its hello in time".to_string()),
            Err(CallError::Disconnected(reason)) => Err(reason),
        }
    }

    /// A ping, with this replica's hello.
    pub(super) fn ping(&self) -> Body {
        Body::Ping(Ping {
            sender_id: self.self_id,
            hello: Some(self.membership.hello_for(self.link.id)),
        })
    }
}
