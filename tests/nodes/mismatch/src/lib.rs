//! Calls `echo` with the wrong argument type; never runs, because the host
//! refuses the edge before launch.

lp_guest::generate!({
    world: "lp:test/mismatch-node",
    path: ["../../../wit", "wit"],
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
