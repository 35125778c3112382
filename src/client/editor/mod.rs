//! Line editing and history for the console on a terminal.
//!
//! `LineReader::read_line` is the console's `read_line` when standard input
//! and output are both terminals: it puts the terminal in raw mode for the
//! length of one line, decodes keys (`keys`), applies them to the line
//! (`line_editor`), redraws it (`render`), and saves what was entered
//! (`history`). The terminal is back as it was before the line is returned,
//! so commands run and print exactly as they do without the editor. Keys
//! typed ahead (a paste of several lines) wait for the next `read_line`.
//!
//! It blocks on standard input: call it from a blocking thread, never
//! from a task of the runtime.

pub mod history;
pub mod keys;
pub mod line_editor;
pub mod render;
pub mod terminal;

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use history::History;
use keys::{Key, KeyDecoder};
use line_editor::{LineEditor, Outcome};
use render::View;

/// The width assumed when the terminal does not say.
const DEFAULT_COLUMNS: usize = 80;

/// Reads edited lines from the terminal, keeping their history.
pub struct LineReader {
    history: History,
    decoder: KeyDecoder,
    /// Keys read but not yet applied: they belong to the next lines.
    typed_ahead: VecDeque<Key>,
    editor: LineEditor,
    /// Whether saving the history failed once already (said only once).
    history_failed: bool,
}

impl LineReader {
    /// A reader with this history.
    pub fn new(history: History) -> LineReader {
        LineReader {
            history,
            decoder: KeyDecoder::new(),
            typed_ahead: VecDeque::new(),
            editor: LineEditor::new(),
            history_failed: false,
        }
    }

    /// Shows `prompt` and returns the line the user enters; `None` when
    /// they are done (Ctrl-D on an empty line, or the terminal closed).
    pub fn read_line(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let raw_mode = terminal::RawMode::enter()?;
        let line = self.edit(prompt);
        drop(raw_mode);
        if let Ok(Some(line)) = &line {
            if let Err(problem) = self.history.add(line) {
                if !self.history_failed {
                    self.history_failed = true;
                    eprintln!("ringkv: {problem}; the history is kept for this session only");
                }
            }
        }
        line
    }

    /// The editing loop, in raw mode: apply the keys there are, redraw,
    /// read more.
    fn edit(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let mut out = io::stdout().lock();
        let mut view = View::new();
        let mut redraw = true;
        let mut bytes = [0u8; 4096];
        let mut keys = Vec::new();
        loop {
            while let Some(key) = self.typed_ahead.pop_front() {
                match self.editor.apply(key, self.history.lines()) {
                    Outcome::Edited => redraw = true,
                    Outcome::Submitted(line) => {
                        out.write_all(render::submitted(prompt, &line).as_bytes())?;
                        out.flush()?;
                        return Ok(Some(line));
                    }
                    Outcome::Interrupted(abandoned) => {
                        // Show the line whole as it was (keys since the last
                        // redraw included), then ^C after it.
                        let abandoned: Vec<char> = abandoned.chars().collect();
                        let row = view.redraw(prompt, &abandoned, abandoned.len(), width());
                        write!(out, "{row}^C\r\n")?;
                        view = View::new();
                        redraw = true;
                    }
                    Outcome::EndOfInput => return self.finish(&mut out, &mut view, prompt),
                    Outcome::ClearScreen => {
                        // Home, then erase the whole screen.
                        out.write_all(b"\x1b[H\x1b[2J")?;
                        redraw = true;
                    }
                }
            }
            if redraw {
                let text = self.editor.text();
                let row = view.redraw(prompt, text, self.editor.cursor(), width());
                out.write_all(row.as_bytes())?;
                out.flush()?;
                redraw = false;
            }
            let read = match io::stdin().read(&mut bytes) {
                Ok(0) => return self.finish(&mut out, &mut view, prompt),
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.decoder.feed(&bytes[..read], &mut keys);
            self.typed_ahead.extend(keys.drain(..));
        }
    }

    /// The end of input: the row shows the line as it is, and the cursor
    /// goes to a new row for whatever runs next.
    fn finish(
        &self,
        out: &mut impl Write,
        view: &mut View,
        prompt: &str,
    ) -> io::Result<Option<String>> {
        let text = self.editor.text();
        write!(
            out,
            "{}\r\n",
            view.redraw(prompt, text, text.len(), width())
        )?;
        out.flush()?;
        Ok(None)
    }
}

/// The terminal's width now (it may have been resized).
fn width() -> usize {
    terminal::columns().unwrap_or(DEFAULT_COLUMNS)
}
