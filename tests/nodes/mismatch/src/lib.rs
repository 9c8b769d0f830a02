//! Calls `echo` with the wrong argument type; never runs, because the host
//! refuses the edge before launch.

wit_bindgen::generate!({
    world: "lp:test/mismatch-node",
    path: ["../../../wit", "wit"],
    with: {
        "lp:node/types@0.1.0": lp_guest::types,
        "lp:node/runtime@0.1.0": lp_guest::runtime,
        "lp:node/waiting@0.1.0": lp_guest::waiting,
    },
});

#[derive(serde::Deserialize)]
struct Args {
    #[serde(deserialize_with = "lp_guest::__deserialize_handle")]
    target: lp_guest::Handle,
}

struct Mismatch;

impl exports::lp::node::lifecycle::Guest for Mismatch {
    async fn run() {
        let args: Args = lp_guest::args().expect("mismatch args");
        let _ = lp::test::faulty_client::echo(args.target, 7).await;
        lp_guest::stop();
    }
}

export!(Mismatch);
