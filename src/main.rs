//! The `ringkv` binary: parses the command line and dispatches to a
//! subcommand in `ringkv::cmd`. Nothing else lives here.

use argh::FromArgs;
use ringkv::cmd;

/// ringkv: a small Cassandra-style replicated key-value store.
#[derive(FromArgs)]
struct Ringkv {
    #[argh(subcommand)]
    command: Subcommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Subcommand {
    Replica(cmd::replica::ReplicaArgs),
    Client(cmd::client::ClientArgs),
    Status(cmd::status::StatusArgs),
    Repair(cmd::repair::RepairArgs),
}

fn main() {
    let args: Ringkv = argh::from_env();
    let outcome = match args.command {
        Subcommand::Replica(args) => cmd::replica::run(args),
        Subcommand::Client(args) => cmd::client::run(args),
        Subcommand::Status(args) => cmd::status::run(args),
        Subcommand::Repair(args) => cmd::repair::run(args),
    };
    if let Err(message) = outcome {
        eprintln!("ringkv: {message}");
        std::process::exit(1);
    }
}
