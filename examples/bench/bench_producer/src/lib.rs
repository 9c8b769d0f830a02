//! Benchmark producer: returns what it is given.

wit_bindgen::generate!({
    world: "lp:bench/producer-node",
    path: ["../../../wit", "../wit"],
    with: {
        "lp:node/types@0.1.0": lp_guest::types,
        "lp:node/runtime@0.1.0": lp_guest::runtime,
        "lp:node/waiting@0.1.0": lp_guest::waiting,
    },
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
