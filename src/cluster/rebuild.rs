//! Rebuilding a replica that lost its data (a new or wiped data directory,
//! or a lost write-ahead log) while its peers knew an earlier incarnation
//! of it, as Cassandra streams a replaced node's ranges before it serves.
//!
//! While rebuilding, the replica takes writes, repairs and hints like any
//! other, but serves no read of a key until both other replicas of that
//! key have answered its pull (`AntiEntropy::pull`): a write acknowledged
//! at QUORUM may survive on just one of them, so a neighbour that is down
//! keeps the keys it shares unreadable here until it returns. Reads of
//! those keys need the key's other two replicas meanwhile, or answer
//! UNAVAILABLE; never an old value. Progress is durable in `DIR/identity`
//! (`Membership::pulled_from`), so a restart resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::anti_entropy::AntiEntropy;
use crate::cluster::peers::Peers;
use crate::ops::rt;

/// Time between passes over the peers not yet pulled from.
const RETRY: Duration = Duration::from_millis(250);

/// Exchanges with one peer before its pull is counted as failed: each
/// carries up to 8 MiB of values, so this covers any 256-key store.
const MAX_EXCHANGES: usize = 64;

/// Pulls from each peer not yet pulled from, whenever this replica is
/// rebuilding, for as long as the process runs.
pub async fn run_forever(peers: Arc<Peers>, anti_entropy: Arc<AntiEntropy>) {
    let membership = peers.membership().clone();
    let mut last_failure = Vec::new();
    loop {
        for peer in membership.rebuild_waiting_for() {
            if !peers.is_up(peer) {
                continue;
            }
            match anti_entropy.pull(peer, MAX_EXCHANGES).await {
                Ok(taken) => match membership.pulled_from(peer) {
                    Ok(left) => crate::info!(
                        "rebuild: pulled from replica {peer} ({taken} versions newer than ours); {left} keys still wait for other replicas"
                    ),
                    Err(error) => crate::error!("rebuild: {error}"),
                },
                Err(reason) => {
                    let failure = (peer, reason);
                    if !last_failure.contains(&failure) {
                        crate::warn!("rebuild: pulling from replica {peer} failed: {}; trying again", failure.1);
                        last_failure.push(failure);
                    }
                }
            }
        }
        rt::sleep(RETRY).await;
    }
}
