//! local_mp: every node in a worker process of its own (or one per
//! colocation group, its nodes each a task there), courier calls between
//! processes over gRPC on Unix sockets in a private directory. The launcher
//! runs the same supervisor as local_mt on the events workers send over the
//! control stream, forwards stop/shutdown/kill to them, and notices a worker
//! that dies (exit, trap, panic, kill -9) from its exit status at once.
//! Workers die with the launcher (PR_SET_PDEATHSIG and the control stream)
//! and then remove the run directory.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::run_dir;
use super::start::{RunningProgram, timer_runtime};
use super::supervisor;
use super::worker::WorkerSpec;
use super::{LaunchOptions, Plan, Ports, lock};
use crate::courier::grpc::proto::control_server::{Control as ControlService, ControlServer};
use crate::courier::grpc::proto::{Command as WorkerCommand, WorkerEvent, command, worker_event};
use crate::courier::grpc::{self};
use crate::courier::{Placement, Router, Secret, Wire};
use crate::node::{Control, NodeEvent};
use crate::stop::StopSignal;

/// Where the lp-host binary is, to start workers from: as the launch
/// options say, else `$LP_HOST_EXE`, else this executable.
pub fn worker_exe(options: &LaunchOptions) -> Result<PathBuf> {
    if let Some(exe) = &options.worker_exe {
        return Ok(exe.clone());
    }
    if let Some(exe) = std::env::var_os("LP_HOST_EXE") {
        return Ok(PathBuf::from(exe));
    }
    std::env::current_exe().context("cannot find the lp-host executable to start workers")
}

/// Start every node of `plan` in worker processes.
pub fn launch(
    plan: &Plan,
    options: LaunchOptions,
    cache_dir: Option<PathBuf>,
) -> Result<RunningProgram> {
    let program = &plan.program;
    let ports = Ports::allocate(program)?;
    let dir = run_dir::create()?;

    // Group nodes into workers: one per colocation name, else one per node.
    let mut workers: Vec<Vec<u32>> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for node in &program.nodes {
        match &node.colocate {
            Some(name) => {
                let k = *by_name.entry(name).or_insert_with(|| {
                    workers.push(Vec::new());
                    workers.len() - 1
                });
                workers[k].push(node.id);
            }
            None => workers.push(vec![node.id]),
        }
    }
    let mut sockets = vec![PathBuf::new(); program.nodes.len()];
    for (k, nodes) in workers.iter().enumerate() {
        for &id in nodes {
            sockets[id as usize] = dir.path().join(format!("w{k}.sock"));
        }
    }

    // Workers load the same program, with the components already built.
    let mut overrides = program.overrides.clone();
    let mut seen = HashSet::new();
    for node in &program.nodes {
        if seen.insert(&node.entry) {
            let file = plan.files[node.component].canonicalize()?;
            overrides.push(format!("{}.component={:?}", node.entry, file));
        }
    }
    let run_disabled: Vec<String> = program
        .nodes
        .iter()
        .filter(|n| !n.run_enabled)
        .map(|n| n.name.clone())
        .collect();

    let runtime = timer_runtime()?;
    let stop = Arc::new(StopSignal::new());
    let control = Arc::new(Control::default());
    let (events_tx, events) = mpsc::channel();
    let reporter = Arc::new(Reporter {
        events: Mutex::new(events_tx),
        exited: Mutex::new(HashSet::new()),
    });
    let control_socket = dir.path().join("control.sock");
    // Only the members of this launch may call its endpoints.
    let secret = Secret::generate()?;
    let control_secret = secret.clone();
    let procs: Arc<Mutex<Vec<Arc<Proc>>>> = Arc::default();
    let service = Launcher {
        procs: procs.clone(),
        output: options.output.clone(),
        names: program.nodes.iter().map(|n| n.name.clone()).collect(),
        reporter: reporter.clone(),
        stop: stop.clone(),
        control: control.clone(),
        commands: Arc::new(Mutex::new(Vec::new())),
    };
    let commands = service.commands.clone();
    {
        let listener = runtime.block_on(async { grpc::bind(&control_socket) })?;
        let shutdown = control.clone();
        runtime.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    ControlServer::new(service),
                    grpc::RequireSecret(Arc::new(control_secret)),
                ))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    shutdown.shutdown.wait().await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                })
                .await;
        });
    }
    // Forward the supervisor's decisions to every worker.
    {
        let (stop, control_now, commands_now) = (stop.clone(), control.clone(), commands.clone());
        runtime.spawn(async move {
            stop.wait().await;
            broadcast(&commands_now, command::Kind::Stop);
            control_now.shutdown.wait().await;
            broadcast(&commands_now, command::Kind::Shutdown);
        });
        let (control, commands) = (control.clone(), commands.clone());
        runtime.spawn(async move {
            control.kill.wait().await;
            broadcast(&commands, command::Kind::Kill);
        });
    }

    let exe = worker_exe(&options)?;
    let program_file = program.file.canonicalize()?;
    let mut watchers = Vec::new();
    let names: Vec<String> = program.nodes.iter().map(|n| n.name.clone()).collect();
    for (k, nodes) in workers.iter().enumerate() {
        let budget = nodes
            .iter()
            .map(|&id| program.nodes[id as usize].restarts)
            .max()
            .unwrap_or(0);
        let proc = Arc::new(Proc {
            nodes: nodes.clone(),
            names: nodes.iter().map(|&id| names[id as usize].clone()).collect(),
            exe: exe.clone(),
            spec_file: dir.path().join(format!("w{k}.json")),
            spec: WorkerSpec {
                worker: k as u32,
                generation: 0,
                program: program_file.clone(),
                overrides: overrides.clone(),
                run_disabled: run_disabled.clone(),
                nodes: nodes.clone(),
                sockets: sockets.clone(),
                control: control_socket.clone(),
                cache_dir: cache_dir.clone(),
                use_cache: plan.sandbox.cache().usable(),
                transport: options.transport,
                spin: options.spin,
                secret: secret.clone(),
                launcher: std::process::id(),
                ports: ports.clone(),
            },
            budget,
            state: Mutex::new(ProcState {
                generation: 0,
                restarts_left: budget,
                pid: 0,
                restarting: false,
                failure: None,
                streaming: false,
            }),
        });
        lock(&procs).push(proc.clone());
        let child = proc.spawn()?;
        let (reporter, control) = (reporter.clone(), control.clone());
        watchers.push(std::thread::spawn(move || {
            proc.watch(child, &reporter, &control)
        }));
    }

    // The launcher reaches every node too (tests call them).
    let router = {
        let _enter = runtime.enter();
        let placements: Vec<Placement> = sockets.iter().cloned().map(Placement::Remote).collect();
        let wire = Wire {
            transport: options.transport,
            spin: options.spin,
            secret: secret.clone(),
        };
        let names = program.nodes.iter().map(|n| n.name.clone()).collect();
        let funcs = plan.funcs.clone();
        Arc::new(
            Router::new(
                names,
                &placements,
                wire,
                funcs,
                stop.clone(),
                program.call_timeout,
            )
            .0,
        )
    };
    supervisor::start(
        plan,
        events,
        control,
        stop,
        options.termination_notice,
        router,
        move || {
            for proc in lock(&procs).iter() {
                proc.kill();
            }
        },
        move || {
            for watcher in watchers {
                let _ = watcher.join();
            }
            drop(runtime);
            drop(dir);
        },
    )
}

/// One worker process, started again in place (same nodes, same handles,
/// same socket) while its restart budget lasts.
struct Proc {
    nodes: Vec<u32>,
    names: Vec<String>,
    exe: PathBuf,
    spec_file: PathBuf,
    spec: WorkerSpec,
    budget: u32,
    state: Mutex<ProcState>,
}

struct ProcState {
    /// Which start this is; events of earlier ones are stale.
    generation: u32,
    restarts_left: u32,
    /// The running process (0 once it has exited).
    pid: u32,
    /// A node failed and the process is being killed to start again.
    restarting: bool,
    /// What the failure was, for the restart message.
    failure: Option<String>,
    /// Whether this start's control stream is still open (its last events
    /// may still be on the way after the process has exited).
    streaming: bool,
}

impl Proc {
    fn state(&self) -> std::sync::MutexGuard<'_, ProcState> {
        lock(&self.state)
    }

    /// Start (or start again) the worker process.
    fn spawn(&self) -> Result<std::process::Child> {
        let mut state = self.state();
        let spec = WorkerSpec {
            generation: state.generation,
            ..self.spec.clone()
        };
        run_dir::write_private(&self.spec_file, &serde_json::to_vec(&spec)?)?;
        let mut command = Command::new(&self.exe);
        command.arg("worker").arg("--spec").arg(&self.spec_file);
        // SAFETY: prctl and signal are async-signal-safe and only change
        // the child: it hears of the launcher's death (and cleans up, then
        // exits), and leaves Ctrl-C, SIGTERM, SIGHUP and SIGQUIT (which a
        // terminal sends the whole process group) to the launcher, which
        // stops the program in order.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, run_dir::LAUNCHER_GONE);
                for signal in crate::signals::STOPPING
                    .into_iter()
                    .chain([run_dir::LAUNCHER_GONE])
                {
                    libc::signal(signal, libc::SIG_IGN);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start a worker ({})", self.exe.display()))?;
        tracing::debug!(
            "worker {} (pid {}) hosts {:?}",
            self.spec.worker,
            child.id(),
            self.nodes
        );
        state.pid = child.id();
        // Until its control stream ends (or a second passes, if it never attaches).
        state.streaming = true;
        Ok(child)
    }

    /// Whether to pass on a node event from this worker. A failure while
    /// the budget lasts is not passed on: the process is killed to restart.
    fn accept(
        &self,
        event: &WorkerEvent,
        kind: Result<worker_event::Kind, prost::UnknownEnumValue>,
    ) -> bool {
        let mut state = self.state();
        if event.generation != state.generation || state.restarting {
            return false;
        }
        if kind == Ok(worker_event::Kind::Failed) && state.restarts_left > 0 {
            state.restarting = true;
            state.failure = Some(event.error.lines().next().unwrap_or_default().to_string());
            state.kill();
            return false;
        }
        true
    }

    /// Kill the process with SIGKILL, if it has not been reaped.
    fn kill(&self) {
        let state = self.state();
        if state.pid != 0 {
            tracing::debug!("killing worker {} (pid {})", self.spec.worker, state.pid);
        }
        state.kill();
    }

    /// Wait for the process; restart it while the budget lasts, else report
    /// its nodes' end to the supervisor.
    fn watch(&self, mut child: std::process::Child, reporter: &Reporter, control: &Control) {
        loop {
            let pid = child.id();
            // Wait for the exit without reaping the process, and forget its
            // pid before reaping it: a kill under the state's lock can never
            // reach another process that was given the pid again.
            wait_for_exit(pid);
            self.state().pid = 0;
            let status = child.wait();
            // Let what the worker said before it ended arrive first.
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while self.state().streaming && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let restart = {
                let mut state = self.state();
                // Restarts go on while a stop winds down; only shutdown ends them.
                let ending = control.shutdown.is_stopping();
                let failed = state.restarting || !matches!(&status, Ok(s) if s.success());
                let go = !ending && failed && state.restarts_left > 0;
                if go {
                    state.restarts_left -= 1;
                    state.generation += 1;
                    state.restarting = false;
                    let why = state.failure.take().unwrap_or_else(|| {
                        format!("its process (pid {pid}) {}", describe_exit(&status))
                    });
                    tracing::warn!(
                        "{} failed ({why}); restarting its process ({} of {})",
                        self.names.join(", "),
                        self.budget - state.restarts_left,
                        self.budget
                    );
                }
                go
            };
            if restart {
                match self.spawn() {
                    Ok(next) => {
                        child = next;
                        continue;
                    }
                    Err(e) => tracing::error!("cannot restart the worker: {e:#}"),
                }
            }
            for &id in &self.nodes {
                if !control.shutdown.is_stopping() || !matches!(&status, Ok(s) if s.success()) {
                    let how = describe_exit(&status);
                    reporter.send(NodeEvent::Failed(
                        id,
                        format!("its worker process (pid {pid}) {how}"),
                    ));
                }
                reporter.send(NodeEvent::Exited(id));
            }
            return;
        }
    }
}

impl ProcState {
    /// SIGKILL the process, unless it has exited (its pid may be reused).
    fn kill(&self) {
        if self.pid != 0 {
            // SAFETY: kill(2) on our own child, not yet reaped (see `watch`).
            unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
            }
        }
    }
}

/// Block until process `pid` (our child) has exited, leaving it to be reaped.
fn wait_for_exit(pid: u32) {
    loop {
        // SAFETY: waitid(2) with a zeroed siginfo_t to fill.
        let done = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if done == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// The sending end of one worker's command stream.
type CommandSender = tokio::sync::mpsc::WeakUnboundedSender<Result<WorkerCommand, Status>>;

fn describe_exit(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!(
                "was killed by signal {signal}{}",
                if signal == 9 { " (SIGKILL)" } else { "" }
            ),
            _ => format!("ended: {s}"),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

fn broadcast(commands: &Mutex<Vec<CommandSender>>, kind: command::Kind) {
    for tx in lock(commands).iter().filter_map(|weak| weak.upgrade()) {
        let _ = tx.send(Ok(WorkerCommand { kind: kind as i32 }));
    }
}

/// Hands node events to the supervisor, at most one `Exited` per node and
/// nothing about a node after it.
struct Reporter {
    events: Mutex<mpsc::Sender<NodeEvent>>,
    exited: Mutex<HashSet<u32>>,
}

impl Reporter {
    fn send(&self, event: NodeEvent) {
        let id = match &event {
            NodeEvent::Started(id)
            | NodeEvent::RunFinished(id)
            | NodeEvent::Failed(id, _)
            | NodeEvent::Exited(id) => *id,
        };
        let mut exited = lock(&self.exited);
        if exited.contains(&id) {
            return;
        }
        if matches!(event, NodeEvent::Exited(_)) {
            exited.insert(id);
        }
        let _ = lock(&self.events).send(event);
    }
}

/// The launcher's control service: one stream per worker.
struct Launcher {
    procs: Arc<Mutex<Vec<Arc<Proc>>>>,
    /// Where the nodes' output lines go (they arrive over the stream).
    output: crate::output::Output,
    names: Vec<String>,
    reporter: Arc<Reporter>,
    stop: Arc<StopSignal>,
    control: Arc<Control>,
    commands: Arc<Mutex<Vec<CommandSender>>>,
}

type CommandStream = Pin<Box<dyn Stream<Item = Result<WorkerCommand, Status>> + Send>>;

#[tonic::async_trait]
impl ControlService for Launcher {
    type AttachStream = CommandStream;

    async fn attach(
        &self,
        request: Request<Streaming<WorkerEvent>>,
    ) -> Result<Response<CommandStream>, Status> {
        let mut events = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // A worker that attaches late still hears what it missed.
        if self.stop.is_stopping() {
            let _ = tx.send(Ok(WorkerCommand {
                kind: command::Kind::Stop as i32,
            }));
        }
        if self.control.shutdown.is_stopping() {
            let _ = tx.send(Ok(WorkerCommand {
                kind: command::Kind::Shutdown as i32,
            }));
        }
        // The list keeps a weak sender: when this worker's events end, the
        // task below drops the only strong one, which ends the worker's
        // command stream and tells it every event it sent has been handled.
        lock(&self.commands).push(tx.downgrade());
        let (reporter, stop) = (self.reporter.clone(), self.stop.clone());
        let (output, names) = (self.output.clone(), self.names.clone());
        let procs = self.procs.clone();
        // What of this worker's output may wait to be printed: past it the
        // stream is not read, and the worker's nodes wait.
        let credit = crate::credit::Credit::new(crate::sandbox::OUTPUT_CREDIT);
        tokio::spawn(async move {
            let mut this: Option<(Arc<Proc>, u32)> = None;
            while let Some(Ok(event)) = events.next().await {
                if this.is_none() {
                    let proc = lock(&procs).get(event.worker as usize).cloned();
                    if let Some(proc) = proc {
                        let mut state = proc.state();
                        if state.generation == event.generation {
                            state.streaming = true;
                        }
                        drop(state);
                        this = Some((proc, event.generation));
                    }
                }
                let node = event.node;
                let kind = worker_event::Kind::try_from(event.kind);
                if !matches!(
                    kind,
                    Ok(worker_event::Kind::Output | worker_event::Kind::StopRequested)
                ) {
                    let proc = lock(&procs).get(event.worker as usize).cloned();
                    if let Some(proc) = proc
                        && !proc.accept(&event, kind)
                    {
                        continue;
                    }
                }
                let event = match kind {
                    Ok(worker_event::Kind::Started) => NodeEvent::Started(node),
                    Ok(worker_event::Kind::RunFinished) => NodeEvent::RunFinished(node),
                    Ok(worker_event::Kind::Failed) => NodeEvent::Failed(node, event.error),
                    Ok(worker_event::Kind::Exited) => NodeEvent::Exited(node),
                    Ok(worker_event::Kind::StopRequested) => {
                        stop.stop();
                        continue;
                    }
                    Ok(worker_event::Kind::Output) => {
                        let name = names.get(node as usize).map_or("?", String::as_str);
                        let receipt = credit.take(event.text.len() + 1).await;
                        output.line_held(
                            name,
                            crate::output::Stream::from_wire(event.stream),
                            &event.text,
                            receipt,
                        );
                        continue;
                    }
                    Err(_) => continue,
                };
                reporter.send(event);
            }
            drop(tx);
            if let Some((proc, generation)) = this {
                let mut state = proc.state();
                if state.generation == generation {
                    state.streaming = false;
                }
            }
        });
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream) as CommandStream))
    }
}
