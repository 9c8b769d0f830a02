//! Benchmark producer: returns what it is given.

lp_guest::generate!({
    world: "lp:bench/producer-node",
    path: "../wit",
});

struct Producer;

impl exports::lp::bench::producer::Guest for Producer {
    fn work(context: u64) -> u64 {
        context
    }

    fn echo(data: Vec<u8>) -> Vec<u8> {
        data
    }
}

export!(Producer);
