//! The prober: the one task per peer that opens its connections and keeps
//! its up/down view current. It pings every ping interval while the peer
//! is up and tries to reach it every retry interval while it is down; a
//! hello from the peer wakes it at once. Nothing else connects to a peer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::{live, Role};
use super::peer::Peer;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::mux::CallError;
use crate::protocol::proto::Body;
use crate::storage::clock::wall_micros;

/// A peer that said hello within this time is starting, not down: a probe
/// that cannot reach it yet (its port is not open) does not mark it down.
/// Longer than a start takes between its hellos and opening its port
/// (`STARTUP_PROBE_LIMIT`).
const HELLO_GRACE: Duration = Duration::from_secs(3);

/// The shortest gap between connection attempts to one peer.
const QUICK_RETRY: Duration = Duration::from_millis(10);

impl Peer {
    /// Keeps both connections open and the up/down view current for as long
    /// as the process runs: connects while the peer is down, pings it while
    /// it is up.
    pub(super) async fn probe_forever(self: Arc<Self>) {
        loop {
            if self.probe_and_mark().await {
                rt::sleep(QUICK_RETRY).await;
            } else {
                self.pause().await;
            }
        }
    }

    /// One probe, and the up/down view it implies. Returns whether to try
    /// again at once rather than after the usual pause.
    pub(super) async fn probe_and_mark(&self) -> bool {
        let retry_soon = self.probe_and_judge().await;
        self.link.probes_done.fetch_add(1, Ordering::SeqCst);
        retry_soon
    }

    async fn probe_and_judge(&self) -> bool {
        match self.probe_once().await {
            Ok(()) => {
                *lock(&self.link.trouble) = None;
                self.link.mark_up();
                // A break reported while the ping was in flight would
                // have been overwritten just now: look again.
                let broken = [Role::Requests, Role::Pings]
                    .iter()
                    .any(|&role| live(self.link.slot(role)).is_none());
                if broken {
                    self.link
                        .mark_down("a connection broke as the peer answered");
                }
                false
            }
            // The peer said hello a moment ago (it says hello before it
            // opens its port): it is starting, not down; try again soon.
            Err(reason) if self.heard_recently() => {
                self.link.note_trouble(&reason);
                true
            }
            Err(reason) => {
                self.link.mark_down(&reason);
                false
            }
        }
    }

    fn heard_recently(&self) -> bool {
        let heard_at = *lock(&self.link.heard_at);
        heard_at.is_some_and(|at| at.elapsed() < HELLO_GRACE)
    }

    /// Sleeps a ping interval while the peer is up, or a retry interval
    /// once it is down (cut short if it goes down meanwhile), so a quick
    /// restart is noticed within a retry interval. A hello from the peer
    /// ends the pause at once.
    async fn pause(&self) {
        let mut slept = Duration::ZERO;
        loop {
            if let Some(Ok(())) =
                rt::timeout(self.timing.retry_interval, self.link.wake.1.recv()).await
            {
                return;
            }
            slept += self.timing.retry_interval;
            if !self.is_up() || slept >= self.timing.ping_interval {
                return;
            }
        }
    }

    /// Makes sure both connections are open, then pings over the ping one.
    async fn probe_once(&self) -> Result<(), String> {
        let pings = self.ensure_connection(Role::Pings).await?;
        self.ensure_connection(Role::Requests).await?;
        let (sent_wall, sent) = (wall_micros(), Instant::now());
        let answered = match pings.call(self.ping(), self.timing.ping_timeout).await {
            Ok(Body::Pong(pong)) => {
                if let Some(pong_wall) = pong.wall_micros {
                    self.offsets
                        .record_pong(self.link.id, sent_wall, sent.elapsed(), pong_wall);
                }
                self.membership.accept(self.link.id, pong.hello.as_ref())
            }
            // A replica that is stopping refuses requests, pings included:
            // it is still there until its connections close.
            Ok(_) | Err(CallError::Refused(_)) => Ok(()),
            Err(CallError::TimedOut) => Err("did not answer a ping in time".to_string()),
            Err(CallError::Disconnected(reason)) => return Err(reason),
        };
        match answered {
            Ok(()) => Ok(()),
            Err(reason) => {
                // Connections to a peer that stopped answering are not
                // reused: close them now, which also fails what waits on them.
                // Requests still waiting on them are told why.
                for role in [Role::Requests, Role::Pings] {
                    if let Some(connection) = lock(self.link.slot(role)).take() {
                        connection.close_because(&reason);
                    }
                }
                Err(reason)
            }
        }
    }
}
