//! The requesting side of a connection: many requests in flight at once on
//! one TCP stream, each reply matched to its request by request id.
//!
//! Every request keeps its own state (a one-shot reply channel) in a table
//! keyed by request id, so concurrent requests can never see each other's
//! replies. A writer task owns the socket's write half and coalesces queued
//! frames into as few writes as it can; a reader task owns the read half
//! and routes each reply. When the stream breaks, every waiting request is
//! failed at once rather than left to time out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::frame::encode_frame;
use crate::protocol::framed::{start_writer, FrameReader};
use crate::protocol::proto::{Body, Envelope};

/// How many encoded frames may wait for the writer before senders wait.
const OUTBOUND_QUEUE: usize = 1024;

/// How many bytes of encoded frames may wait for the writer before senders
/// wait (a frame always goes when nothing waits): a replica that stops
/// reading cannot make a coordinator hold every write meant for it.
const OUTBOUND_BYTES: usize = 16 * 1024 * 1024;

/// How often a sender waiting for room in the queue looks again.
const ROOM_RECHECK: Duration = Duration::from_millis(1);

/// Bytes a sender took in the outbound queue; given back when dropped
/// unless the frame was queued (the writer gives them back once written).
struct QueueRoom {
    queued: Arc<AtomicUsize>,
    bytes: usize,
}

impl QueueRoom {
    /// Waits until `bytes` fit in the queue (or it is empty), then takes them.
    async fn take(queued: &Arc<AtomicUsize>, bytes: usize) -> QueueRoom {
        loop {
            let now = queued.load(Ordering::SeqCst);
            let fits = now == 0 || now.saturating_add(bytes) <= OUTBOUND_BYTES;
            if fits
                && queued
                    .compare_exchange(now, now + bytes, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return QueueRoom {
                    queued: queued.clone(),
                    bytes,
                };
            }
            if !fits {
                rt::sleep(ROOM_RECHECK).await;
            }
        }
    }

    /// The frame is in the queue: the writer gives the bytes back.
    fn handed_to_writer(mut self) {
        self.bytes = 0;
    }
}

impl Drop for QueueRoom {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The connection broke (or was never made) before the reply came.
    Disconnected(String),
    /// No reply within the time allowed.
    TimedOut,
    /// The request was refused with a typed error: by the other side, or
    /// by this side for a request too large to send.
    Refused(KvError),
}

/// Replies not yet received, by request id, and whether the stream is gone.
#[derive(Default)]
struct InFlight {
    waiting: HashMap<u64, rt::Sender<Envelope>>,
    closed: Option<String>,
    /// An error the other side sent about a frame it could not read
    /// (request id 0), kept to explain the close that usually follows.
    refusal: Option<String>,
    /// Why this side closed the connection, when it did: what waiting
    /// requests are told, rather than that the stream ended.
    closed_here: Option<String>,
}

/// Frame size limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Requests larger than this are refused before they are sent.
    pub request_bytes: usize,
    /// A reply larger than this ends the connection.
    pub reply_bytes: usize,
}

/// Numbers connections, so a late report of a break can be told from one
/// about the connection in use now.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// One multiplexed connection to a replica.
pub struct MuxConnection {
    id: u64,
    addr: String,
    stream: rt::TcpStream,
    outbound: rt::Sender<Vec<u8>>,
    /// Bytes of frames queued for the writer.
    queued: Arc<AtomicUsize>,
    in_flight: Arc<Mutex<InFlight>>,
    next_request_id: AtomicU64,
    broken: Arc<AtomicBool>,
    limits: FrameLimits,
}

impl MuxConnection {
    /// Connects and starts the reader and writer tasks. `on_broken` runs
    /// once, with this connection's id and the reason, when the stream
    /// ends: the peer links use it to mark a replica down the moment its
    /// socket closes.
    pub async fn connect(
        addr: &str,
        connect_timeout: Duration,
        limits: FrameLimits,
        on_broken: impl FnOnce(u64, &str) + Send + 'static,
    ) -> Result<Arc<Self>, String> {
        let stream = match rt::timeout(connect_timeout, rt::TcpStream::connect(addr)).await {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
            None => {
                return Err(format!(
                    "cannot connect to {addr}: no answer within {connect_timeout:?}"
                ))
            }
        };
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let broken = Arc::new(AtomicBool::new(false));
        // When the writer stops, the connection is broken: the reader is
        // stopped too, which fails every waiting request.
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        let (outbound, _writer) = start_writer(
            stream.clone(),
            OUTBOUND_QUEUE,
            move |bytes| {
                written.fetch_sub(bytes, Ordering::SeqCst);
            },
            {
                let (stream, broken, queued) = (stream.clone(), broken.clone(), queued.clone());
                move |_, rest| {
                    broken.store(true, Ordering::Relaxed);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    rest.close();
                    while let Ok(frame) = rest.try_recv() {
                        queued.fetch_sub(frame.len(), Ordering::SeqCst);
                    }
                }
            },
        );
        let reader = route_replies(
            FrameReader::new(&stream, limits.reply_bytes, None),
            stream.clone(),
            in_flight.clone(),
            broken.clone(),
        );
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let addr_owned = addr.to_string();
        rt::spawn(async move {
            let reason = format!("connection to {addr_owned} ended: {}", reader.await);
            on_broken(id, &reason);
        });
        Ok(Arc::new(MuxConnection {
            id,
            addr: addr.to_string(),
            stream,
            outbound,
            queued,
            in_flight,
            next_request_id: AtomicU64::new(1),
            broken,
            limits,
        }))
    }

    /// This connection's number, as passed to `on_broken`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the stream has failed; a broken connection is replaced, not reused.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Sends one request and waits up to `timeout` for its reply. A typed
    /// error reply comes back as `CallError::Refused`.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, CallError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&Envelope {
            request_id,
            body: Some(body),
        });
        if frame.len() > self.limits.request_bytes {
            return Err(CallError::Refused(KvError::invalid(format!(
                "the request is {} bytes, over the frame limit of {} bytes",
                frame.len(),
                self.limits.request_bytes
            ))));
        }
        let (reply_to, reply) = rt::bounded(1);
        {
            let mut in_flight = lock(&self.in_flight);
            if let Some(reason) = &in_flight.closed {
                return Err(CallError::Disconnected(reason.clone()));
            }
            in_flight.waiting.insert(request_id, reply_to);
        }
        let sent_and_answered = async {
            let room = QueueRoom::take(&self.queued, frame.len()).await;
            self.outbound.send(frame).await.map_err(|_| {
                CallError::Disconnected(format!("connection to {} closed", self.addr))
            })?;
            room.handed_to_writer();
            reply.recv().await.map_err(|_| {
                let reason = lock(&self.in_flight).closed.clone();
                CallError::Disconnected(
                    reason.unwrap_or_else(|| format!("connection to {} closed", self.addr)),
                )
            })
        };
        let outcome = rt::timeout(timeout, sent_and_answered).await;
        match outcome {
            Some(Ok(envelope)) => reply_body(&self.addr, envelope.body),
            Some(Err(error)) => Err(error),
            None => {
                lock(&self.in_flight).waiting.remove(&request_id);
                Err(CallError::TimedOut)
            }
        }
    }
}

impl MuxConnection {
    /// Closes the connection, as `close` does, and tells every request
    /// waiting on it `reason` (a peer that missed its pings, say) instead of
    /// the stream's end, which this side caused.
    pub fn close_because(&self, reason: &str) {
        {
            let mut in_flight = lock(&self.in_flight);
            if in_flight.closed.is_none() && in_flight.closed_here.is_none() {
                in_flight.closed_here = Some(reason.to_string());
            }
        }
        self.close();
    }

    /// Closes the connection now, even while requests still hold it and
    /// even if a write is stuck on a full socket: shutting the socket down
    /// ends the writer and the reader, which fails every waiting request.
    pub fn close(&self) {
        self.broken.store(true, Ordering::Relaxed);
        self.outbound.close();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for MuxConnection {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a reply's body means to the request it answers: a typed error
/// reply is a refusal, a missing body a failure of `addr`.
pub fn reply_body(addr: &str, body: Option<Body>) -> Result<Body, CallError> {
    match body {
        Some(Body::Error(error)) => Err(CallError::Refused(error.into())),
        Some(body) => Ok(body),
        None => Err(CallError::Refused(KvError::internal(format!(
            "{addr} sent a reply with no body"
        )))),
    }
}

/// Routes each reply to the request waiting for it; fails every waiting
/// request when the stream ends, and returns why it ended.
async fn route_replies(
    mut reader: FrameReader,
    stream: rt::TcpStream,
    in_flight: Arc<Mutex<InFlight>>,
    broken: Arc<AtomicBool>,
) -> String {
    let reason = loop {
        let incoming = match reader.next().await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => break "the other side closed the connection".to_string(),
            Err(error) => break error.to_string(),
        };
        let envelope = match incoming.envelope {
            Ok(envelope) => envelope,
            Err(error) => break format!("undecodable reply: {error}"),
        };
        if envelope.request_id == 0 {
            if let Some(Body::Error(error)) = envelope.body {
                lock(&in_flight).refusal = Some(error.message);
            }
            continue;
        }
        let waiter = lock(&in_flight).waiting.remove(&envelope.request_id);
        if let Some(waiter) = waiter {
            let _ = waiter.try_send(envelope);
        }
        // A reply nobody waits for belongs to a request that timed out.
    };
    broken.store(true, Ordering::Relaxed);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let mut in_flight = lock(&in_flight);
    let reason = in_flight.closed_here.take().unwrap_or(reason);
    let reason = match in_flight.refusal.take() {
        Some(refusal) => format!("{reason}, after refusing a frame: {refusal}"),
        None => reason,
    };
    in_flight.closed = Some(reason.clone());
    // Dropping the senders wakes every waiter with a disconnect.
    in_flight.waiting.clear();
    reason
}
