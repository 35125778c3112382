//! One segment file: its name, its 16-byte header, creating it durably, and
//! scanning its records with the torn-tail / corruption rules.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};

use crate::error::{Corruption, TornTail, WalError};
use crate::record::{self, Damage, MAX_RECORD_BYTES, RECORD_HEADER_LEN};

/// First eight bytes of every segment. The `\r\n` catches text-mode
/// transfers that would rewrite line endings.
pub const MAGIC: [u8; 8] = *b"RKVWAL\r\n";

/// The on-disk format version this crate writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of segment header: magic (8), version u32 BE (4), number u32 BE (4).
pub const SEGMENT_HEADER_LEN: u64 = 16;

/// Upper bound on checksum work spent looking for an intact record after
/// damage in the newest segment. Past it, the damage is conservatively
/// treated as corruption rather than a torn tail.
const SCAN_AHEAD_BUDGET: usize = 4 * MAX_RECORD_BYTES;

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

/// The exact header bytes of segment `number`.
pub(crate) fn header_bytes(number: u32) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&MAGIC);
    BigEndian::write_u32(&mut header[8..12], FORMAT_VERSION);
    BigEndian::write_u32(&mut header[12..16], number);
    header
}

/// Verdict on the first bytes of a segment file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    Valid,
    /// The file is no longer than a header and holds only a prefix of the
    /// right header or zeros: a crash while the segment was being created.
    Torn,
    Invalid(String),
}

/// Checks `start` (the first bytes of the file, at least
/// `SEGMENT_HEADER_LEN` of them if the file is that long) against the header
/// segment `number` must have. `file_len` is the whole file's length.
pub(crate) fn check_header(start: &[u8], file_len: u64, number: u32) -> HeaderCheck {
    let expected = header_bytes(number);
    if file_len <= SEGMENT_HEADER_LEN {
        let n = start.len();
        if n < expected.len() && (start == &expected[..n] || start.iter().all(|&b| b == 0)) {
            return HeaderCheck::Torn;
        }
        if n == expected.len() && start.iter().all(|&b| b == 0) {
            return HeaderCheck::Torn;
        }
    }
    if start.len() < expected.len() {
        return HeaderCheck::Invalid(format!(
            "file is {} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte header, and not a torn header",
            start.len()
        ));
    }
    if start[0..8] != MAGIC {
        return HeaderCheck::Invalid(format!(
            "bad magic {:02x?}, expected {:02x?}",
            &start[0..8],
            MAGIC
        ));
    }
    let version = BigEndian::read_u32(&start[8..12]);
    if version != FORMAT_VERSION {
        return HeaderCheck::Invalid(format!(
            "unsupported format version {version}, this build reads version {FORMAT_VERSION}"
        ));
    }
    let in_header = BigEndian::read_u32(&start[12..16]);
    if in_header != number {
        return HeaderCheck::Invalid(format!(
            "header says segment {in_header} but the file name says {number}"
        ));
    }
    HeaderCheck::Valid
}

/// fsyncs a directory so that entries created in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// Creates segment `number` durably: header written, file synced, directory
/// synced. Returns the file opened for appending.
pub(crate) fn create(dir: &Path, number: u32) -> Result<File, WalError> {
    let path = dir.join(file_name(number));
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    file.write_all(&header_bytes(number))
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Replaces a torn header (crash during `create`) with a complete one,
/// durably, exactly as `create` would have left it.
pub(crate) fn rewrite_header(dir: &Path, number: u32) -> Result<(), WalError> {
    let path = dir.join(file_name(number));
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    file.set_len(0)
        .and_then(|()| file.write_all(&header_bytes(number)))
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::io(&path, e))?;
    sync_dir(dir)
}

/// Cuts `path` to `len` bytes and makes the new length durable.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .map_err(|e| WalError::io(path, e))
}

/// What scanning one segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub records: u64,
    /// A torn tail to truncate (newest segment only). Not yet applied.
    pub torn_tail: Option<TornTail>,
    pub skipped: Vec<Corruption>,
    /// With `skip_corrupt`, damage left no trustworthy record boundary, so
    /// nothing may be appended to this segment.
    pub unparseable_tail: bool,
}

/// Replays the records of one segment (`data` is the whole file, header
/// already checked), applying the recovery rules described in the crate
/// documentation.
pub(crate) fn scan(
    data: &[u8],
    file: &Path,
    newest: bool,
    skip_corrupt: bool,
    on_record: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<Scan, WalError> {
    let mut scan = Scan::default();
    let mut off = SEGMENT_HEADER_LEN as usize;
    while off < data.len() {
        let damage = match record::decode(&data[off..]) {
            Ok((payload, size)) => {
                on_record(payload).map_err(|message| WalError::Replay {
                    file: file.to_path_buf(),
                    offset: off as u64,
                    message,
                })?;
                scan.records += 1;
                off += size;
                continue;
            }
            Err(damage) => damage,
        };
        if newest && is_torn_tail(data, off, &damage) {
            scan.torn_tail = Some(TornTail {
                file: file.to_path_buf(),
                offset: off as u64,
                bytes_dropped: (data.len() - off) as u64,
            });
            break;
        }
        if !skip_corrupt {
            return Err(WalError::Corrupt {
                file: file.to_path_buf(),
                offset: off as u64,
                reason: damage.describe(),
            });
        }
        // Skip by the record's own length when it is plausible and fits;
        // otherwise no later boundary can be trusted: stop this segment.
        let skip = damage.in_file_extent().unwrap_or(data.len() - off);
        scan.skipped.push(Corruption {
            file: file.to_path_buf(),
            offset: off as u64,
            bytes: skip as u64,
            reason: damage.describe(),
        });
        if damage.in_file_extent().is_none() {
            scan.unparseable_tail = true;
            break;
        }
        off += skip;
    }
    Ok(scan)
}

/// Damage at `off` in the newest segment is a torn tail (the unfinished last
/// write of a crashed process) only if it looks like one:
///
/// 1. every byte after the damaged record's claimed extent is zero (a
///    partial header or a payload running past end of file claims everything
///    to the end; a garbage length claims only its 8 header bytes), and
/// 2. no intact record starts anywhere after `off` (so a damaged length
///    field cannot swallow the acknowledged records behind it).
///
/// Anything else is corruption of data that may have been acknowledged.
fn is_torn_tail(data: &[u8], off: usize, damage: &Damage) -> bool {
    let claimed_end = match damage {
        Damage::PartialHeader { .. } | Damage::PartialPayload { .. } => data.len(),
        Damage::BadLength { .. } => off + RECORD_HEADER_LEN,
        Damage::BadChecksum { .. } => off + damage.in_file_extent().unwrap_or(0),
    };
    data[claimed_end..].iter().all(|&b| b == 0) && !intact_record_after(data, off)
}

/// Whether a record with a valid checksum starts at any offset after `off`.
/// Answers `true` (the conservative answer) if the checksum work exceeds
/// [`SCAN_AHEAD_BUDGET`].
fn intact_record_after(data: &[u8], off: usize) -> bool {
    let mut budget = SCAN_AHEAD_BUDGET;
    for start in off + 1..data.len().saturating_sub(RECORD_HEADER_LEN) {
        let len = BigEndian::read_u32(&data[start..start + 4]) as usize;
        if len == 0 || len > MAX_RECORD_BYTES || len > data.len() - start - RECORD_HEADER_LEN {
            continue;
        }
        if len > budget {
            return true;
        }
        budget -= len;
        if record::decode(&data[start..]).is_ok() {
            return true;
        }
    }
    false
}

/// Path of segment `number` in `dir`.
pub(crate) fn path(dir: &Path, number: u32) -> PathBuf {
    dir.join(file_name(number))
}

/// Reads a whole segment file. Replay holds one segment in memory at a time.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, WalError> {
    fs::read(path).map_err(|e| WalError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut data = header_bytes(1).to_vec();
        for p in payloads {
            record::encode_into(p, &mut data);
        }
        data
    }

    #[test]
    fn header_is_the_documented_sixteen_bytes() {
        assert_eq!(
            header_bytes(0x0102_0304),
            *b"RKVWAL\r\n\x00\x00\x00\x01\x01\x02\x03\x04"
        );
        assert_eq!(file_name(7), "00000000000000000007.wal");
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

    #[test]
    fn headers_are_checked() {
        let h = header_bytes(3);
        assert_eq!(check_header(&h, 100, 3), HeaderCheck::Valid);
        assert!(matches!(check_header(&h, 100, 4), HeaderCheck::Invalid(_)));
        assert_eq!(check_header(&h[..5], 5, 3), HeaderCheck::Torn);
        assert_eq!(check_header(&[], 0, 3), HeaderCheck::Torn);
        assert_eq!(check_header(&[0; 16], 16, 3), HeaderCheck::Torn);
        assert!(matches!(
            check_header(&[0; 16], 17, 3),
            HeaderCheck::Invalid(_)
        ));
        assert!(matches!(
            check_header(b"RKVWAL\r\r", 8, 3),
            HeaderCheck::Invalid(_)
        ));
        let mut v2 = h;
        v2[11] = 2;
        assert!(matches!(check_header(&v2, 16, 3), HeaderCheck::Invalid(_)));
    }

    #[test]
    fn a_damaged_length_cannot_swallow_later_records() {
        let mut data = segment(&[b"first", b"second", b"third"]);
        let off = SEGMENT_HEADER_LEN as usize;
        data[off + 2] = 0x10; // "first" now claims ~1 MiB, past end of file
        let damage = record::decode(&data[off..]).unwrap_err();
        assert!(!is_torn_tail(&data, off, &damage));
        // The same damage on the last record is a torn tail.
        let last = data.len() - (RECORD_HEADER_LEN + 5);
        let data = segment(&[b"first", b"second", b"third"]);
        let mut cut = data[..data.len() - 1].to_vec();
        let damage = record::decode(&cut[last..]).unwrap_err();
        assert!(is_torn_tail(&cut, last, &damage));
        cut.extend_from_slice(&[0, 0, 0, 1]); // non-zero garbage past the extent
        let damage = record::decode(&cut[last..]).unwrap_err();
        assert!(matches!(damage, Damage::BadChecksum { .. }));
        assert!(!is_torn_tail(&cut, last, &damage));
    }

    #[test]
    fn skip_corrupt_skips_by_length_or_stops() {
        let mut data = segment(&[b"aaaa", b"bbbb", b"cccc"]);
        let second = SEGMENT_HEADER_LEN as usize + 12;
        data[second + 9] ^= 0x40; // payload bit of "bbbb"
        let mut seen = Vec::new();
        let found = scan(&data, Path::new("x"), false, true, &mut |p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .expect("skip_corrupt replays past the damage");
        assert_eq!(seen, [b"aaaa".to_vec(), b"cccc".to_vec()]);
        assert_eq!(found.skipped.len(), 1);
        assert_eq!(found.skipped[0].offset, second as u64);
        assert_eq!(found.skipped[0].bytes, 12);
        assert!(!found.unparseable_tail);

        let mut data = segment(&[b"aaaa", b"bbbb", b"cccc"]);
        data[second] = 0xff; // implausible length: no boundary to trust
        let mut seen = 0;
        let found = scan(&data, Path::new("x"), false, true, &mut |_| {
            seen += 1;
            Ok(())
        })
        .expect("skip_corrupt stops the segment");
        assert_eq!(seen, 1);
        assert_eq!(found.skipped[0].bytes, 24);
        assert!(found.unparseable_tail);
    }
}
