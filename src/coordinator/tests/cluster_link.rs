//! `ClusterLink`, the real link, on a real data directory: this replica's
//! own copy is asked like any other replica's (stale client writes, the
//! clock fence), the peers it has never reached count as down and give no
//! answer, and a hint lands in the hints log. No peer is running: the
//! peer addresses are closed loopback ports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{version, KEY};
use crate::cluster::hints::{HintOptions, Hints};
use crate::cluster::identity::Identity;
use crate::cluster::membership::Membership;
use crate::cluster::peers::{PeerTiming, Peers};
use crate::cluster::ring::Ring;
use crate::coordinator::link::{ClusterLink, Outcome, ReplicaAsk, ReplicaLink, WriteOf};
use crate::metrics::Metrics;
use crate::ops::rt;
use crate::protocol::error::ErrorKind;
use crate::storage::clock::wall_micros;
use crate::storage::durable::LocalReplica;

const WAIT: Duration = Duration::from_millis(500);

/// A data directory of its own for each test, removed when it ends.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replica 0's link, its hints and its peers.
fn replica_0(name: &str) -> (Dir, ClusterLink, Arc<Hints>, Arc<Peers>) {
    let dir =
        std::env::temp_dir().join(format!("ringkv-cluster-link-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ring = Arc::new(
        Ring::parse("0 127.0.0.1:1\n1 127.0.0.1:2\n2 127.0.0.1:3\n3 127.0.0.1:4\n")
            .expect("a valid ring"),
    );
    let metrics = Arc::new(Metrics::new());
    let (local, _) = LocalReplica::open(&dir, wal::Options::default(), 1 << 20, metrics.clone())
        .expect("a new data directory");
    let (hints, _) = Hints::open(
        &dir,
        wal::Options::default(),
        HintOptions {
            window: std::time::Duration::from_secs(3600),
            max_per_replica: 256,
        },
        1 << 20,
        metrics,
    )
    .expect("a new hints log");
    let (identity, _) = Identity::open(&dir, &ring, 0).expect("a new identity");
    let membership = Membership::open(&dir, ring.clone(), 0, identity).expect("membership");
    let peers = Arc::new(Peers::new(
        &ring,
        0,
        PeerTiming::default(),
        None,
        Arc::new(membership),
    ));
    let hints = Arc::new(hints);
    let link = ClusterLink::new(0, Arc::new(local), peers.clone(), hints.clone());
    (Dir(dir), link, hints, peers)
}

fn write(value: &str, timestamp: u64, of: WriteOf) -> ReplicaAsk {
    ReplicaAsk::Write(KEY, Arc::new(version(value, timestamp, 1)), of)
}

#[test]
fn its_own_copy_is_written_read_and_digested() {
    let (_dir, link, _, _) = replica_0("own");
    let stamp = wall_micros();
    rt::block_on(async {
        let ack = link.ask(0, write("v", stamp, WriteOf::Client), WAIT).await;
        assert_eq!(ack, Outcome::Answered(None));
        let read = link.ask(0, ReplicaAsk::Read(KEY), WAIT).await;
        assert_eq!(read, Outcome::Answered(Some(version("v", stamp, 1))));
        let digest = link.ask(0, ReplicaAsk::Digest(KEY), WAIT).await;
        assert_eq!(digest, Outcome::Digest(Some((stamp, 1))));
    });
    assert_eq!(link.read_now(0, KEY), Some(Some(version("v", stamp, 1))));
    assert_eq!(
        link.read_now(1, KEY),
        None,
        "another replica's copy is asked"
    );
}

#[test]
fn its_own_copy_answers_an_older_client_write_stale_but_takes_an_older_repair() {
    let (_dir, link, _, _) = replica_0("stale");
    let stamp = wall_micros();
    rt::block_on(async {
        link.ask(0, write("new", stamp, WriteOf::Client), WAIT)
            .await;
        let stale = link
            .ask(0, write("old", stamp - 1, WriteOf::Client), WAIT)
            .await;
        assert_eq!(stale, Outcome::Stale((stamp, 1)));
        // A repair is acknowledged; last write wins keeps the newer one.
        let repair = link
            .ask(0, write("old", stamp - 1, WriteOf::Repair), WAIT)
            .await;
        assert_eq!(repair, Outcome::Answered(None));
    });
    assert_eq!(link.read_now(0, KEY), Some(Some(version("new", stamp, 1))));
}

#[test]
fn its_own_copy_refuses_a_stamp_beyond_the_clock_fence() {
    let (_dir, link, _, _) = replica_0("fence");
    let far = wall_micros() + 600_000_000;
    let outcome = rt::block_on(link.ask(0, write("future", far, WriteOf::Repair), WAIT));
    assert!(
        matches!(outcome, Outcome::Failed(ErrorKind::Invalid, _)),
        "{outcome:?}"
    );
    assert_eq!(link.read_now(0, KEY), Some(None));
}

#[test]
fn peers_never_reached_are_down_give_no_answer_and_serve_no_reads() {
    let (_dir, link, _, _) = replica_0("peers");
    assert!(link.is_up(0));
    assert!(!link.is_up(1));
    assert!(link.may_serve(0, KEY));
    assert!(!link.may_serve(1, KEY));
    assert_eq!(link.write_fence(), None);
    // Nothing probes the peers here: trying one again waits out its limit.
    let started = Instant::now();
    rt::block_on(link.refresh(&[1], Duration::from_millis(50)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(45) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let outcome = rt::block_on(link.ask(1, ReplicaAsk::Read(KEY), WAIT));
    assert!(matches!(outcome, Outcome::NoAnswer(_)), "{outcome:?}");
    let outcome = rt::block_on(link.ask(9, ReplicaAsk::Read(KEY), WAIT));
    assert!(
        matches!(&outcome, Outcome::Failed(ErrorKind::Internal, why) if why.contains("not in the ring")),
        "{outcome:?}"
    );
}

#[test]
fn a_hint_is_kept_for_the_replica_that_missed() {
    let (_dir, link, hints, _) = replica_0("hint");
    rt::block_on(link.store_hint(2, KEY, version("missed", wall_micros(), 0))).expect("stored");
    assert_eq!(hints.pending_for(2), 1);
    assert_eq!(hints.pending_for(1), 0);
}

#[test]
fn a_clock_far_from_its_peers_is_fenced() {
    let (_dir, link, _, peers) = replica_0("fenced");
    assert_eq!(link.write_fence(), None);
    let sent = wall_micros();
    for peer in 1..4 {
        // Every peer's clock answers 10 s ahead of this one.
        peers
            .clock_offsets()
            .record_pong(peer, sent, Duration::from_millis(1), sent + 10_000_000);
    }
    let reason = link.write_fence().expect("fenced");
    assert!(!reason.is_empty());
}
