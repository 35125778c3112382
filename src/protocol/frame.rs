//! Frames on a TCP stream: a 4-byte big-endian length, then that many bytes
//! of one protobuf `Envelope`.
//!
//! The reader checks the length against the limit before reading the body,
//! and grows its buffer only as bytes actually arrive, so a peer that claims
//! a huge frame (or claims one and stalls) never makes us allocate it.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use byteorder::{BigEndian, ByteOrder};
use prost::Message;

use crate::ops::rt::{self, BufRead, Read, ReadExt};
use crate::protocol::proto::Envelope;

/// The default frame limit: room for a 16 MiB value plus the envelope.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;

/// How much body buffer to reserve up front, whatever the frame claims.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The length prefix is over the limit; the connection must be closed,
    /// since the stream can no longer be trusted to be in step.
    TooLong {
        /// What the prefix claimed.
        claimed: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The stream ended inside a frame (after a partial length or body).
    Truncated {
        /// Bytes of the frame that did arrive.
        received: usize,
        /// Bytes the frame should have had, prefix included.
        expected: usize,
    },
    /// A frame was started but not finished within the partial-frame
    /// timeout.
    Stalled {
        /// The timeout in force.
        timeout: Duration,
    },
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { claimed, limit } => {
                write!(
                    f,
                    "frame of {claimed} bytes exceeds the limit of {limit} bytes"
                )
            }
            FrameError::Truncated { received, expected } => write!(
                f,
                "connection closed mid-frame after {received} of {expected} bytes"
            ),
            FrameError::Stalled { timeout } => write!(
                f,
                "a frame was started but not finished within {} ms",
                timeout.as_millis()
            ),
            FrameError::Io(error) => write!(f, "socket error: {error}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads one frame's body. `Ok(None)` is a clean end of stream: the peer
/// closed between frames. An end of stream inside a frame is an error.
pub async fn read_frame<R>(
    reader: &mut rt::BufReader<R>,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError>
where
    R: Read + Unpin,
{
    read_frame_within(reader, limit, None).await
}

/// Reads one frame's body, as `read_frame`, but once a frame has started
/// (its first byte arrived) the rest must arrive within `partial_timeout`:
/// a connection may idle between frames for as long as it likes, but one
/// that sends half a frame and goes silent (slowloris) is given up.
///
/// A frame that arrived whole (the common case: small frames, often
/// several to one read) is taken straight from the read buffer, with no
/// timer and no further read.
pub async fn read_frame_within<R>(
    reader: &mut rt::BufReader<R>,
    limit: usize,
    partial_timeout: Option<Duration>,
) -> Result<Option<Vec<u8>>, FrameError>
where
    R: Read + Unpin,
{
    read_frame_as(reader, limit, partial_timeout, &AnyRoom, |body, _| {
        body.to_vec()
    })
    .await
}

/// Asked for room before the body of a frame that did not arrive whole is
/// read: its length is known from its prefix, and none of its body is in
/// memory yet. A replica's connections wait here for its memory budget, so
/// frames still arriving are counted before they are allocated.
pub trait BodyRoom {
    /// Waits until a frame of `bytes` may be read, and holds room for it
    /// on behalf of the reader, which gives it back once the frame is done
    /// with. Returns the bytes held (which may be more than the frame).
    fn reserve(&self, bytes: usize) -> impl std::future::Future<Output = usize> + Send;
}

/// Room for any frame at once: for readers with no budget (clients).
pub struct AnyRoom;

impl BodyRoom for AnyRoom {
    async fn reserve(&self, _bytes: usize) -> usize {
        0
    }
}

/// Reads one frame, as `read_frame_within`, and hands its body to `take`
/// with the bytes reserved for it in `room` (0 for a frame that arrived
/// whole: it is given to `take` straight from the read buffer, so decoding
/// it copies nothing first). The wait for room is not part of the partial
/// timeout: a frame waiting for room holds no memory.
pub async fn read_frame_as<R, T>(
    reader: &mut rt::BufReader<R>,
    limit: usize,
    partial_timeout: Option<Duration>,
    room: &impl BodyRoom,
    take: impl FnOnce(&[u8], usize) -> T,
) -> Result<Option<T>, FrameError>
where
    R: Read + Unpin,
{
    let available = std::future::poll_fn(|cx| {
        Pin::new(&mut *reader)
            .poll_fill_buf(cx)
            .map_ok(|buffered| buffered.len())
    })
    .await
    .map_err(FrameError::Io)?;
    if available == 0 {
        return Ok(None);
    }
    match buffered_frame(reader.buffer(), limit) {
        Ok(Some(whole)) => {
            let taken = take(&reader.buffer()[4..whole], 0);
            Pin::new(&mut *reader).consume(whole);
            return Ok(Some(taken));
        }
        Ok(None) => {}
        Err(too_long) => {
            // As if read byte by byte: the prefix is gone, the body is not.
            Pin::new(&mut *reader).consume(4);
            return Err(too_long);
        }
    }
    let claimed = within(partial_timeout, read_prefix(reader, limit)).await?;
    let reserved = room.reserve(claimed).await;
    let body = within(partial_timeout, read_body(reader, claimed)).await?;
    Ok(Some(take(&body, reserved)))
}

/// `step`, given up as stalled after `timeout` if there is one.
async fn within<T>(
    timeout: Option<Duration>,
    step: impl std::future::Future<Output = Result<T, FrameError>>,
) -> Result<T, FrameError> {
    match timeout {
        None => step.await,
        Some(timeout) => rt::timeout(timeout, step)
            .await
            .unwrap_or(Err(FrameError::Stalled { timeout })),
    }
}

/// The length, prefix included, of the frame at the start of `buffered`
/// if all of it is there; an error as soon as its prefix claims too much.
fn buffered_frame(buffered: &[u8], limit: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buffered.get(..4) else {
        return Ok(None);
    };
    let claimed = BigEndian::read_u32(prefix) as usize;
    if claimed > limit {
        return Err(FrameError::TooLong { claimed, limit });
    }
    Ok((buffered.len() >= 4 + claimed).then_some(4 + claimed))
}

/// The length a started frame's prefix claims, once all 4 bytes are in.
async fn read_prefix<R>(reader: &mut rt::BufReader<R>, limit: usize) -> Result<usize, FrameError>
where
    R: Read + Unpin,
{
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        let n = reader
            .read(&mut prefix[filled..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                received: filled,
                expected: 4,
            });
        }
        filled += n;
    }
    let claimed = BigEndian::read_u32(&prefix) as usize;
    if claimed > limit {
        return Err(FrameError::TooLong { claimed, limit });
    }
    Ok(claimed)
}

/// The `claimed` bytes of a frame's body, grown as they arrive.
async fn read_body<R>(reader: &mut rt::BufReader<R>, claimed: usize) -> Result<Vec<u8>, FrameError>
where
    R: Read + Unpin,
{
    let mut body = Vec::with_capacity(claimed.min(INITIAL_BODY_CAPACITY));
    reader
        .take(claimed as u64)
        .read_to_end(&mut body)
        .await
        .map_err(FrameError::Io)?;
    if body.len() < claimed {
        return Err(FrameError::Truncated {
            received: 4 + body.len(),
            expected: 4 + claimed,
        });
    }
    Ok(body)
}

/// Encodes an envelope as one frame, prefix included, ready to write.
pub fn encode_frame(envelope: &Envelope) -> Vec<u8> {
    let body_len = envelope.encoded_len();
    let mut frame = Vec::with_capacity(4 + body_len);
    frame.extend_from_slice(&(body_len as u32).to_be_bytes());
    envelope
        .encode(&mut frame)
        .expect("a Vec grows to fit, so encoding cannot run out of room");
    frame
}

/// One piece of a captured byte stream, as a replica would read it.
#[derive(Debug, PartialEq, Eq)]
pub enum CapturedFrame<'a> {
    /// A whole frame: where its length prefix starts, and its body.
    Frame {
        /// Byte offset of the length prefix in the stream.
        offset: usize,
        /// The frame's body (without the prefix).
        body: &'a [u8],
    },
    /// A length prefix over the limit: a replica refuses it and closes the
    /// connection, so nothing after it is read.
    TooLong {
        /// Byte offset of the length prefix.
        offset: usize,
        /// What the prefix claimed.
        claimed: usize,
    },
    /// The stream ends inside a frame.
    Cut {
        /// Byte offset of the frame's length prefix.
        offset: usize,
        /// Bytes of the frame present, prefix included.
        received: usize,
        /// Bytes the frame should have had, prefix included.
        expected: usize,
    },
}

/// Splits a captured stream (what `nc` or a proxy recorded) into frames by
/// the same rules a replica reads them with, for `ringkv dump --frames`.
/// Never allocates: the pieces borrow from `bytes`.
pub fn split_captured(bytes: &[u8], limit: usize) -> Vec<CapturedFrame<'_>> {
    let mut pieces = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < 4 {
            pieces.push(CapturedFrame::Cut {
                offset,
                received: rest.len(),
                expected: 4,
            });
            break;
        }
        let claimed = BigEndian::read_u32(&rest[..4]) as usize;
        if claimed > limit {
            pieces.push(CapturedFrame::TooLong { offset, claimed });
            break;
        }
        if rest.len() < 4 + claimed {
            pieces.push(CapturedFrame::Cut {
                offset,
                received: rest.len(),
                expected: 4 + claimed,
            });
            break;
        }
        pieces.push(CapturedFrame::Frame {
            offset,
            body: &rest[4..4 + claimed],
        });
        offset += 4 + claimed;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::proto::{Body, Ping};

    /// Every frame of `bytes`, read through buffers of several sizes (so
    /// frames arrive whole, split, and split inside their prefix); every
    /// size must read the same.
    fn read_all(bytes: &[u8], limit: usize) -> Vec<Result<Option<Vec<u8>>, String>> {
        let read_with = |capacity: usize| {
            crate::ops::rt::block_on(async {
                let mut reader = rt::BufReader::with_capacity(capacity, bytes);
                let mut out = Vec::new();
                loop {
                    let next = read_frame(&mut reader, limit)
                        .await
                        .map_err(|e| e.to_string());
                    let stop = !matches!(next, Ok(Some(_)));
                    out.push(next);
                    if stop {
                        return out;
                    }
                }
            })
        };
        let whole = read_with(8192);
        for capacity in [1, 2, 3, 5, 16] {
            assert_eq!(
                read_with(capacity),
                whole,
                "read {capacity} bytes at a time"
            );
        }
        whole
    }

    #[test]
    fn a_captured_stream_splits_like_a_replica_reads_it() {
        let one = encode_frame(&Envelope {
            request_id: 1,
            body: None,
        });
        let mut stream = one.clone();
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&one[..3]);
        let pieces = split_captured(&stream, 100);
        assert_eq!(pieces.len(), 3);
        assert!(matches!(pieces[1], CapturedFrame::Frame { offset, .. } if offset == one.len()));
        assert!(matches!(
            pieces[2],
            CapturedFrame::Cut {
                received: 3,
                expected: 4,
                ..
            }
        ));
        let mut huge = vec![0, 0, 1, 0];
        huge.extend_from_slice(&one);
        assert_eq!(
            split_captured(&huge, 100),
            vec![CapturedFrame::TooLong {
                offset: 0,
                claimed: 256
            }]
        );
        assert!(split_captured(&[], 100).is_empty());
    }

    #[test]
    fn frames_round_trip_and_clean_eof_ends_the_stream() {
        let envelope = Envelope {
            request_id: 7,
            body: Some(Body::Ping(Ping {
                sender_id: 2,
                hello: None,
            })),
        };
        let mut stream = encode_frame(&envelope);
        stream.extend(encode_frame(&envelope));
        let frames = read_all(&stream, 1024);
        assert_eq!(frames.len(), 3);
        let body = frames[0].clone().expect("first frame").expect("a frame");
        assert_eq!(Envelope::decode(body.as_slice()), Ok(envelope));
        assert_eq!(frames[2], Ok(None));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_its_body_is_read() {
        let mut stream = (u32::MAX).to_be_bytes().to_vec();
        stream.extend_from_slice(b"abc");
        let frames = read_all(&stream, 1024);
        assert_eq!(
            frames,
            vec![Err(
                "frame of 4294967295 bytes exceeds the limit of 1024 bytes".to_string()
            )]
        );
    }

    #[test]
    fn a_stream_cut_mid_frame_is_an_error_not_a_clean_end() {
        let frames = read_all(&[0, 0], 1024);
        assert!(matches!(&frames[0], Err(m) if m.contains("after 2 of 4 bytes")));
        let frames = read_all(&[0, 0, 0, 10, 1, 2, 3], 1024);
        assert!(matches!(&frames[0], Err(m) if m.contains("after 7 of 14 bytes")));
    }
}
