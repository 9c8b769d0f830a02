//! Sleeps with `lp_guest::sleep` and draws numbers with
//! `lp_guest::random_u64`, logging what it saw: under test_mt both follow
//! the seed (virtual time, seeded randomness).

lp_guest::generate!({
    world: "lp:node/node-with-run",
});

use std::time::{Duration, Instant};

#[derive(serde::Deserialize)]
struct Args {
    sleep_secs: u64,
}

struct Dice;

impl exports::lp::node::lifecycle::Guest for Dice {
    async fn run() {
        let args: Args = lp_guest::args().expect("dice args");
        let start = Instant::now();
        let stopped = lp_guest::sleep(Duration::from_secs(args.sleep_secs)).await;
        let slept = start.elapsed().as_secs();
        lp_guest::info!("slept {slept} s, stopped: {stopped}");
        let rolls: Vec<u64> = (0..3).map(|_| lp_guest::random_u64()).collect();
        lp_guest::info!("rolled {rolls:?}");
        lp_guest::stop();
    }
}

export!(Dice);
