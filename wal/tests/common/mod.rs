//! Helpers shared by the integration tests: a temp dir that cleans up after
//! itself, a seeded PRNG, and an independent encoder of the documented
//! on-disk format (so the tests check the format, not just self-consistency).

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wal::{Options, ReplayReport, Wal, WalError};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ringkv-wal-test-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of segment `n` inside this dir.
    pub fn seg(&self, n: u32) -> PathBuf {
        self.path.join(format!("{n:020}.wal"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// xorshift64*: small, fast, and deterministic for a given seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A payload of `lo..=hi` bytes, none of them zero (so that damage
    /// expectations do not depend on accidental zero runs).
    pub fn payload(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let len = self.range(lo as u64, hi as u64) as usize;
        (0..len).map(|_| self.range(1, 255) as u8).collect()
    }
}

/// Bytes of a version 3 segment header.
pub const HDR: usize = 32;

/// Bytes of a version 2 segment header.
pub const HDR_V2: usize = 28;

/// Bytes of a seal.
pub const SEAL: usize = 24;

/// A version 2 or 3 record, its CRC seeded with `seed` (written independently of
/// the crate). Returns the bytes and the record's CRC, the next seed.
pub fn encode_seeded(seed: u32, payload: &[u8]) -> (Vec<u8>, u32) {
    let len = (payload.len() as u32).to_be_bytes();
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&len);
    hasher.update(payload);
    let crc = hasher.finalize();
    let mut out = len.to_vec();
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(payload);
    (out, crc)
}

/// Consecutive chained records starting from `seed`; returns the bytes and
/// the seed after them.
pub fn encode_chain(mut seed: u32, payloads: &[Vec<u8>]) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    for p in payloads {
        let (bytes, crc) = encode_seeded(seed, p);
        out.extend_from_slice(&bytes);
        seed = crc;
    }
    (out, seed)
}

/// A version 1 record: CRC-32 over length and payload, unseeded.
pub fn encode_v1(payload: &[u8]) -> Vec<u8> {
    encode_seeded(0, payload).0
}

/// The documented version 2 header (`kind` 0 log, 1 checkpoint).
pub fn header_v2(n: u32, kind: u32, count: u32) -> Vec<u8> {
    let mut out = b"RKVWAL\r\n".to_vec();
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The documented version 3 header: version 2's fields, then the chain
/// value the segment continues from, then the CRC of the 28 bytes before.
pub fn header_v3(n: u32, kind: u32, count: u32, continues: u32) -> Vec<u8> {
    let mut out = b"RKVWAL\r\n".to_vec();
    out.extend_from_slice(&3u32.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&continues.to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The documented version 3 header of log segment `n`, continuing nothing.
pub fn header(n: u32) -> Vec<u8> {
    header_v3(n, 0, 0, 0)
}

/// The documented version 3 header of a checkpoint segment of `count`
/// records, continuing from chain value `continues`.
pub fn checkpoint_header_after(n: u32, count: u32, continues: u32) -> Vec<u8> {
    header_v3(n, 1, count, continues)
}

/// The documented version 3 header of a checkpoint segment of `count`
/// records, continuing nothing.
pub fn checkpoint_header(n: u32, count: u32) -> Vec<u8> {
    checkpoint_header_after(n, count, 0)
}

/// The seed of the first record after a version 2 or 3 `header` (its CRC
/// field, the last four bytes).
pub fn header_seed(header: &[u8]) -> u32 {
    let len = if header[11] == 2 { HDR_V2 } else { HDR };
    u32::from_be_bytes(header[len - 4..len].try_into().expect("4 bytes"))
}

/// The documented seal of a segment holding `records` records that end
/// with chain value `chain`, followed by segment `next`; returns its bytes
/// and its CRC (the chain value the next segment continues from).
pub fn seal(records: u64, chain: u32, next: u32) -> (Vec<u8>, u32) {
    let mut body = records.to_be_bytes().to_vec();
    body.extend_from_slice(&chain.to_be_bytes());
    body.extend_from_slice(&next.to_be_bytes());
    let mut hasher = crc32fast::Hasher::new_with_initial(chain);
    hasher.update(&[0xFF; 4]);
    hasher.update(&body);
    let crc = hasher.finalize();
    let mut out = vec![0xFF; 4];
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&body);
    (out, crc)
}

/// The documented version 1 header (16 bytes).
pub fn header_v1(n: u32) -> Vec<u8> {
    let mut out = b"RKVWAL\r\n".to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
    out
}

/// A whole version 3 log segment holding `payloads`, unsealed, continuing
/// nothing (segment 1 of a log, or its newest segment after a checkpoint).
pub fn segment_bytes(n: u32, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header(n);
    let (records, _) = encode_chain(header_seed(&out), payloads);
    out.extend_from_slice(&records);
    out
}

/// A whole version 2 log segment holding `payloads`.
pub fn segment_bytes_v2(n: u32, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header_v2(n, 0, 0);
    let (records, _) = encode_chain(header_seed(&out), payloads);
    out.extend_from_slice(&records);
    out
}

/// A whole version 1 segment holding `payloads`.
pub fn segment_bytes_v1(n: u32, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header_v1(n);
    for p in payloads {
        out.extend_from_slice(&encode_v1(p));
    }
    out
}

/// The seed an append would use after the intact, unsealed version 2 or 3
/// segment `data`: the CRC field of its last record, or its header CRC.
pub fn next_seed(data: &[u8]) -> u32 {
    let mut seed = header_seed(data);
    let mut off = if data[11] == 2 { HDR_V2 } else { HDR };
    while off + 8 <= data.len() {
        let len = u32::from_be_bytes(data[off..off + 4].try_into().expect("4")) as usize;
        seed = u32::from_be_bytes(data[off + 4..off + 8].try_into().expect("4"));
        off += 8 + len;
    }
    seed
}

/// Opens the WAL, collecting every replayed payload.
pub fn open(dir: &Path, options: Options) -> Result<(Wal, ReplayReport, Vec<Vec<u8>>), WalError> {
    let mut seen = Vec::new();
    let (wal, report) = Wal::open(dir, options, |p| {
        seen.push(p.to_vec());
        Ok(())
    })?;
    Ok((wal, report, seen))
}

/// What [`Wal::open`] returns.
pub type Opened = Result<(Wal, ReplayReport), WalError>;

/// Like [`open`] but also returns what was replayed before an error.
pub fn open_partial(dir: &Path, options: Options) -> (Opened, Vec<Vec<u8>>) {
    let mut seen = Vec::new();
    let result = Wal::open(dir, options, |p| {
        seen.push(p.to_vec());
        Ok(())
    });
    (result, seen)
}

pub fn small(segment_max_bytes: u64) -> Options {
    Options {
        segment_max_bytes,
        ..Options::default()
    }
}

pub fn skipping() -> Options {
    Options {
        skip_corrupt: true,
        ..Options::default()
    }
}

/// Appends each payload as its own batch.
pub fn append_each(wal: &mut Wal, payloads: &[Vec<u8>]) {
    for p in payloads {
        wal.append_batch(&[p]).expect("append");
    }
}

/// Segment numbers present in `dir`, sorted.
pub fn segment_numbers(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let name = e.expect("dir entry").file_name().into_string().ok()?;
            name.strip_suffix(".wal")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out
}

pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}
