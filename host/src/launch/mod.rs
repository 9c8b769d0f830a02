//! Launching a planned program: `local_mt` runs every node as a task on a
//! pool of worker threads in this process, `local_mp` in worker processes,
//! `test_mt` on one seeded scheduler; all share the plan and the node
//! runtime.

pub mod agent;
pub mod classes;
pub mod end;
pub mod hosts;
pub mod local_mp;
pub mod local_mt;
pub mod placement;
mod plan;
mod pool;
mod ports;
mod processes;
mod report;
mod run_dir;
pub use run_dir::write_private;
pub mod seeded;
pub mod slurm;
mod start;
mod supervisor;
pub mod worker;
pub mod workers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use plan::{LoadError, LoadOptions, Plan, plan};
pub use ports::{PortAsk, PortRefused, Ports, allocate_here, machine_address};
pub use start::RunningProgram;

use crate::courier::TransportKind;
use crate::output::Output;
use crate::stop::StopSignal;

pub(crate) use crate::lock;

/// Worker threads for nodes: `$LP_THREADS`, else one per core.
pub fn default_threads() -> usize {
    std::env::var("LP_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// How nodes are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LaunchType {
    /// Every node in this process, as a task on a pool of threads (one per core).
    #[value(name = "local_mt")]
    LocalMt,
    /// Every node (or colocation group) in a process of its own.
    #[value(name = "local_mp")]
    LocalMp,
    /// Every node in this process on one seeded, deterministic scheduler
    /// (with `--seed`; see docs/testing.md).
    #[value(name = "test_mt")]
    TestMt,
    /// Every node (or colocation group) in a process of its own on the
    /// machines whose agents joined (`--listen`, `--agents`; see
    /// docs/multi-host.md).
    #[value(name = "hosts")]
    Hosts,
    /// As hosts, the agents started by one Slurm job, one per node of the
    /// job (`[program.slurm]`; see docs/clusters.md).
    #[value(name = "slurm")]
    Slurm,
}

impl LaunchType {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LaunchType::LocalMt => "local_mt",
            LaunchType::LocalMp => "local_mp",
            LaunchType::TestMt => "test_mt",
            LaunchType::Hosts => "hosts",
            LaunchType::Slurm => "slurm",
        }
    }
}

/// Settings of one launch.
#[derive(Clone)]
pub struct LaunchOptions {
    /// After a stop, how long nodes still running get before they are
    /// interrupted; `None` waits for ever.
    pub termination_notice: Option<Duration>,
    pub output: Output,
    /// Worker threads the nodes run on.
    pub threads: usize,
    /// How long an idle worker (or a reader of the socket transport)
    /// spins before sleeping.
    pub spin: Duration,
    /// How calls travel between processes (local_mp).
    pub transport: TransportKind,
    /// The lp-host binary local_mp starts as workers (default:
    /// `$LP_HOST_EXE`, else this executable).
    pub worker_exe: Option<std::path::PathBuf>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            termination_notice: Some(Duration::from_secs(10)),
            output: Output::terminal(),
            threads: default_threads(),
            spin: pool::default_spin(),
            transport: TransportKind::default(),
            worker_exe: None,
        }
    }
}

/// Why a program ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// A node called `stop()` (or the launcher's handle asked for a stop).
    Stopped,
    /// The runs the program waits for finished (by default every node's
    /// with a `run`; program.toml's `wait_for` and `end_on` choose).
    Finished,
    /// A node failed.
    Failed,
    /// Interrupted from outside (Ctrl-C).
    Interrupted,
}

/// A node that failed, and how.
#[derive(Clone, Debug)]
pub struct NodeFailure {
    pub node: String,
    /// The error, with its wasm backtrace.
    pub error: String,
}

/// How a program ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub reason: EndReason,
    pub failures: Vec<NodeFailure>,
    /// Nodes still running when the termination notice expired.
    pub interrupted: Vec<String>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.failures.is_empty() && self.reason != EndReason::Interrupted
    }

    /// The process exit code for this outcome.
    pub fn exit_code(&self) -> i32 {
        match (&self.reason, self.failures.is_empty()) {
            (_, false) => 1,
            (EndReason::Interrupted, _) => 130,
            _ => 0,
        }
    }
}

/// Controls a running program from outside (e.g. a Ctrl-C handler).
#[derive(Clone)]
pub struct ProgramHandle {
    stop: Arc<StopSignal>,
    interrupted: Arc<AtomicBool>,
    kill_now: Arc<AtomicBool>,
}

impl ProgramHandle {
    fn new(stop: Arc<StopSignal>) -> Self {
        ProgramHandle {
            stop,
            interrupted: Arc::default(),
            kill_now: Arc::default(),
        }
    }

    /// Ask the program to stop, as a node's `stop()` does.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Ctrl-C: the first asks for a graceful stop, the second kills at once.
    pub fn interrupt(&self) {
        if self.interrupted.swap(true, Ordering::SeqCst) {
            self.kill_now.store(true, Ordering::SeqCst);
        }
        self.stop.stop();
    }

    /// Interrupt every node now, without waiting for the notice.
    pub fn kill(&self) {
        self.kill_now.store(true, Ordering::SeqCst);
        self.stop.stop();
    }

    fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    fn must_kill(&self) -> bool {
        self.kill_now.load(Ordering::SeqCst)
    }
}
