//! TCP for every connection ringkv makes or accepts, on the reactor that
//! async-std itself runs on (async-io), with one change to how a socket is
//! read: a read that returned less than it asked for has drained the
//! socket, so the next read waits for readiness before calling `recv`.
//!
//! Why: a request is one small frame. Read the common way, every request
//! costs three `recv` calls on the server (the frame, then two that find
//! nothing: the reactor's readiness from the last event is consumed by the
//! first empty one) and one `epoll_ctl` to re-arm. Waiting on readiness
//! after a short read costs one `recv` and the `epoll_ctl`. Nothing can be
//! missed: the re-arm is level-triggered, so bytes that arrived after the
//! short read make the socket ready at once.

use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Async;
use async_std::io::{Read, Write};

/// A listening socket.
pub struct TcpListener {
    inner: Async<std::net::TcpListener>,
}

impl TcpListener {
    /// Listens on `addr` (`HOST:PORT`; a name is resolved first).
    pub async fn bind(addr: &str) -> io::Result<TcpListener> {
        let mut last_error = None;
        for addr in resolve(addr).await? {
            match Async::<std::net::TcpListener>::bind(addr) {
                Ok(inner) => return Ok(TcpListener { inner }),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| no_address(addr)))
    }

    /// The next connection, and where it came from.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, remote) = self.inner.accept().await?;
        Ok((TcpStream::from_async(stream), remote))
    }
}

/// One TCP connection. Clones share the socket; each clone remembers on
/// its own whether its last read drained it, so one clone reads and
/// others write, as the framed connections do.
#[derive(Clone)]
pub struct TcpStream {
    inner: Arc<Async<std::net::TcpStream>>,
    /// The last read returned less than it asked for.
    drained: bool,
}

impl TcpStream {
    fn from_async(inner: Async<std::net::TcpStream>) -> TcpStream {
        TcpStream {
            inner: Arc::new(inner),
            drained: false,
        }
    }

    /// Connects to `addr` (`HOST:PORT`; a name is resolved first, off the
    /// runtime's threads), trying each address it resolves to in turn.
    pub async fn connect(addr: &str) -> io::Result<TcpStream> {
        let mut last_error = None;
        for addr in resolve(addr).await? {
            match Async::<std::net::TcpStream>::connect(addr).await {
                Ok(stream) => return Ok(TcpStream::from_async(stream)),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| no_address(addr)))
    }

    /// Sends small frames at once instead of waiting to fill a packet.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }

    /// Shuts down one or both directions, for every clone.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }
}

/// `HOST:PORT` as socket addresses: parsed when it is an IP address,
/// otherwise looked up on the blocking pool (a lookup may take seconds).
async fn resolve(addr: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return Ok(vec![parsed]);
    }
    let owned = addr.to_string();
    crate::ops::rt::spawn_blocking(move || owned.to_socket_addrs().map(Iterator::collect)).await
}

fn no_address(addr: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("'{addr}' resolves to no address"),
    )
}

impl Read for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.drained && !buf.is_empty() {
            self.drained = false;
            // The readiness the reactor reported before the short read is
            // still recorded and answers the first poll at once; the second
            // registers this task. Two answers mean a new event: read.
            for _ in 0..2 {
                match self.inner.poll_readable(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Ready(Ok(())) => {}
                }
            }
        }
        let asked = buf.len();
        let read = Pin::new(&mut &*self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            // Zero is the end of the stream: nothing more to wait for.
            self.drained = n > 0 && n < asked;
        }
        read
    }
}

impl Write for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.inner).poll_close(cx)
    }
}
