//! A client: adds one to the counter `increments` times, after a random
//! pause, each by reading
//! the value and writing it back plus one (not atomic across the two
//! calls: that is the race), then says it is done.

lp_guest::generate!({
    world: "lp:counter-race/client-node",
    path: "../wit",
});

lp_guest::client! {
    pub struct Counter => lp::counter_race::counter_client {
        fn get() -> u64;
        fn set(value: u64) -> u64;
        fn done() -> u64;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    counter: Counter,
    increments: u64,
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

struct Client;

impl exports::lp::node::lifecycle::Guest for Client {
    async fn run() {
        let args: Args = lp_guest::args().expect("client args");
        for _ in 0..args.increments {
            // Think for a random while first (WASI randomness: seeded
            // under test_mt), so the clients' increments rarely overlap.
            lp_guest::wait_for_stop(Some(std::time::Duration::from_millis(random() % 20))).await;
            let value = args.counter.get().await.expect("get");
            args.counter.set(value + 1).await.expect("set");
        }
        args.counter.done().await.expect("done");
    }
}

export!(Client);
