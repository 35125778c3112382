//! `ringkv repair`: one anti-entropy round on every replica, now, and what
//! each one fixed. Replicas also run rounds on their own every
//! `--anti-entropy-secs`; this is for an operator who does not want to wait.

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::client::Client;
use crate::cluster::ring::Ring;
use crate::ops::rt;

/// Run one anti-entropy round on every replica and report what it fixed.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "repair")]
pub struct RepairArgs {
    /// the cluster file: one `ID HOST:PORT` line per replica (default: $RINGKV_CONFIG, else cluster.conf here, else scripts/cluster.conf)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// a file holding the cluster's shared secret, if its replicas run with --secret-file
    #[argh(option)]
    pub secret_file: Option<PathBuf>,
}

/// Asks each replica in turn; fails (exit 1) if any could not run a round.
pub fn run(args: RepairArgs) -> Result<(), String> {
    let config = super::cluster_file(args.config.as_deref())?;
    let ring = Ring::load(&config).map_err(|e| e.to_string())?;
    let secret = crate::ops::secret::load_given(args.secret_file.as_deref())?;
    rt::block_on(async {
        let mut failed = 0;
        for member in ring.members() {
            let client = Client::new(member.addr.clone())
                .with_timeout(Duration::from_secs(30))
                .with_secret(secret.clone());
            match client.repair().await {
                Ok(reply) => {
                    let skipped = if reply.unreachable.is_empty() {
                        String::new()
                    } else {
                        format!(", skipped {}", reply.unreachable.join("; "))
                    };
                    println!(
                        "replica {}: sent {} versions, took {} versions{skipped}",
                        member.id, reply.versions_sent, reply.versions_received
                    );
                }
                Err(error) => {
                    failed += 1;
                    println!("replica {}: ERROR {error}", member.id);
                }
            }
        }
        if failed == 0 {
            Ok(())
        } else {
            Err(format!("{failed} replicas could not run a round"))
        }
    })
}
