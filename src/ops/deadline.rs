//! Timeouts without a reactor timer each: one table of deadlines for the
//! whole process and one task that wakes whoever's deadline passed.
//!
//! Why: almost every request waits under a timeout (a peer's answer, the
//! log's fdatasync, the replies a coordinator collects), and async-io
//! arms each timeout by handing a timer to its reactor and waking the
//! reactor's thread so it can recompute its sleep: an eventfd write, an
//! epoll wakeup, an eventfd read, a re-arm and a `timerfd_settime`, several
//! times per request, for timers that almost never fire. Here a timeout
//! is an entry in a sorted table (a lock and a map insert), and the one
//! reactor timer, the ticker's, is re-armed only when a deadline comes
//! earlier than the one it sleeps until, which under steady load (every
//! timeout the same length) is never.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::ops::lock::lock;
use crate::ops::rt;

/// The future's output, or `None` if it did not finish within `duration`.
/// The future is polled first, so one that is ready at once never touches
/// the table.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let Some(deadline) = Instant::now().checked_add(duration) else {
        return Some(future.await);
    };
    let mut entry = Entry::new(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        entry.watch(cx.waker());
        Poll::Pending
    })
    .await
}

/// Deadlines waiting, soonest first, and when the ticker next looks.
#[derive(Default)]
struct Table {
    waiting: BTreeMap<(Instant, u64), Waker>,
    /// The instant the ticker sleeps until; `None` when it sleeps until
    /// told (the table was empty when it last looked).
    armed: Option<Instant>,
    next_id: u64,
}

/// The process's table and the ticker's doorbell.
struct Deadlines {
    table: Mutex<Table>,
    doorbell: (rt::Sender<()>, rt::Receiver<()>),
}

fn deadlines() -> &'static Deadlines {
    static DEADLINES: OnceLock<Deadlines> = OnceLock::new();
    DEADLINES.get_or_init(|| {
        let deadlines = Deadlines {
            table: Mutex::new(Table::default()),
            doorbell: rt::bounded(1),
        };
        rt::spawn(tick());
        deadlines
    })
}

/// Wakes every waiter whose deadline passed, then sleeps until the next
/// deadline or until an earlier one is added; forever.
async fn tick() {
    let deadlines = deadlines();
    loop {
        let now = Instant::now();
        let (due, next) = {
            let mut table = lock(&deadlines.table);
            let later = table.waiting.split_off(&(now, u64::MAX));
            let due = std::mem::replace(&mut table.waiting, later);
            table.armed = table.waiting.keys().next().map(|(at, _)| *at);
            (due, table.armed)
        };
        for waker in due.into_values() {
            waker.wake();
        }
        let rung = async {
            let _ = deadlines.doorbell.1.recv().await;
        };
        match next {
            Some(at) => {
                let sleep = rt::sleep(at.saturating_duration_since(Instant::now()));
                rt::first_of(sleep, rung).await;
            }
            None => rung.await,
        }
    }
}

/// One timeout's place in the table, taken on its first wait and given
/// back when the timeout ends, whichever way.
struct Entry {
    deadline: Instant,
    id: Option<u64>,
}

impl Entry {
    fn new(deadline: Instant) -> Entry {
        Entry { deadline, id: None }
    }

    /// Makes sure `waker` is woken at the deadline.
    fn watch(&mut self, waker: &Waker) {
        let deadlines = deadlines();
        let mut table = lock(&deadlines.table);
        if let Some(id) = self.id {
            if let Some(known) = table.waiting.get_mut(&(self.deadline, id)) {
                if !known.will_wake(waker) {
                    known.clone_from(waker);
                }
                return;
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        table.waiting.insert((self.deadline, id), waker.clone());
        self.id = Some(id);
        let sooner = table.armed.is_none_or(|armed| self.deadline < armed);
        if sooner {
            table.armed = Some(self.deadline);
            drop(table);
            let _ = deadlines.doorbell.0.try_send(());
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&deadlines().table)
                .waiting
                .remove(&(self.deadline, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> impl Future<Output = ()> {
        std::future::pending()
    }

    #[test]
    fn a_ready_future_is_not_timed() {
        rt::block_on(async {
            assert_eq!(timeout(Duration::ZERO, async { 7 }).await, Some(7));
            assert_eq!(timeout(Duration::MAX, async { 8 }).await, Some(8));
        });
    }

    #[test]
    fn a_future_that_never_ends_times_out_on_time() {
        rt::block_on(async {
            let began = Instant::now();
            assert_eq!(timeout(Duration::from_millis(50), never()).await, None);
            let took = began.elapsed();
            assert!(took >= Duration::from_millis(50), "{took:?}");
            assert!(took < Duration::from_millis(1000), "{took:?}");
        });
    }

    #[test]
    fn a_sooner_deadline_wakes_the_ticker_sleeping_until_a_later_one() {
        rt::block_on(async {
            // A long timeout arms the ticker far ahead; a short one added
            // after it must still fire on time.
            let long = rt::spawn(timeout(Duration::from_secs(30), never()));
            rt::sleep(Duration::from_millis(20)).await;
            let began = Instant::now();
            assert_eq!(timeout(Duration::from_millis(40), never()).await, None);
            assert!(
                began.elapsed() < Duration::from_millis(1000),
                "{:?}",
                began.elapsed()
            );
            drop(long);
        });
    }

    #[test]
    fn a_future_finishing_before_its_deadline_leaves_nothing_behind() {
        rt::block_on(async {
            let (send, receive) = rt::bounded::<u32>(1);
            let waiter = rt::spawn(async move {
                timeout(Duration::from_secs(60), async {
                    receive.recv().await.unwrap()
                })
                .await
            });
            rt::sleep(Duration::from_millis(10)).await;
            send.send(5).await.unwrap();
            assert_eq!(waiter.await, Some(5));
            let table = lock(&deadlines().table);
            assert!(
                !table
                    .waiting
                    .keys()
                    .any(|(at, _)| *at > Instant::now() + Duration::from_secs(50)),
                "the 60 s entry is still in the table"
            );
        });
    }

    #[test]
    fn many_timeouts_each_end_at_their_own_deadline() {
        rt::block_on(async {
            let began = Instant::now();
            let waiters: Vec<_> = [80u64, 10, 40, 20, 60]
                .into_iter()
                .map(|ms| {
                    rt::spawn(async move {
                        timeout(Duration::from_millis(ms), never()).await;
                        (ms, began.elapsed())
                    })
                })
                .collect();
            for waiter in waiters {
                let (ms, took) = waiter.await;
                assert!(
                    took >= Duration::from_millis(ms),
                    "{ms} ms ended after {took:?}"
                );
                assert!(
                    took < Duration::from_millis(ms + 900),
                    "{ms} ms ended after {took:?}"
                );
            }
        });
    }
}
