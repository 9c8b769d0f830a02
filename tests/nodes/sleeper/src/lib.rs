//! With `hasty` and `patient` handles in its args, calls `nap(nap_ms)`
//! through each, prints both outcomes and stops the program; without them,
//! serves `nap` until stop.

lp_guest::generate!({
    world: "lp:sleeper/sleeper-node",
});

use std::time::Duration;

use lp::sleeper::sleeper_client;

lp_guest::client! {
    pub struct Sleeper => sleeper_client {
        fn nap(ms: u64) -> u64;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    hasty: Option<Sleeper>,
    patient: Option<Sleeper>,
    #[serde(default)]
    nap_ms: u64,
}

struct Node;

impl exports::lp::node::lifecycle::Guest for Node {
    async fn run() {
        let args: Args = lp_guest::args().expect("sleeper args");
        let (Some(hasty), Some(patient)) = (&args.hasty, &args.patient) else {
            lp_guest::wait_for_stop(None).await;
            return;
        };
        let show = |r: Result<u64, lp_guest::CallError>| match r {
            Ok(ms) => format!("ok {ms}"),
            Err(e) => e.to_string(),
        };
        let hasty = show(hasty.nap(args.nap_ms).await);
        let patient = show(patient.nap(args.nap_ms).await);
        println!("hasty: {hasty}; patient: {patient}");
        lp_guest::stop();
    }
}

impl exports::lp::sleeper::sleeper::Guest for Node {
    async fn nap(ms: u64) -> u64 {
        lp_guest::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

export!(Node);
