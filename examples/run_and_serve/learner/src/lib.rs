//! The learner: `run` takes a step every millisecond until the program
//! stops; `get-version` is served between steps.

lp_guest::generate!({
    world: "lp:run-and-serve/learner-node",
    path: "../wit",
});

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static VERSION: AtomicU64 = AtomicU64::new(0);

struct Learner;

impl exports::lp::node::lifecycle::Guest for Learner {
    async fn run() {
        while !lp_guest::wait_for_stop(Some(Duration::from_millis(1))).await {
            VERSION.fetch_add(1, Ordering::Relaxed);
        }
        lp_guest::info!("stopped after {} steps", VERSION.load(Ordering::Relaxed));
    }
}

impl exports::lp::run_and_serve::learner::Guest for Learner {
    fn get_version() -> u64 {
        VERSION.load(Ordering::Relaxed)
    }
}

export!(Learner);
