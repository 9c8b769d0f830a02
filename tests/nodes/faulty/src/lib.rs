//! A service for failure tests. With `trap_in_run = true` its `run` traps
//! at once; with `spin_in_run = true` it loops for ever, ignoring stop;
//! with `sleep_in_run_ms = N` it sleeps N ms in one host call (a WASI
//! sleep), ignoring stop; otherwise `run` prints a line and waits for stop.

lp_guest::generate!({
    world: "lp:test/faulty-node",
    path: ["../../../wit", "../wit"],
});

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
static PEAK: AtomicU32 = AtomicU32::new(0);

#[derive(serde::Deserialize, Default)]
struct Args {
    #[serde(default)]
    trap_in_run: bool,
    /// Busy-loop in `run`, ignoring stop (only an interrupt ends it).
    #[serde(default)]
    spin_in_run: bool,
    /// Sleep this long in `run` (blocked in a host call, ignoring stop).
    #[serde(default)]
    sleep_in_run_ms: Option<u64>,
}

struct Faulty;

impl exports::lp::node::lifecycle::Guest for Faulty {
    async fn run() {
        let args: Args = lp_guest::args().unwrap_or_default();
        if args.trap_in_run {
            eprintln!("about to trap");
            trap_here();
        }
        if args.spin_in_run {
            println!("spinning");
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if let Some(ms) = args.sleep_in_run_ms {
            println!("sleeping");
            std::thread::sleep(Duration::from_millis(ms));
            println!("slept");
            return;
        }
        println!("faulty serving");
        lp_guest::wait_for_stop(None).await;
    }
}

#[inline(never)]
fn trap_here() -> ! {
    core::arch::wasm32::unreachable()
}

impl exports::lp::test::faulty::Guest for Faulty {
    async fn slow(ms: u64) -> u64 {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        lp_guest::wait_for_stop(Some(Duration::from_millis(ms))).await;
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        ms
    }

    fn peak_in_flight() -> u32 {
        PEAK.load(Ordering::SeqCst)
    }

    fn boom() -> u32 {
        trap_here()
    }

    fn echo(s: String) -> String {
        s
    }

    fn reverse(mut data: Vec<u8>) -> Vec<u8> {
        data.reverse();
        data
    }

    fn join(label: String, parts: Vec<u32>) -> exports::lp::test::faulty::Labelled {
        exports::lp::test::faulty::Labelled {
            label,
            total: parts.iter().map(|&p| p as u64).sum(),
        }
    }
}

export!(Faulty);
