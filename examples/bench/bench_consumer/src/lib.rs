//! Benchmark consumer: measures courier calls from inside a node, as the
//! reference benchmarks measure from inside theirs, and logs one JSON line
//! (`bench-result {...}`); the host's `lp-host bench` collects it.

lp_guest::generate!({
    world: "lp:bench/consumer-node",
    path: "../wit",
});

use std::time::{Duration, Instant};

lp_guest::client! {
    pub struct Producer => lp::bench::producer_client {
        fn work(context: u64) -> u64;
        fn echo(data: Vec<u8>) -> Vec<u8>;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    producers: Vec<Producer>,
    mode: String,
    /// Bytes per sync call; 8 means a u64 `work` call.
    payload: usize,
    calls: u64,
    warmup: u64,
    /// Futures awaited at once in `await` mode.
    #[serde(default)]
    width: u64,
}

struct Consumer;

impl exports::lp::node::lifecycle::Guest for Consumer {
    async fn run() {
        let args: Args = lp_guest::args().expect("bench args");
        // Startup: one call to every producer at once, as soon as we run.
        let replies = lp_guest::join_all(
            args.producers
                .iter()
                .enumerate()
                .map(|(i, p)| p.work(i as u64)),
        )
        .await;
        assert!(replies.iter().all(|r| r.is_ok()), "startup fan-out failed");
        lp_guest::info!("first-reply-from-all {}", args.producers.len());
        let result = match args.mode.as_str() {
            "startup" => None,
            "sync" => Some(sync_calls(&args).await),
            "fanout" => Some(fanout(&args).await),
            "await" => Some(await_many(&args).await),
            other => panic!("unknown bench mode {other}"),
        };
        if let Some(result) = result {
            lp_guest::info!("bench-result {result}");
        }
        lp_guest::stop();
    }
}

/// Sequential calls to producer 0, each awaited before the next.
async fn sync_calls(args: &Args) -> serde_json::Value {
    let p = args.producers[0];
    let mut data = vec![7u8; args.payload];
    let mut latencies = Vec::with_capacity(args.calls as usize);
    for i in 0..args.warmup + args.calls {
        let start = Instant::now();
        if args.payload == 8 {
            assert_eq!(p.work(i).await.expect("work"), i);
        } else {
            data = p.echo(data).await.expect("echo");
        }
        if i >= args.warmup {
            latencies.push(start.elapsed());
        }
    }
    assert_eq!(data.len(), args.payload);
    stats(latencies, 1)
}

/// Rounds of one call to every producer at once, waiting for all.
async fn fanout(args: &Args) -> serde_json::Value {
    let mut latencies = Vec::with_capacity(args.calls as usize);
    for round in 0..args.warmup + args.calls {
        let start = Instant::now();
        let replies = lp_guest::join_all(args.producers.iter().map(|p| p.work(round))).await;
        assert!(
            replies
                .iter()
                .all(|r| r.as_ref().is_ok_and(|v| *v == round))
        );
        if round >= args.warmup {
            latencies.push(start.elapsed());
        }
    }
    stats(latencies, args.producers.len())
}

/// Rounds of `width` calls to producer 0 at once, waiting for all: one
/// node awaiting many futures.
async fn await_many(args: &Args) -> serde_json::Value {
    let p = args.producers[0];
    let mut latencies = Vec::with_capacity(args.calls as usize);
    for round in 0..args.warmup + args.calls {
        let start = Instant::now();
        let replies = lp_guest::join_all((0..args.width).map(|i| p.work(i))).await;
        assert!(
            replies
                .iter()
                .enumerate()
                .all(|(i, r)| r.as_ref().is_ok_and(|v| *v == i as u64)),
            "a call of the round failed"
        );
        if round >= args.warmup {
            latencies.push(start.elapsed());
        }
    }
    stats(latencies, args.width as usize)
}

fn stats(mut latencies: Vec<Duration>, calls_per_sample: usize) -> serde_json::Value {
    let total: Duration = latencies.iter().sum();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6
    };
    serde_json::json!({
        "samples": latencies.len(),
        "calls_per_sec": (latencies.len() * calls_per_sample) as f64 / total.as_secs_f64(),
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "mean_us": total.as_secs_f64() * 1e6 / latencies.len() as f64,
    })
}

export!(Consumer);
