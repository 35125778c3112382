//! Drawing the line being edited on one terminal row.
//!
//! The prompt and the text stay on one row whatever their length: a line
//! wider than the terminal scrolls sideways to keep the cursor in view, so
//! a redraw never has to know how many rows a wrapped line took. It is
//! drawn with the few sequences every terminal since the VT100 knows (go
//! to column 0, clear to the end of the row, move right). No I/O here: it
//! returns the text to write.

/// How many terminal columns a character takes: 2 for the wide characters
/// of East Asian scripts and emoji, 0 for combining marks and zero-width
/// characters, 1 for the rest. A short table covering the common ranges,
/// not all of Unicode: a rarer wide character only misplaces the cursor
/// until the next redraw.
pub fn columns(c: char) -> usize {
    match c as u32 {
        0x0300..=0x036f
        | 0x1ab0..=0x1aff
        | 0x1dc0..=0x1dff
        | 0x200b..=0x200f
        | 0x20d0..=0x20ff
        | 0xfe00..=0xfe0f
        | 0xfe20..=0xfe2f => 0,
        0x1100..=0x115f
        | 0x2e80..=0x303e
        | 0x3041..=0x33ff
        | 0x3400..=0x4dbf
        | 0x4e00..=0x9fff
        | 0xa000..=0xa4cf
        | 0xac00..=0xd7a3
        | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f
        | 0xff00..=0xff60
        | 0xffe0..=0xffe6
        | 0x1f300..=0x1f64f
        | 0x1f900..=0x1f9ff
        | 0x20000..=0x3fffd => 2,
        _ => 1,
    }
}

fn width(text: &[char]) -> usize {
    text.iter().map(|&c| columns(c)).sum()
}

/// Which part of the text is on screen: kept from one redraw to the next,
/// so the view only scrolls when the cursor would leave it.
#[derive(Debug, Default)]
pub struct View {
    /// The first character shown.
    first: usize,
}

impl View {
    /// A view of a new line, scrolled to its start.
    pub fn new() -> View {
        View::default()
    }

    /// What redraws the row: the prompt, as much of the text as fits with
    /// the cursor in view, then the cursor put in its place. `terminal_columns`
    /// is the terminal's width.
    pub fn redraw(
        &mut self,
        prompt: &str,
        text: &[char],
        cursor: usize,
        terminal_columns: usize,
    ) -> String {
        let prompt_columns = prompt.chars().map(columns).sum::<usize>();
        // The last column stays free: a character written there makes some
        // terminals wrap to the next row.
        let room = terminal_columns.saturating_sub(prompt_columns + 1).max(2);
        if width(text) <= room {
            self.first = 0;
        } else {
            self.first = self.first.min(cursor);
            let mut before_cursor = width(&text[self.first..cursor]);
            while before_cursor > room {
                before_cursor -= columns(text[self.first]);
                self.first += 1;
            }
            // After a deletion at the end, show more of the left instead
            // of empty space on the right.
            let mut shown = width(&text[self.first..]);
            while self.first > 0 && shown + columns(text[self.first - 1]) <= room {
                self.first -= 1;
                shown += columns(text[self.first]);
            }
        }
        let mut visible = String::new();
        let mut used = 0;
        for &c in &text[self.first..] {
            if used + columns(c) > room {
                break;
            }
            used += columns(c);
            visible.push(c);
        }
        let cursor_column = prompt_columns + width(&text[self.first..cursor]);
        let mut out = format!("\r{prompt}{visible}\x1b[K\r");
        if cursor_column > 0 {
            out.push_str(&format!("\x1b[{cursor_column}C"));
        }
        out
    }
}

/// What leaves a submitted line on screen whole (wrapping if it must, so
/// the scrollback shows what ran), ending on a new row.
pub fn submitted(prompt: &str, line: &str) -> String {
    format!("\r{prompt}{line}\x1b[K\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(text: &str) -> Vec<char> {
        text.chars().collect()
    }

    /// The row as it looks after `out` is written to an empty row, with the
    /// cursor's column: a terminal that knows what `redraw` writes.
    fn screen(out: &str) -> (String, usize) {
        // One cell per column; a combining mark joins the cell before it,
        // and a wide character's second column is an empty cell.
        let mut row: Vec<String> = Vec::new();
        let mut column = 0;
        let mut rest = out;
        while let Some(c) = rest.chars().next() {
            rest = &rest[c.len_utf8()..];
            match (c, columns(c)) {
                ('\r', _) => column = 0,
                ('\x1b', _) => {
                    let end = rest.find(|c: char| c.is_ascii_alphabetic()).unwrap();
                    let (params, last) = (&rest[1..end], &rest[end..=end]);
                    rest = &rest[end + 1..];
                    match last {
                        "K" => row.truncate(column),
                        "C" => column += params.parse::<usize>().unwrap(),
                        other => panic!("unexpected sequence {other}"),
                    }
                }
                (_, 0) => row[column - 1].push(c),
                (_, wide) => {
                    row.resize(row.len().max(column + wide), " ".to_string());
                    row[column] = c.to_string();
                    for cell in &mut row[column + 1..column + wide] {
                        cell.clear();
                    }
                    column += wide;
                }
            }
        }
        (row.concat(), column)
    }

    #[test]
    fn a_short_line_is_drawn_whole_with_the_cursor_in_place() {
        let mut view = View::new();
        let out = view.redraw("ringkv@0> ", &chars("get 1"), 2, 80);
        assert_eq!(screen(&out), ("ringkv@0> get 1".to_string(), 12));
    }

    #[test]
    fn the_cursor_column_counts_wide_and_combining_characters() {
        let mut view = View::new();
        let text = chars("日本e\u{301}x");
        let out = view.redraw("> ", &text, 4, 80);
        assert_eq!(screen(&out), ("> 日本e\u{301}x".to_string(), 2 + 4 + 1));
    }

    #[test]
    fn a_long_line_scrolls_to_keep_the_cursor_in_view() {
        let mut view = View::new();
        let text = chars("put 1 0123456789abcdefghij");
        // 20 columns: the prompt takes 2, one stays free, 17 for the text.
        let (row, column) = screen(&view.redraw("> ", &text, text.len(), 20));
        assert_eq!(row, "> 3456789abcdefghij");
        assert_eq!(column, 19);
        // Moving left within the view does not scroll it.
        let (row, column) = screen(&view.redraw("> ", &text, text.len() - 5, 20));
        assert_eq!(row, "> 3456789abcdefghij");
        assert_eq!(column, 14);
        // Going home scrolls back to the start.
        let (row, column) = screen(&view.redraw("> ", &text, 0, 20));
        assert_eq!(row, "> put 1 0123456789a");
        assert_eq!(column, 2);
        // Every position of the cursor stays within the row.
        for cursor in 0..=text.len() {
            let (row, column) = screen(&view.redraw("> ", &text, cursor, 20));
            assert!(column < 20 && row.chars().count() < 20, "cursor {cursor}");
        }
    }

    #[test]
    fn after_deleting_at_the_end_the_view_fills_from_the_left() {
        let mut view = View::new();
        let text = chars("abcdefghijklmnopqrstuvwxyz");
        view.redraw("> ", &text, text.len(), 12);
        let shorter = &text[..20];
        let (row, _) = screen(&view.redraw("> ", shorter, shorter.len(), 12));
        assert_eq!(row, "> lmnopqrst");
        let (row, _) = screen(&view.redraw("> ", &text[..5], 5, 12));
        assert_eq!(row, "> abcde");
    }

    #[test]
    fn a_submitted_line_is_written_whole() {
        assert_eq!(submitted("> ", "get 1"), "\r> get 1\x1b[K\r\n");
    }
}
