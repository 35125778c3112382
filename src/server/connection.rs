//! One accepted connection: read frames, answer each request (in the
//! connection's task when the answer needs no waiting, otherwise in a task
//! of its own), write the replies back in whatever order they finish.
//!
//! Bounded on every side: a frame over the limit is refused before its body
//! is read and the connection closed; at most `max_requests_per_connection`
//! requests run at once (the reader waits for a free slot, which pushes back
//! on the sender through TCP); replies wait in a bounded queue. A frame that
//! is not a valid envelope gets an INVALID error and the connection goes on,
//! since the length prefix kept the stream in step.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::ops::budget::{Held, MemoryBudget};
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::frame::BodyRoom;
use crate::protocol::frame::{encode_frame, FrameError};
use crate::protocol::framed::{start_writer, FrameReader, WriterEnd, WRITE_STALL_LIMIT};
use crate::protocol::proto::{AuthRequest, Body, Envelope, ReplicaId};
use crate::server::access::{Access, Admission};
use crate::server::slots::{Slot, PROBATION};
use crate::server::Node;

/// Replies that may wait for the writer before request tasks wait.
const REPLY_QUEUE: usize = 256;

/// How long to keep reading (and discarding) after refusing a frame.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// Serves one connection until the other side closes it or breaks the
/// protocol, the replica stops (requests in progress finish first), or, on
/// probation, it fails to show within `PROBATION` that it is a replica.
pub async fn serve_connection(
    node: Arc<Node>,
    stream: rt::TcpStream,
    remote: SocketAddr,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let held = Arc::new(Held::default());
    // A frame's length reserved before its body is read; moved to `held`
    // once the frame is whole, and given back if the connection ends first.
    let reserved = Held::default();
    let (sender, writer) = start_writer(
        stream.clone(),
        REPLY_QUEUE,
        {
            let (budget, held) = (node.budget.clone(), held.clone());
            move |bytes| budget.release(&held, bytes)
        },
        {
            let (stream, budget, held) = (stream.clone(), node.budget.clone(), held.clone());
            move |end, queued| writer_ended(end, &stream, remote, &queued, &budget, &held)
        },
    );
    let replies = ReplyQueue {
        sender,
        budget: node.budget.clone(),
        held: held.clone(),
    };
    // A slot per request in progress: a request takes one before it starts
    // and gives it back when its reply is queued.
    let (slots, finished) = rt::bounded::<()>(node.max_requests_per_connection);
    // Each request in progress holds a clone of `alive`; once the stop
    // comes the connection drops its own, and `drained` ends when the last
    // request does: no polling for the end.
    let (alive, drained) = rt::bounded::<()>(1);
    let mut alive = Some(alive);
    let mut reader = FrameReader::new(&stream, node.max_frame_bytes, Some(node.frame_read_timeout));
    let mut refused_claim = None;
    let mut gate = Gate {
        access: Access::new(node.secret.is_some()),
        peer_id: None,
        slot,
    };
    // A connection on probation has this long, all told, to show it is a
    // replica.
    let probation_ends = std::time::Instant::now() + PROBATION;
    // One wait for the stop, kept across frames: a new one per frame would
    // register (and drop) a listener for every request.
    let mut stopping = std::pin::pin!(node.shutdown.requested());
    loop {
        node.budget
            .room_for(&held, gate.peer_id.is_some(), &remote)
            .await;
        let room = ConnectionRoom {
            budget: &node.budget,
            reserved: &reserved,
            from_peer: gate.peer_id.is_some(),
            remote: &remote,
        };
        let read = std::pin::pin!(reader.next_within(&room));
        let next = next_frame(&mut alive, &drained, read, stopping.as_mut());
        let next = if gate.slot.on_probation() {
            let left = probation_ends.saturating_duration_since(std::time::Instant::now());
            rt::timeout(left, next).await.unwrap_or_else(|| {
                crate::warn!(
                    "closing connection from {remote}: every client slot is taken and it did not show it is a replica within {} ms",
                    PROBATION.as_millis()
                );
                None
            })
        } else {
            next.await
        };
        let Some(read) = next else {
            // Stopping with nothing in progress here, or a probation that
            // ran out: close.
            break;
        };
        let incoming = match read {
            Ok(Some(incoming)) => incoming,
            Ok(None) => break,
            Err(error @ FrameError::TooLong { claimed, .. }) => {
                crate::warn!("closing connection from {remote}: {error}");
                let refusal = error_frame(0, KvError::invalid(error.to_string()));
                let _ = replies.send(refusal).await;
                refused_claim = Some(claimed);
                break;
            }
            Err(error) => {
                crate::warn!("connection from {remote} ended badly: {error}");
                break;
            }
        };
        // Held until the request is done (or refused just below): the
        // frame, or the room reserved for it before its body was read
        // (for a client's large frame, what its request may grow into).
        let request_bytes = incoming.bytes.max(incoming.reserved);
        node.budget.release(&reserved, incoming.reserved);
        node.budget.charge(&held, request_bytes);
        let charged = Charge {
            budget: node.budget.clone(),
            held: held.clone(),
            bytes: request_bytes,
        };
        let envelope = match checked_request(incoming.envelope) {
            Ok(envelope) => envelope,
            Err(error) => {
                crate::warn!(
                    "refused a frame of {} bytes from {remote}: {error}",
                    incoming.bytes
                );
                if replies.send(error_frame(0, error)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        match gate.admit(&node, &envelope, &remote) {
            Verdict::Proceed => {}
            Verdict::Reply { body, close } => {
                let sent = replies.answer(envelope.request_id, body).await;
                if sent.is_err() || close {
                    break;
                }
                continue;
            }
        }
        if slots.send(()).await.is_err() {
            break;
        }
        let (node, replies, finished) = (node.clone(), replies.clone(), finished.clone());
        let in_progress = alive.clone();
        let request = Box::pin(async move {
            let body = node.answer(envelope.body).await;
            drop(charged);
            let _ = replies.answer(envelope.request_id, body).await;
            let _ = finished.recv().await;
            drop(in_progress);
        });
        // Many requests need no waiting at all (a read of this replica's
        // own copy, a ping): they are answered here, without a task.
        if let Some(waiting) = rt::run_until_it_waits(request).await {
            rt::spawn(waiting);
        }
    }
    // The writer ends once every request task has queued its reply and
    // dropped its handle on the queue.
    drop(replies);
    writer.await;
    node.budget.release(&reserved, reserved.bytes());
    if let Some(claimed) = refused_claim {
        // Read what the peer is still sending before closing, so that the
        // refusal reaches it.
        reader.discard(claimed, REFUSAL_LINGER).await;
    }
}

/// A connection's share of the memory budget, asked for room before the
/// body of a frame that did not arrive whole is read.
struct ConnectionRoom<'a> {
    budget: &'a MemoryBudget,
    reserved: &'a Held,
    from_peer: bool,
    remote: &'a SocketAddr,
}

/// What a client's large frame may grow into while its request runs: a
/// put holds its value, and the coordinator charges two copies for each of
/// the key's replicas (the copy sent and its frame or log record).
const CLIENT_FRAME_GROWTH: usize = 1 + 2 * crate::cluster::ring::REPLICATION_FACTOR;

impl BodyRoom for ConnectionRoom<'_> {
    async fn reserve(&self, bytes: usize) -> usize {
        let room = if self.from_peer {
            bytes
        } else {
            bytes.saturating_mul(CLIENT_FRAME_GROWTH)
        };
        self.budget
            .reserve(self.reserved, bytes, room, self.from_peer, self.remote)
            .await;
        room
    }
}

/// The next frame's read, or `None` once the replica is stopping and no
/// request of this connection is in progress: until then, requests that
/// arrive are still read (and refused), so no client waits on a silent
/// socket. The read future is polled across the stop, never dropped
/// half-way through a frame while the connection goes on. At the stop the
/// connection's own `alive` is dropped, so `drained` ends with the last
/// request in progress (each holds a clone).
async fn next_frame<F: Future + Unpin>(
    alive: &mut Option<rt::Sender<()>>,
    drained: &rt::Receiver<()>,
    mut read: F,
    mut stopping: Pin<&mut impl Future<Output = ()>>,
) -> Option<F::Output> {
    if alive.is_some() {
        let outcome = rt::first_of(async { Some((&mut read).await) }, async {
            stopping.as_mut().await;
            None
        })
        .await;
        if outcome.is_some() {
            return outcome;
        }
        *alive = None;
    }
    rt::first_of(async { Some((&mut read).await) }, async {
        let _ = drained.recv().await;
        None
    })
    .await
}

/// What a connection has shown so far, and so what it may send: its
/// authentication, whether its hello made it a peer's, and its slot.
struct Gate {
    access: Access,
    /// The peer whose hello this connection carried, once accepted.
    peer_id: Option<ReplicaId>,
    slot: Slot,
}

/// Whether a request goes on to be carried out.
enum Verdict {
    /// Carry it out.
    Proceed,
    /// Answer with this instead (an authentication's reply, or a refusal),
    /// and close the connection after it if `close`.
    Reply { body: Body, close: bool },
}

impl Gate {
    /// Decides on one request: a client on probation is refused (and
    /// closed), an authentication is answered, a request the connection
    /// may not send is refused, a peer's hello is checked, and nothing new
    /// starts once the replica is stopping.
    fn admit(&mut self, node: &Node, envelope: &Envelope, remote: &SocketAddr) -> Verdict {
        let refuse = |error: KvError, close| Verdict::Reply {
            body: Body::Error(error.into()),
            close,
        };
        let shows_a_replica = matches!(
            &envelope.body,
            Some(Body::Ping(_))
                | Some(Body::Auth(AuthRequest {
                    replica_id: Some(_),
                    ..
                }))
        );
        if self.slot.on_probation() && !shows_a_replica {
            crate::warn!(
                "refusing a client connection from {remote}: already serving {} client connections",
                node.max_connections
            );
            return refuse(
                KvError::unavailable(format!(
                    "replica {} already serves {} client connections (--max-connections); try again later or another coordinator",
                    node.self_id, node.max_connections
                )),
                true,
            );
        }
        match self.access.admit(
            &envelope.body,
            node.secret.as_deref(),
            &node.ring,
            node.self_id,
        ) {
            Admission::Proceed => {}
            Admission::Answer(body) => return Verdict::Reply { body, close: false },
            Admission::Refuse(error) => {
                crate::warn!(
                    "refused a {} from {remote}: {}",
                    kind_of(envelope),
                    error.message
                );
                // On probation, a refused frame ends the connection: it
                // cannot hold a peer slot by failing to authenticate.
                return refuse(error, self.slot.on_probation());
            }
        }
        if let Err(reason) = self.heard(node, envelope) {
            return refuse(
                KvError::invalid(format!(
                    "replica {} refuses this hello: {reason}",
                    node.self_id
                )),
                false,
            );
        }
        if node.shutdown.is_requested() {
            return refuse(
                KvError::unavailable(format!(
                    "replica {} is shutting down; nothing was done (another coordinator can take the request)",
                    node.self_id
                )),
                false,
            );
        }
        Verdict::Proceed
    }

    /// A peer's first frame is its hello ping: once its identity is
    /// accepted, anything on this connection shows that peer is alive.
    /// Every ping carries the peer's hello, so each is checked again.
    fn heard(&mut self, node: &Node, envelope: &Envelope) -> Result<(), String> {
        match (&envelope.body, self.peer_id) {
            (Some(Body::Ping(ping)), known) => {
                node.peers.ping_from(ping, known.is_none())?;
                if known.is_none() {
                    self.peer_id = Some(ping.sender_id);
                    self.slot.become_peer();
                }
                Ok(())
            }
            (_, Some(id)) => {
                node.peers.heard_from(id, false);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A connection's queue of reply frames, each charged to the memory budget
/// until the writer has written it.
#[derive(Clone)]
struct ReplyQueue {
    sender: rt::Sender<Vec<u8>>,
    budget: Arc<MemoryBudget>,
    held: Arc<Held>,
}

impl ReplyQueue {
    /// Queues the reply to one request.
    async fn answer(&self, request_id: u64, body: Body) -> Result<(), ()> {
        self.send(reply_frame(request_id, body)).await
    }

    /// Queues a frame; fails once the writer has stopped.
    async fn send(&self, frame: Vec<u8>) -> Result<(), ()> {
        let bytes = frame.len();
        self.budget.charge(&self.held, bytes);
        self.sender.send(frame).await.map_err(|_| {
            self.budget.release(&self.held, bytes);
        })
    }
}

/// Bytes of a request charged to the budget, given back when dropped: when
/// its reply is queued, or at once if it is refused.
struct Charge {
    budget: Arc<MemoryBudget>,
    held: Arc<Held>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(&self.held, self.bytes);
    }
}

/// After the reply writer stopped: says why if the client stopped reading,
/// shuts the socket (both ways after a failure, so the reader stops too),
/// and gives back the bytes of replies that will never be written.
fn writer_ended(
    end: WriterEnd,
    stream: &rt::TcpStream,
    remote: SocketAddr,
    queued: &rt::Receiver<Vec<u8>>,
    budget: &MemoryBudget,
    held: &Held,
) {
    if end == WriterEnd::Stalled {
        crate::warn!(
            "closing connection from {remote}: it has not read its replies for {} s",
            WRITE_STALL_LIMIT.as_secs()
        );
    }
    let how = if end == WriterEnd::QueueClosed {
        std::net::Shutdown::Write
    } else {
        std::net::Shutdown::Both
    };
    let _ = stream.shutdown(how);
    // Request tasks blocked on a full queue can then finish; what is still
    // queued is dropped unwritten, and its bytes given back.
    queued.close();
    while let Ok(frame) = queued.try_recv() {
        budget.release(held, frame.len());
    }
}

fn kind_of(envelope: &Envelope) -> &'static str {
    envelope
        .body
        .as_ref()
        .map_or("request without a body", Body::kind_name)
}

/// A decoded request, refusing id 0: a reply with id 0 could not be told
/// apart from an error about an unreadable frame.
fn checked_request(decoded: Result<Envelope, prost::DecodeError>) -> Result<Envelope, KvError> {
    let envelope =
        decoded.map_err(|e| KvError::invalid(format!("frame is not a valid Envelope: {e}")))?;
    if envelope.request_id == 0 {
        return Err(KvError::invalid(
            "request id 0 is reserved for errors about unreadable frames",
        ));
    }
    Ok(envelope)
}

fn reply_frame(request_id: u64, body: Body) -> Vec<u8> {
    encode_frame(&Envelope {
        request_id,
        body: Some(body),
    })
}

fn error_frame(request_id: u64, error: KvError) -> Vec<u8> {
    reply_frame(request_id, Body::Error(error.into()))
}
