//! A node that panics on purpose. `mode = "panic"`: its run panics with
//! `why`; `"call"`: it calls `explode(why)` on `target` and prints what came
//! back, then stops the program; otherwise it serves until stop.

lp_guest::generate!({
    world: "lp:panicky/panicky-node",
    path: ["../../../wit", "wit"],
});

use lp::panicky::explode_client;

lp_guest::client! {
    pub struct Exploder => explode_client {
        fn explode(why: String) -> u32;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    why: String,
    target: Option<Exploder>,
}

struct Panicky;

impl exports::lp::node::lifecycle::Guest for Panicky {
    async fn run() {
        let args: Args = lp_guest::args().expect("panicky args");
        match args.mode.as_str() {
            "panic" => panic!("{}", args.why),
            "call" => {
                let target = args.target.expect("a target to call");
                match target.explode(args.why).await {
                    Ok(n) => println!("outcome: ok {n}"),
                    Err(e) => println!("outcome: {e}"),
                }
                lp_guest::stop();
            }
            _ => {
                lp_guest::wait_for_stop(None).await;
            }
        }
    }
}

impl exports::lp::panicky::explode::Guest for Panicky {
    fn explode(why: String) -> u32 {
        panic!("{why}")
    }
}

export!(Panicky);
