//! The console's language: parsing one typed line into a command, and
//! rendering each answer as exactly one line.
//!
//! Kept apart from the stdin loop (`cmd/client.rs`) so that every rule of
//! the syntax is tested without a cluster.

use crate::protocol::error::KvError;
use crate::protocol::proto::{replica_holding, Consistency, InspectReply, Versioned};

/// One console command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `get KEY`
    Get(u32),
    /// `put KEY VALUE`
    Put(u32, String),
    /// `delete KEY`: writes a tombstone.
    Delete(u32),
    /// `cas KEY OLD NEW`: write NEW only if the key holds OLD (None: only
    /// if it holds no value).
    Cas(u32, Option<String>, String),
    /// `consistency [LEVEL]`: show or set the level.
    Consistency(Option<Consistency>),
    /// `where KEY`: what each replica of the key holds.
    Where(u32),
    /// `help`
    Help,
    /// `quit` or `exit`
    Quit,
    /// A blank line: nothing to do.
    Nothing,
}

/// What `help` prints.
pub const HELP: &str = "\
commands:
  get KEY                 read KEY (0-255) at the current consistency level
  put KEY VALUE           write VALUE (the rest of the line, or a \"double-quoted\" string)
  delete KEY              delete KEY (a later get answers NOT FOUND)
  cas KEY OLD NEW         write NEW only if KEY holds OLD (OLD - : only if it holds no value)
  consistency [LEVEL]     show, or set to ONE, QUORUM, ALL or SERIAL (gets only), the level of later requests
  where KEY               show what each of KEY's replicas holds, without repairing it
  help                    this text
  quit                    leave (end of input works too)";

/// Parses one line of input.
pub fn parse_line(line: &str) -> Result<Command, KvError> {
    let line = line.trim();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (line, ""),
    };
    match word.to_ascii_lowercase().as_str() {
        "" => Ok(Command::Nothing),
        "get" => Ok(Command::Get(only_key("get", rest)?)),
        "where" => Ok(Command::Where(only_key("where", rest)?)),
        "delete" => Ok(Command::Delete(only_key("delete", rest)?)),
        "put" => {
            let (key, value) = match rest.split_once(char::is_whitespace) {
                Some((key, value)) => (key, value.trim_start()),
                None => (rest, ""),
            };
            if key.is_empty() {
                return Err(KvError::invalid("usage: put KEY VALUE"));
            }
            let key = parse_key(key)?;
            Ok(Command::Put(key, parse_value(value)?))
        }
        "cas" => {
            let usage = || KvError::invalid("usage: cas KEY OLD NEW (OLD - means no value)");
            let (key, rest) = rest.split_once(char::is_whitespace).ok_or_else(usage)?;
            let key = parse_key(key)?;
            let (old, rest) = next_token(rest.trim_start()).map_err(|e| e.unwrap_or_else(usage))?;
            let (new, rest) = next_token(rest.trim_start()).map_err(|e| e.unwrap_or_else(usage))?;
            if !rest.trim().is_empty() {
                return Err(usage());
            }
            let expected = match old {
                Token::Bare(word) if word == "-" => None,
                Token::Bare(word) | Token::Quoted(word) => Some(word),
            };
            let (Token::Bare(new) | Token::Quoted(new)) = new;
            Ok(Command::Cas(key, expected, new))
        }
        "consistency" => match rest {
            "" => Ok(Command::Consistency(None)),
            level => Ok(Command::Consistency(Some(level.parse()?))),
        },
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        _ => Err(KvError::invalid(format!(
            "unknown command {} (type 'help')",
            escaped(first_word(line))
        ))),
    }
}

fn only_key(command: &str, rest: &str) -> Result<u32, KvError> {
    match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
        [key] => parse_key(key),
        _ => Err(KvError::invalid(format!("usage: {command} KEY"))),
    }
}

/// Reads a key. Range checking is the replica's job (it answers INVALID for
/// keys over 255), so the console and every other client get one rule; a
/// number too big to send at all is refused here with the same words.
fn parse_key(text: &str) -> Result<u32, KvError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| KvError::invalid(format!("key {text} is out of range: keys are 0-255")));
    }
    if let Some(digits) = text
        .strip_prefix('-')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(KvError::invalid(format!(
            "key -{digits} is out of range: keys are 0-255"
        )));
    }
    Err(KvError::invalid(format!(
        "key {} is not a number: keys are integers 0-255",
        escaped(text)
    )))
}

/// The rest of the line, or one double-quoted string with `\"`, `\\`, `\n`
/// and `\t` escapes.
fn parse_value(text: &str) -> Result<String, KvError> {
    let text = text.trim_end();
    let Some(quoted) = text.strip_prefix('"') else {
        if text.is_empty() {
            return Err(KvError::invalid(
                "usage: put KEY VALUE (the value is missing)",
            ));
        }
        return Ok(text.to_string());
    };
    let (value, rest) = unquote(quoted)?;
    if !rest.trim().is_empty() {
        return Err(KvError::invalid(
            "unexpected text after the closing '\"' of the value",
        ));
    }
    Ok(value)
}

/// One token of a `cas` line.
enum Token {
    /// A word without spaces or quotes, as typed (`-` means "no value" for OLD).
    Bare(String),
    /// A double-quoted string, unescaped.
    Quoted(String),
}

/// A token and the text after it; a missing token is `Err(None)`, a bad
/// quoted string `Err(Some(error))`.
fn next_token(text: &str) -> Result<(Token, &str), Option<KvError>> {
    if text.is_empty() {
        return Err(None);
    }
    if let Some(quoted) = text.strip_prefix('"') {
        let (value, rest) = unquote(quoted).map_err(Some)?;
        return Ok((Token::Quoted(value), rest));
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (word, rest) = text.split_at(end);
    if word.contains('"') {
        return Err(Some(KvError::invalid(format!(
            "'{word}': a bare value cannot hold a '\"'; quote the whole value"
        ))));
    }
    Ok((Token::Bare(word.to_string()), rest))
}

/// The string that starts just after an opening `"`, unescaped, and the
/// text after its closing `"`.
fn unquote(quoted: &str) -> Result<(String, &str), KvError> {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    loop {
        match chars.next() {
            None => return Err(KvError::invalid("the quoted value has no closing '\"'")),
            Some((at, '"')) => return Ok((value, &quoted[at + 1..])),
            Some((_, '\\')) => match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, other)) => {
                    return Err(KvError::invalid(format!(
                        "unknown escape '\\{other}' in the quoted value"
                    )))
                }
                None => return Err(KvError::invalid("the quoted value has no closing '\"'")),
            },
            Some((_, c)) => value.push(c),
        }
    }
}

/// The answer to a cas: `APPLIED`, or `NOT APPLIED: ` and the current value
/// as `get` shows it (`NOT FOUND` when the key holds none).
pub fn render_cas(applied: bool, current: Option<&Versioned>) -> String {
    if applied {
        return "APPLIED".to_string();
    }
    match current.filter(|version| !version.tombstone) {
        Some(version) => format!("NOT APPLIED: {}", render_value(&version.value)),
        None => "NOT APPLIED: NOT FOUND".to_string(),
    }
}

/// The first word of a line as typed (case kept).
fn first_word(line: &str) -> &str {
    line.trim().split(char::is_whitespace).next().unwrap_or("")
}

/// User text echoed in an error: quoted, with control characters escaped,
/// so a terminal never receives them raw.
fn escaped(text: &str) -> String {
    format!("{text:?}").replace('"', "'")
}

/// How a value is shown: as it is, unless it could be mistaken for
/// something else or not be seen: a line break or another control
/// character, a leading quote, an empty value, a leading or trailing
/// space, or the words of another answer (`OK`, `NOT FOUND`, `ERROR ...`,
/// `APPLIED`, `NOT APPLIED...`); then quoted with escapes.
pub fn render_value(value: &str) -> String {
    let ambiguous = value.chars().any(|c| c.is_control())
        || value.starts_with('"')
        || value.is_empty()
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace)
        || value == "OK"
        || value == "NOT FOUND"
        || value == "APPLIED"
        || value.starts_with("NOT APPLIED")
        || value.starts_with("ERROR");
    if ambiguous {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// One line for `where`: each replica, what it holds, or why it did not say.
pub fn render_holdings(key: u32, reply: &InspectReply) -> String {
    let parts: Vec<String> = reply
        .replicas
        .iter()
        .map(|replica| {
            let id = replica.replica_id;
            match &replica.outcome {
                Some(replica_holding::Outcome::Holding(holding)) => match &holding.found {
                    Some(version) if version.tombstone => format!(
                        "replica {id}: DELETED ts={} coordinator={}",
                        version.timestamp_micros, version.coordinator_id
                    ),
                    Some(version) => format!("replica {id}: {}", render_version(version)),
                    None => format!("replica {id}: NOT FOUND"),
                },
                Some(replica_holding::Outcome::Unreachable(reason)) => {
                    format!("replica {id}: DOWN ({reason})")
                }
                None => format!("replica {id}: no answer"),
            }
        })
        .collect();
    format!("key {key}: {}", parts.join(" | "))
}

/// The longest value `where` shows whole; a longer one is shown by its
/// first bytes and its length, so one line stays one screen line or so.
const WHERE_VALUE_BYTES: usize = 64;

fn render_version(version: &Versioned) -> String {
    let value = &version.value;
    let shown = if value.len() <= WHERE_VALUE_BYTES {
        format!("{value:?}")
    } else {
        let mut end = WHERE_VALUE_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}... ({} bytes)", &value[..end], value.len())
    };
    format!(
        "{shown} ts={} coordinator={}",
        version.timestamp_micros, version.coordinator_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_takes_two_tokens_and_a_bare_dash_means_no_value() {
        assert_eq!(
            parse_line("cas 10 old new"),
            Ok(Command::Cas(10, Some("old".into()), "new".into()))
        );
        assert_eq!(
            parse_line("cas 10 - first"),
            Ok(Command::Cas(10, None, "first".into()))
        );
        assert_eq!(
            parse_line(r#"cas 10 "-" "two words""#),
            Ok(Command::Cas(10, Some("-".into()), "two words".into()))
        );
        assert_eq!(
            parse_line(r#"CAS 7 "a\"b" """#),
            Ok(Command::Cas(7, Some("a\"b".into()), String::new()))
        );
        for bad in [
            "cas",
            "cas 10",
            "cas 10 old",
            "cas 10 a b c",
            "cas x a b",
            r#"cas 1 "a b"#,
            "cas 1 a\"b c",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
        assert_eq!(render_cas(true, None), "APPLIED");
        assert_eq!(render_cas(false, None), "NOT APPLIED: NOT FOUND");
        let held = Versioned {
            value: "OK".into(),
            ..Versioned::default()
        };
        assert_eq!(render_cas(false, Some(&held)), "NOT APPLIED: \"OK\"");
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse_line("get 10"), Ok(Command::Get(10)));
        assert_eq!(parse_line("  GET   10  "), Ok(Command::Get(10)));
        assert_eq!(
            parse_line("put 10 hello world"),
            Ok(Command::Put(10, "hello world".into()))
        );
        assert_eq!(
            parse_line("put 10 \"a \\\"b\\\" \\\\ c \""),
            Ok(Command::Put(10, "a \"b\" \\ c ".into()))
        );
        assert_eq!(parse_line("put 7 \"\""), Ok(Command::Put(7, String::new())));
        assert_eq!(parse_line("where 200"), Ok(Command::Where(200)));
        assert_eq!(parse_line("delete 7"), Ok(Command::Delete(7)));
        assert_eq!(parse_line("consistency"), Ok(Command::Consistency(None)));
        assert_eq!(
            parse_line("consistency all"),
            Ok(Command::Consistency(Some(Consistency::All)))
        );
        assert_eq!(parse_line(""), Ok(Command::Nothing));
        assert_eq!(parse_line("quit"), Ok(Command::Quit));
        assert_eq!(parse_line("help"), Ok(Command::Help));
    }

    #[test]
    fn bad_lines_get_clear_errors() {
        let message = |line: &str| parse_line(line).expect_err(line).message;
        assert!(message("get abc").contains("not a number"));
        assert!(message("get -1").contains("key -1 is out of range: keys are 0-255"));
        assert!(message("get 4294967296").contains("out of range"));
        assert!(message("get").contains("usage: get KEY"));
        assert!(message("get 1 2").contains("usage: get KEY"));
        assert!(message("delete").contains("usage: delete KEY"));
        assert!(message("put 10").contains("value is missing"));
        assert!(message("put").contains("usage: put KEY VALUE"));
        assert!(message("put 1 \"open").contains("no closing"));
        assert!(message("put 1 \"a\" b").contains("after the closing"));
        assert!(message("put 1 \"\\q\"").contains("unknown escape"));
        assert!(message("consistency TWO").contains("unknown consistency level"));
        assert!(message("frobnicate 1").contains("unknown command 'frobnicate'"));
    }

    #[test]
    fn values_that_would_break_the_line_are_quoted() {
        assert_eq!(render_value("hello world"), "hello world");
        assert_eq!(render_value("two\nlines"), "\"two\\nlines\"");
        assert_eq!(render_value("\"quoted\""), "\"\\\"quoted\\\"\"");
        assert_eq!(render_value("NOT FOUND"), "\"NOT FOUND\"");
        assert_eq!(render_value("OK"), "\"OK\"");
        assert_eq!(
            render_value("ERROR TIMEOUT: fake"),
            "\"ERROR TIMEOUT: fake\""
        );
        assert_eq!(render_value("OKAY"), "OKAY");
        assert_eq!(render_value(""), "\"\"");
        assert_eq!(render_value(" padded "), "\" padded \"");
        assert_eq!(render_value("APPLIED"), "\"APPLIED\"");
    }
}
