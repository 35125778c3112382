//! The WAL directory: creating it durably, its lock, listing its segments,
//! and fsyncing it.
//!
//! This module never opens a segment's contents and never decides which
//! segments are live (that is `replay`'s job).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::WalError;

/// Name of the lock file inside the WAL directory.
pub const LOCK_FILE: &str = "LOCK";

/// fsyncs a directory so that entries created or removed in it survive a
/// crash.
pub(crate) fn sync(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// Creates `dir` if missing, and makes its entry durable in the parent.
pub(crate) fn create(dir: &Path) -> Result<(), WalError> {
    create_durably(dir).map_err(|e| WalError::io(dir, e))
}

/// Creates a directory and any missing parents, syncing each parent after
/// its new entry appears: on a first start, files made inside must not
/// vanish in a crash along with a directory entry that never reached the
/// disk. The one way this crate and its users create directories.
pub fn create_durably(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor.filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        missing.push(path);
        cursor = path.parent();
    }
    for path in missing.into_iter().rev() {
        match fs::create_dir(path) {
            // Made meanwhile by someone else: fine, if it is a directory.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            created => created?,
        }
        // Which directory gets synced is visible only across a power loss:
        // a relative path's empty parent is ".".
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Takes the exclusive advisory lock on `dir/LOCK`; the returned file holds
/// it until dropped.
pub(crate) fn lock(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(WalError::io(path, e)),
    }
}

/// Segment numbers present in `dir`, sorted ascending, gaps and all. Files
/// not named like segments are ignored; a segment name whose number is
/// outside `1..=u32::MAX` is [`WalError::BadHeader`].
pub(crate) fn segment_numbers(dir: &Path) -> Result<Vec<u32>, WalError> {
    let mut numbers = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(parse_file_name) else {
            continue;
        };
        match u32::try_from(number) {
            Ok(n) if n > 0 => numbers.push(n),
            _ => {
                return Err(WalError::BadHeader {
                    file: entry.path(),
                    reason: format!("segment number {number} is outside 1..={}", u32::MAX),
                })
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The number after segment `current`, or an error once numbers run out
/// (at `u32::MAX`).
pub(crate) fn next_number(dir: &Path, current: u32) -> Result<u32, WalError> {
    current.checked_add(1).ok_or_else(|| {
        WalError::io(
            dir,
            std::io::Error::other("segment numbers exhausted (u32::MAX reached)"),
        )
    })
}

/// `{number:020}.wal`.
pub(crate) fn file_name(number: u32) -> String {
    format!("{number:020}.wal")
}

/// The segment number if `name` has the segment pattern (20 ASCII digits
/// then `.wal`); `None` for any other file, which the WAL ignores.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // 20 digits can exceed u64 (max is 18446744073709551615).
    digits.parse::<u64>().ok().or(Some(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringkv-wal-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn sync_reports_a_directory_it_cannot_open() {
        let missing = temp("missing");
        match sync(&missing) {
            Err(WalError::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Io, got {other:?}"),
        }
        let dir = temp("sync");
        create(&dir.join("a/b")).expect("create nested");
        assert!(dir.join("a/b").is_dir());
        sync(&dir).expect("sync");
        create(&dir.join("a/b")).expect("an existing directory is fine");
        // A file where the directory should be cannot be created over.
        fs::write(dir.join("file"), b"x").expect("write");
        assert!(create(&dir.join("file")).is_err());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_relative_directory_is_synced_in_the_current_one() {
        // Its parent is "", which cannot be opened: "." is synced instead.
        let name = format!("ringkv-wal-relative-{}", std::process::id());
        let relative = Path::new(&name);
        let _ = fs::remove_dir_all(relative);
        create(relative).expect("create a relative directory");
        assert!(relative.is_dir());
        fs::remove_dir_all(relative).expect("cleanup");
    }

    #[test]
    fn segments_are_listed_in_order_and_bad_numbers_refused() {
        let dir = temp("list");
        create(&dir).expect("create");
        for name in [
            "00000000000000000010.wal",
            "00000000000000000002.wal",
            "LOCK",
            "x.wal",
        ] {
            fs::write(dir.join(name), b"").expect("write");
        }
        assert_eq!(segment_numbers(&dir).expect("list"), [2, 10]);
        fs::write(dir.join("00000000000000000000.wal"), b"").expect("write");
        assert!(matches!(
            segment_numbers(&dir),
            Err(WalError::BadHeader { .. })
        ));
        fs::remove_file(dir.join("00000000000000000000.wal")).expect("rm");
        fs::write(dir.join("00000000004294967296.wal"), b"").expect("write");
        assert!(matches!(
            segment_numbers(&dir),
            Err(WalError::BadHeader { .. })
        ));
        assert!(matches!(
            segment_numbers(&temp("absent")),
            Err(WalError::Io { .. })
        ));
        let _held = lock(&dir).expect("lock");
        assert!(matches!(lock(&dir), Err(WalError::Locked { .. })));
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_missing_directory_is_created_with_its_parents_and_an_existing_one_is_fine() {
        let root = std::env::temp_dir().join(format!("wal-create-durably-{}", std::process::id()));
        let nested = root.join("a/b/data");
        create_durably(&nested).expect("create");
        assert!(nested.is_dir());
        create_durably(&nested).expect("an existing directory is fine");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn names_are_parsed_strictly() {
        assert_eq!(parse_file_name("00000000000000000007.wal"), Some(7));
        assert_eq!(parse_file_name("99999999999999999999.wal"), Some(u64::MAX));
        assert_eq!(parse_file_name("0000000000000000007.wal"), None);
        assert_eq!(parse_file_name("0000000000000000000x.wal"), None);
        assert_eq!(parse_file_name("00000000000000000007.wal.tmp"), None);
        assert_eq!(parse_file_name("LOCK"), None);
    }
}
