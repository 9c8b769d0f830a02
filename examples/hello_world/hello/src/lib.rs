//! hello_world: a node whose `run` prints a greeting and returns; the
//! program ends when every node with a `run` has finished.
//!
//! It uses the synchronous `blocking-lifecycle` and no guest SDK, so it has
//! no component-model-async types and `cargo component build` can build it
//! too.

wit_bindgen::generate!({
    world: "lp:node/blocking-node-with-run",
    path: "../../../wit",
});

struct Hello;

impl exports::lp::node::blocking_lifecycle::Guest for Hello {
    fn run() {
        println!("Hello World!!!");
    }
}

export!(Hello);
