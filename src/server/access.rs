//! Who a connection has shown itself to be, and so what it may ask.
//!
//! Without `--secret-file` every connection may send everything (the
//! replica cannot tell its peers from clients). With it, a connection must
//! first authenticate: as a client, which may send client requests, or as
//! a replica of the cluster file, which may also send the replica-only
//! messages (writes and reads of a replica's own copy, pings, digests).
//! Anything else is refused with UNAUTHENTICATED and nothing is applied.

use crate::cluster::ring::Ring;
use crate::ops::secret;
use crate::protocol::error::KvError;
use crate::protocol::proto::ReplicaId;
use crate::protocol::proto::{AuthReply, AuthRequest, Body};

/// What a connection has proved so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No secret is configured: everything is allowed.
    Open,
    /// A secret is required and has not been given yet.
    Anonymous,
    /// Authenticated as a client.
    Client,
    /// Authenticated as this replica of the cluster file.
    Replica(ReplicaId),
}

/// What to do with one request.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Carry it out.
    Proceed,
    /// It was an authentication: answer with this.
    Answer(Body),
    /// Refuse it with this error.
    Refuse(KvError),
}

impl Access {
    /// The state of a new connection.
    pub fn new(secret_required: bool) -> Access {
        if secret_required {
            Access::Anonymous
        } else {
            Access::Open
        }
    }

    /// Handles an authentication, or decides whether a request may proceed,
    /// on a connection to replica `self_id`.
    pub fn admit(
        &mut self,
        body: &Option<Body>,
        secret: Option<&[u8]>,
        ring: &Ring,
        self_id: ReplicaId,
    ) -> Admission {
        if let Some(Body::Auth(auth)) = body {
            return self.authenticate(auth, secret, ring, self_id);
        }
        let replica_only = matches!(
            body,
            Some(
                Body::ReplicaWrite(_)
                    | Body::ReplicaRead(_)
                    | Body::Ping(_)
                    | Body::Digest(_)
                    | Body::PaxosPrepare(_)
                    | Body::PaxosPropose(_)
            )
        );
        match (*self, body) {
            (Access::Open, _) => Admission::Proceed,
            (Access::Anonymous, _) => Admission::Refuse(KvError::unauthenticated(
                "this replica requires authentication: send an auth request with the cluster's secret first (--secret-file)",
            )),
            (Access::Client, _) if replica_only => Admission::Refuse(KvError::unauthenticated(
                "only a connection authenticated as a replica of the cluster may send this",
            )),
            (Access::Replica(id), Some(Body::Ping(ping))) if ping.sender_id != id => {
                Admission::Refuse(KvError::unauthenticated(format!(
                    "authenticated as replica {id}, but the ping says replica {}",
                    ping.sender_id
                )))
            }
            (Access::Replica(id), Some(Body::Digest(digest))) if digest.sender_id != id => {
                Admission::Refuse(KvError::unauthenticated(format!(
                    "authenticated as replica {id}, but the digest says replica {}",
                    digest.sender_id
                )))
            }
            (Access::Client | Access::Replica(_), _) => Admission::Proceed,
        }
    }

    fn authenticate(
        &mut self,
        auth: &AuthRequest,
        secret: Option<&[u8]>,
        ring: &Ring,
        self_id: ReplicaId,
    ) -> Admission {
        let Some(secret) = secret else {
            // Nothing to prove: accepted, and everything stays allowed. The
            // reply says so: a peer or client that holds a secret refuses
            // to count on a replica anyone could have written to.
            return Admission::Answer(Body::AuthReply(AuthReply {
                secret_required: false,
            }));
        };
        if !secret::matches(secret, &auth.secret) {
            return Admission::Refuse(KvError::unauthenticated(
                "wrong secret: the connection is not authenticated",
            ));
        }
        *self = match auth.replica_id {
            None => Access::Client,
            Some(id) if id == self_id => {
                return Admission::Refuse(KvError::unauthenticated(format!(
                    "a connection cannot authenticate as replica {id}, the replica it reached"
                )))
            }
            Some(id) if ring.member(id).is_some() => Access::Replica(id),
            Some(id) => {
                return Admission::Refuse(KvError::unauthenticated(format!(
                    "replica {id} is not in this replica's cluster file"
                )))
            }
        };
        Admission::Answer(Body::AuthReply(AuthReply {
            secret_required: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorKind;
    use crate::protocol::proto::{GetRequest, Ping, ReplicaWrite};

    fn ring() -> Ring {
        Ring::parse("0 127.0.0.1:1\n1 127.0.0.1:2\n2 127.0.0.1:3\n").expect("ring")
    }

    fn auth(secret: &[u8], replica_id: Option<u32>) -> Option<Body> {
        Some(Body::Auth(AuthRequest {
            secret: secret.to_vec(),
            replica_id,
        }))
    }

    fn refused_kind(admission: Admission) -> Option<ErrorKind> {
        match admission {
            Admission::Refuse(error) => Some(error.kind),
            _ => None,
        }
    }

    #[test]
    fn a_secret_gates_every_request_and_replica_messages_need_a_replica() {
        let ring = ring();
        let secret = Some(&b"s"[..]);
        let get = Some(Body::Get(GetRequest::default()));
        let write = Some(Body::ReplicaWrite(ReplicaWrite::default()));
        let mut access = Access::new(true);
        assert_eq!(
            refused_kind(access.admit(&get, secret, &ring, 0)),
            Some(ErrorKind::Unauthenticated)
        );
        assert_eq!(
            refused_kind(access.admit(&auth(b"wrong", None), secret, &ring, 0)),
            Some(ErrorKind::Unauthenticated)
        );
        assert!(matches!(
            access.admit(&auth(b"s", None), secret, &ring, 0),
            Admission::Answer(_)
        ));
        assert_eq!(access.admit(&get, secret, &ring, 0), Admission::Proceed);
        assert_eq!(
            refused_kind(access.admit(&write, secret, &ring, 0)),
            Some(ErrorKind::Unauthenticated)
        );
        let mut peer = Access::new(true);
        assert_eq!(
            refused_kind(peer.admit(&auth(b"s", Some(7)), secret, &ring, 0)),
            Some(ErrorKind::Unauthenticated)
        );
        assert!(matches!(
            peer.admit(&auth(b"s", Some(2)), secret, &ring, 0),
            Admission::Answer(_)
        ));
        assert_eq!(peer.admit(&write, secret, &ring, 0), Admission::Proceed);
        let impostor = Some(Body::Ping(Ping {
            sender_id: 1,
            hello: None,
        }));
        assert_eq!(
            refused_kind(peer.admit(&impostor, secret, &ring, 0)),
            Some(ErrorKind::Unauthenticated)
        );
        let mut itself = Access::new(true);
        assert_eq!(
            refused_kind(itself.admit(&auth(b"s", Some(0)), secret, &ring, 0)),
            Some(ErrorKind::Unauthenticated)
        );
        let stranger_digest = Some(Body::Digest(crate::protocol::proto::DigestRequest {
            sender_id: 1,
            entries: Vec::new(),
        }));
        assert_eq!(
            refused_kind(peer.admit(&stranger_digest, secret, &ring, 0)),
            Some(ErrorKind::Unauthenticated)
        );
        let mut open = Access::new(false);
        assert_eq!(open.admit(&write, None, &ring, 0), Admission::Proceed);
    }
}
