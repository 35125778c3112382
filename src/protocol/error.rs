//! The typed errors a request can end in, shared by the server, the client
//! library and the console. They map one to one onto `ErrorKind` in
//! `schema/kv.proto`, so a failure keeps its kind across the network.

use std::fmt;

use crate::protocol::proto;

/// What kind of failure a request met; callers match on it to decide
/// whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong; the same request fails the same way.
    Invalid,
    /// Too few replicas were up to try; nothing was written.
    Unavailable,
    /// Tried, but too few replicas acknowledged in time; a put may have
    /// been applied on some replicas.
    Timeout,
    /// A fault inside a replica, such as a failed disk.
    Internal,
    /// The connection has not authenticated (or not as a replica) with a
    /// replica that requires it; nothing was done.
    Unauthenticated,
}

/// A failed request: its kind and a message for the person reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvError {
    /// Decides what the caller can do about it.
    pub kind: ErrorKind,
    /// Says what went wrong, naming the key, replica or limit involved.
    pub message: String,
}

impl KvError {
    /// A bad request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// Too few live replicas to try.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Not enough acknowledgements in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// A fault inside a replica.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Not authenticated for this request.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl ErrorKind {
    /// The word the console prints after `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "INVALID",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Internal => "INTERNAL",
            ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for KvError {}

impl From<KvError> for proto::Error {
    fn from(error: KvError) -> Self {
        let kind = match error.kind {
            ErrorKind::Invalid => proto::ErrorKind::Invalid,
            ErrorKind::Unavailable => proto::ErrorKind::Unavailable,
            ErrorKind::Timeout => proto::ErrorKind::Timeout,
            ErrorKind::Internal => proto::ErrorKind::Internal,
            ErrorKind::Unauthenticated => proto::ErrorKind::Unauthenticated,
        };
        proto::Error {
            kind: kind as i32,
            message: error.message,
        }
    }
}

impl From<proto::Error> for KvError {
    fn from(error: proto::Error) -> Self {
        let kind = match proto::ErrorKind::try_from(error.kind) {
            Ok(proto::ErrorKind::Invalid) => ErrorKind::Invalid,
            Ok(proto::ErrorKind::Unavailable) => ErrorKind::Unavailable,
            Ok(proto::ErrorKind::Timeout) => ErrorKind::Timeout,
            Ok(proto::ErrorKind::Unauthenticated) => ErrorKind::Unauthenticated,
            // An error kind this build does not know is still an error.
            Ok(proto::ErrorKind::Internal | proto::ErrorKind::Unspecified) | Err(_) => {
                ErrorKind::Internal
            }
        };
        KvError::new(kind, error.message)
    }
}
