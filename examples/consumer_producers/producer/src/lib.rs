//! A producer: serves `work(context) -> context`.

lp_guest::generate!({
    world: "lp:consumer-producers/producer-node",
    path: "../wit",
});

struct Producer;

impl exports::lp::consumer_producers::producer::Guest for Producer {
    fn work(context: u64) -> u64 {
        context
    }
}

export!(Producer);
