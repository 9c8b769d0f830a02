//! Provokes one kind of call outcome, chosen by its `mode` arg, logs what
//! came back as `outcome: ...`, then stops the program.

lp_guest::generate!({
    world: "lp:test/prober-node",
    path: ["../../../wit", "../wit"],
});

use lp::test::faulty_client as faulty;
use lp_guest::{CallError, Handle};

lp_guest::client! {
    pub struct Faulty => lp::test::faulty_client {
        fn slow(ms: u64) -> u64;
        fn peak_in_flight() -> u32;
        fn boom() -> u32;
        fn echo(s: String) -> String;
        fn reverse(data: Vec<u8>) -> Vec<u8>;
        fn join(label: String, parts: Vec<u32>) -> lp::test::faulty::Labelled;
    }
}

#[derive(serde::Deserialize)]
struct Args {
    target: Faulty,
    mode: String,
}

fn describe<T: std::fmt::Debug>(r: Result<T, CallError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(CallError::Unreachable(why)) => format!("unreachable {why}"),
        Err(CallError::Timeout) => "timeout".into(),
        Err(CallError::RemoteTrap(msg)) => format!("remote-trap {msg}"),
        Err(CallError::Stopping) => "stopping".into(),
    }
}

struct Prober;

impl exports::lp::node::lifecycle::Guest for Prober {
    async fn run() {
        let args: Args = lp_guest::args().expect("prober args");
        let outcome = match args.mode.as_str() {
            "echo" => describe(args.target.echo("hi".to_string()).await),
            "bytes" => describe(args.target.reverse(vec![1, 2, 3]).await),
            // 64 MiB and a byte: the biggest payload the transport promises.
            "big" => {
                let mut data = vec![0u8; (64 << 20) + 1];
                data[0] = 1;
                match args.target.reverse(data).await {
                    Ok(back) => format!("ok {} bytes, last {}", back.len(), back[back.len() - 1]),
                    Err(e) => describe::<()>(Err(e)),
                }
            }
            "dynamic" => describe(args.target.join("sum".to_string(), vec![1, 2, 39]).await),
            "timeout" => describe(args.target.slow(5_000).await),
            "remote-trap" => describe(args.target.boom().await),
            // A handle this node was never given.
            "forged" => {
                let forged = Handle {
                    node: args.target.handle().node + 1,
                    ..args.target.handle()
                };
                describe(faulty::echo(forged, "hi".to_string()).await)
            }
            "fan-out" => {
                let calls = (0..4).map(|i| args.target.slow(50 + i));
                let results: Vec<String> = lp_guest::join_all(calls)
                    .await
                    .into_iter()
                    .map(describe)
                    .collect();
                let peak = describe(args.target.peak_in_flight().await);
                format!("{} peak {peak}", results.join(","))
            }
            other => format!("unknown mode {other}"),
        };
        lp_guest::info!("outcome: {outcome}");
        lp_guest::stop();
    }
}

export!(Prober);
