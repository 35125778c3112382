//! `ringkv client`: the line-based console. One coordinator per process; one
//! line of output per answer; a prompt only when stdin is a terminal, so
//! piping a file of commands through it gives clean output. When stdout is
//! a terminal too, lines are edited and remembered (`client::editor`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::client::console::{
    parse_line, render_cas, render_holdings, render_value, Command, HELP,
};
use crate::client::editor::{history::History, terminal, LineReader};
use crate::client::Client;
use crate::cluster::ring::Ring;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::proto::Consistency;

/// Open a console on one coordinator: get, put, delete, consistency, where, help, quit.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "client")]
pub struct ClientArgs {
    /// the cluster file: one `ID HOST:PORT` line per replica (default: $RINGKV_CONFIG, else cluster.conf here, else scripts/cluster.conf)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// id of the replica that coordinates every request of this console
    #[argh(option)]
    pub coordinator: u32,
    /// starting consistency level: ONE, QUORUM (default) or ALL
    #[argh(option, default = "Consistency::Quorum", from_str_fn(parse_level))]
    pub consistency: Consistency,
    /// how long to wait for each answer, in milliseconds (default 10000)
    #[argh(option, default = "10_000")]
    pub timeout_ms: u64,
    /// a file holding the cluster's shared secret, if its replicas run with --secret-file
    #[argh(option)]
    pub secret_file: Option<PathBuf>,
}

fn parse_level(text: &str) -> Result<Consistency, String> {
    text.parse().map_err(|e: KvError| e.message)
}

/// Runs the console until `quit` or the end of input.
pub fn run(args: ClientArgs) -> Result<(), String> {
    let config = super::cluster_file(args.config.as_deref())?;
    let ring = Ring::load(&config).map_err(|e| e.to_string())?;
    let member = ring.member(args.coordinator).ok_or_else(|| {
        format!(
            "replica {} is not in {}",
            args.coordinator,
            config.display()
        )
    })?;
    super::checked_timeout_ms("--timeout-ms", args.timeout_ms)?;
    let secret = crate::ops::secret::load_given(args.secret_file.as_deref())?;
    let client = Client::new(member.addr.clone())
        .with_timeout(Duration::from_millis(args.timeout_ms))
        .with_secret(secret);
    let interactive = std::io::stdin().is_terminal();
    let mut editor =
        terminal::is_interactive().then(|| LineReader::new(History::from_environment()));
    let prompt = format!("ringkv@{}> ", args.coordinator);
    if interactive {
        println!(
            "ringkv console on replica {} ({}), consistency {}. Type 'help' for commands.",
            args.coordinator, member.addr, args.consistency
        );
    }
    rt::block_on(async {
        let mut level = args.consistency;
        use rt::BufReadExt;
        let mut stdin = rt::BufReader::new(rt::stdin());
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            if let Some(reader) = editor.take() {
                let (reader, line) = read_edited_line(reader, prompt.clone()).await;
                editor = Some(reader);
                match line {
                    Ok(Some(line)) => bytes.extend_from_slice(line.as_bytes()),
                    Ok(None) => break,
                    Err(e) => return Err(format!("cannot read the terminal: {e}")),
                }
            } else {
                if interactive {
                    print!("{prompt}");
                    let _ = std::io::stdout().flush();
                }
                match stdin.read_until(b'\n', &mut bytes).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("cannot read standard input: {e}")),
                }
            }
            // A line that is not UTF-8 is one error; the script goes on.
            let Ok(line) = std::str::from_utf8(&bytes) else {
                println!("ERROR INVALID: the line is not UTF-8 text; it was skipped");
                continue;
            };
            let answer = match parse_line(line) {
                Ok(Command::Quit) => break,
                Ok(Command::Nothing) => continue,
                Ok(command) => execute(&client, &mut level, command).await,
                Err(error) => Err(error),
            };
            match answer {
                Ok(text) => println!("{text}"),
                Err(error) => println!("ERROR {error}"),
            }
        }
        Ok(())
    })
}

/// One line from the editor, read on the blocking pool (it waits on the
/// terminal); the reader comes back with it for the next line.
async fn read_edited_line(
    mut reader: LineReader,
    prompt: String,
) -> (LineReader, std::io::Result<Option<String>>) {
    rt::spawn_blocking(move || {
        let line = reader.read_line(&prompt);
        (reader, line)
    })
    .await
}

/// Carries out one command; the text is the one line that answers it.
async fn execute(
    client: &Client,
    level: &mut Consistency,
    command: Command,
) -> Result<String, KvError> {
    match command {
        Command::Get(key) => Ok(match client.get(key, *level).await? {
            Some(version) => render_value(&version.value),
            None => "NOT FOUND".to_string(),
        }),
        Command::Delete(key) => client.delete(key, *level).await.map(|_| "OK".to_string()),
        Command::Put(key, value) => client
            .put(key, &value, *level)
            .await
            .map(|_| "OK".to_string()),
        Command::Cas(key, expected, value) => {
            let reply = client.cas(key, expected.as_deref(), &value).await?;
            Ok(render_cas(reply.applied, reply.current.as_ref()))
        }
        Command::Where(key) => Ok(render_holdings(key, &client.inspect(key).await?)),
        Command::Consistency(None) => Ok(format!("Current consistency level is {level}.")),
        Command::Consistency(Some(new_level)) => {
            *level = new_level;
            Ok(format!("Consistency level set to {level}."))
        }
        Command::Help => Ok(HELP.to_string()),
        Command::Quit | Command::Nothing => Ok(String::new()),
    }
}
