//! The consumer: each step sends `work(step)` to every producer at once
//! (futures fan-out), gathers the replies, logs them; then stops the program.
//! It also serves `step`, so a test can drive it with its `run` disabled.

lp_guest::generate!({
    world: "lp:consumer-producers/consumer-node",
    path: "../wit",
});

use lp::consumer_producers::producer_client;

lp_guest::client! {
    /// A producer, as the consumer sees it.
    pub struct Producer => producer_client {
        fn work(context: u64) -> u64;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    producers: Vec<Producer>,
    #[serde(default = "default_steps")]
    steps: u64,
}

fn default_steps() -> u64 {
    10
}

fn args() -> &'static Args {
    static ARGS: std::sync::OnceLock<Args> = std::sync::OnceLock::new();
    ARGS.get_or_init(|| lp_guest::args().expect("consumer args"))
}

/// One step: `work(step)` to every producer at once.
async fn step(step: u64) -> Result<Vec<u64>, String> {
    let calls = args().producers.iter().map(|p| p.work(step));
    let results: Result<Vec<u64>, _> = lp_guest::join_all(calls).await.into_iter().collect();
    results.map_err(|e| e.to_string())
}

struct Consumer;

impl exports::lp::consumer_producers::consumer::Guest for Consumer {
    async fn step(i: u64) -> Result<Vec<u64>, String> {
        step(i).await
    }
}

impl exports::lp::node::lifecycle::Guest for Consumer {
    async fn run() {
        for i in 0..args().steps {
            match step(i).await {
                Ok(values) => lp_guest::info!("step {i}: {values:?}"),
                Err(e) => {
                    lp_guest::error!("step {i} failed: {e}");
                    break;
                }
            }
        }
        lp_guest::stop();
    }
}

export!(Consumer);
