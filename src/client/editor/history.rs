//! The console's history: the lines typed before, in memory and in a file.
//!
//! The file is `$RINGKV_HISTORY`, else `$HOME/.ringkv_history`: one line
//! per entry, oldest first, at most `MAX_HISTORY_LINES`. Blank lines and a
//! line equal to the one before it are not kept. Each new line is saved at
//! once, by rewriting the file (its lines as they are now, so those of
//! another console open at the same time stay, plus the new one) to a
//! temporary file that is then renamed over it: the file is never seen
//! half-written. It is created readable by its owner only, since values
//! typed at the console may be private.
//!
//! History must never stop the console: with no file (HOME unset, or a
//! path that is not a regular file such as /dev/null) or one that cannot
//! be written, the lines are still kept in memory for this session.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The most lines kept, in memory and in the file.
pub const MAX_HISTORY_LINES: usize = 1000;

/// The file's name in the home directory.
const FILE_NAME: &str = ".ringkv_history";

/// Earlier lines, oldest first, and the file they are saved to.
#[derive(Debug, Default)]
pub struct History {
    lines: Vec<String>,
    file: Option<PathBuf>,
}

/// Where the history file is: `RINGKV_HISTORY` if set and not empty, else
/// `.ringkv_history` in `HOME` if that is set; `None`: no file.
pub fn history_path(ringkv_history: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    if let Some(path) = ringkv_history.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    home.filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(FILE_NAME))
}

impl History {
    /// A history kept in memory only.
    pub fn in_memory() -> History {
        History::default()
    }

    /// The history of the file this process's environment names.
    pub fn from_environment() -> History {
        match history_path(std::env::var_os("RINGKV_HISTORY"), std::env::var_os("HOME")) {
            Some(path) => History::open(&path),
            None => History::in_memory(),
        }
    }

    /// The history saved in `path` (none yet if it does not exist). A path
    /// that is there but is not a regular file gives a history in memory.
    pub fn open(path: &Path) -> History {
        // Save through a symbolic link to where it points, not over it.
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        match fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => return History::in_memory(),
            _ => {}
        }
        History {
            lines: read_lines(&path).unwrap_or_default(),
            file: Some(path),
        }
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Keeps `line` unless it is blank or the same as the last, and saves
    /// it. An error says the file could not be written; the line is kept
    /// in memory all the same.
    pub fn add(&mut self, line: &str) -> Result<(), String> {
        if !worth_keeping(line) || self.lines.last().is_some_and(|last| last == line) {
            return Ok(());
        }
        self.lines.push(line.to_string());
        keep_newest(&mut self.lines);
        match &self.file {
            Some(path) => save(path, line)
                .map_err(|e| format!("cannot save the history to {}: {e}", path.display())),
            None => Ok(()),
        }
    }
}

/// Whether a line belongs in the history: not blank, and nothing a
/// terminal would act on (a line with control characters can only come
/// from an edited file, and drawing it would move the cursor).
fn worth_keeping(line: &str) -> bool {
    !line.trim().is_empty() && !line.chars().any(char::is_control)
}

fn keep_newest(lines: &mut Vec<String>) {
    let excess = lines.len().saturating_sub(MAX_HISTORY_LINES);
    lines.drain(..excess);
}

/// The file's lines worth keeping, the newest `MAX_HISTORY_LINES`; a file
/// that does not exist has none.
fn read_lines(path: &Path) -> io::Result<Vec<String>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut lines: Vec<String> = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|line| worth_keeping(line))
        .map(str::to_string)
        .collect();
    keep_newest(&mut lines);
    Ok(lines)
}

/// Adds `line` to the file as it is now, keeping the newest lines, by
/// writing a temporary file beside it and renaming it over the old one.
fn save(path: &Path, line: &str) -> io::Result<()> {
    let mut lines = read_lines(path)?;
    if lines.last().is_none_or(|last| last != line) {
        lines.push(line.to_string());
    }
    keep_newest(&mut lines);
    let mut text = lines.join("\n");
    text.push('\n');
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written =
        write_private(&temporary, text.as_bytes()).and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Writes a new file that only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringkv-history-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    fn file_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .expect("history file")
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_file_is_ringkv_history_else_in_home_else_none() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            history_path(some("/tmp/h"), some("/home/u")),
            Some(PathBuf::from("/tmp/h"))
        );
        assert_eq!(
            history_path(some(""), some("/home/u")),
            Some(PathBuf::from("/home/u/.ringkv_history"))
        );
        assert_eq!(history_path(None, some("")), None);
        assert_eq!(history_path(None, None), None);
    }

    #[test]
    fn lines_are_saved_and_read_back_by_the_next_console() {
        let dir = temp_dir("saved");
        let path = dir.join("history");
        let mut history = History::open(&path);
        assert!(history.lines().is_empty(), "no file yet: no lines");
        for line in ["put 1 wörld", "get 1", "", "   ", "get 1", "put 1 wörld"] {
            history.add(line).expect("saved");
        }
        let expected = vec!["put 1 wörld", "get 1", "put 1 wörld"];
        assert_eq!(history.lines(), expected, "no blanks, no repeats in a row");
        assert_eq!(file_lines(&path), expected);
        assert_eq!(History::open(&path).lines(), expected);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only its owner may read it");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_file_keeps_only_the_newest_lines() {
        let dir = temp_dir("bounded");
        let path = dir.join("history");
        let mut history = History::open(&path);
        for n in 0..MAX_HISTORY_LINES + 250 {
            history.add(&format!("get {n}")).expect("saved");
        }
        let lines = file_lines(&path);
        assert_eq!(lines.len(), MAX_HISTORY_LINES);
        assert_eq!(lines[0], "get 250");
        assert_eq!(
            lines.last().unwrap(),
            &format!("get {}", MAX_HISTORY_LINES + 249)
        );
        assert_eq!(history.lines(), lines);
        // A longer file (from an older version, or edited) is cut on reading.
        let long: String = (0..3000).map(|n| format!("put {n} x\n")).collect();
        fs::write(&path, long).unwrap();
        let history = History::open(&path);
        assert_eq!(history.lines().len(), MAX_HISTORY_LINES);
        assert_eq!(history.lines()[0], "put 2000 x");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lines_another_console_saved_meanwhile_are_kept() {
        let dir = temp_dir("two");
        let path = dir.join("history");
        let mut first = History::open(&path);
        let mut second = History::open(&path);
        first.add("get 1").unwrap();
        second.add("get 2").unwrap();
        first.add("get 3").unwrap();
        assert_eq!(file_lines(&path), vec!["get 1", "get 2", "get 3"]);
        // Each console walks its own lines and those it started with.
        assert_eq!(first.lines(), vec!["get 1", "get 3"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unwritable_file_keeps_the_history_in_memory() {
        let dir = temp_dir("unwritable");
        let path = dir.join("no such directory").join("history");
        let mut history = History::open(&path);
        let error = history.add("get 1").expect_err("cannot be written");
        assert!(error.contains("cannot save the history to"), "{error}");
        history.add("get 2").expect_err("still cannot");
        assert_eq!(history.lines(), vec!["get 1", "get 2"]);
        assert!(!dir.join("no such directory").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_path_that_is_not_a_regular_file_is_left_alone() {
        let mut history = History::open(Path::new("/dev/null"));
        history.add("get 1").expect("nothing to save");
        assert_eq!(history.lines(), vec!["get 1"]);
    }

    #[test]
    fn lines_with_control_characters_are_not_read_from_the_file() {
        let dir = temp_dir("control");
        let path = dir.join("history");
        fs::write(&path, "get 1\nput 1 \x1b[2J\nput 2 a\tb\r\nget 2\n").unwrap();
        assert_eq!(History::open(&path).lines(), vec!["get 1", "get 2"]);
        fs::remove_dir_all(dir).unwrap();
    }
}
