//! The counter: serves get/set, and checks, once every client is done, that
//! no increment was lost (it traps if one was: the bug a seed can expose).

lp_guest::generate!({
    world: "lp:counter-race/counter-node",
    path: "../wit",
});

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(serde::Deserialize)]
struct Args {
    clients: u64,
    increments: u64,
}

static VALUE: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);

struct Counter;

impl exports::lp::counter_race::counter::Guest for Counter {
    fn get() -> u64 {
        VALUE.load(Ordering::SeqCst)
    }

    fn set(value: u64) -> u64 {
        VALUE.store(value, Ordering::SeqCst);
        value
    }

    fn done() -> u64 {
        let args: Args = lp_guest::args().expect("counter args");
        let value = VALUE.load(Ordering::SeqCst);
        if DONE.fetch_add(1, Ordering::SeqCst) + 1 == args.clients {
            let expected = args.clients * args.increments;
            assert_eq!(
                value, expected,
                "lost update: the counter is {value}, expected {expected}"
            );
            lp_guest::info!("all {} clients done: {value}", args.clients);
        }
        value
    }
}

export!(Counter);
