//! Probes its sandbox, as its `mode` arg says, and prints what it could and
//! could not do: files, environment, network, memory, stack, CPU.

lp_guest::generate!({
    world: "lp:node/node-with-run",
    path: ["../../../wit"],
});

#[derive(serde::Deserialize)]
struct Args {
    mode: String,
    #[serde(default)]
    addr: String,
    #[serde(default)]
    mib: usize,
}

fn outcome<T: std::fmt::Debug>(what: &str, result: std::io::Result<T>) {
    match result {
        Ok(v) => println!("{what}: ok {v:?}"),
        Err(e) => println!("{what}: denied ({:?})", e.kind()),
    }
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

struct Sandboxed;

impl exports::lp::node::lifecycle::Guest for Sandboxed {
    async fn run() {
        let args: Args = lp_guest::args().expect("args");
        match args.mode.as_str() {
            "fs" => {
                outcome("read granted", std::fs::read_to_string("/data/hello.txt"));
                outcome("write read-only", std::fs::write("/data/new.txt", "x"));
                outcome(
                    "write granted",
                    std::fs::write("/scratch/new.txt", "written"),
                );
                outcome("read ungranted", std::fs::read_to_string("/etc/passwd"));
                outcome("list root", std::fs::read_dir("/").map(|d| d.count()));
            }
            "env" => {
                println!("GREETING={:?}", std::env::var("GREETING").ok());
                println!("vars={}", std::env::vars().count());
            }
            "net" => {
                outcome(
                    "connect",
                    std::net::TcpStream::connect(&args.addr).map(|_| ()),
                );
            }
            "memory" => {
                let mut v = vec![0u8; args.mib << 20];
                v[args.mib] = 1;
                println!("allocated {} MiB", std::hint::black_box(v).len() >> 20);
            }
            "stack" => println!("recursed {}", recurse(1_000_000)),
            "cpu" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            other => println!("unknown mode {other}"),
        }
        lp_guest::stop();
    }
}

export!(Sandboxed);
