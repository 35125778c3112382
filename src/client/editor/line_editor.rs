//! The line being typed, as a state machine: keys in, text, cursor and
//! outcomes out.
//!
//! It owns the editing rules (what each key does to the text, how history
//! is walked) and nothing else: no terminal, no drawing, no files, so every
//! rule is a unit test. The text is a sequence of characters and the cursor
//! an index into it, so a multi-byte UTF-8 character is one step for the
//! arrows and one deletion for Backspace.

use std::collections::HashMap;

use super::keys::Key;

/// What a key did, for the reader to act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The text or cursor may have changed: redraw.
    Edited,
    /// Enter: the finished line. The editor is empty again.
    Submitted(String),
    /// Ctrl-C: the line was abandoned (here as it was, to show it so). The
    /// editor is empty again.
    Interrupted(String),
    /// Ctrl-D on an empty line: no more input.
    EndOfInput,
    /// Ctrl-L: clear the screen, then redraw.
    ClearScreen,
}

/// The line being edited, and where it is in the history.
#[derive(Debug, Default)]
pub struct LineEditor {
    text: Vec<char>,
    /// Index into `text`: the cursor sits before `text[cursor]`.
    cursor: usize,
    /// The history line shown, or `None` for the new line.
    shown: Option<usize>,
    /// Lines changed while walking the history, by history index (the new
    /// line at `history.len()`), so walking away and back keeps an edit.
    /// Forgotten when the line is submitted: the history itself never changes.
    edited: HashMap<usize, Vec<char>>,
    /// What the last kill deleted, for Ctrl-Y; kept from line to line.
    killed: Vec<char>,
}

impl LineEditor {
    /// An editor with an empty line.
    pub fn new() -> LineEditor {
        LineEditor::default()
    }

    /// The text as it stands.
    pub fn text(&self) -> &[char] {
        &self.text
    }

    /// Where the cursor is, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Applies one key; `history` is the earlier lines, oldest first.
    pub fn apply(&mut self, key: Key, history: &[String]) -> Outcome {
        let len = self.text.len();
        match key {
            Key::Insert(c) => {
                self.text.insert(self.cursor, c);
                self.cursor += 1;
            }
            Key::Enter => {
                let line = self.text.iter().collect();
                self.start_over();
                return Outcome::Submitted(line);
            }
            Key::Interrupt => {
                let abandoned = self.text.iter().collect();
                self.start_over();
                return Outcome::Interrupted(abandoned);
            }
            Key::CtrlD if self.text.is_empty() => return Outcome::EndOfInput,
            Key::CtrlD | Key::Delete => {
                if self.cursor < len {
                    self.text.remove(self.cursor);
                }
            }
            Key::Backspace => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.text.remove(self.cursor);
                }
            }
            Key::Left => self.cursor = self.cursor.saturating_sub(1),
            Key::Right => self.cursor = (self.cursor + 1).min(len),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = len,
            Key::WordLeft => self.cursor = self.word_start(char::is_alphanumeric),
            Key::WordRight => self.cursor = self.word_end(),
            Key::KillToWhitespace => {
                let start = self.word_start(|c| !c.is_whitespace());
                self.kill(start, self.cursor);
            }
            Key::KillWord => self.kill(self.word_start(char::is_alphanumeric), self.cursor),
            Key::KillToStart => self.kill(0, self.cursor),
            Key::KillToEnd => self.kill(self.cursor, len),
            Key::Yank => {
                let at = self.cursor;
                self.text.splice(at..at, self.killed.iter().copied());
                self.cursor += self.killed.len();
            }
            Key::HistoryPrevious => {
                let at = self.shown.unwrap_or(history.len());
                if at > 0 {
                    self.show(at - 1, history);
                }
            }
            Key::HistoryNext => {
                if let Some(at) = self.shown {
                    self.show(at + 1, history);
                }
            }
            Key::ClearScreen => return Outcome::ClearScreen,
        }
        Outcome::Edited
    }

    /// Empties the line for the next one; the kill buffer stays.
    fn start_over(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.shown = None;
        self.edited.clear();
    }

    /// Deletes `text[start..end]`, keeping it for Ctrl-Y; the cursor goes
    /// to `start`.
    fn kill(&mut self, start: usize, end: usize) {
        if start < end {
            self.killed = self.text.drain(start..end).collect();
            self.cursor = start;
        }
    }

    /// Where the word before the cursor starts: back over characters that
    /// are not `in_word`, then over those that are.
    fn word_start(&self, in_word: impl Fn(char) -> bool) -> usize {
        let mut at = self.cursor;
        while at > 0 && !in_word(self.text[at - 1]) {
            at -= 1;
        }
        while at > 0 && in_word(self.text[at - 1]) {
            at -= 1;
        }
        at
    }

    /// Where the word after the cursor ends (letters and digits).
    fn word_end(&self) -> usize {
        let mut at = self.cursor;
        let len = self.text.len();
        while at < len && !self.text[at].is_alphanumeric() {
            at += 1;
        }
        while at < len && self.text[at].is_alphanumeric() {
            at += 1;
        }
        at
    }

    /// Shows history line `to` (`history.len()`: the new line), keeping the
    /// line shown now, edits and all, to come back to.
    fn show(&mut self, to: usize, history: &[String]) {
        let from = self.shown.unwrap_or(history.len());
        self.edited.insert(from, std::mem::take(&mut self.text));
        self.text = match self.edited.remove(&to) {
            Some(text) => text,
            None => history
                .get(to)
                .map(|l| l.chars().collect())
                .unwrap_or_default(),
        };
        self.shown = (to < history.len()).then_some(to);
        self.cursor = self.text.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Key::*;

    /// Types `text` as Insert keys, then applies `keys`; returns the editor.
    fn typed(text: &str, keys: &[Key]) -> LineEditor {
        let mut editor = LineEditor::new();
        for c in text.chars() {
            editor.apply(Insert(c), &[]);
        }
        for &key in keys {
            editor.apply(key, &[]);
        }
        editor
    }

    /// The text with `|` at the cursor.
    fn shown(editor: &LineEditor) -> String {
        let mut text: String = editor.text()[..editor.cursor()].iter().collect();
        text.push('|');
        text.extend(&editor.text()[editor.cursor()..]);
        text
    }

    #[test]
    fn typing_a_mistake_and_backspacing_over_it() {
        let mut editor = typed("put 1 hellx", &[Backspace, Insert('o')]);
        assert_eq!(shown(&editor), "put 1 hello|");
        assert_eq!(
            editor.apply(Enter, &[]),
            Outcome::Submitted("put 1 hello".into())
        );
        assert_eq!(shown(&editor), "|", "the next line starts empty");
    }

    #[test]
    fn arrows_home_and_end_move_within_the_line() {
        assert_eq!(shown(&typed("abc", &[Left])), "ab|c");
        assert_eq!(shown(&typed("abc", &[Left, Left, Left, Left])), "|abc");
        assert_eq!(shown(&typed("abc", &[Home, Right])), "a|bc");
        assert_eq!(shown(&typed("abc", &[Right])), "abc|");
        assert_eq!(shown(&typed("abc", &[Home, End])), "abc|");
        assert_eq!(shown(&typed("ac", &[Left, Insert('b')])), "ab|c");
    }

    #[test]
    fn backspace_and_delete_at_the_edges_do_nothing() {
        assert_eq!(shown(&typed("ab", &[Home, Backspace])), "|ab");
        assert_eq!(shown(&typed("ab", &[Delete])), "ab|");
        assert_eq!(shown(&typed("abc", &[Home, Delete])), "|bc");
        assert_eq!(shown(&typed("abc", &[Left, Backspace])), "a|c");
    }

    #[test]
    fn ctrl_d_ends_input_only_on_an_empty_line() {
        let mut editor = typed("abc", &[Home]);
        assert_eq!(editor.apply(CtrlD, &[]), Outcome::Edited);
        assert_eq!(
            shown(&editor),
            "|bc",
            "it deleted the character under the cursor"
        );
        editor.apply(End, &[]);
        assert_eq!(editor.apply(CtrlD, &[]), Outcome::Edited);
        assert_eq!(
            shown(&editor),
            "bc|",
            "at the end of a line it does nothing"
        );
        assert_eq!(LineEditor::new().apply(CtrlD, &[]), Outcome::EndOfInput);
        let mut emptied = typed("x", &[Backspace]);
        assert_eq!(emptied.apply(CtrlD, &[]), Outcome::EndOfInput);
    }

    #[test]
    fn ctrl_c_abandons_the_line() {
        let mut editor = typed("put 2 half", &[Left]);
        assert_eq!(
            editor.apply(Interrupt, &[]),
            Outcome::Interrupted("put 2 half".into())
        );
        assert_eq!(shown(&editor), "|");
    }

    #[test]
    fn kills_to_the_start_and_to_the_end_and_yank_brings_back() {
        assert_eq!(shown(&typed("put 1 abc", &[Left, KillToStart])), "|c");
        assert_eq!(shown(&typed("put 1 abc", &[Home, KillToEnd])), "|");
        assert_eq!(
            shown(&typed("put 1 abc", &[Left, Left, KillToEnd])),
            "put 1 a|"
        );
        assert_eq!(
            shown(&typed("put 1 abc", &[Left, KillToStart, End, Yank])),
            "cput 1 ab|"
        );
        // A kill of nothing keeps the last kill.
        assert_eq!(
            shown(&typed("ab", &[KillToStart, KillToStart, Yank])),
            "ab|"
        );
    }

    #[test]
    fn ctrl_w_kills_back_to_whitespace_and_alt_backspace_to_a_word_start() {
        assert_eq!(shown(&typed("put 1 a-b.c", &[KillToWhitespace])), "put 1 |");
        assert_eq!(
            shown(&typed("put 1 a-b.c  ", &[KillToWhitespace])),
            "put 1 |"
        );
        assert_eq!(shown(&typed("put 1 a-b.c", &[KillWord])), "put 1 a-b.|");
        assert_eq!(shown(&typed("put 1 a-b.", &[KillWord])), "put 1 a-|");
        assert_eq!(shown(&typed("get 12", &[Left, KillToWhitespace])), "get |2");
        assert_eq!(shown(&typed("ab", &[Home, KillToWhitespace])), "|ab");
        assert_eq!(
            shown(&typed(
                "put 1 x",
                &[KillToWhitespace, KillToWhitespace, Yank]
            )),
            "put 1 |",
            "Ctrl-Y brings back the last kill only"
        );
    }

    #[test]
    fn word_moves() {
        assert_eq!(shown(&typed("put 12 a-b", &[WordLeft])), "put 12 a-|b");
        assert_eq!(
            shown(&typed("put 12 a-b", &[WordLeft, WordLeft, WordLeft])),
            "put |12 a-b"
        );
        assert_eq!(shown(&typed("put 12 a", &[Home, WordRight])), "put| 12 a");
        assert_eq!(
            shown(&typed("put 12 a", &[Home, WordRight, WordRight])),
            "put 12| a"
        );
        assert_eq!(shown(&typed("a ", &[Home, WordRight, WordRight])), "a |");
    }

    #[test]
    fn multi_byte_characters_are_edited_one_character_at_a_time() {
        assert_eq!(
            shown(&typed("put 1 wörld", &[Left, Left, Left])),
            "put 1 wö|rld"
        );
        assert_eq!(
            shown(&typed("put 1 wörld", &[Left, Left, Left, Backspace])),
            "put 1 w|rld"
        );
        assert_eq!(shown(&typed("日本語", &[Home, Delete])), "|本語");
        assert_eq!(shown(&typed("a😀b", &[Left, Left, Insert('é')])), "aé|😀b");
        assert_eq!(shown(&typed("x é€", &[KillWord])), "x |");
        let mut editor = typed("π≈3", &[]);
        assert_eq!(editor.apply(Enter, &[]), Outcome::Submitted("π≈3".into()));
    }

    fn history() -> Vec<String> {
        vec!["put 1 hello".into(), "get 1".into(), "where 1".into()]
    }

    #[test]
    fn up_and_down_walk_the_history_and_come_back_to_the_new_line() {
        let history = history();
        let mut editor = LineEditor::new();
        editor.apply(Insert('g'), &history);
        editor.apply(HistoryPrevious, &history);
        assert_eq!(shown(&editor), "where 1|");
        editor.apply(HistoryPrevious, &history);
        editor.apply(HistoryPrevious, &history);
        assert_eq!(shown(&editor), "put 1 hello|");
        editor.apply(HistoryPrevious, &history);
        assert_eq!(
            shown(&editor),
            "put 1 hello|",
            "the oldest line is as far as it goes"
        );
        for _ in 0..3 {
            editor.apply(HistoryNext, &history);
        }
        assert_eq!(shown(&editor), "g|", "the line being typed is kept");
        editor.apply(HistoryNext, &history);
        assert_eq!(shown(&editor), "g|");
    }

    #[test]
    fn an_edited_history_line_is_kept_while_walking_and_the_history_is_unchanged() {
        let history = history();
        let mut editor = LineEditor::new();
        editor.apply(HistoryPrevious, &history);
        editor.apply(HistoryPrevious, &history);
        editor.apply(Backspace, &history);
        editor.apply(Insert('2'), &history);
        assert_eq!(shown(&editor), "get 2|");
        editor.apply(HistoryPrevious, &history);
        editor.apply(HistoryNext, &history);
        assert_eq!(shown(&editor), "get 2|", "the edit survived walking away");
        editor.apply(HistoryNext, &history);
        assert_eq!(shown(&editor), "where 1|", "other lines are as they were");
        editor.apply(HistoryPrevious, &history);
        assert_eq!(
            editor.apply(Enter, &history),
            Outcome::Submitted("get 2".into())
        );
        // After submitting, the history reads as it did: edits are forgotten.
        editor.apply(HistoryPrevious, &history);
        editor.apply(HistoryPrevious, &history);
        assert_eq!(shown(&editor), "get 1|");
    }

    #[test]
    fn ctrl_c_on_a_history_line_starts_again_at_the_newest() {
        let history = history();
        let mut editor = LineEditor::new();
        editor.apply(HistoryPrevious, &history);
        editor.apply(HistoryPrevious, &history);
        editor.apply(Interrupt, &history);
        editor.apply(HistoryPrevious, &history);
        assert_eq!(shown(&editor), "where 1|");
    }

    #[test]
    fn history_on_an_empty_history_does_nothing() {
        let mut editor = typed("abc", &[HistoryPrevious, HistoryNext]);
        assert_eq!(shown(&editor), "abc|");
        assert_eq!(editor.apply(ClearScreen, &[]), Outcome::ClearScreen);
        assert_eq!(shown(&editor), "abc|", "Ctrl-L keeps the line");
    }
}
