//! A launch whose nodes run in worker processes (local_mp on one machine,
//! hosts across machines): each process hosts one colocation group or one
//! node, is started by a [`Spawner`], restarted in place while its budget
//! lasts, and attaches to the launcher's control service, over which it
//! reports what its nodes do and takes stop, shutdown and kill. The
//! launcher runs the same supervisor as local_mt on those events, and
//! notices a process that dies (exit, trap, panic, kill -9, a lost
//! machine) from its [`Exit`].

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::Result;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::start::RunningProgram;
use super::supervisor;
use super::worker::{Peers, WorkerSpec};
use super::workers::{Exit, RunningWorker, Spawner};
use super::{LaunchOptions, Plan, lock};
use crate::courier::{
    Directory, Endpoint, Listener, Placement, Router, Secret, Security, TransportKind, Wire,
};
use crate::node::{Control, NodeEvent};
use crate::proto::control_server::{Control as ControlService, ControlServer};
use crate::proto::{self, Command as WorkerCommand, WorkerEvent, command, worker_event};
use crate::stop::StopSignal;

/// How the processes of a launch reach each other and the launcher.
pub struct Network {
    /// The launcher's control service listens here (bound already).
    pub control: Listener,
    /// Plain (one machine) or mutual TLS (across machines).
    pub security: Security,
    /// How calls travel between processes.
    pub transport: TransportKind,
    /// Where each process listens (fixed) or that they announce it.
    pub peers: Peers,
    /// Every connection between processes presents this.
    pub secret: Secret,
}

/// Start every node of `plan` in the worker processes `specs` describe
/// (one per process; `generation` 0), started by `spawner`; the launcher's
/// side runs on `runtime` (where `network.control` was bound). `cleanup`
/// runs once every process is gone.
pub fn launch(
    plan: &Plan,
    options: LaunchOptions,
    runtime: tokio::runtime::Runtime,
    specs: Vec<WorkerSpec>,
    spawner: Arc<dyn Spawner>,
    network: Network,
    cleanup: impl FnOnce() + Send + 'static,
) -> Result<RunningProgram> {
    let program = &plan.program;
    let stop = Arc::new(StopSignal::new());
    let control = Arc::new(Control::default());
    let (events_tx, events) = mpsc::channel();
    let reporter = Arc::new(Reporter {
        events: Mutex::new(events_tx),
        exited: Mutex::new(HashSet::new()),
    });
    let directory = match &network.peers {
        Peers::Announced(_) => Some(Directory::new(specs.len())),
        Peers::Fixed(_) => None,
    };
    let procs: Arc<Mutex<Vec<Arc<Proc>>>> = Arc::default();
    let service = Launcher {
        procs: procs.clone(),
        output: options.output.clone(),
        names: program.nodes.iter().map(|n| n.name.clone()).collect(),
        reporter: reporter.clone(),
        stop: stop.clone(),
        control: control.clone(),
        commands: Arc::new(Mutex::new(Vec::new())),
        directory: directory.clone(),
        digest: plan.funcs.digest(),
    };
    let commands = service.commands.clone();
    {
        let (listener, security) = (network.control, network.security.clone());
        let control_secret = network.secret.clone();
        let shutdown = control.clone();
        runtime.spawn(async move {
            let _ = proto::control_server(&security)
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    ControlServer::new(service),
                    proto::RequireSecret(Arc::new(control_secret)),
                ))
                .serve_with_incoming_shutdown(proto::incoming(listener, &security), async move {
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
            broadcast(&commands_now, command(command::Kind::Stop));
            control_now.shutdown.wait().await;
            broadcast(&commands_now, command(command::Kind::Shutdown));
        });
        let (control, commands) = (control.clone(), commands.clone());
        runtime.spawn(async move {
            control.kill.wait().await;
            broadcast(&commands, command(command::Kind::Kill));
        });
    }

    let names: Vec<String> = program.nodes.iter().map(|n| n.name.clone()).collect();
    let mut watchers = Vec::new();
    for spec in specs {
        let budget = spec
            .nodes
            .iter()
            .map(|&id| program.nodes[id as usize].restarts)
            .max()
            .unwrap_or(0);
        let proc = Arc::new(Proc {
            names: spec
                .nodes
                .iter()
                .map(|&id| names[id as usize].clone())
                .collect(),
            spawner: spawner.clone(),
            spec,
            budget,
            state: Mutex::new(ProcState {
                generation: 0,
                restarts_left: budget,
                running: None,
                restarting: false,
                failure: None,
                streaming: false,
            }),
        });
        lock(&procs).push(proc.clone());
        let running = match proc.spawn() {
            Ok(running) => running,
            Err(e) => {
                // The ones already started go with the program.
                for proc in lock(&procs).iter() {
                    proc.kill();
                }
                return Err(e);
            }
        };
        let (reporter, control) = (reporter.clone(), control.clone());
        watchers.push(std::thread::spawn(move || {
            proc.watch(running, &reporter, &control)
        }));
    }

    // The launcher reaches every node too (tests call them).
    let router = {
        let _enter = runtime.enter();
        let placements: Vec<Placement> = match &network.peers {
            Peers::Fixed(endpoints) => endpoints.iter().cloned().map(Placement::Remote).collect(),
            Peers::Announced(process_of) => process_of
                .iter()
                .map(|&process| Placement::Announced {
                    directory: directory.clone().expect("announced peers have a directory"),
                    process: process as usize,
                })
                .collect(),
        };
        let wire = Wire {
            transport: network.transport,
            spin: options.spin,
            secret: network.secret.clone(),
            security: network.security.clone(),
        };
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
            // Before the runtime goes: cleaning up may still talk.
            runtime.block_on(async { tokio::task::spawn_blocking(cleanup).await.ok() });
            drop(runtime);
        },
    )
}

fn command(kind: command::Kind) -> WorkerCommand {
    WorkerCommand {
        kind: kind as i32,
        ..WorkerCommand::default()
    }
}

/// One worker process, started again in place (same nodes, same handles)
/// while its restart budget lasts.
struct Proc {
    names: Vec<String>,
    spawner: Arc<dyn Spawner>,
    spec: WorkerSpec,
    budget: u32,
    state: Mutex<ProcState>,
}

struct ProcState {
    /// Which start this is; events of earlier ones are stale.
    generation: u32,
    restarts_left: u32,
    /// The running process (none once it has exited).
    running: Option<Arc<dyn RunningWorker>>,
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
    fn spawn(&self) -> Result<Arc<dyn RunningWorker>> {
        let mut state = self.state();
        let spec = WorkerSpec {
            generation: state.generation,
            ..self.spec.clone()
        };
        let running = self.spawner.start(&spec)?;
        state.running = Some(running.clone());
        // Until its control stream ends (or a second passes, if it never attaches).
        state.streaming = true;
        Ok(running)
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

    /// Kill the process, if it is still running.
    fn kill(&self) {
        self.state().kill();
    }

    /// Wait for the process; restart it while the budget lasts, else report
    /// its nodes' end to the supervisor.
    fn watch(&self, mut running: Arc<dyn RunningWorker>, reporter: &Reporter, control: &Control) {
        loop {
            let exit: Exit = running.wait();
            let described = running.describe();
            self.state().running = None;
            // Let what the worker said before it ended arrive first.
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while self.state().streaming && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let restart = {
                let mut state = self.state();
                // Restarts go on while a stop winds down; only shutdown ends them.
                let ending = control.shutdown.is_stopping();
                let failed = state.restarting || !exit.success;
                let go = !ending && failed && state.restarts_left > 0;
                if go {
                    state.restarts_left -= 1;
                    state.generation += 1;
                    state.restarting = false;
                    let why = state
                        .failure
                        .take()
                        .unwrap_or_else(|| format!("its process ({described}) {}", exit.how));
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
                        running = next;
                        continue;
                    }
                    Err(e) => tracing::error!("cannot restart the worker: {e:#}"),
                }
            }
            for &id in &self.spec.nodes {
                if !control.shutdown.is_stopping() || !exit.success {
                    reporter.send(NodeEvent::Failed(
                        id,
                        format!("its worker process ({described}) {}", exit.how),
                    ));
                }
                reporter.send(NodeEvent::Exited(id));
            }
            return;
        }
    }
}

impl ProcState {
    fn kill(&self) {
        if let Some(running) = &self.running {
            running.kill();
        }
    }
}

/// The sending end of one worker's command stream.
type CommandSender = tokio::sync::mpsc::WeakUnboundedSender<Result<WorkerCommand, Status>>;

fn broadcast(commands: &Mutex<Vec<CommandSender>>, command: WorkerCommand) {
    for tx in lock(commands).iter().filter_map(|weak| weak.upgrade()) {
        let _ = tx.send(Ok(command.clone()));
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
    /// Where each process listens, when processes announce it.
    directory: Option<Arc<Directory>>,
    /// The digest of the launcher's function table.
    digest: String,
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
            let _ = tx.send(Ok(command(command::Kind::Stop)));
        }
        if self.control.shutdown.is_stopping() {
            let _ = tx.send(Ok(command(command::Kind::Shutdown)));
        }
        if let Some(directory) = &self.directory {
            for (process, endpoint) in directory.known() {
                let _ = tx.send(Ok(peer(process, &endpoint)));
            }
        }
        // The list keeps a weak sender: when this worker's events end, the
        // task below drops the only strong one, which ends the worker's
        // command stream and tells it every event it sent has been handled.
        lock(&self.commands).push(tx.downgrade());
        let (reporter, stop) = (self.reporter.clone(), self.stop.clone());
        let (output, names) = (self.output.clone(), self.names.clone());
        let (procs, commands) = (self.procs.clone(), self.commands.clone());
        let (directory, digest) = (self.directory.clone(), self.digest.clone());
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
                if kind == Ok(worker_event::Kind::Listening) {
                    if event.error != digest {
                        let why = format!(
                            "its worker process loaded a different program or lp-host build \
                             (function table {}, the launcher's {digest}); run the same \
                             lp-host version everywhere",
                            event.error
                        );
                        if let Some((proc, _)) = &this {
                            for &id in &proc.spec.nodes {
                                reporter.send(NodeEvent::Failed(id, why.clone()));
                                reporter.send(NodeEvent::Exited(id));
                            }
                            proc.kill();
                        }
                        break;
                    }
                    if let (Some(directory), Ok(endpoint)) =
                        (&directory, event.text.parse::<Endpoint>())
                        && directory.set(event.worker as usize, endpoint.clone())
                    {
                        broadcast(&commands, peer(event.worker as usize, &endpoint));
                    }
                    continue;
                }
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
                    Ok(worker_event::Kind::Listening) | Err(_) => continue,
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

/// The command telling workers where process `process` listens.
fn peer(process: usize, endpoint: &Endpoint) -> WorkerCommand {
    WorkerCommand {
        kind: command::Kind::Peer as i32,
        worker: process as u32,
        endpoint: endpoint.to_string(),
    }
}
