//! A short, bounded fuzz run on every `cargo test`: the targets of
//! `lp_host::fuzzing` (also built by cargo-fuzz in `fuzz/` for long runs)
//! on their seed corpora and on seeded random mutations of them. The same
//! seed mutates the same way every time; `LP_FUZZ_SEED` and
//! `LP_FUZZ_ITERATIONS` change it and the length of the run.

use std::path::Path;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens worth splicing in: the syntax both inputs are made of.
const TOKENS: &[&[u8]] = &[
    b"[[node]]\n",
    b"[program]\n",
    b" = ",
    b"{ ",
    b" }",
    b"[",
    b"]",
    b"\"",
    b",",
    b"\n",
    b"handle",
    b"group",
    b"replicas",
    b"limits",
    b"grants",
    b"dirs",
    b"network",
    b"-1",
    b"99999999999999999999",
    b"1e400",
    b"nan",
    b"\xff\xff\xff\xff\x0f",
    b"\x80\x80\x80",
    b"\x00",
    b"\xff",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, rng.next() as u8),
            2 if !input.is_empty() => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let len = rng.below(64).min(other.len() - from.min(other.len()));
                input.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => input.truncate(at),
        }
    }
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `target` on every seed, then on mutations; a panic reports the input.
fn fuzz(name: &str, target: fn(&[u8])) {
    let seeds = seeds(name);
    let mut rng = Rng(env_number("LP_FUZZ_SEED", 0x5eed) | 1);
    let iterations = env_number("LP_FUZZ_ITERATIONS", 100_000);
    let run = |input: &[u8]| {
        if std::panic::catch_unwind(|| target(input)).is_err() {
            panic!(
                "{name} panicked on input (hex) {}\n  save it under fuzz/corpus/{name}/ and fix the cause",
                input.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
    };
    for seed in &seeds {
        run(seed);
    }
    for _ in 0..iterations {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        run(&input);
    }
}

#[test]
fn the_program_loader_never_panics() {
    fuzz("program_toml", lp_host::fuzzing::program_toml);
}

#[test]
fn decoding_courier_values_never_panics() {
    fuzz("courier_values", lp_host::fuzzing::courier_values);
}
