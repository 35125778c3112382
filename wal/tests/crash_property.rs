//! Seeded crash simulation: durable batches through the WAL, then one
//! unsynced batch written raw and cut at a random point (sometimes followed
//! by zeros, as when a file's size reached disk before its data). Replay
//! must return exactly the records whose bytes survived whole, in order.

mod common;

use std::fs::OpenOptions;
use std::io::Write;

use common::{encode_chain, file_len, next_seed, open, segment_numbers, small, Rng, TempDir};

#[test]
fn replay_after_a_random_crash_is_exactly_the_surviving_prefix() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let tmp = TempDir::new("crash");
        let options = small(rng.range(64, 1024));
        let mut durable = Vec::new();
        {
            let (mut wal, _, _) = open(tmp.path(), options.clone()).expect("open");
            for _ in 0..rng.range(0, 8) {
                let batch: Vec<Vec<u8>> =
                    (0..rng.range(1, 4)).map(|_| rng.payload(1, 120)).collect();
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                wal.append_batch(&refs).expect("append");
                durable.extend(batch);
            }
        }
        // The batch in flight when the process died.
        let newest = *segment_numbers(tmp.path()).last().expect("a segment");
        let path = tmp.seg(newest);
        let synced = file_len(&path);
        let in_flight: Vec<Vec<u8>> = (0..rng.range(1, 4)).map(|_| rng.payload(1, 120)).collect();
        let seed = next_seed(&std::fs::read(&path).expect("read segment"));
        let (raw, _) = encode_chain(seed, &in_flight);
        let cut = rng.range(0, raw.len() as u64) as usize;
        let zeros = if rng.range(0, 2) == 0 {
            rng.range(1, 600) as usize
        } else {
            0
        };
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open raw");
        f.write_all(&raw[..cut]).expect("raw write");
        f.write_all(&vec![0u8; zeros]).expect("zeros");
        drop(f);

        let mut expected = durable.clone();
        let mut survived_end = 0;
        for p in &in_flight {
            if survived_end + 8 + p.len() > cut {
                break;
            }
            survived_end += 8 + p.len();
            expected.push(p.clone());
        }
        let (mut wal, report, seen) =
            open(tmp.path(), options.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(seen, expected, "seed {seed}");
        let dropped = (cut - survived_end + zeros) as u64;
        match &report.torn_tail {
            None => assert_eq!(dropped, 0, "seed {seed}"),
            Some(tail) => {
                assert_eq!(tail.file, path, "seed {seed}");
                assert_eq!(tail.offset, synced + survived_end as u64, "seed {seed}");
                assert_eq!(tail.bytes_dropped, dropped, "seed {seed}");
            }
        }
        assert!(report.skipped.is_empty(), "seed {seed}");

        // The repaired log keeps working.
        wal.append_batch(&[b"after crash"]).expect("append");
        drop(wal);
        expected.push(b"after crash".to_vec());
        let (_, report, seen) = open(tmp.path(), options).expect("reopen");
        assert_eq!(seen, expected, "seed {seed}");
        assert_eq!(report.torn_tail, None, "seed {seed}");
    }
}
