//! A synchronous `run` making blocking courier calls through a client
//! interface whose functions are synchronous.

lp_guest::generate!({
    world: "lp:test/blocking-node",
    path: ["../../../wit", "../wit"],
});

lp_guest::client! {
    pub struct Faulty => blocking lp::test::faulty_blocking_client {
        fn echo(s: &str) -> String;
        fn join(label: &str, parts: &[u32]) -> lp::test::faulty::Labelled;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    target: Faulty,
}

struct Blocking;

impl exports::lp::node::blocking_lifecycle::Guest for Blocking {
    fn run() {
        let args: Args = lp_guest::args().expect("blocking args");
        let first = args.target.echo("one");
        let second = args.target.echo("two");
        let joined = args.target.join("sum", &[1, 2, 39]);
        lp_guest::info!("outcome: {first:?} {second:?} {joined:?}");
        lp_guest::stop();
    }
}

export!(Blocking);
