//! What a benchmark cost the servers: every replica's CPU time, read from
//! its metrics reply just before and just after the measured run, and the
//! load generator's own, so that a figure says how much CPU a request took
//! rather than how many requests one machine could be driven to.

use std::collections::BTreeMap;

use crate::client::Client;
use crate::cluster::ring::Ring;
use crate::ops::process::{self, CpuTime};

/// CPU time of each replica, by id, and of this process.
#[derive(Clone, Debug, Default)]
pub struct CpuReading {
    /// `None` for a replica whose metrics could not be read.
    pub replicas: BTreeMap<u32, Option<CpuTime>>,
    /// The load generator itself.
    pub bench: CpuTime,
}

/// The CPU each replica and the load generator used over a run.
#[derive(Clone, Debug, Default)]
pub struct CpuSpent {
    /// Replicas read both before and after the run.
    pub replicas: BTreeMap<u32, CpuTime>,
    /// Replicas that could not be read at one end (down, or refusing).
    pub unread: Vec<u32>,
    /// The load generator.
    pub bench: CpuTime,
}

impl CpuSpent {
    /// CPU time summed over the replicas that were read.
    pub fn cluster(&self) -> CpuTime {
        self.replicas
            .values()
            .fold(CpuTime::default(), |sum, cpu| CpuTime {
                user_us: sum.user_us + cpu.user_us,
                system_us: sum.system_us + cpu.system_us,
            })
    }
}

/// Reads every replica's CPU time (not just the coordinators': a request
/// costs the replicas it reaches) and this process's.
pub async fn read(clients: &[(u32, Client)]) -> CpuReading {
    let mut replicas = BTreeMap::new();
    for (id, client) in clients {
        let cpu = client.metrics().await.ok().map(|reply| CpuTime {
            user_us: reply.cpu_user_us,
            system_us: reply.cpu_system_us,
        });
        replicas.insert(*id, cpu);
    }
    CpuReading {
        replicas,
        bench: process::cpu_time(),
    }
}

/// One metrics client per replica of the ring.
pub fn metrics_clients(ring: &Ring, secret: &Option<Vec<u8>>) -> Vec<(u32, Client)> {
    ring.members()
        .iter()
        .map(|member| {
            (
                member.id,
                Client::new(member.addr.clone()).with_secret(secret.clone()),
            )
        })
        .collect()
}

/// What was spent between two readings.
pub fn spent(before: &CpuReading, after: &CpuReading) -> CpuSpent {
    let mut spent = CpuSpent {
        bench: after.bench.since(&before.bench),
        ..CpuSpent::default()
    };
    for (id, start) in &before.replicas {
        match (start, after.replicas.get(id).copied().flatten()) {
            (Some(start), Some(end)) => {
                spent.replicas.insert(*id, end.since(start));
            }
            _ => spent.unread.push(*id),
        }
    }
    spent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(user_us: u64, system_us: u64) -> CpuTime {
        CpuTime { user_us, system_us }
    }

    #[test]
    fn spent_is_per_replica_and_names_those_not_read_at_both_ends() {
        let before = CpuReading {
            replicas: BTreeMap::from([
                (0, Some(cpu(100, 10))),
                (1, Some(cpu(50, 5))),
                (2, Some(cpu(7, 7))),
                (3, None),
            ]),
            bench: cpu(1, 1),
        };
        let after = CpuReading {
            replicas: BTreeMap::from([
                (0, Some(cpu(300, 60))),
                (1, Some(cpu(150, 5))),
                (2, None),
                (3, Some(cpu(9, 9))),
            ]),
            bench: cpu(11, 2),
        };
        let spent = spent(&before, &after);
        assert_eq!(
            spent.replicas,
            BTreeMap::from([(0, cpu(200, 50)), (1, cpu(100, 0))])
        );
        assert_eq!(spent.unread, vec![2, 3]);
        assert_eq!(spent.cluster(), cpu(300, 50));
        assert_eq!(spent.bench, cpu(10, 1));
    }
}
