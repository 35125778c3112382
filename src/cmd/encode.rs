//! `ringkv encode`: console lines in, request frames out, for netcat-style
//! debugging: `ringkv encode 'get 10' | nc -q1 127.0.0.1 7000 | ringkv dump --frames -`.
//!
//! The lines use the console's syntax (`get`, `put`, `delete`, `where`,
//! `consistency`), so what a person types at the console and what they
//! send by hand are the same requests. Request ids count up from
//! `--first-request-id`.

use std::io::{BufRead, IsTerminal, Write};

use argh::FromArgs;

use crate::client::console::{parse_line, Command};
use crate::protocol::frame::encode_frame;
use crate::protocol::proto::{
    Body, CasRequest, Consistency, DeleteRequest, Envelope, GetRequest, InspectRequest, PutRequest,
};

/// Turn console lines into request frames on standard output (for nc).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "encode")]
pub struct EncodeArgs {
    /// console lines such as 'put 10 hello'; read one per line from standard input if none are given
    #[argh(positional)]
    pub lines: Vec<String>,
    /// the request id of the first frame; later ones count up (default 1)
    #[argh(option, default = "1")]
    pub first_request_id: u64,
    /// starting consistency level: ONE, QUORUM (default) or ALL
    #[argh(option, default = "Consistency::Quorum", from_str_fn(parse_level))]
    pub consistency: Consistency,
}

fn parse_level(text: &str) -> Result<Consistency, String> {
    text.parse()
        .map_err(|e: crate::protocol::error::KvError| e.message)
}

/// Writes one frame per request line; stops at the first line that is not
/// a request, naming it.
pub fn run(args: EncodeArgs) -> Result<(), String> {
    if args.first_request_id == 0 {
        return Err("--first-request-id must be at least 1: id 0 is reserved".into());
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.is_terminal() {
        return Err("encode writes binary frames: pipe it into nc or a file".into());
    }
    let lines: Vec<String> = if args.lines.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read standard input: {e}"))?
    } else {
        args.lines
    };
    let frames = encode_lines(&lines, args.first_request_id, args.consistency)?;
    let written = frames
        .iter()
        .try_for_each(|frame| stdout.write_all(frame))
        .and_then(|()| stdout.flush());
    match written {
        // A reader that stopped early (`| head -c`) ends it quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| format!("cannot write to standard output: {e}")),
    }
}

/// The frames for `lines`, numbered from `first_request_id`.
pub fn encode_lines(
    lines: &[String],
    first_request_id: u64,
    mut level: Consistency,
) -> Result<Vec<Vec<u8>>, String> {
    let mut frames = Vec::new();
    let mut request_id = first_request_id;
    for (number, line) in lines.iter().enumerate() {
        let body =
            match parse_line(line).map_err(|e| format!("line {}: {}", number + 1, e.message))? {
                Command::Nothing | Command::Consistency(None) => continue,
                Command::Consistency(Some(new_level)) => {
                    level = new_level;
                    continue;
                }
                Command::Get(key) => Body::Get(GetRequest {
                    key: Some(key),
                    consistency: level as i32,
                }),
                Command::Put(key, value) => Body::Put(PutRequest {
                    key: Some(key),
                    value,
                    consistency: level as i32,
                }),
                Command::Delete(key) => Body::Delete(DeleteRequest {
                    key: Some(key),
                    consistency: level as i32,
                }),
                Command::Cas(key, expected, value) => Body::Cas(CasRequest {
                    key: Some(key),
                    expected,
                    value,
                }),
                Command::Where(key) => Body::Inspect(InspectRequest { key: Some(key) }),
                // A console script pipes through as it is: `quit` ends it,
                // as it ends the console, and `help` asks for nothing.
                Command::Quit => break,
                Command::Help => {
                    eprintln!(
                        "ringkv encode: line {}: 'help' is for the console; skipped",
                        number + 1
                    );
                    continue;
                }
            };
        frames.push(encode_frame(&Envelope {
            request_id,
            body: Some(body),
        }));
        request_id += 1;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn console_lines_become_numbered_request_frames() {
        let lines: Vec<String> = ["put 10 hello world", "consistency ALL", "", "get 10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let frames = encode_lines(&lines, 5, Consistency::Quorum).expect("encode");
        assert_eq!(frames.len(), 2);
        let second = Envelope::decode(&frames[1][4..]).expect("decode");
        assert_eq!(second.request_id, 6);
        assert_eq!(
            second.body,
            Some(Body::Get(GetRequest {
                key: Some(10),
                consistency: Consistency::All as i32
            }))
        );
        // help asks for nothing, and quit ends the script.
        let lines: Vec<String> = ["help", "get 1", "quit", "get 2"]
            .iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(
            encode_lines(&lines, 1, Consistency::One)
                .expect("encodes")
                .len(),
            1
        );
        let error = encode_lines(&["get x".to_string()], 1, Consistency::One).expect_err("bad");
        assert!(error.contains("line 1"), "{error}");
    }
}
