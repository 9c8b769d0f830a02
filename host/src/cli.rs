//! The command line: `lp-host run`, `check`, `test`, `bench`, `new` (and the
//! hidden `worker`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::courier::TransportKind;
use crate::launch::{self, LaunchOptions, LaunchType, LoadError, LoadOptions, Plan};
use crate::output::Output;
use crate::program::{Override, Program};

#[derive(Parser)]
#[command(
    name = "lp-host",
    version,
    about = "Run lp programs: graphs of WebAssembly component nodes joined by typed calls"
)]
struct Cli {
    /// More host messages (-v: debug, -vv: trace). `LP_LOG` takes a tracing filter.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program until a node calls stop(), every `run` finishes, a node fails, or Ctrl-C.
    Run(RunArgs),
    /// Validate a program without running it: schema, files, components, grants, edge types.
    Check(crate::check::CheckArgs),
    /// Run a program under many seeds (deterministic test_mt runs) and list the failing ones.
    Test(crate::explore::TestArgs),
    /// Measure courier calls and startup on the consumer_producers shape.
    Bench(crate::bench::BenchArgs),
    /// Create a node crate (WIT, src/lib.rs, program.toml, a test) that builds anywhere.
    New(crate::scaffold::NewArgs),
    /// Join a multi-host launch (`run --launch hosts`) from this machine and run its nodes here.
    Agent(crate::launch::agent::AgentArgs),
    /// Write what runs a program on a cluster engine: `export k8s PROGRAM -o DIR` (Kubernetes manifests).
    Export(crate::k8s::ExportArgs),
    /// The state of a detached Slurm launch (`run --launch slurm --detach`), and its output's end.
    Status {
        /// The Slurm job id the launch printed.
        job: String,
    },
    /// Stop a detached Slurm launch as Ctrl-C would (or at once, with --now).
    Stop {
        /// The Slurm job id the launch printed.
        job: String,
        /// Cancel the job at once: nodes get no termination notice.
        #[arg(long)]
        now: bool,
        /// How long to wait for the job to leave Slurm's queue.
        #[arg(long, default_value_t = 60.0)]
        wait_secs: f64,
    },
    /// Internal: a worker process of local_mp or hosts.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The program.toml to run.
    program: PathBuf,

    /// How nodes are placed.
    #[arg(long, value_enum, default_value = "local_mt")]
    launch: LaunchType,

    /// test_mt: the seed of the scheduler, clocks and randomness (default: a new one, printed).
    #[arg(long)]
    seed: Option<u64>,

    /// test_mt: how many faults (failed calls, crashed nodes) the seed may inject.
    #[arg(long, default_value_t = 0)]
    faults: u32,

    /// test_mt: write the run's trace (every step, call, return, output line) to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,

    /// hosts, slurm: the address of this machine agents join at (e.g. 10.0.0.1:7070; slurm: default the one toward slurmctld).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,

    /// hosts: how many agents (machines) to wait for.
    #[arg(long, default_value_t = 1)]
    agents: usize,

    /// hosts: where to write the join token agents need (default: lp-join.token here).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// hosts: start the --agents on this machine too (try a multi-host program on one machine).
    #[arg(long)]
    local_agents: bool,

    /// hosts: the agents hold a token made ahead (`lp-host export k8s`); the join material is in $LP_JOIN_MATERIAL.
    #[arg(long)]
    join_material_from_env: bool,

    /// slurm: submit the launch as a job and return (its id printed); see `lp-host status` and `lp-host stop`.
    #[arg(long)]
    detach: bool,

    /// hosts, slurm: how long to wait for the agents to join (slurm: including the job's wait in the queue).
    #[arg(long, default_value_t = 300.0)]
    join_timeout_secs: f64,

    /// How calls travel between processes under local_mp and hosts (hosts: inside mutual TLS).
    #[arg(long, value_enum, default_value = "socket")]
    courier: TransportKind,

    /// Override a setting without editing the file, e.g. `--set producer.replicas=100`
    /// or `--set consumer.args.steps=20` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<Override>,

    /// Seconds nodes get to finish after a stop before they are interrupted (negative: never).
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    termination_notice_secs: f64,

    /// Where compiled components are cached (default: $LP_CACHE_DIR or ~/.cache/lp).
    #[arg(long, env = "LP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Write each node's output to its own file in DIR (the paths are printed at start).
    #[arg(long, value_name = "DIR")]
    logs_dir: Option<PathBuf>,

    /// Where node output is shown: prefixed lines here, or one tmux window per node.
    #[arg(long, value_enum, default_value = "current")]
    terminal: Terminal,

    /// The tmux session's name (default: lp-<program name>).
    #[arg(long)]
    tmux_session: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Terminal {
    /// Every line prefixed with its node's name, in this terminal.
    Current,
    /// A detached tmux session with a window per node.
    Tmux,
}

/// Where node output goes, as the flags say.
fn output_for(args: &RunArgs, program: &crate::program::Program) -> anyhow::Result<Output> {
    let names: Vec<String> = program.nodes.iter().map(|n| n.name.clone()).collect();
    let dir = match (&args.logs_dir, args.terminal) {
        (Some(dir), _) => dir.clone(),
        (None, Terminal::Tmux) => {
            std::env::temp_dir().join(format!("lp-{}-{}", program.name, std::process::id()))
        }
        (None, Terminal::Current) => return Ok(Output::terminal()),
    };
    let (output, files) = Output::files(&dir, &names)
        .with_context(|| format!("cannot write logs in {}", dir.display()))?;
    if args.terminal == Terminal::Tmux {
        let session = args
            .tmux_session
            .clone()
            .unwrap_or_else(|| format!("lp-{}", program.name));
        crate::terminal::open_tmux(&session, &names, &files)?;
        crate::errln!("node output is in tmux session {session}: tmux attach -t {session}");
    } else {
        crate::errln!("node output goes to:");
        for (name, file) in names.iter().zip(&files) {
            crate::errln!("  {name}: {}", file.display());
        }
    }
    Ok(output)
}

/// Parse the command line, run it, and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => crate::check::main(args),
        Command::Test(args) => crate::explore::main(args),
        Command::Bench(args) => crate::bench::main(args),
        Command::New(args) => crate::scaffold::main(args),
        Command::Agent(args) => crate::launch::agent::main(args),
        Command::Export(args) => crate::k8s::main(args),
        Command::Status { job } => exit_code(crate::launch::slurm::status(&job)),
        Command::Stop {
            job,
            now,
            wait_secs,
        } => exit_code(
            Duration::try_from_secs_f64(wait_secs)
                .map_err(|_| anyhow::anyhow!("--wait-secs must be a number of seconds, 0 or more"))
                .and_then(|wait| crate::launch::slurm::stop(&job, now, wait)),
        ),
        Command::Worker { spec } => crate::launch::worker::main(&spec),
    }
}

/// A deterministic run: the seed first, then the program; on failure the
/// command that replays it.
fn run_seeded(
    args: &RunArgs,
    plan: &launch::Plan,
    output: &Output,
    notice: Option<Duration>,
) -> anyhow::Result<(launch::Outcome, Option<i32>)> {
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 % 1_000_000
    });
    let settings = launch::seeded::Seeded {
        faults: args.faults,
        ..launch::seeded::Seeded::new(seed)
    };
    crate::errln!("test_mt: seed {seed}");
    // Signals stop a seeded run as they stop the others.
    let caught = crate::signals::Interrupts::catch();
    if let Err(e) = &caught {
        tracing::warn!("Ctrl-C will not stop the program gracefully: {e}");
    }
    let run = launch::seeded::run_interruptible(plan, &settings, output, notice, |handle| {
        if let Ok(caught) = &caught {
            caught.attach(handle);
        }
    })?;
    output.flush();
    if let Some(file) = &args.trace {
        std::fs::write(file, &run.trace)
            .with_context(|| format!("cannot write the trace to {}", file.display()))?;
        crate::errln!("trace written to {}", file.display());
    }
    if !run.outcome.success() {
        crate::errln!(
            "seed {seed} failed; replay it with:\n  {}",
            launch::seeded::replay_command(&args.program, &plan.program.overrides, &settings)
        );
    }
    let signal_code = caught.ok().and_then(|c| c.exit_code());
    Ok((run.outcome, signal_code))
}

/// An error said, as an exit code (2), or the code itself.
fn exit_code(result: anyhow::Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        crate::errln!("error: {e:#}");
        2
    })
}

/// `run --launch slurm --detach`: the launcher goes into a job of its own
/// (this command line, less `--detach`, its node output in --logs-dir).
fn detach(args: &RunArgs, program: &Program) -> i32 {
    if args.launch != LaunchType::Slurm {
        crate::errln!("error: --detach applies to --launch slurm only");
        return 2;
    }
    let logs_dir = args
        .logs_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("lp-logs"));
    let submitted = (|| {
        let mut argv: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--detach")
            .collect();
        if args.logs_dir.is_none() {
            argv.push("--logs-dir".into());
            argv.push(
                std::path::absolute(&logs_dir)?
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        let exe = std::path::absolute(std::env::current_exe()?)?;
        launch::slurm::detach(program, &exe, &argv, &logs_dir)
    })();
    match submitted {
        Ok(job) => {
            println!("{job}");
            crate::errln!(
                "slurm: submitted job {job}; its output goes to {}\n  lp-host status {job}    # its state\n  lp-host stop {job}      # stop it (as Ctrl-C would)",
                logs_dir.display()
            );
            0
        }
        Err(e) => {
            crate::errln!("error: {e:#}");
            2
        }
    }
}

/// How long a multi-host launch waits for its agents.
fn join_timeout(args: &RunArgs) -> anyhow::Result<Duration> {
    if !(args.join_timeout_secs > 0.0 && args.join_timeout_secs.is_finite()) {
        anyhow::bail!("--join-timeout-secs must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(args.join_timeout_secs))
}

/// The settings of a multi-host launch, from the flags.
fn hosts_options(args: &RunArgs) -> anyhow::Result<launch::hosts::HostsOptions> {
    let listen = match (args.listen, args.local_agents) {
        (Some(listen), _) => listen,
        (None, true) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        (None, false) => anyhow::bail!(
            "--launch hosts needs --listen ADDR: the address of this machine agents join at, e.g. --listen 10.0.0.1:7070\n  help: or add --local-agents to run the agents on this machine"
        ),
    };
    Ok(launch::hosts::HostsOptions {
        listen,
        agents: args.agents,
        token_file: args.token_file.clone(),
        recruit: match (args.local_agents, args.join_material_from_env) {
            (true, true) => anyhow::bail!(
                "--local-agents and --join-material-from-env do not go together: local agents get the launcher's own token"
            ),
            (true, false) => launch::hosts::Recruit::Local { exe: None },
            (false, true) => launch::hosts::Recruit::Prepared(std::sync::Arc::new(
                crate::trust::JoinMaterial::from_env()?,
            )),
            (false, false) => launch::hosts::Recruit::ByHand,
        },
        join_timeout: join_timeout(args)?,
    })
}

/// What the program is allowed but should be told (a grant of a home).
fn print_warnings(program: &Program) {
    for warning in &program.warnings {
        crate::errln!("warning: {warning}");
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "lp_host=info",
        1 => "lp_host=debug",
        _ => "lp_host=trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LP_LOG").unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::console::StderrWriter)
        .with_target(false)
        .try_init();
}

fn run(args: RunArgs) -> i32 {
    let seeded = args.launch == LaunchType::TestMt;
    if !seeded && (args.seed.is_some() || args.faults > 0 || args.trace.is_some()) {
        crate::errln!(
            "error: --seed, --faults and --trace apply to seeded runs only\n  help: add `--launch test_mt`"
        );
        return 2;
    }
    let loading = LoadOptions {
        cache_dir: args.cache_dir.clone(),
        seeded,
        ..LoadOptions::default()
    };
    let plan = match Plan::load(&args.program, &args.overrides, &loading) {
        Ok(plan) => plan,
        Err(LoadError::Program(diagnostic)) => {
            crate::errln!("error: {diagnostic}");
            return 2;
        }
        Err(LoadError::Plan { program, error }) => {
            print_warnings(&program);
            crate::errln!("error: {error:#}");
            return 2;
        }
    };
    print_warnings(&plan.program);
    if args.detach {
        return detach(&args, &plan.program);
    }
    let result = (|| {
        let notice = (args.termination_notice_secs >= 0.0)
            .then(|| Duration::from_secs_f64(args.termination_notice_secs));
        let output = output_for(&args, &plan.program)?;
        if seeded {
            return run_seeded(&args, &plan, &output, notice);
        }
        let printed = output.clone();
        let options = LaunchOptions {
            termination_notice: notice,
            output,
            transport: args.courier,
            ..LaunchOptions::default()
        };
        // Signals are caught from before the launch: one that comes while
        // the nodes start is applied as soon as there is a program to stop.
        let caught = crate::signals::Interrupts::catch();
        if let Err(e) = &caught {
            tracing::warn!("Ctrl-C will not stop the program gracefully: {e}");
        }
        let running = match args.launch {
            LaunchType::LocalMt | LaunchType::TestMt => launch::local_mt::launch(&plan, options)?,
            LaunchType::LocalMp => {
                launch::local_mp::launch(&plan, options, args.cache_dir.clone())?
            }
            LaunchType::Hosts => launch::hosts::launch(&plan, options, &hosts_options(&args)?)?,
            LaunchType::Slurm => {
                let job = launch::slurm::JobOptions {
                    agent_exe: None,
                    logs_dir: args.logs_dir.clone(),
                };
                let hosts = launch::slurm::hosts_options(
                    &plan.program,
                    args.listen,
                    job,
                    join_timeout(&args)?,
                )?;
                launch::hosts::launch(&plan, options, &hosts)?
            }
        };
        if let Ok(caught) = &caught {
            caught.attach(running.handle());
        }
        let outcome = running.wait();
        // The nodes' last lines come before what is said about their end.
        printed.flush();
        let signal_code = caught.ok().and_then(|c| c.exit_code());
        anyhow::Ok((outcome, signal_code))
    })();
    match result {
        Err(e) => {
            crate::errln!("error: {e:#}");
            2
        }
        Ok((outcome, signal_code)) => {
            for name in &outcome.interrupted {
                crate::errln!(
                    "warning: node {name} was still running when the termination notice expired; it was interrupted"
                );
            }
            for failure in outcome.failure_report() {
                // The error can quote the guest (its trap message, its
                // function names): no control characters from it reach here.
                let error: Vec<_> = failure
                    .lines()
                    .map(|line| crate::output::neutralize(line, false))
                    .collect();
                crate::errln!("error: {}", error.join("\n"));
            }
            // Interrupted by a signal: the status says which.
            match signal_code {
                Some(code) if outcome.failures.is_empty() && !outcome.success() => code,
                _ => outcome.exit_code(),
            }
        }
    }
}
