//! A node for output tests: its `run` prints the `lines` it was given as
//! they are (control characters and all), then `mb` megabytes of numbered
//! lines (`line 0000000042 ...`, 100 bytes each with the newline), then
//! traps if `trap = true`, and returns.

lp_guest::generate!({
    world: "lp:test/printer-node",
    path: ["../../../wit", "../wit"],
});

use std::io::Write;

#[derive(serde::Deserialize, Default)]
struct Args {
    #[serde(default)]
    lines: Vec<String>,
    #[serde(default)]
    mb: u64,
    #[serde(default)]
    trap: bool,
}

/// The bytes of each numbered line, its newline included.
const LINE_BYTES: u64 = 100;

struct Printer;

impl exports::lp::node::blocking_lifecycle::Guest for Printer {
    fn run() {
        let args: Args = lp_guest::args().unwrap_or_default();
        let mut out = std::io::stdout().lock();
        for line in &args.lines {
            let _ = writeln!(out, "{line}");
        }
        let filler = "x".repeat(LINE_BYTES as usize - "line 0000000000 \n".len());
        for n in 0..args.mb * 1_000_000 / LINE_BYTES {
            let _ = writeln!(out, "line {n:010} {filler}");
        }
        let _ = out.flush();
        drop(out);
        if args.trap {
            core::arch::wasm32::unreachable();
        }
    }
}

export!(Printer);
