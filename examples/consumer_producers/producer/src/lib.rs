//! A producer: serves `work(context) -> context`.

wit_bindgen::generate!({
    world: "lp:consumer-producers/producer-node",
    path: ["../../../wit", "../wit"],
    with: {
        "lp:node/types@0.1.0": lp_guest::types,
        "lp:node/runtime@0.1.0": lp_guest::runtime,
        "lp:node/waiting@0.1.0": lp_guest::waiting,
    },
});

struct Producer;

impl exports::lp::consumer_producers::producer::Guest for Producer {
    fn work(context: u64) -> u64 {
        context
    }
}

export!(Producer);
