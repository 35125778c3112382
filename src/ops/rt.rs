//! The runtime seam: every use of the async runtime goes through here.
//!
//! ringkv runs on async-std, which upstream has deprecated in favour of smol
//! (async-std is built from smol's pieces). Keeping spawn, TCP, timers,
//! channels and the blocking pool behind this one module means moving to
//! smol is a change to this file alone, and to `net.rs`, which builds TCP
//! on the reactor both share (async-io).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

pub use crate::ops::net::{TcpListener, TcpStream};
pub use async_std::channel::{bounded, unbounded, Receiver, Sender};
pub use async_std::io::prelude::{BufReadExt, ReadExt, WriteExt};
pub use async_std::io::{copy, sink, stdin, BufRead, BufReader, BufWriter, Read, Write};
pub use async_std::sync::Mutex as AsyncMutex;
pub use async_std::task::JoinHandle;

/// Sets how many threads run async tasks. Call it before anything else
/// touches the runtime (async-std reads it once, when its executor starts).
///
/// Why a replica wants few: on a small machine a replica's tasks mostly wait
/// on sockets, and every wake-up that crosses executor threads costs a
/// futex and a context switch. A profile of a replica under QUORUM gets on
/// two cores spent about a third of its samples in the scheduler's task
/// switch with the default of one thread per core.
pub fn set_executor_threads(threads: usize) {
    // The process is still single-threaded here, so nothing reads the
    // environment concurrently.
    std::env::set_var("ASYNC_STD_THREAD_COUNT", threads.max(1).to_string());
}

/// Runs a future on a runtime thread; the task keeps running if the handle
/// is dropped.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    async_std::task::spawn(future)
}

/// Polls `future` once in the calling task: `None` if that finished it,
/// otherwise the future, to be spawned. Work that never waits then costs no
/// task; a future that does wait has registered the caller's waker too,
/// which at worst wakes the caller once for nothing.
pub async fn run_until_it_waits<F>(mut future: Pin<Box<F>>) -> Option<Pin<Box<F>>>
where
    F: Future<Output = ()> + ?Sized,
{
    let finished =
        std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await;
    (!finished).then_some(future)
}

/// Blocks the calling (non-runtime) thread on a future: the entry point of
/// every subcommand.
pub fn block_on<F: Future>(future: F) -> F::Output {
    async_std::task::block_on(future)
}

/// Waits without blocking a runtime thread.
pub async fn sleep(duration: Duration) {
    async_std::task::sleep(duration).await
}

/// The output of whichever future finishes first; the other is dropped.
pub async fn first_of<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    use async_std::prelude::FutureExt;
    a.race(b).await
}

/// The future's output, or `None` if it did not finish within `duration`.
/// Kept in one process-wide table (`deadline.rs`) rather than a reactor
/// timer each: see there for why.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    crate::ops::deadline::timeout(duration, future).await
}

/// Runs blocking work (disk, stdin) on the blocking pool so that it never
/// stalls the executor's threads.
pub async fn spawn_blocking<F, T>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    async_std::task::spawn_blocking(work).await
}
