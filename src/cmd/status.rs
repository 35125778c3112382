//! `ringkv status`: one line per replica: up or down, keys held, WAL size,
//! and which peers it believes are down. With `--wait`, keeps asking until
//! every replica answers, which is how the scripts know a cluster is ready.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;

use crate::client::Client;
use crate::proto::StatusReply;
use crate::ring::Ring;
use crate::rt;

/// Show every replica: up or down, keys held, write-ahead log size, peers it sees down.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct StatusArgs {
    /// the cluster file: one `ID HOST:PORT` line per replica
    #[argh(option)]
    pub config: PathBuf,
    /// keep asking for up to this many seconds until every replica answers
    /// and sees every other one up (default 0: ask once)
    #[argh(option, default = "0")]
    pub wait: u64,
    /// a file holding the cluster's shared secret, if its replicas run with --secret-file
    #[argh(option)]
    pub secret_file: Option<PathBuf>,
}

/// The longest `--wait` accepted: a day.
const MAX_WAIT_SECONDS: u64 = 86_400;

/// Prints the status; fails (exit 1) unless every replica answered.
pub fn run(args: StatusArgs) -> Result<(), String> {
    let ring = Ring::load(&args.config).map_err(|e| e.to_string())?;
    let secret = args
        .secret_file
        .as_deref()
        .map(crate::secret::load)
        .transpose()?;
    if args.wait > MAX_WAIT_SECONDS {
        return Err(format!("--wait is at most {MAX_WAIT_SECONDS} seconds"));
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    rt::block_on(async {
        loop {
            let answers = ask_all(&ring, &secret).await;
            let all_ready = answers.iter().all(|answer| {
                answer
                    .as_ref()
                    .is_ok_and(|status| status.peers.iter().all(|p| p.up))
            });
            if all_ready || Instant::now() >= deadline {
                for (member, answer) in ring.members().iter().zip(&answers) {
                    println!("{}", render(member.id, &member.addr, answer));
                }
                let up = answers.iter().filter(|a| a.is_ok()).count();
                return if up == answers.len() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {} replicas did not answer",
                        answers.len() - up,
                        answers.len()
                    ))
                };
            }
            rt::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn ask_all(ring: &Ring, secret: &Option<Vec<u8>>) -> Vec<Result<StatusReply, String>> {
    let mut answers = Vec::new();
    for member in ring.members() {
        let client = Client::new(member.addr.clone())
            .with_timeout(Duration::from_secs(2))
            .with_secret(secret.clone());
        answers.push(client.status().await.map_err(|e| e.message));
    }
    answers
}

fn render(id: u32, addr: &str, answer: &Result<StatusReply, String>) -> String {
    match answer {
        Ok(status) => {
            let down: Vec<String> = status
                .peers
                .iter()
                .filter(|p| !p.up)
                .map(|p| p.replica_id.to_string())
                .collect();
            let view = if down.is_empty() {
                "sees all peers up".to_string()
            } else {
                format!("sees down: {}", down.join(","))
            };
            let hints: Vec<String> = status
                .peers
                .iter()
                .map(|p| format!("{}:{}", p.replica_id, p.hints_pending))
                .collect();
            format!(
                "replica {id} {addr} up, {} keys, wal {} bytes, {view}, repair {}, hints {}, repairs sent {}, anti-entropy rounds {} (fixed {})",
                status.keys_held,
                status.wal_bytes,
                status.repair_mode,
                hints.join(" "),
                status.repairs_sent,
                status.anti_entropy_rounds,
                status.anti_entropy_fixes
            )
        }
        Err(reason) => format!("replica {id} {addr} DOWN ({reason})"),
    }
}
