//! Turning the bytes a terminal sends in raw mode into keys.
//!
//! A terminal sends a typed character as its UTF-8 bytes, a control key as
//! one byte below 0x20, and an arrow or Home key as an escape sequence
//! (`ESC [ A`). Any of these may be split across two reads, so the decoder
//! keeps what it has seen of an unfinished one; bytes that make no key it
//! knows are dropped, never turned into text. No I/O here.

/// One thing the user did at the keyboard, named by what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character to insert at the cursor.
    Insert(char),
    /// Enter (CR or LF): submit the line.
    Enter,
    /// Backspace or Ctrl-H: delete the character before the cursor.
    Backspace,
    /// The Delete key: delete the character under the cursor.
    Delete,
    /// Ctrl-D: end of input on an empty line, else Delete.
    CtrlD,
    /// Left arrow or Ctrl-B.
    Left,
    /// Right arrow or Ctrl-F.
    Right,
    /// Ctrl-Left or Alt-B: to the start of the word before the cursor.
    WordLeft,
    /// Ctrl-Right or Alt-F: to the end of the word after the cursor.
    WordRight,
    /// Home or Ctrl-A.
    Home,
    /// End or Ctrl-E.
    End,
    /// Up arrow or Ctrl-P: the previous history line.
    HistoryPrevious,
    /// Down arrow or Ctrl-N: the next history line.
    HistoryNext,
    /// Ctrl-W: delete back to the previous whitespace.
    KillToWhitespace,
    /// Alt-Backspace: delete back to the start of the word (letters and digits).
    KillWord,
    /// Ctrl-U: delete from the start of the line to the cursor.
    KillToStart,
    /// Ctrl-K: delete from the cursor to the end of the line.
    KillToEnd,
    /// Ctrl-Y: insert the text the last kill deleted.
    Yank,
    /// Ctrl-C: abandon the line.
    Interrupt,
    /// Ctrl-L: clear the screen.
    ClearScreen,
}

/// The longest escape sequence kept; a longer one is garbage and dropped,
/// so a stream of junk cannot grow the decoder without bound.
const MAX_SEQUENCE_BYTES: usize = 16;

/// Bytes in, keys out; remembers an unfinished sequence between calls.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    state: State,
    /// The bytes of the unfinished UTF-8 character or escape sequence.
    held: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Ground,
    /// Just after a CR: an LF right after it is the same Enter.
    AfterCr,
    /// After ESC.
    Escape,
    /// After `ESC [`: parameters until a final byte.
    Csi,
    /// Inside an escape sequence too long to be a key: skipped to its end.
    SkippingCsi,
    /// After `ESC O`: one final byte.
    Ss3,
    /// Inside a UTF-8 character: this many continuation bytes still to come.
    Utf8(usize),
}

impl KeyDecoder {
    /// A decoder at the start of input.
    pub fn new() -> KeyDecoder {
        KeyDecoder::default()
    }

    /// Decodes `bytes`, appending the keys they complete to `keys`.
    pub fn feed(&mut self, bytes: &[u8], keys: &mut Vec<Key>) {
        for &byte in bytes {
            self.byte(byte, keys);
        }
    }

    fn byte(&mut self, byte: u8, keys: &mut Vec<Key>) {
        match self.state {
            State::Ground | State::AfterCr => {
                let after_cr = self.state == State::AfterCr;
                self.state = State::Ground;
                if !(after_cr && byte == b'\n') {
                    self.ground(byte, keys);
                }
            }
            State::Escape => {
                self.state = State::Ground;
                match byte {
                    b'[' => self.state = State::Csi,
                    b'O' => self.state = State::Ss3,
                    0x7f | 0x08 => keys.push(Key::KillWord),
                    b'b' | b'B' => keys.push(Key::WordLeft),
                    b'f' | b'F' => keys.push(Key::WordRight),
                    0x1b => self.state = State::Escape,
                    // An Alt-chord with no meaning here: dropped whole.
                    _ => {}
                }
            }
            State::Csi | State::SkippingCsi => match byte {
                0x40..=0x7e => {
                    if self.state == State::Csi {
                        keys.extend(csi_key(&self.held, byte));
                    }
                    self.state = State::Ground;
                    self.held.clear();
                }
                0x20..=0x3f if self.held.len() < MAX_SEQUENCE_BYTES => self.held.push(byte),
                0x20..=0x3f => {
                    self.held.clear();
                    self.state = State::SkippingCsi;
                }
                // A control key (or anything else) cuts the sequence short
                // and counts on its own, as in a terminal.
                _ => {
                    self.held.clear();
                    self.state = State::Ground;
                    self.byte(byte, keys);
                }
            },
            State::Ss3 => {
                self.state = State::Ground;
                keys.extend(csi_key(&[], byte));
            }
            State::Utf8(more) => {
                if byte & 0xc0 != 0x80 {
                    // The character was cut short: drop it, and read this
                    // byte afresh.
                    self.held.clear();
                    self.state = State::Ground;
                    return self.byte(byte, keys);
                }
                self.held.push(byte);
                if more > 1 {
                    self.state = State::Utf8(more - 1);
                    return;
                }
                self.state = State::Ground;
                // Overlong forms and surrogates fail here and are dropped.
                if let Some(c) = std::str::from_utf8(&self.held)
                    .ok()
                    .and_then(|s| s.chars().next())
                {
                    keys.push(Key::Insert(c));
                }
                self.held.clear();
            }
        }
    }

    fn ground(&mut self, byte: u8, keys: &mut Vec<Key>) {
        let key = match byte {
            0x01 => Key::Home,
            0x02 => Key::Left,
            0x03 => Key::Interrupt,
            0x04 => Key::CtrlD,
            0x05 => Key::End,
            0x06 => Key::Right,
            0x08 | 0x7f => Key::Backspace,
            0x0a => Key::Enter,
            0x0b => Key::KillToEnd,
            0x0c => Key::ClearScreen,
            0x0d => {
                self.state = State::AfterCr;
                Key::Enter
            }
            0x0e => Key::HistoryNext,
            0x10 => Key::HistoryPrevious,
            0x15 => Key::KillToStart,
            0x17 => Key::KillToWhitespace,
            0x19 => Key::Yank,
            0x1b => {
                self.state = State::Escape;
                return;
            }
            0x20..=0x7e => Key::Insert(byte as char),
            // The first byte of a UTF-8 character says how many follow.
            0xc2..=0xf4 => {
                let more = match byte {
                    0xc2..=0xdf => 1,
                    0xe0..=0xef => 2,
                    _ => 3,
                };
                self.held.clear();
                self.held.push(byte);
                self.state = State::Utf8(more);
                return;
            }
            // Tab, other control keys, stray continuation bytes: nothing.
            _ => return,
        };
        keys.push(key);
    }
}

/// The key of `ESC [ params final` (or `ESC O final`, with no params).
fn csi_key(params: &[u8], last: u8) -> Option<Key> {
    let text = std::str::from_utf8(params).unwrap_or("");
    let mut numbers = text.split(';').map(|n| n.parse::<u32>().unwrap_or(1));
    let first = numbers.next().unwrap_or(1);
    // xterm's modifier parameter: 1 + (shift 1, alt 2, ctrl 4).
    let modifier = numbers.next().unwrap_or(1).saturating_sub(1);
    let by_word = modifier & 0b110 != 0;
    Some(match last {
        b'A' => Key::HistoryPrevious,
        b'B' => Key::HistoryNext,
        b'C' if by_word => Key::WordRight,
        b'C' => Key::Right,
        b'D' if by_word => Key::WordLeft,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        b'~' => match first {
            1 | 7 => Key::Home,
            4 | 8 => Key::End,
            3 => Key::Delete,
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut keys = Vec::new();
        KeyDecoder::new().feed(bytes, &mut keys);
        keys
    }

    #[test]
    fn control_keys_are_named_by_what_they_do() {
        use Key::*;
        let expected = [
            (0x01, Home),
            (0x02, Left),
            (0x03, Interrupt),
            (0x04, CtrlD),
            (0x05, End),
            (0x06, Right),
            (0x08, Backspace),
            (0x7f, Backspace),
            (0x0a, Enter),
            (0x0b, KillToEnd),
            (0x0c, ClearScreen),
            (0x0d, Enter),
            (0x0e, HistoryNext),
            (0x10, HistoryPrevious),
            (0x15, KillToStart),
            (0x17, KillToWhitespace),
            (0x19, Yank),
        ];
        for (byte, key) in expected {
            assert_eq!(keys(&[byte]), vec![key], "byte {byte:#04x}");
        }
        // Tab and unbound control keys insert nothing.
        assert_eq!(keys(b"\t\x07\x1a"), vec![]);
    }

    #[test]
    fn escape_sequences_of_xterm_and_the_linux_console() {
        use Key::*;
        let expected: [(&[u8], Key); 20] = [
            (b"\x1b[A", HistoryPrevious),
            (b"\x1b[B", HistoryNext),
            (b"\x1b[C", Right),
            (b"\x1b[D", Left),
            (b"\x1bOA", HistoryPrevious),
            (b"\x1bOD", Left),
            (b"\x1b[H", Home),
            (b"\x1b[F", End),
            (b"\x1bOH", Home),
            (b"\x1bOF", End),
            (b"\x1b[1~", Home),
            (b"\x1b[7~", Home),
            (b"\x1b[4~", End),
            (b"\x1b[8~", End),
            (b"\x1b[3~", Delete),
            (b"\x1b[1;5C", WordRight),
            (b"\x1b[1;5D", WordLeft),
            (b"\x1b\x7f", KillWord),
            (b"\x1bb", WordLeft),
            (b"\x1bf", WordRight),
        ];
        for (bytes, key) in expected {
            assert_eq!(keys(bytes), vec![key], "{bytes:?}");
        }
        // Unknown sequences and Alt-chords are dropped whole.
        assert_eq!(keys(b"\x1b[5~\x1b[200~\x1bx\x1b[Z"), vec![]);
    }

    #[test]
    fn a_sequence_split_across_reads_is_one_key() {
        let mut decoder = KeyDecoder::new();
        let mut out = Vec::new();
        for byte in b"\x1b[1;5C\xc3\xa9\xe2\x82\xac" {
            decoder.feed(&[*byte], &mut out);
        }
        assert_eq!(
            out,
            vec![Key::WordRight, Key::Insert('é'), Key::Insert('€')]
        );
    }

    #[test]
    fn utf8_becomes_characters_and_broken_utf8_is_dropped() {
        use Key::Insert;
        assert_eq!(
            keys("aé€😀".as_bytes()),
            vec![Insert('a'), Insert('é'), Insert('€'), Insert('😀')]
        );
        // A cut-short character, a stray continuation byte, an overlong
        // form and a surrogate: only the good characters around them stay.
        assert_eq!(keys(b"\xc3x\x80y\xe0\x80\x80\xed\xa0\x80z"), {
            vec![Insert('x'), Insert('y'), Insert('z')]
        });
    }

    #[test]
    fn crlf_is_one_enter_and_lf_lf_is_two() {
        assert_eq!(keys(b"a\r\nb"), {
            vec![Key::Insert('a'), Key::Enter, Key::Insert('b')]
        });
        assert_eq!(keys(b"\n\n"), vec![Key::Enter, Key::Enter]);
        assert_eq!(keys(b"\r\r"), vec![Key::Enter, Key::Enter]);
    }

    #[test]
    fn an_endless_escape_sequence_is_dropped_not_kept() {
        let mut decoder = KeyDecoder::new();
        let mut out = Vec::new();
        decoder.feed(b"\x1b[", &mut out);
        decoder.feed(&[b'1'; 1000], &mut out);
        decoder.feed(b"a", &mut out);
        assert!(decoder.held.len() <= MAX_SEQUENCE_BYTES);
        assert_eq!(out, vec![]);
        // The decoder reads on normally afterwards, and a control key
        // inside a sequence still counts.
        decoder.feed(b"\x1b[Dq\x1b[1\x03", &mut out);
        assert_eq!(out, vec![Key::Left, Key::Insert('q'), Key::Interrupt]);
    }
}
