//! Replay benchmark client: measures a replay node (`kind = "replay"`)
//! from inside a node, with the operations, item size and counts of
//! dm-reverb's benchmark (docs/benchmarks.md) (dm-reverb 0.14 over localhost
//! gRPC), so the figures compare directly. An item is one bytes tensor
//! "x" of shape [size] (Reverb's: one uint8 [1024] array).
//!
//! It logs `first-reply-from-all 1` once the replay has answered (what
//! `lp-host bench` takes as startup) and one `bench-result {json}` line,
//! then stops the program:
//!
//! - mode "ops": streaming inserts through a writer, sampling with
//!   `in_flight` calls outstanding, priority updates of 32 keys, and
//!   per-call inserts, on `table`:
//!   `{"insert_stream_per_s", "sample_per_s", "sample_calls_per_s",
//!   "update32_calls_per_s", "insert_call_per_s"}`;
//! - mode "fill": streaming inserts of `items` items only (the parent
//!   measures the replay process's memory): `{"insert_stream_per_s",
//!   "items"}`, then the table's size.

lp_guest::generate!({
    world: "lp:node/node-with-run",
});

use std::time::Instant;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use lp_guest::replay::{ItemData, NewItem, Replay, Tensor};

/// Keys per priority update call (Reverb's bench: one sample of 32).
const UPDATE_KEYS: u32 = 32;

#[derive(serde::Deserialize)]
struct Args {
    replay: Replay,
    /// "ops" or "fill".
    mode: String,
    /// The table measured.
    table: String,
    /// Bytes per item.
    size: u32,
    /// Items inserted by the streaming insert (and, divided by
    /// `sample_batch`, the sample calls).
    items: u64,
    /// Items per insert call of the streaming writer.
    writer_batch: usize,
    /// Insert calls of one item each.
    per_call: u64,
    /// Items per sample call.
    sample_batch: u32,
    /// Sample calls outstanding at once.
    in_flight: usize,
    /// Priority update calls.
    update_calls: u64,
}

struct Bench;

impl exports::lp::node::lifecycle::Guest for Bench {
    async fn run() {
        let args: Args = lp_guest::args().expect("bench_replay args");
        assert!(
            args.items > 0 && args.sample_batch > 0 && args.in_flight > 0,
            "items, sample_batch and in_flight must be at least 1"
        );
        // Ready once the replay has answered.
        let tables = args.replay.info().await.expect("replay info()");
        assert!(
            tables.iter().any(|t| t.name == args.table),
            "the replay has no table {:?} (it has {:?})",
            args.table,
            tables.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        lp_guest::info!("first-reply-from-all 1");
        match args.mode.as_str() {
            "ops" => ops(&args).await,
            "fill" => fill(&args).await,
            other => panic!("unknown bench_replay mode {other:?}: \"ops\" or \"fill\""),
        }
        lp_guest::stop();
    }
}

/// Every operation, one after another, on `args.table`.
async fn ops(args: &Args) {
    let payload = vec![0u8; args.size as usize];
    let insert_stream_per_s = insert_stream(args, &payload).await;
    let (sample_per_s, sample_calls_per_s) = sample(args).await;
    let update32_calls_per_s = update_priorities(args).await;
    let insert_call_per_s = insert_calls(args, &payload).await;
    let result = serde_json::json!({
        "insert_stream_per_s": insert_stream_per_s,
        "sample_per_s": sample_per_s,
        "sample_calls_per_s": sample_calls_per_s,
        "update32_calls_per_s": update32_calls_per_s,
        "insert_call_per_s": insert_call_per_s,
    });
    lp_guest::info!("bench-result {result}");
}

/// The streaming insert alone; then the table's size.
async fn fill(args: &Args) {
    let payload = vec![0u8; args.size as usize];
    let insert_stream_per_s = insert_stream(args, &payload).await;
    let result = serde_json::json!({
        "insert_stream_per_s": insert_stream_per_s,
        "items": args.items,
    });
    lp_guest::info!("bench-result {result}");
    let tables = args.replay.info().await.expect("replay info()");
    for t in tables.iter().filter(|t| t.name == args.table) {
        lp_guest::info!(
            "table {} holds {} items ({} inserts)",
            t.name,
            t.size,
            t.inserts
        );
    }
}

/// One item: one bytes tensor "x" of shape [size].
fn item_data(args: &Args, payload: &[u8]) -> ItemData {
    ItemData::Tensors(vec![Tensor::bytes("x", &[args.size], payload.to_vec())])
}

/// Reset the table, then insert `items` items through a writer of
/// `writer_batch`, priority 1.0 + (i % 7), flushed at the end; items per
/// second.
async fn insert_stream(args: &Args, payload: &[u8]) -> f64 {
    args.replay.reset(&args.table).await.expect("reset");
    let mut writer = args.replay.writer(args.writer_batch);
    let start = Instant::now();
    for i in 0..args.items {
        let priority = 1.0 + (i % 7) as f64;
        let item = NewItem::new(item_data(args, payload), &[(&args.table, priority)]);
        writer.append(item).await.expect("streaming insert");
    }
    writer.flush().await.expect("streaming insert (flush)");
    args.items as f64 / start.elapsed().as_secs_f64()
}

/// `items / sample_batch` sample calls of `sample_batch`, `in_flight` of
/// them outstanding at once; items and calls per second.
async fn sample(args: &Args) -> (f64, f64) {
    let calls = (args.items / u64::from(args.sample_batch)).max(1);
    let call = || args.replay.sample(&args.table, args.sample_batch);
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut started = 0u64;
    while started < calls && pending.len() < args.in_flight {
        pending.push(call());
        started += 1;
    }
    let mut got = 0u64;
    while let Some(samples) = pending.next().await {
        if started < calls {
            pending.push(call());
            started += 1;
        }
        let samples = samples.expect("sample");
        assert_eq!(samples.len(), args.sample_batch as usize, "a short sample");
        for s in &samples {
            let x = s.data.tensor("x").and_then(Tensor::as_bytes);
            assert_eq!(x.map(<[u8]>::len), Some(args.size as usize), "a bad item");
        }
        got += samples.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    (got as f64 / secs, calls as f64 / secs)
}

/// Sample 32 keys once, then `update_calls` calls setting their
/// priorities to 2.0; calls per second.
async fn update_priorities(args: &Args) -> f64 {
    let mut keys: Vec<u64> = args
        .replay
        .sample(&args.table, UPDATE_KEYS)
        .await
        .expect("sample")
        .iter()
        .map(|s| s.key)
        .collect();
    // Reverb's bench passes them as a dict: each key once.
    keys.sort_unstable();
    keys.dedup();
    let updates: Vec<(u64, f64)> = keys.iter().map(|&k| (k, 2.0)).collect();
    let start = Instant::now();
    for _ in 0..args.update_calls {
        args.replay
            .update_priorities(&args.table, &updates)
            .await
            .expect("update_priorities");
    }
    args.update_calls as f64 / start.elapsed().as_secs_f64()
}

/// Reset the table, then `per_call` insert calls of one item each;
/// items per second.
async fn insert_calls(args: &Args, payload: &[u8]) -> f64 {
    args.replay.reset(&args.table).await.expect("reset");
    let start = Instant::now();
    for _ in 0..args.per_call {
        args.replay
            .insert_one(item_data(args, payload), &[(&args.table, 1.0)])
            .await
            .expect("insert");
    }
    args.per_call as f64 / start.elapsed().as_secs_f64()
}

export!(Bench);
