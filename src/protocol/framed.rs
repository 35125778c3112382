//! The two halves of a framed connection, which both sides of the protocol
//! wire to their socket: a replica serving a client or a peer
//! (`server/connection.rs`), and the requesting side, a client or a peer
//! link (`mux.rs`).
//!
//! The halves are these. The reading half is a buffered reader that
//! yields one decoded envelope at a time: a frame that arrived whole is
//! taken from the buffer, and one that started but stalls is given up after
//! the partial-frame timeout. The writing half is a task that owns the
//! socket's writes: senders queue encoded frames, and the task writes
//! whatever is queued together, with one flush, so a burst of replies or
//! requests costs one `send`. A write that makes no progress for
//! [`WRITE_STALL_LIMIT`] ends the connection, so a reader that stopped
//! reading cannot hold queued frames (and their memory) forever.

use std::time::Duration;

use prost::Message;

use crate::ops::rt::{self, ReadExt, WriteExt};
use crate::protocol::frame::{read_frame_as, AnyRoom, BodyRoom, FrameError};
use crate::protocol::proto::Envelope;

/// How long one write may make no progress before the connection is given
/// up: the other side has stopped reading.
pub const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);

/// One frame read from the connection.
pub struct Incoming {
    /// The frame's size, for memory accounting.
    pub bytes: usize,
    /// How many of those bytes were reserved in the reader's `BodyRoom`
    /// before its body was read (0 for a frame that arrived whole).
    pub reserved: usize,
    /// The frame decoded as an envelope, or why it is not one. A frame that
    /// does not decode leaves the stream in step (its length was read), so
    /// the connection can go on.
    pub envelope: Result<Envelope, prost::DecodeError>,
}

/// The reading half of a framed connection.
pub struct FrameReader {
    reader: rt::BufReader<rt::TcpStream>,
    max_frame_bytes: usize,
    partial_timeout: Option<Duration>,
}

impl FrameReader {
    /// Reads frames of at most `max_frame_bytes` from `stream`; with a
    /// `partial_timeout`, a frame that has started must finish within it.
    pub fn new(
        stream: &rt::TcpStream,
        max_frame_bytes: usize,
        partial_timeout: Option<Duration>,
    ) -> FrameReader {
        FrameReader {
            reader: rt::BufReader::new(stream.clone()),
            max_frame_bytes,
            partial_timeout,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream (between frames).
    /// Any error leaves the stream out of step: the connection must end.
    pub async fn next(&mut self) -> Result<Option<Incoming>, FrameError> {
        self.next_within(&AnyRoom).await
    }

    /// The next frame, as `next`, reserving a frame's length in `room`
    /// before reading a body that did not arrive whole.
    pub async fn next_within(
        &mut self,
        room: &impl BodyRoom,
    ) -> Result<Option<Incoming>, FrameError> {
        read_frame_as(
            &mut self.reader,
            self.max_frame_bytes,
            self.partial_timeout,
            room,
            |body, reserved| Incoming {
                bytes: body.len(),
                reserved,
                envelope: Envelope::decode(body),
            },
        )
        .await
    }

    /// Reads and drops up to `bytes` more, for at most `within`: what the
    /// other side still sends of a frame that was refused. Closing a socket
    /// with unread input resets it, and the reset can destroy the refusal
    /// before the other side reads it.
    pub async fn discard(&mut self, bytes: usize, within: Duration) {
        let mut rest = (&mut self.reader).take(bytes as u64);
        let _ = rt::timeout(within, rt::copy(&mut rest, &mut rt::sink())).await;
    }
}

/// Why a connection's writer stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum WriterEnd {
    /// Every sender of the queue is gone and everything queued was written.
    QueueClosed,
    /// The socket failed.
    Failed,
    /// One write made no progress for the stall limit: the other side has
    /// stopped reading.
    Stalled,
}

/// Starts the writing half of a framed connection: a task that writes the
/// frames queued on the returned sender (at most `queue_frames` wait) until
/// every sender is gone or the socket fails or stalls. `on_written` is told
/// each frame's size once it has left the queue's memory; `on_end` gets why
/// the writer stopped and the queue, with whatever is still in it.
pub fn start_writer(
    stream: rt::TcpStream,
    queue_frames: usize,
    mut on_written: impl FnMut(usize) + Send + 'static,
    on_end: impl FnOnce(WriterEnd, rt::Receiver<Vec<u8>>) + Send + 'static,
) -> (rt::Sender<Vec<u8>>, rt::JoinHandle<()>) {
    let (sender, queued) = rt::bounded::<Vec<u8>>(queue_frames);
    let task = rt::spawn(async move {
        let end = write_queued_frames(&stream, &queued, &mut on_written).await;
        on_end(end, queued);
    });
    (sender, task)
}

/// Writes frames from `queued` as they come, coalescing what is queued into
/// one flush, until the queue closes or the socket fails or stalls.
async fn write_queued_frames(
    stream: &rt::TcpStream,
    queued: &rt::Receiver<Vec<u8>>,
    on_written: &mut (dyn FnMut(usize) + Send),
) -> WriterEnd {
    let mut writer = rt::BufWriter::new(stream.clone());
    while let Ok(frame) = queued.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            let mut written = 0;
            // A stall is a write call that makes no progress, not a slow
            // reader taking a while over a large frame.
            while written < frame.len() {
                match rt::timeout(WRITE_STALL_LIMIT, writer.write(&frame[written..])).await {
                    Some(Ok(0)) | Some(Err(_)) => return WriterEnd::Failed,
                    Some(Ok(n)) => written += n,
                    None => return WriterEnd::Stalled,
                }
            }
            on_written(frame.len());
            next = queued.try_recv().ok();
        }
        match rt::timeout(WRITE_STALL_LIMIT, writer.flush()).await {
            Some(Ok(())) => {}
            Some(Err(_)) => return WriterEnd::Failed,
            None => return WriterEnd::Stalled,
        }
    }
    WriterEnd::QueueClosed
}
