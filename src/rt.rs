//! The runtime seam: every use of the async runtime goes through here.
//!
//! ringkv runs on async-std, which upstream has deprecated in favour of smol
//! (async-std is built from smol's pieces). Keeping spawn, TCP, timers,
//! channels and the blocking pool behind this one module means moving to
//! smol is a change to this file alone.

use std::future::Future;
use std::time::Duration;

pub use async_std::channel::{bounded, unbounded, Receiver, Sender};
pub use async_std::io::prelude::{ReadExt, WriteExt};
pub use async_std::io::{copy, sink, stdin, BufReader, BufWriter, Read, Write};
pub use async_std::net::{TcpListener, TcpStream};
pub use async_std::sync::Mutex as AsyncMutex;
pub use async_std::task::JoinHandle;

/// Runs a future on a runtime thread; the task keeps running if the handle
/// is dropped.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    async_std::task::spawn(future)
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

/// The future's output, or `None` if it did not finish within `duration`.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    async_std::future::timeout(duration, future).await.ok()
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
