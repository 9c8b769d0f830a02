//! A memory and rate check to run by hand (not a test): inserts 1,000,000
//! items of 1 KiB raw into one uniform table, in batches of 1000, then
//! samples as many; prints the insert and sample rates and the process's
//! peak RSS (VmHWM). `--prioritized` uses a prioritized sampler instead;
//! `--checkpoint DIR` also writes and restores a checkpoint there.
//!
//! CARGO_TARGET_DIR=/work/target-replay cargo run --release --example memory -- [N] [--prioritized] [--checkpoint DIR]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lp_replay::{
    ItemData, NewItem, RateLimiter, Replay, Selector, TableConfig, TablePriority, Tensor,
    TensorData,
};

const BATCH: usize = 1000;
const ITEM: usize = 1024;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0} items/s", n as f64 / d.as_secs_f64())
}

fn main() {
    let mut n = 1_000_000usize;
    let mut prioritized = false;
    let mut checkpoint: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prioritized" => prioritized = true,
            "--checkpoint" => checkpoint = Some(args.next().expect("--checkpoint DIR").into()),
            other => n = other.parse().expect("N, --prioritized or --checkpoint DIR"),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sampler = if prioritized {
        Selector::Prioritized { exponent: 0.6 }
    } else {
        Selector::Uniform
    };
    let config = TableConfig {
        name: "t".into(),
        max_size: n as u64,
        sampler,
        remover: Selector::Fifo,
        max_times_sampled: 0,
        rate_limiter: RateLimiter::MinSize { min_size: 1 },
    };
    let replay = Replay::new(vec![config.clone()], 1).unwrap();
    let baseline = status_kib("VmRSS");

    let mut building = Duration::ZERO;
    let mut inserting = Duration::ZERO;
    let mut done = 0;
    while done < n {
        let m = BATCH.min(n - done);
        let t = Instant::now();
        let items: Vec<NewItem> = (0..m)
            .map(|i| NewItem {
                // As dm-reverb's benchmark's items: one uint8 tensor.
                data: ItemData::Tensors(vec![Tensor {
                    name: "x".into(),
                    shape: vec![ITEM as u32],
                    data: TensorData::Bytes(vec![(done + i) as u8; ITEM]),
                }])
                .into(),
                priorities: vec![TablePriority {
                    table: "t".into(),
                    priority: 1.0 + ((done + i) % 7) as f64,
                }],
            })
            .collect();
        building += t.elapsed();
        let t = Instant::now();
        rt.block_on(replay.insert(items)).unwrap();
        inserting += t.elapsed();
        done += m;
    }
    let after_insert = status_kib("VmRSS");
    let peak_insert = status_kib("VmHWM");

    let t = Instant::now();
    let mut sampled = 0;
    let mut bytes = 0usize;
    while sampled < n {
        let m = BATCH.min(n - sampled);
        let samples = rt.block_on(replay.sample("t", m as u32)).unwrap();
        bytes += samples.iter().map(|s| s.data.len()).sum::<usize>();
        sampled += m;
    }
    let sampling = t.elapsed();
    assert!(bytes >= n * ITEM);

    let info = &replay.info()[0];
    println!(
        "{} items of {ITEM} B, sampler {}: size {}",
        n, info.sampler, info.size
    );
    println!(
        "insert: {} (the replay alone, batches of {BATCH}); {} with building the items",
        rate(n, inserting),
        rate(n, inserting + building)
    );
    println!("sample: {} (batches of {BATCH})", rate(n, sampling));
    println!(
        "RSS: {} before, {} after inserting; peak (VmHWM) {} ({:.3} GiB); payload {}",
        mib(baseline),
        mib(after_insert),
        mib(peak_insert),
        peak_insert as f64 / (1024.0 * 1024.0),
        mib((n * ITEM / 1024) as u64)
    );
    println!(
        "overhead: {:.0} B per item over the payload",
        (after_insert.saturating_sub(baseline) * 1024) as f64 / n as f64 - ITEM as f64
    );

    if let Some(dir) = checkpoint {
        let path = dir.join("memory.ckpt");
        let t = Instant::now();
        let written = replay.checkpoint(&path).unwrap();
        let writing = t.elapsed();
        drop(replay);
        let fresh = Replay::new(vec![config], 2).unwrap();
        let t = Instant::now();
        let read = fresh.restore(&path).unwrap();
        let reading = t.elapsed();
        assert_eq!(read.items, n as u64);
        println!(
            "checkpoint: {} written in {:.2} s ({:.0} MB/s), restored in {:.2} s; peak RSS now {}",
            mib(written.bytes / 1024),
            writing.as_secs_f64(),
            written.bytes as f64 / 1e6 / writing.as_secs_f64(),
            reading.as_secs_f64(),
            mib(status_kib("VmHWM"))
        );
        std::fs::remove_file(&path).unwrap();
    }
}
