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
    Dump(cmd::dump::DumpArgs),
    Encode(cmd::encode::EncodeArgs),
    Bench(cmd::bench::BenchArgs),
}

fn main() {
    let args: Ringkv = parse_args();
    let outcome = match args.command {
        Subcommand::Replica(args) => cmd::replica::run(args),
        Subcommand::Client(args) => cmd::client::run(args),
        Subcommand::Status(args) => cmd::status::run(args),
        Subcommand::Repair(args) => cmd::repair::run(args),
        Subcommand::Dump(args) => cmd::dump::run(args),
        Subcommand::Encode(args) => cmd::encode::run(args),
        Subcommand::Bench(args) => cmd::bench::run(args),
    };
    if let Err(message) = outcome {
        eprintln!("ringkv: {message}");
        std::process::exit(1);
    }
}

/// argh reads a lone `-` as an unknown flag, but `ringkv dump --frames -`
/// means standard input, as it does for most Unix tools: it is passed on as
/// `/dev/stdin`, which is what it names.
fn parse_args() -> Ringkv {
    let argv: Vec<String> = std::env::args().collect();
    let dumping = argv.get(1).is_some_and(|command| command == "dump");
    let args: Vec<&str> = argv
        .iter()
        .skip(1)
        .map(|arg| {
            if dumping && arg == "-" {
                "/dev/stdin"
            } else {
                arg.as_str()
            }
        })
        .collect();
    let command = argv.first().map_or("ringkv", String::as_str);
    match Ringkv::from_args(&[command], &args) {
        Ok(parsed) => parsed,
        Err(early_exit) => {
            let failed = early_exit.status.is_err();
            if failed {
                eprintln!(
                    "{}\nRun {command} --help for more information.",
                    early_exit.output
                );
            } else {
                println!("{}", early_exit.output);
            }
            std::process::exit(i32::from(failed));
        }
    }
}
