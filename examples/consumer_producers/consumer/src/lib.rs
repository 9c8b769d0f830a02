//! The consumer: each step sends `work(step)` to every producer at once
//! (futures fan-out), gathers the replies, logs them; then stops the program.

lp_guest::generate!({
    world: "lp:consumer-producers/consumer-node",
    path: ["../../../wit", "../wit"],
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

struct Consumer;

impl exports::lp::node::lifecycle::Guest for Consumer {
    async fn run() {
        let args: Args = lp_guest::args().expect("consumer args");
        for step in 0..args.steps {
            let calls = args.producers.iter().map(|p| p.work(step));
            let results: Result<Vec<u64>, _> =
                lp_guest::join_all(calls).await.into_iter().collect();
            match results {
                Ok(values) => lp_guest::info!("step {step}: {values:?}"),
                Err(e) => {
                    lp_guest::error!("step {step} failed: {e}");
                    break;
                }
            }
        }
        lp_guest::stop();
    }
}

export!(Consumer);
