//! `lp-host test PROGRAM --seeds A..B`: run a program under many seeds
//! (deterministic test_mt runs, faults injected within `--faults`), and list
//! every seed whose run failed with the command that replays it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::launch::{LoadOptions, Plan, seeded};
use crate::output::Output;
use crate::program::Override;

#[derive(clap::Args)]
pub struct TestArgs {
    /// The program.toml to run.
    program: PathBuf,

    /// The seeds to try: `A..B` (both included) or one number.
    #[arg(long, default_value = "1..100", value_parser = parse_seeds)]
    seeds: (u64, u64),

    /// How many faults (failed calls, crashed nodes) each seed may inject.
    #[arg(long, default_value_t = 0)]
    faults: u32,

    /// Override a setting without editing the file (repeatable), as for `run`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<Override>,

    /// Write the trace of every failing seed to DIR/seed-N.trace.
    #[arg(long, value_name = "DIR")]
    traces_dir: Option<PathBuf>,

    /// Seconds nodes get to finish after a stop, in virtual time (negative: never).
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    termination_notice_secs: f64,

    /// Where compiled components are cached (default: $LP_CACHE_DIR or ~/.cache/lp).
    #[arg(long, env = "LP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

fn parse_seeds(text: &str) -> Result<(u64, u64), String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{s}` is not a seed (a whole number)"))
    };
    let (first, last) = match text.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b.trim_start_matches('='))?),
        None => (parse(text)?, parse(text)?),
    };
    if first > last {
        return Err(format!(
            "the range {text} is empty; write it as A..B with A <= B"
        ));
    }
    Ok((first, last))
}

pub fn main(args: TestArgs) -> i32 {
    match explore(&args) {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            crate::errln!("error: {e:#}");
            2
        }
    }
}

/// Run every seed; the number that failed.
fn explore(args: &TestArgs) -> Result<usize> {
    let loading = LoadOptions {
        cache_dir: args.cache_dir.clone(),
        seeded: true,
        ..LoadOptions::default()
    };
    let plan = Plan::load(&args.program, &args.overrides, &loading)?;
    let overrides = plan.program.overrides.clone();
    let notice = (args.termination_notice_secs >= 0.0)
        .then(|| Duration::from_secs_f64(args.termination_notice_secs));
    if let Some(dir) = &args.traces_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (first, last) = args.seeds;
    let started = Instant::now();
    let mut failed = Vec::new();
    for seed in first..=last {
        let settings = seeded::Seeded {
            faults: args.faults,
            ..seeded::Seeded::new(seed)
        };
        let run = seeded::run(&plan, &settings, &Output::capture(), notice)?;
        if run.outcome.success() {
            continue;
        }
        let why = run
            .outcome
            .failures
            .first()
            .map(|f| {
                format!(
                    "node {} failed: {}",
                    f.node,
                    f.error.lines().next().unwrap_or("")
                )
            })
            .unwrap_or_else(|| format!("{:?}", run.outcome.reason));
        crate::outln!("seed {seed}: {why}");
        crate::outln!(
            "  replay: {}",
            seeded::replay_command(&args.program, &overrides, &settings)
        );
        if let Some(dir) = &args.traces_dir {
            let file = dir.join(format!("seed-{seed}.trace"));
            std::fs::write(&file, &run.trace)
                .with_context(|| format!("cannot write {}", file.display()))?;
            crate::outln!("  trace: {}", file.display());
        }
        failed.push(seed);
    }
    let total = last - first + 1;
    crate::outln!(
        "{} of {total} seeds failed ({first}..{last}, faults {}, {:.1} s)",
        failed.len(),
        args.faults,
        started.elapsed().as_secs_f64()
    );
    Ok(failed.len())
}
