//! The `ringkv` binary: parses the command line and dispatches to a
//! subcommand in `ringkv::cmd`. Nothing else lives here.

use argh::FromArgs;
use ringkv::cmd;

/// ringkv: a small Cassandra-style replicated key-value store.
#[derive(FromArgs)]
struct Ringkv {
    /// print the version (and the git commit it was built from) and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Subcommand>,
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
    quiet_on_a_closed_stdout();
    let args: Ringkv = parse_args();
    if args.version {
        println!("{}", version());
        return;
    }
    let Some(command) = args.command else {
        eprintln!("ringkv: name a subcommand; run ringkv --help for the list");
        std::process::exit(1);
    };
    let outcome = match command {
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

/// `ringkv 0.1.0 (commit 0123456789ab)`, the commit when built from a checkout.
fn version() -> String {
    let commit = env!("RINGKV_GIT_COMMIT");
    if commit.is_empty() {
        format!("ringkv {}", env!("CARGO_PKG_VERSION"))
    } else {
        format!("ringkv {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    }
}

/// Output piped into a reader that stops early (`ringkv status | head -1`)
/// ends the program quietly with status 0, as Unix tools do, instead of a
/// panic: Rust ignores SIGPIPE, so the failed write surfaces as a panic
/// from `println!`, which this hook recognises and turns into an exit.
fn quiet_on_a_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
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
            } else if arg == "-h" {
                // `-h` beside `--help`, as most tools have.
                "--help"
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
                // Point at the subcommand's own help when one was named.
                let subcommand = args.iter().find(|arg| !arg.starts_with('-'));
                let help = match subcommand {
                    Some(name) => format!("{command} {name} --help"),
                    None => format!("{command} --help"),
                };
                eprintln!("{}\nRun {help} for more information.", early_exit.output);
            } else {
                println!("{}", early_exit.output);
            }
            std::process::exit(i32::from(failed));
        }
    }
}
