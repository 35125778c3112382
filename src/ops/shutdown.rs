//! Stopping cleanly on SIGTERM or SIGINT.
//!
//! A stop is a state every part of the server can see: the accept loop
//! stops accepting, each connection refuses new requests with UNAVAILABLE
//! ("shutting down", nothing done) while its requests in progress finish,
//! writes their replies and closes, and the server returns once every
//! connection is done or `GRACE` has passed. Everything acknowledged is
//! already durable (the WAL fsyncs before any acknowledgement), so nothing
//! needs flushing afterwards; work still in flight past the grace is lost
//! exactly as in a crash, which the store is built to survive.
//!
//! Signals are taken by a thread of their own with `sigwait`: they are
//! blocked in every other thread (the mask is set before any thread starts
//! and inherited), so no handler runs at an arbitrary point. The three libc
//! calls are declared here rather than pulled in with a crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ops::rt;

/// How long a stopping replica lets requests in progress finish.
pub const GRACE: Duration = Duration::from_millis(4500);

/// Whether a stop was requested, and a way to wait for it.
pub struct Shutdown {
    requested: AtomicBool,
    /// Closed when a stop is requested, which wakes every waiter at once.
    announce: rt::Sender<()>,
    waiters: rt::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// Nothing requested yet.
    pub fn new() -> Shutdown {
        let (announce, waiters) = rt::bounded(1);
        Shutdown {
            requested: AtomicBool::new(false),
            announce,
            waiters,
        }
    }

    /// Requests the stop (once; later calls do nothing).
    pub fn begin(&self) {
        if !self.requested.swap(true, Ordering::SeqCst) {
            self.announce.close();
        }
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Returns once a stop is requested.
    pub async fn requested(&self) {
        // Nothing is ever sent: recv returns when the channel closes.
        let _ = self.waiters.recv().await;
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread
/// it starts later) and starts a thread that waits for them and calls
/// `on_signal` with the signal's name. Call it first thing, before any
/// other thread exists. On systems other than Linux it does nothing, and
/// the signals keep their default effect.
pub fn take_stop_signals(
    on_signal: impl FnOnce(&'static str) + Send + 'static,
) -> Result<(), String> {
    signals::take(on_signal)
}

#[cfg(target_os = "linux")]
mod signals {
    /// glibc's and musl's `sigset_t` on Linux: 1024 bits.
    #[repr(C)]
    struct SigSet {
        bits: [u64; 16],
    }

    extern "C" {
        fn sigemptyset(set: *mut SigSet) -> i32;
        fn sigaddset(set: *mut SigSet, signum: i32) -> i32;
        fn pthread_sigmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
        fn sigwait(set: *const SigSet, sig: *mut i32) -> i32;
    }

    const SIG_BLOCK: i32 = 0;
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;

    fn stop_signals() -> SigSet {
        let mut set = SigSet { bits: [0; 16] };
        // SAFETY: `set` is a valid, writable sigset_t-sized buffer, and the
        // signal numbers are valid on Linux.
        unsafe {
            sigemptyset(&mut set);
            sigaddset(&mut set, SIGINT);
            sigaddset(&mut set, SIGTERM);
        }
        set
    }

    pub fn take(on_signal: impl FnOnce(&'static str) + Send + 'static) -> Result<(), String> {
        let set = stop_signals();
        // SAFETY: `set` is initialized; a null old-mask pointer is allowed.
        let blocked = unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) };
        if blocked != 0 {
            return Err(format!("cannot block SIGTERM and SIGINT (error {blocked})"));
        }
        std::thread::Builder::new()
            .name("signals".to_string())
            .spawn(move || {
                let set = stop_signals();
                let mut signal = 0;
                // SAFETY: `set` is initialized and `signal` is writable;
                // both signals are blocked in every thread, as sigwait needs.
                let waited = unsafe { sigwait(&set, &mut signal) };
                let name = match (waited, signal) {
                    (0, SIGINT) => "SIGINT",
                    (0, _) => "SIGTERM",
                    _ => return,
                };
                on_signal(name);
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the signal thread: {e}"))
    }
}

#[cfg(not(target_os = "linux"))]
mod signals {
    pub fn take(_on_signal: impl FnOnce(&'static str) + Send + 'static) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_waiter_wakes_when_the_stop_is_requested() {
        let shutdown = std::sync::Arc::new(Shutdown::new());
        assert!(!shutdown.is_requested());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let shutdown = shutdown.clone();
                rt::spawn(async move { shutdown.requested().await })
            })
            .collect();
        shutdown.begin();
        shutdown.begin();
        assert!(shutdown.is_requested());
        rt::block_on(async {
            for waiter in waiters {
                assert!(rt::timeout(Duration::from_secs(5), waiter).await.is_some());
            }
        });
    }
}
