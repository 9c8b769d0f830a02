//! Goes past one of wasmtime's own limits, as its `mode` arg says, and logs
//! what came back as `outcome: ...` (a call's result as Rust debug text,
//! on one line): `remote-stack` has its target recurse
//! too deeply, `fan-out` awaits `count` calls to its target at once, `big`
//! sends its target `count` bytes in one call. With no mode (or `serve`) it
//! serves `deep` until stop.

lp_guest::generate!({
    world: "lp:overreach/overreach-node",
    path: ["../../../wit", "wit"],
});

lp_guest::client! {
    pub struct Deep => lp::overreach::deep_client {
        fn recurse(depth: u64) -> u64;
        fn ping(n: u64) -> u64;
        fn take(data: Vec<u8>) -> u64;
    }
}

#[derive(serde::Deserialize, Default)]
struct Args {
    #[serde(default)]
    target: Option<Deep>,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    count: u64,
}

/// Deep recursion on the wasm (engine) stack: no locals in linear memory.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        0
    } else {
        std::hint::black_box(recurse(std::hint::black_box(depth - 1))) + 1
    }
}

struct Overreach;

impl exports::lp::node::lifecycle::Guest for Overreach {
    async fn run() {
        let args: Args = lp_guest::args().unwrap_or_default();
        let Some(target) = args.target else {
            lp_guest::wait_for_stop(None).await;
            return;
        };
        let outcome = match args.mode.as_str() {
            "remote-stack" => format!("{:?}", target.recurse(10_000_000).await),
            "fan-out" => {
                let replies = lp_guest::join_all((0..args.count).map(|i| target.ping(i))).await;
                let right = replies
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| r.as_ref().is_ok_and(|v| *v == *i as u64))
                    .count();
                format!("{right} of {} replies right", args.count)
            }
            "big" => format!("{:?}", target.take(vec![1; args.count as usize]).await),
            other => format!("unknown mode {other}"),
        };
        lp_guest::info!("outcome: {outcome}");
        lp_guest::stop();
    }
}

impl exports::lp::overreach::deep::Guest for Overreach {
    fn recurse(depth: u64) -> u64 {
        recurse(depth)
    }

    fn ping(n: u64) -> u64 {
        n
    }

    fn take(data: Vec<u8>) -> u64 {
        data.len() as u64
    }
}

export!(Overreach);
