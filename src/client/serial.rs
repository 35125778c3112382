//! A connection that carries one request at a time, in the task that asks:
//! it writes the request, then reads the reply, with no reader or writer
//! task and no channel between them.
//!
//! Why: `ringkv bench` runs closed loops (one request, its answer, the
//! next) on the same two cores as the replicas it measures, and the
//! multiplexed `Client` costs a writer task, a reader task and a channel per
//! request. Driven in line like this, as redis-benchmark drives Redis, a
//! request costs the load generator one `send` and one `recv`. Everything
//! else (many requests at once, from many tasks) is `Client`'s job.
//!
//! Errors are the ones `Client` gives, from the same functions; a request
//! that fails or times out closes the connection, and the next request
//! opens a new one.

use std::time::Duration;

use crate::client::{
    auth_request, authenticated, reply_or_error, write_effect, CLIENT_FRAME_LIMITS,
    MAX_CONNECT_TIMEOUT,
};
use crate::ops::rt::{self, WriteExt};
use crate::protocol::error::KvError;
use crate::protocol::frame::encode_frame;
use crate::protocol::framed::FrameReader;
use crate::protocol::mux::{reply_body, CallError};
use crate::protocol::proto::{Body, Envelope};

/// One coordinator, one request at a time.
pub struct Serial {
    addr: String,
    timeout: Duration,
    secret: Option<Vec<u8>>,
    open: Option<Open>,
    next_request_id: u64,
}

/// The connection while it works.
struct Open {
    stream: rt::TcpStream,
    replies: FrameReader,
}

impl Serial {
    /// A connection to the coordinator at `addr`, opened on first use (and
    /// again after a failure); `secret` is proved on each opening.
    pub fn new(addr: impl Into<String>, secret: Option<Vec<u8>>, timeout: Duration) -> Serial {
        Serial {
            addr: addr.into(),
            timeout,
            secret,
            open: None,
            next_request_id: 1,
        }
    }

    /// Sends one request and waits for its reply; typed errors from the
    /// coordinator come back as `Err`, as from `Client::call`. A request
    /// over the frame limit is refused before anything is sent (or any
    /// connection opened).
    pub async fn call(&mut self, body: Body) -> Result<Body, KvError> {
        let effect = write_effect(&body);
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let frame = encode_frame(&Envelope {
            request_id,
            body: Some(body),
        });
        if frame.len() > CLIENT_FRAME_LIMITS.request_bytes {
            return Err(KvError::invalid(format!(
                "the request is {} bytes, over the frame limit of {} bytes",
                frame.len(),
                CLIENT_FRAME_LIMITS.request_bytes
            )));
        }
        let open = match self.open.as_mut() {
            Some(open) => open,
            None => self.open.insert(self.connect().await?),
        };
        let outcome = open
            .exchange(&self.addr, request_id, &frame, self.timeout)
            .await;
        // A connection that failed or timed out is dropped: a reply still
        // on its way must not meet the next request.
        if matches!(
            outcome,
            Err(CallError::Disconnected(_) | CallError::TimedOut)
        ) {
            self.open = None;
        }
        reply_or_error(&self.addr, self.timeout, effect, outcome)
    }

    /// Opens the connection and proves the secret, if there is one.
    async fn connect(&self) -> Result<Open, KvError> {
        let unreachable = |reason: String| {
            KvError::unavailable(format!(
                "coordinator unreachable: cannot connect to {}: {reason}",
                self.addr
            ))
        };
        let stream = rt::timeout(
            self.timeout.min(MAX_CONNECT_TIMEOUT),
            rt::TcpStream::connect(&self.addr),
        )
        .await
        .ok_or_else(|| unreachable("no answer in time".to_string()))?
        .map_err(|e| unreachable(e.to_string()))?;
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let replies = FrameReader::new(&stream, CLIENT_FRAME_LIMITS.reply_bytes, None);
        let mut open = Open { stream, replies };
        if let Some(secret) = &self.secret {
            let frame = encode_frame(&Envelope {
                // Ids of requests start at 1: 0 is the server's for a
                // frame it could not read.
                request_id: u64::MAX,
                body: Some(auth_request(secret)),
            });
            let outcome = open
                .exchange(&self.addr, u64::MAX, &frame, self.timeout)
                .await;
            authenticated(&self.addr, outcome)?;
        }
        Ok(open)
    }
}

impl Open {
    /// Writes `frame` (the request numbered `request_id`) and reads frames
    /// until its reply, for at most `timeout`.
    async fn exchange(
        &mut self,
        addr: &str,
        request_id: u64,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<Body, CallError> {
        rt::timeout(timeout, self.send_and_read(addr, request_id, frame))
            .await
            .unwrap_or(Err(CallError::TimedOut))
    }

    async fn send_and_read(
        &mut self,
        addr: &str,
        request_id: u64,
        frame: &[u8],
    ) -> Result<Body, CallError> {
        self.stream
            .write_all(frame)
            .await
            .map_err(|e| CallError::Disconnected(format!("cannot send the request: {e}")))?;
        loop {
            let incoming = match self.replies.next().await {
                Ok(Some(incoming)) => incoming,
                Ok(None) => {
                    return Err(CallError::Disconnected(
                        "the other side closed the connection".to_string(),
                    ))
                }
                Err(error) => return Err(CallError::Disconnected(error.to_string())),
            };
            let envelope = incoming
                .envelope
                .map_err(|e| CallError::Disconnected(format!("undecodable reply: {e}")))?;
            if envelope.request_id == request_id {
                return reply_body(addr, envelope.body);
            }
            // Request id 0: the other side could not read a frame of ours,
            // and closes the connection after saying why.
            if let (0, Some(Body::Error(error))) = (envelope.request_id, envelope.body) {
                return Err(CallError::Disconnected(format!(
                    "the coordinator refused a frame: {}",
                    error.message
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorKind;
    use crate::protocol::proto::PutRequest;

    /// A put whose frame is exactly `len` bytes.
    fn put_of_frame_len(len: usize) -> Body {
        let put = |value_len: usize| {
            Body::Put(PutRequest {
                key: Some(1),
                value: "x".repeat(value_len),
                consistency: 0,
            })
        };
        let frame_len = |body: Body| {
            encode_frame(&Envelope {
                request_id: 1,
                body: Some(body),
            })
            .len()
        };
        let mut value_len = len - 32;
        while frame_len(put(value_len)) < len {
            value_len += 1;
        }
        assert_eq!(
            frame_len(put(value_len)),
            len,
            "no put encodes to {len} bytes"
        );
        put(value_len)
    }

    #[test]
    fn a_request_over_the_frame_limit_is_refused_before_connecting() {
        // Port 1 refuses connections: a request that gets as far as
        // connecting fails UNAVAILABLE, one refused first INVALID.
        let limit = CLIENT_FRAME_LIMITS.request_bytes;
        let mut serial = Serial::new("127.0.0.1:1", None, Duration::from_secs(5));
        let over = rt::block_on(serial.call(put_of_frame_len(limit + 1))).expect_err("over");
        assert_eq!(over.kind, ErrorKind::Invalid, "{over:?}");
        assert!(over.message.contains("frame limit"), "{over:?}");
        let mut serial = Serial::new("127.0.0.1:1", None, Duration::from_secs(5));
        let at = rt::block_on(serial.call(put_of_frame_len(limit))).expect_err("no server");
        assert_eq!(at.kind, ErrorKind::Unavailable, "{at:?}");
    }
}
