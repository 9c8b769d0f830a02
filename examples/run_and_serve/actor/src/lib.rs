//! The actor: polls the learner's version while the learner's `run` is
//! still looping, checks that it grows, then stops the program.

lp_guest::generate!({
    world: "lp:run-and-serve/actor-node",
    path: "../wit",
});

use std::time::Duration;

lp_guest::client! {
    pub struct Learner => lp::run_and_serve::learner_client {
        fn get_version() -> u64;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    learner: Learner,
    polls: u32,
}

struct Actor;

impl exports::lp::node::lifecycle::Guest for Actor {
    async fn run() {
        let args: Args = lp_guest::args().expect("actor args");
        let mut seen = Vec::new();
        for _ in 0..args.polls {
            // Give the learner time to step between polls.
            lp_guest::wait_for_stop(Some(Duration::from_millis(20))).await;
            match args.learner.get_version().await {
                Ok(v) => seen.push(v),
                Err(e) => {
                    lp_guest::error!("get-version failed: {e}");
                    lp_guest::stop();
                    return;
                }
            }
        }
        let grew = seen.windows(2).all(|w| w[0] < w[1]);
        lp_guest::info!("versions {seen:?} grew: {grew}");
        lp_guest::stop();
    }
}

export!(Actor);
