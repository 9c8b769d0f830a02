//! Deterministic, seeded runs (`--launch test_mt --seed N`): every node of
//! the program is a task of one scheduler on the calling thread, which picks
//! the next node to step with a random generator seeded by N. Time is
//! virtual (tokio's paused clock: it moves only when the scheduler moves it,
//! a little per step and straight to the next timer when every node
//! waits), nodes see virtual WASI clocks and seeded WASI randomness, wasm
//! yields after a fixed amount of fuel instead of at wall-clock ticks, and
//! calls are delayed by seeded amounts, so the delivery order of calls comes
//! from the seed too. Faults (failed calls, a crashed node) are injected at
//! seeded points, within a budget. Everything that happens is recorded in a
//! trace; the same seed gives the same trace, byte for byte.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use anyhow::{Context as _, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::end::EndRule;
use super::start::{Wiring, start_nodes};
use super::{EndReason, NodeFailure, Outcome, Plan, Ports, ProgramHandle, lock};
use crate::courier::{CallError, Router};
use crate::node::hooks::{Hooks, NodeHooks};
use crate::node::{Control, NodeEvent};
use crate::output::{Output, Stream};
use crate::stop::StopSignal;

/// Virtual time that passes with every step of a node.
const STEP_TIME: Duration = Duration::from_micros(10);
/// Wasm yields to the scheduler after this much fuel (about as many
/// instructions), so a node computing in a loop is still one of many.
const FUEL_PER_STEP: u64 = 20_000;
/// The wall clock a node sees at virtual time zero (2024-01-01T00:00:00Z).
const WALL_CLOCK_START: Duration = Duration::from_secs(1_704_067_200);

/// What a seeded run is asked to do.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub seed: u64,
    /// How many faults (failed calls, crashed nodes) may be injected.
    pub faults: u32,
    /// A run that has not ended after this much virtual time, or this many
    /// steps, is a failure (a deadlock, a loop, or a missing stop).
    pub max_virtual_time: Duration,
    pub max_steps: u64,
}

impl Seeded {
    pub fn new(seed: u64) -> Seeded {
        Seeded {
            seed,
            faults: 0,
            max_virtual_time: Duration::from_secs(3600),
            max_steps: 1_000_000,
        }
    }
}

/// How a seeded run ended, and what happened on the way.
pub struct SeededOutcome {
    pub outcome: Outcome,
    /// One event per line: steps, calls, returns, output, faults, the end.
    pub trace: String,
}

/// The seeded choices of one run and its trace; shared by the scheduler and
/// every node (calls, stop, output).
pub struct Chaos {
    seed: u64,
    rng: Mutex<StdRng>,
    faults_left: AtomicU32,
    start: tokio::time::Instant,
    trace: Mutex<Vec<String>>,
}

impl Chaos {
    fn new(settings: &Seeded) -> Chaos {
        Chaos {
            seed: settings.seed,
            rng: Mutex::new(StdRng::seed_from_u64(settings.seed)),
            faults_left: AtomicU32::new(settings.faults),
            start: tokio::time::Instant::now(),
            trace: Mutex::new(Vec::new()),
        }
    }

    /// Virtual time since the run began.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now() - self.start
    }

    /// Add an event to the trace, stamped with the virtual time.
    pub fn record(&self, event: impl std::fmt::Display) {
        let line = format!("{:>10} {event}", self.elapsed().as_micros());
        lock(&self.trace).push(line);
    }

    /// A seed for one of a node's generators, derived from the run's.
    pub fn node_seed(&self, node: u32, stream: u64) -> u64 {
        splitmix64(self.seed ^ (u64::from(node) << 8) ^ stream)
    }

    fn pick(&self, n: usize) -> usize {
        lock(&self.rng).random_range(0..n)
    }

    /// Take one fault from the budget with probability `p`.
    fn fault(&self, p: f64) -> bool {
        lock(&self.rng).random_bool(p)
            && self
                .faults_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Before a call is delivered: a seeded delay, sometimes; an injected
    /// failure, while the budget lasts.
    pub async fn before_call(&self, call: &str) -> Result<(), CallError> {
        let delay = {
            let mut rng = lock(&self.rng);
            rng.random_bool(0.25)
                .then(|| Duration::from_micros(rng.random_range(1..=2_000)))
        };
        if let Some(delay) = delay {
            self.record(format!("delay {call} by {}us", delay.as_micros()));
            tokio::time::sleep(delay).await;
        }
        if self.fault(0.05) {
            self.record(format!("fault: {call} fails"));
            return Err(CallError::Unreachable(format!(
                "injected fault (seed {})",
                self.seed
            )));
        }
        Ok(())
    }

    /// Whether (and at which of its steps) to crash a node.
    fn plan_crash(&self, nodes: usize) -> Option<(usize, u64)> {
        if nodes == 0 || !self.fault(0.3) {
            return None;
        }
        let mut rng = lock(&self.rng);
        Some((rng.random_range(0..nodes), rng.random_range(1..=200)))
    }
}

/// The command that replays a seeded run of `program` (with its `--set`
/// overrides), for a person to paste.
pub fn replay_command(
    program: &std::path::Path,
    overrides: &[String],
    settings: &Seeded,
) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut command = format!(
        "lp-host run {} --launch test_mt --seed {}",
        quote(&program.display().to_string()),
        settings.seed
    );
    if settings.faults > 0 {
        command.push_str(&format!(" --faults {}", settings.faults));
    }
    for o in overrides {
        command.push_str(&format!(" --set {}", quote(o)));
    }
    command
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A seeded run's nodes are traced, their calls delayed and failed by the
/// seed, their clocks virtual and their randomness seeded.
impl NodeHooks for Chaos {
    fn record(&self, event: String) {
        Chaos::record(self, event);
    }

    fn before_call<'a>(
        &'a self,
        call: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send + 'a>> {
        Box::pin(Chaos::before_call(self, call))
    }

    fn wasi(&self, node: u32, wasi: &mut wasmtime_wasi::WasiCtxBuilder) {
        wasi.secure_random(node_rng(self, node, 1))
            .insecure_random(node_rng(self, node, 2))
            .insecure_random_seed(u128::from(self.node_seed(node, 3)))
            .wall_clock(VirtualWallClock(self.start))
            .monotonic_clock(VirtualMonotonicClock(self.start));
    }

    fn fuel_per_step(&self) -> u64 {
        FUEL_PER_STEP
    }

    fn seed(&self, node: u32) -> u64 {
        self.node_seed(node, 4)
    }
}

/// `wasi:clocks/monotonic-clock` in virtual time (since the run began).
struct VirtualMonotonicClock(tokio::time::Instant);

impl wasmtime_wasi::HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        (tokio::time::Instant::now() - self.0).as_nanos() as u64
    }
}

/// `wasi:clocks/wall-clock` in virtual time, from a fixed date.
struct VirtualWallClock(tokio::time::Instant);

impl wasmtime_wasi::HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        WALL_CLOCK_START + (tokio::time::Instant::now() - self.0)
    }
}

/// Seeded generators for a node's `wasi:random`.
fn node_rng(chaos: &Chaos, node: u32, stream: u64) -> StdRng {
    StdRng::seed_from_u64(chaos.node_seed(node, stream))
}

/// Marks its task ready to be stepped.
struct TaskWaker {
    task: usize,
    ready: Arc<Mutex<BTreeSet<usize>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.ready).insert(self.task);
        self.notify.notify_one();
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Run `plan` to its end under `settings`, on this thread.
pub fn run(
    plan: &Plan,
    settings: &Seeded,
    output: &Output,
    notice: Option<Duration>,
) -> Result<SeededOutcome> {
    run_interruptible(plan, settings, output, notice, |_| {})
}

/// Like [`run`], handing `attach` the run's [`ProgramHandle`] before the
/// first step, so that signals can stop it (the first gracefully, a second
/// at once), as they stop the other launch types.
pub fn run_interruptible(
    plan: &Plan,
    settings: &Seeded,
    output: &Output,
    notice: Option<Duration>,
    attach: impl FnOnce(ProgramHandle),
) -> Result<SeededOutcome> {
    // IO for granted sockets (real, not virtualized: a node's wasi:sockets
    // calls need a reactor, or tokio panics).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .start_paused(true)
        .build()
        .context("cannot start the seeded scheduler")?;
    let _enter = runtime.enter();
    let chaos = Arc::new(Chaos::new(settings));
    chaos.record(format!(
        "seed {} faults {} program {}",
        settings.seed, settings.faults, plan.program.name
    ));

    // Output goes to the trace too, in the order it happens.
    let traced_output = {
        let (chaos, output) = (chaos.clone(), output.clone());
        Output::forward(move |node, stream, text| {
            let channel = match stream {
                Stream::Stdout => "stdout".to_string(),
                Stream::Stderr => "stderr".to_string(),
                Stream::Log(level) => format!("log {level:?}").to_lowercase(),
            };
            chaos.record(format!("{channel} [{node}] {text}"));
            output.line(node, stream, text);
        })
    };
    let program = &plan.program;
    let ports = Ports::allocate(program)?;
    let names: Vec<String> = program.nodes.iter().map(|n| n.name.clone()).collect();
    let stop = Arc::new(StopSignal::new());
    let handle = ProgramHandle::new(stop.clone());
    attach(handle.clone());
    let (router, mailboxes) = Router::local(
        names.clone(),
        plan.funcs.clone(),
        stop.clone(),
        program.call_timeout,
    );
    let router = Arc::new(router);
    let control = Arc::new(Control::default());
    let (events_tx, events) = mpsc::channel();
    let tasks: Mutex<Vec<Option<Task>>> = Mutex::new(Vec::new());
    let wiring = Wiring {
        router: &router,
        control: &control,
        events: &events_tx,
        output: &traced_output,
        hooks: Hooks::new(chaos.clone()),
        ports: &ports,
        // The epoch never ticks in seeded runs (fuel paces them), so the
        // CPU limit is not counted here.
        epoch_tick: Duration::ZERO,
        restart_in_process: true,
    };
    start_nodes(
        plan,
        mailboxes.into_iter().map(Some).collect(),
        wiring,
        |task| lock(&tasks).push(Some(task)),
    );
    drop(traced_output);
    let mut scheduler = Scheduler::new(tasks.into_inner().unwrap_or_else(|p| p.into_inner()));

    let crash = chaos.plan_crash(scheduler.len());
    let with_run = plan.nodes_with_run();
    let mut judge = Judge {
        names: &names,
        end: EndRule::new(plan),
        with_run,
        exited: 0,
        failures: Vec::new(),
        reason: None,
        stop_began: None,
        interrupted: Vec::new(),
        shutdown_sent: false,
        stop: &stop,
        control: &control,
        notice,
    };
    loop {
        while let Ok(event) = events.try_recv() {
            judge.on_event(event, &chaos);
        }
        if judge.exited == scheduler.len() {
            break;
        }
        // From outside (a signal): not the seed's choice, but in the trace.
        if handle.was_interrupted() && judge.reason.is_none() {
            chaos.record("interrupted from outside");
            judge.reason = Some(EndReason::Interrupted);
        }
        let decision = match handle.must_kill() && !judge.control.kill.is_stopping() {
            true => judge.kill(),
            false => judge.decide(&chaos),
        };
        if decision == Decision::Kill {
            for id in std::mem::take(&mut judge.with_run) {
                if scheduler.remove(id as usize) {
                    chaos.record(format!("interrupt {}", names[id as usize]));
                    judge.on_event(NodeEvent::Exited(id), &chaos);
                }
            }
            continue;
        }
        if chaos.elapsed() > settings.max_virtual_time || scheduler.steps >= settings.max_steps {
            judge.no_end(settings, &chaos);
            for id in 0..scheduler.len() {
                if scheduler.remove(id) {
                    judge.on_event(NodeEvent::Exited(id as u32), &chaos);
                }
            }
            break;
        }
        let choices = scheduler.ready();
        if choices.is_empty() {
            scheduler.wait_for_timers(&runtime);
            continue;
        }
        let task = choices[chaos.pick(choices.len())];
        let its_step = scheduler.count_step(task);
        if crash == Some((task, its_step)) {
            scheduler.remove(task);
            let error = format!("injected crash at its step {its_step}");
            chaos.record(format!("fault: crash {} ({error})", names[task]));
            judge.on_event(NodeEvent::Failed(task as u32, error), &chaos);
            judge.on_event(NodeEvent::Exited(task as u32), &chaos);
            continue;
        }
        chaos.record(format!("step {}", names[task]));
        scheduler.poll(task);
        if scheduler.steps.is_multiple_of(16) {
            runtime.block_on(tokio::time::advance(STEP_TIME * 16));
        }
    }
    let outcome = judge.outcome();
    chaos.record(format!(
        "end {:?}{}",
        outcome.reason,
        outcome
            .failures
            .iter()
            .map(|f| format!(
                "; {} failed: {}",
                f.node,
                f.error.lines().next().unwrap_or("")
            ))
            .collect::<String>()
    ));
    drop(scheduler);
    let mut trace = lock(&chaos.trace).join("\n");
    trace.push('\n');
    Ok(SeededOutcome { outcome, trace })
}

/// The nodes' tasks, which of them are ready, and how many steps each
/// has taken.
struct Scheduler {
    tasks: Vec<Option<Task>>,
    ready: Arc<Mutex<BTreeSet<usize>>>,
    notify: Arc<tokio::sync::Notify>,
    wakers: Vec<Waker>,
    steps: u64,
    steps_of: Vec<u64>,
}

impl Scheduler {
    fn new(tasks: Vec<Option<Task>>) -> Scheduler {
        let ready = Arc::new(Mutex::new((0..tasks.len()).collect::<BTreeSet<usize>>()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let wakers = (0..tasks.len())
            .map(|task| {
                Waker::from(Arc::new(TaskWaker {
                    task,
                    ready: ready.clone(),
                    notify: notify.clone(),
                }))
            })
            .collect();
        Scheduler {
            steps_of: vec![0; tasks.len()],
            tasks,
            ready,
            notify,
            wakers,
            steps: 0,
        }
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    /// The live tasks that are ready to step, in task order.
    fn ready(&self) -> Vec<usize> {
        lock(&self.ready)
            .iter()
            .copied()
            .filter(|&t| self.tasks[t].is_some())
            .collect()
    }

    /// Drop a task; whether it was still live.
    fn remove(&mut self, task: usize) -> bool {
        self.tasks[task].take().is_some()
    }

    /// Count a step of `task` (taking it off the ready set); its number
    /// among the task's own steps.
    fn count_step(&mut self, task: usize) -> u64 {
        lock(&self.ready).remove(&task);
        self.steps += 1;
        self.steps_of[task] += 1;
        self.steps_of[task]
    }

    /// Poll `task` once; a task that completes is dropped.
    fn poll(&mut self, task: usize) {
        let Some(future) = self.tasks[task].as_mut() else {
            return;
        };
        if future
            .as_mut()
            .poll(&mut Context::from_waker(&self.wakers[task]))
            .is_ready()
        {
            self.tasks[task] = None;
        }
    }

    /// Every node waits: let virtual time run to the next timer (or until
    /// a node is woken).
    fn wait_for_timers(&self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(async {
            tokio::select! {
                () = self.notify.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        });
    }
}

#[derive(PartialEq, Eq)]
enum Decision {
    Continue,
    Kill,
}

/// Decides, from the nodes' events and virtual time, when the program ends
/// (as the supervisor does for the other launch types).
struct Judge<'a> {
    names: &'a [String],
    with_run: BTreeSet<u32>,
    end: EndRule,
    exited: usize,
    failures: Vec<NodeFailure>,
    reason: Option<EndReason>,
    stop_began: Option<Duration>,
    interrupted: Vec<String>,
    shutdown_sent: bool,
    stop: &'a StopSignal,
    control: &'a Control,
    notice: Option<Duration>,
}

impl Judge<'_> {
    fn on_event(&mut self, event: NodeEvent, chaos: &Chaos) {
        match event {
            NodeEvent::Started(_) => {}
            NodeEvent::RunFinished(id) => {
                chaos.record(format!("run finished {}", self.names[id as usize]));
                self.with_run.remove(&id);
                self.end.run_finished(id);
            }
            NodeEvent::Failed(id, error) => {
                let node = self.names[id as usize].clone();
                chaos.record(format!(
                    "failed {node}: {}",
                    error.lines().next().unwrap_or("")
                ));
                self.with_run.remove(&id);
                if !self.control.kill.is_stopping() {
                    self.failures.push(NodeFailure { node, error });
                    self.reason.get_or_insert(EndReason::Failed);
                }
                self.stop.stop();
            }
            NodeEvent::Exited(id) => {
                chaos.record(format!("exited {}", self.names[id as usize]));
                self.exited += 1;
            }
        }
    }

    fn decide(&mut self, chaos: &Chaos) -> Decision {
        if self.end.reached() && !self.stop.is_stopping() {
            self.reason.get_or_insert(EndReason::Finished);
            self.stop.stop();
        }
        if !self.stop.is_stopping() {
            return Decision::Continue;
        }
        let began = *self.stop_began.get_or_insert_with(|| {
            chaos.record("stop");
            chaos.elapsed()
        });
        self.reason.get_or_insert(EndReason::Stopped);
        if !self.with_run.is_empty()
            && self
                .notice
                .is_some_and(|n| chaos.elapsed().saturating_sub(began) >= n)
        {
            return self.kill();
        }
        if self.with_run.is_empty() {
            self.shutdown();
        }
        Decision::Continue
    }

    /// Interrupt every node still running (the notice expired, or a second
    /// signal came).
    fn kill(&mut self) -> Decision {
        self.interrupted = self
            .with_run
            .iter()
            .map(|&id| self.names[id as usize].clone())
            .collect();
        self.control.kill.stop();
        self.shutdown();
        Decision::Kill
    }

    fn shutdown(&mut self) {
        if !self.shutdown_sent {
            self.shutdown_sent = true;
            self.control.shutdown.stop();
        }
    }

    fn no_end(&mut self, settings: &Seeded, chaos: &Chaos) {
        let error = format!(
            "the run did not end within {} s of virtual time or {} steps: nodes wait on each other or loop, or nothing calls stop",
            settings.max_virtual_time.as_secs(),
            settings.max_steps
        );
        chaos.record(format!("fault: {error}"));
        self.failures.push(NodeFailure {
            node: "<scheduler>".into(),
            error,
        });
        self.reason = Some(EndReason::Failed);
        self.control.kill.stop();
        self.shutdown();
    }

    fn outcome(self) -> Outcome {
        Outcome {
            reason: if self.failures.is_empty() {
                self.reason.unwrap_or(EndReason::Stopped)
            } else {
                EndReason::Failed
            },
            failures: self.failures,
            interrupted: self.interrupted,
        }
    }
}
