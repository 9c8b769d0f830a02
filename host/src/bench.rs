//! `lp-host bench`: the consumer_producers shape measured from inside the
//! consumer node, as the reference benchmarks measure Launchpad and Ray:
//! startup to first reply from all N, sequential sync calls (8 B, 1 KiB,
//! 1 MiB), futures fan-out to 10, one node awaiting 10k-60k futures at
//! once, and peak RSS. Each configuration runs in
//! a fresh child process (clean RSS); medians over `--repeats` runs.
//! `--replay` measures the replay node instead (examples/bench/replay.toml,
//! the operations dm-reverb's benchmark measures): streaming and per-call
//! inserts, batched sampling and priority updates per table, and the
//! replay process's memory holding a million items.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::launch::{self, LaunchOptions, LaunchType, LoadOptions, Plan};
use crate::output::Output;
use crate::program::Override;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The bench program (its nodes are in examples/bench); default
    /// examples/bench/program.toml, or examples/bench/replay.toml with
    /// `--replay`.
    #[arg(long)]
    program: Option<PathBuf>,

    /// Measure the replay node (inserts, samples, priority updates,
    /// memory) instead of courier calls.
    #[arg(long)]
    replay: bool,

    /// Runs of each configuration; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,

    /// A tenth of the calls, for a quick look.
    #[arg(long)]
    quick: bool,

    /// How nodes are placed.
    #[arg(long, value_enum, default_value = "local_mt")]
    launch: LaunchType,

    /// How calls travel between processes under local_mp (hosts always uses gRPC).
    #[arg(long, value_enum, default_value = "socket")]
    courier: crate::courier::TransportKind,

    /// hosts: the address agents join at (with agents started `--stay` on other machines).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,

    /// hosts: how many agents each run waits for.
    #[arg(long, default_value_t = 2)]
    agents: usize,

    /// hosts: where each run writes its join token (agents given `--stay --token FILE` follow it).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// hosts: start the agents on this machine.
    #[arg(long)]
    local_agents: bool,

    /// Only these configurations (e.g. `sync:8`, `startup:1000`, `fanout:10`).
    #[arg(long = "only", value_name = "CONFIG")]
    only: Vec<String>,

    /// Internal: run one configuration and print its JSON.
    #[arg(long, hide = true)]
    child: Option<String>,

    /// Change a setting of the bench program, as `run --set` does (e.g.
    /// `--set program.slurm.nodes=2`); passed on to every run.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<Override>,
}

/// Every configuration, as `mode:size`.
const CONFIGS: &[&str] = &[
    "startup:1",
    "startup:10",
    "startup:100",
    "startup:1000",
    "sync:8",
    "sync:1024",
    "sync:1048576",
    "fanout:10",
    "await:10000",
    "await:30000",
    "await:60000",
];

/// `--replay`: every operation on each table, then a million items held.
const CONFIGS_REPLAY: &[&str] = &["replay:uniform", "replay:prioritized", "fill:1000000"];

/// Under local_mp: a process per node, so N stays where processes are cheap.
const CONFIGS_MP: &[&str] = &[
    "startup:1",
    "startup:10",
    "startup:50",
    "startup:100",
    "sync:8",
    "sync:1024",
    "sync:1048576",
    "fanout:10",
    "await:10000",
    "await:30000",
    "await:60000",
];

impl BenchArgs {
    fn program(&self) -> PathBuf {
        self.program.clone().unwrap_or_else(|| {
            PathBuf::from(match self.replay {
                true => "examples/bench/replay.toml",
                false => "examples/bench/program.toml",
            })
        })
    }
}

pub fn main(args: BenchArgs) -> i32 {
    if args.launch == LaunchType::TestMt {
        crate::errln!("error: bench measures local_mt and local_mp, not test_mt");
        return 2;
    }
    let result = match &args.child {
        Some(config) => child(&args, config).map(|v| crate::outln!("{v}")),
        None => parent(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::errln!("error: {e:#}");
            1
        }
    }
}

fn parent(args: &BenchArgs) -> Result<()> {
    // Build and compile once, so every child starts from a warm cache, and
    // hand the children the built components so they run no cargo.
    let program = args.program();
    let plan = Plan::load(&program, &args.overrides, &LoadOptions::default())?;
    let mut built: Vec<String> = args.overrides.iter().map(|o| o.text.clone()).collect();
    for node in &plan.program.nodes {
        let Some(component) = node.component() else {
            continue;
        };
        let set = format!(
            "{}.component={:?}",
            node.entry,
            plan.files[component].canonicalize()?
        );
        if !built.contains(&set) {
            built.push(set);
        }
    }

    let configs: Vec<&str> = if !args.only.is_empty() {
        args.only.iter().map(String::as_str).collect()
    } else if args.replay {
        CONFIGS_REPLAY.to_vec()
    } else {
        match args.launch {
            LaunchType::LocalMt | LaunchType::TestMt => CONFIGS.to_vec(),
            LaunchType::LocalMp | LaunchType::Hosts | LaunchType::Slurm => CONFIGS_MP.to_vec(),
        }
    };
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for config in configs {
        let mut runs = Vec::new();
        for _ in 0..args.repeats {
            let mut cmd = Command::new(&exe);
            cmd.args(["bench", "--child", config, "--program"])
                .arg(&program);
            for set in &built {
                cmd.args(["--set", set]);
            }
            if args.quick {
                cmd.arg("--quick");
            }
            cmd.args(["--launch", args.launch.name()]);
            cmd.arg("--courier").arg(
                clap::ValueEnum::to_possible_value(&args.courier)
                    .map_or_else(|| "socket".to_string(), |v| v.get_name().to_string()),
            );
            if matches!(args.launch, LaunchType::Hosts | LaunchType::Slurm) {
                cmd.args(["--agents", &args.agents.to_string()]);
                if let Some(listen) = args.listen {
                    cmd.args(["--listen", &listen.to_string()]);
                }
                if let Some(file) = &args.token_file {
                    cmd.arg("--token-file").arg(file);
                }
                if args.local_agents {
                    cmd.arg("--local-agents");
                }
            }
            let out = cmd.output().context("cannot start a bench child")?;
            if !out.status.success() {
                bail!(
                    "bench {config} failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or_default();
            runs.push(
                serde_json::from_str::<Value>(line)
                    .with_context(|| format!("bench {config} printed {text:?}"))?,
            );
        }
        let row = summarize(config, &runs);
        crate::errln!("{row}");
        rows.push(row);
    }
    crate::outln!(
        "{}",
        table(
            &rows,
            match args.replay {
                true => REPLAY_COLUMNS,
                false => CALL_COLUMNS,
            }
        )
    );
    Ok(())
}

/// Median of each numeric field over the runs, with [min-max].
fn summarize(config: &str, runs: &[Value]) -> Value {
    let mut row = json!({ "config": config, "runs": runs.len() });
    if let Some(first) = runs.first().and_then(Value::as_object) {
        for key in first.keys() {
            let mut values: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
            if values.is_empty() {
                continue;
            }
            values.sort_by(f64::total_cmp);
            row[key] = json!({
                "median": values[values.len() / 2],
                "min": values[0],
                "max": values[values.len() - 1],
            });
        }
    }
    row
}

/// A figure of a summarized row: median [min–max].
fn fmt(row: &Value, key: &str, digits: usize) -> String {
    match row.get(key) {
        Some(v) => {
            let figure = |which: &str| v[which].as_f64().unwrap_or(0.0);
            format!(
                "{:.*} [{:.*}–{:.*}]",
                digits,
                figure("median"),
                digits,
                figure("min"),
                digits,
                figure("max")
            )
        }
        None => "n/a".into(),
    }
}

/// A column of a summary table: its header, its figure's key, its digits.
type Column = (&'static str, &'static str, usize);

/// The courier benchmark's columns.
const CALL_COLUMNS: &[Column] = &[
    ("plan (s)", "plan_secs", 4),
    ("launch → first reply from all (s)", "startup_secs", 4),
    ("stop → exit (s)", "stop_to_exit_secs", 4),
    ("calls/s", "calls_per_sec", 0),
    ("p50 (µs)", "p50_us", 1),
    ("p99 (µs)", "p99_us", 1),
    ("peak RSS (MiB)", "peak_tree_rss_mib", 1),
    ("peak PSS, all processes (MiB)", "peak_tree_pss_mib", 1),
];

/// The replay benchmark's columns.
const REPLAY_COLUMNS: &[Column] = &[
    ("streaming inserts (items/s)", "insert_stream_per_s", 0),
    ("per-call inserts (items/s)", "insert_call_per_s", 0),
    ("samples, batches of 32 (items/s)", "sample_per_s", 0),
    (
        "priority updates of 32 (calls/s)",
        "update32_calls_per_s",
        0,
    ),
    ("peak RSS of one process (MiB)", "peak_process_rss_mib", 1),
];

/// The summarized rows as a Markdown table: config, runs, then `columns`.
fn table(rows: &[Value], columns: &[Column]) -> String {
    let headers: Vec<&str> = columns.iter().map(|(header, _, _)| *header).collect();
    let mut out = format!(
        "| config | runs | {} |\n|---|---|{}\n",
        headers.join(" | "),
        "---|".repeat(columns.len())
    );
    for row in rows {
        let figures: Vec<String> = columns
            .iter()
            .map(|(_, key, digits)| fmt(row, key, *digits))
            .collect();
        out += &format!(
            "| {} | {} | {} |\n",
            row["config"].as_str().unwrap_or("?"),
            row["runs"],
            figures.join(" | ")
        );
    }
    out
}

/// Run one configuration in this process; return its figures.
fn child(args: &BenchArgs, config: &str) -> Result<Value> {
    let (mode, size) = config.split_once(':').context("a config is mode:size")?;
    let number = || size.parse::<u64>().context("size is a number");
    let scale: u64 = if args.quick { 10 } else { 1 };
    let mut set: Vec<String> = Vec::new();
    match mode {
        // Every replay operation on table `size`.
        "replay" => set.extend([
            "client.args.mode=\"ops\"".to_string(),
            format!("client.args.table=\"{size}\""),
            format!("client.args.items={}", 20_000 / scale),
            format!("client.args.per_call={}", 5_000 / scale),
        ]),
        // The replay node holding `size` items.
        "fill" => set.extend([
            "client.args.mode=\"fill\"".to_string(),
            "client.args.table=\"uniform\"".to_string(),
            format!("client.args.items={}", number()? / scale),
        ]),
        _ => set.push(format!("consumer.args.mode=\"{mode}\"")),
    }
    match mode {
        "replay" | "fill" => {}
        "startup" => set.push(format!("producer.replicas={}", number()?)),
        "sync" => {
            let (calls, warmup) = match number()? {
                8 => (10_000, 500),
                1024 => (10_000, 200),
                // Large payloads: fewer calls keep the run short.
                _ => (1_000, 20),
            };
            set.extend([
                format!("consumer.args.payload={size}"),
                format!("consumer.args.calls={}", calls / scale),
                format!("consumer.args.warmup={}", warmup / scale),
            ]);
        }
        "fanout" => set.extend([
            format!("producer.replicas={size}"),
            format!("consumer.args.calls={}", 2_000 / scale),
            format!("consumer.args.warmup={}", 50 / scale),
        ]),
        // One round of `size` calls to one producer at once, the first
        // after startup (so it includes connecting to the producer).
        "await" => set.extend([
            "producer.replicas=1".to_string(),
            format!("consumer.args.width={size}"),
            "consumer.args.calls=1".to_string(),
            "consumer.args.warmup=0".to_string(),
        ]),
        other => bail!("unknown bench mode {other}"),
    }
    let mut overrides: Vec<Override> = set
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    overrides.extend(args.overrides.iter().cloned());

    let planning = Instant::now();
    let plan = Plan::load(&args.program(), &overrides, &LoadOptions::default())?;
    let start = Instant::now();
    // Reading smaps costs the machine time: sample often only where memory
    // is what is measured, so call timings are not disturbed.
    let sampler = MemorySampler::start(if mode == "startup" || mode == "fill" {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(150)
    });
    let output = Output::capture();
    let options = LaunchOptions {
        output: output.clone(),
        termination_notice: Some(Duration::from_secs(10)),
        transport: args.courier,
        ..LaunchOptions::default()
    };
    let outcome = match args.launch {
        LaunchType::LocalMt => launch::local_mt::launch(&plan, options)?,
        LaunchType::TestMt => bail!("bench measures local_mt and local_mp, not test_mt"),
        LaunchType::LocalMp => launch::local_mp::launch(&plan, options, None)?,
        LaunchType::Hosts => {
            let hosts = launch::hosts::HostsOptions {
                listen: args
                    .listen
                    .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
                agents: args.agents,
                token_file: args.token_file.clone(),
                recruit: match args.local_agents || args.listen.is_none() {
                    true => launch::hosts::Recruit::Local { exe: None },
                    false => launch::hosts::Recruit::ByHand,
                },
                join_timeout: Duration::from_secs(120),
            };
            launch::hosts::launch(&plan, options, &hosts)?
        }
        LaunchType::Slurm => {
            let hosts = launch::slurm::hosts_options(
                &plan.program,
                args.listen,
                launch::slurm::JobOptions::default(),
                Duration::from_secs(120),
            )?;
            launch::hosts::launch(&plan, options, &hosts)?
        }
    }
    .wait();
    let ended = Instant::now();
    let peaks = sampler.stop();
    if !outcome.success() {
        bail!("bench program failed: {outcome:?}");
    }
    let lines = output.lines();
    let ready = lines
        .iter()
        .find(|l| l.text.starts_with("first-reply-from-all"))
        .context("the consumer never reported its first replies")?;
    let mut figures = json!({
        "plan_secs": (start - planning).as_secs_f64(),
        "startup_secs": (ready.at - start).as_secs_f64(),
        "peak_rss_mib": peak_rss_mib(),
        "peak_tree_rss_mib": peaks.tree_rss,
        "peak_tree_pss_mib": peaks.tree_pss,
        "peak_process_rss_mib": peaks.process_rss,
    });
    if mode == "startup" {
        figures["stop_to_exit_secs"] = json!((ended - ready.at).as_secs_f64());
    }
    if let Some(result) = lines
        .iter()
        .find_map(|l| l.text.strip_prefix("bench-result "))
    {
        let result: Value = serde_json::from_str(result)?;
        for (k, v) in result.as_object().into_iter().flatten() {
            figures[k] = v.clone();
        }
    }
    Ok(figures)
}

/// Samples the RSS and PSS summed over this process and its descendants
/// (local_mp workers), and the largest RSS of any one of them, at an
/// interval; keeps the peaks.
struct MemorySampler {
    done: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Memory>,
}

/// Memory of a process tree, in MiB.
#[derive(Clone, Copy, Default)]
struct Memory {
    tree_rss: f64,
    tree_pss: f64,
    /// The RSS of its largest process.
    process_rss: f64,
}

impl MemorySampler {
    fn start(interval: Duration) -> MemorySampler {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Memory::default();
            loop {
                std::thread::sleep(interval);
                let now = tree_memory_mib(std::process::id());
                peak.tree_rss = peak.tree_rss.max(now.tree_rss);
                peak.tree_pss = peak.tree_pss.max(now.tree_pss);
                peak.process_rss = peak.process_rss.max(now.process_rss);
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return peak;
                }
            }
        });
        MemorySampler { done, thread }
    }

    fn stop(self) -> Memory {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The memory of `pid` and all its descendants, from smaps_rollup.
fn tree_memory_mib(pid: u32) -> Memory {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let rss = field("Rss:");
    let mut memory = Memory {
        tree_rss: rss,
        tree_pss: field("Pss:"),
        process_rss: rss,
    };
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        let below = tree_memory_mib(child);
        memory.tree_rss += below.tree_rss;
        memory.tree_pss += below.tree_pss;
        memory.process_rss = memory.process_rss.max(below.process_rss);
    }
    memory
}

/// This process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
