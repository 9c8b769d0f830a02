//! A synchronous `run` making blocking courier calls through a client
//! interface whose functions are synchronous.

lp_guest::generate!({
    world: "lp:test/blocking-node",
    path: ["../../../wit", "../wit"],
});

lp_guest::client! {
    pub struct Faulty => blocking lp::test::faulty_blocking_client {
        fn echo(s: &str) -> String;
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
        lp_guest::info!("outcome: {first:?} {second:?}");
        lp_guest::stop();
    }
}

export!(Blocking);
