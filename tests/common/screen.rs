//! A model of a terminal's screen, to check what a user sees of a program
//! that draws with escape sequences (the console's line editor): the bytes
//! it wrote are played back into rows of cells and a cursor.

use ringkv::client::editor::render::columns;

/// What the bytes written to a terminal leave on its screen: rows without
/// a height limit, and the cursor. It knows what the console writes
/// (text, CR, LF, and the sequences to erase to the end of the row or
/// screen, move the cursor and go home) and fails on anything else.
pub struct Screen {
    rows: Vec<Vec<String>>,
    /// (row, column)
    pub cursor: (usize, usize),
}

impl Screen {
    /// The screen after `bytes` are written to an empty one.
    pub fn play(bytes: &[u8]) -> Screen {
        let mut screen = Screen {
            rows: vec![Vec::new()],
            cursor: (0, 0),
        };
        let text = String::from_utf8_lossy(bytes);
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let (row, column) = screen.cursor;
            match c {
                '\r' => screen.cursor.1 = 0,
                '\n' => {
                    screen.cursor.0 += 1;
                    if screen.rows.len() <= screen.cursor.0 {
                        screen.rows.push(Vec::new());
                    }
                }
                '\x1b' => {
                    match chars.next() {
                        Some('[') => {}
                        None => return screen, // cut short: not written yet
                        Some(other) => panic!("the console wrote ESC {other:?}"),
                    }
                    let mut params = String::new();
                    let last = loop {
                        match chars.next() {
                            Some(c) if c.is_ascii_digit() || c == ';' => params.push(c),
                            Some(c) => break c,
                            None => return screen, // cut short: not written yet
                        }
                    };
                    let n = params.parse::<usize>().unwrap_or(1).max(1);
                    match (last, params.as_str()) {
                        ('K', "" | "0") => screen.rows[row].truncate(column),
                        ('C', _) => screen.cursor.1 += n,
                        ('D', _) => screen.cursor.1 = column.saturating_sub(n),
                        ('H', "") => screen.cursor = (0, 0),
                        ('J', "2") => screen.rows.iter_mut().for_each(Vec::clear),
                        _ => panic!("the console wrote an unexpected ESC [ {params} {last}"),
                    }
                }
                c if c.is_control() => panic!("the console wrote control character {c:?}"),
                c => {
                    let width = columns(c);
                    let cells = &mut screen.rows[row];
                    if width == 0 {
                        if let Some(cell) = column.checked_sub(1).and_then(|i| cells.get_mut(i)) {
                            cell.push(c);
                        }
                        continue;
                    }
                    if cells.len() < column + width {
                        cells.resize(column + width, " ".to_string());
                    }
                    cells[column] = c.to_string();
                    for cell in &mut cells[column + 1..column + width] {
                        cell.clear();
                    }
                    screen.cursor.1 += width;
                }
            }
        }
        screen
    }

    /// Each row as text, trailing blanks dropped, and the empty rows at
    /// the bottom left out.
    pub fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = self
            .rows
            .iter()
            .map(|cells| cells.concat().trim_end().to_string())
            .collect();
        while rows.last().is_some_and(String::is_empty) {
            rows.pop();
        }
        rows
    }

    /// The text of the row the cursor is on, trailing blanks dropped.
    pub fn cursor_row_text(&self) -> String {
        self.rows[self.cursor.0].concat().trim_end().to_string()
    }

    /// Whether the cursor is just after the last cell of its row.
    pub fn cursor_at_end_of_row(&self) -> bool {
        self.cursor.1 == self.rows[self.cursor.0].len()
    }
}

impl std::fmt::Display for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, row) in self.rows.iter().enumerate() {
            let marker = if i == self.cursor.0 { ">" } else { " " };
            writeln!(f, "{marker}|{}", row.concat())?;
        }
        write!(
            f,
            "(cursor at row {}, column {})",
            self.cursor.0, self.cursor.1
        )
    }
}
