//! A worker process of local_mp (`lp-host worker --spec FILE`): hosts some
//! of the program's nodes, serves courier calls into them over its Unix
//! socket, reaches the other nodes over theirs, and reports to the launcher
//! over the control stream, from which it takes stop, shutdown and kill.
//! If the launcher goes away, the worker exits at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

use super::run_dir;
use super::start::{Wiring, spawn_node, start_nodes, timer_runtime};
use super::{LoadOptions, Plan, Ports};
use crate::courier::grpc::proto::control_client::ControlClient;
use crate::courier::grpc::proto::{WorkerEvent, command, worker_event};
use crate::courier::grpc::{self, channel};
use crate::courier::socket;
use crate::courier::{Placement, Router, Secret, Transport, Wire};
use crate::credit::Receipt;
use crate::node::{Control, NodeEvent};
use crate::output::Output;
use crate::program::Override;
use crate::stop::StopSignal;

/// How often a worker ticks its engine's epoch (interrupting wasm after a
/// kill); slower than in one process, as a program may have many workers.
const WORKER_EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// What the launcher tells a worker (written as JSON to a file).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct WorkerSpec {
    pub worker: u32,
    /// Which start of this worker (0, then 1 after a restart, ...).
    pub generation: u32,
    pub program: PathBuf,
    /// `--set` overrides, as text (the launcher adds the built components).
    pub overrides: Vec<String>,
    /// Nodes whose `run` is disabled.
    pub run_disabled: Vec<String>,
    /// The node ids this worker hosts.
    pub nodes: Vec<u32>,
    /// For every node of the program, the socket of the worker hosting it.
    pub sockets: Vec<PathBuf>,
    /// The launcher's control socket.
    pub control: PathBuf,
    pub cache_dir: Option<PathBuf>,
    /// Whether it may use that cache: not if the launcher found it unusable
    /// (and said why, once for the launch).
    pub use_cache: bool,
    /// How calls travel between processes.
    pub transport: Transport,
    /// How long a reader of the socket transport spins before it parks.
    pub spin: Duration,
    /// What every connection between processes of this launch presents.
    pub secret: Secret,
    /// The launcher's pid (a worker that outlives it cleans up after it).
    pub launcher: u32,
    /// The ports the launcher allocated for the program's nodes.
    pub ports: Ports,
}

/// Run a worker; returns the process exit code.
pub fn main(spec_file: &std::path::Path) -> i32 {
    match run(spec_file) {
        Ok(()) => 0,
        Err(e) => {
            crate::errln!("error: worker failed: {e:#}");
            1
        }
    }
}

fn run(spec_file: &std::path::Path) -> Result<()> {
    let spec: WorkerSpec =
        serde_json::from_slice(&run_dir::take_spec(spec_file)?).context("bad worker spec")?;
    if let Some(dir) = spec.control.parent() {
        run_dir::clean_up_after(spec.launcher, dir)?;
    }
    let overrides: Vec<Override> = spec
        .overrides
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let loading = LoadOptions {
        cache_dir: spec.cache_dir.clone(),
        no_cache: !spec.use_cache,
        run_disabled: spec.run_disabled.clone(),
        ..LoadOptions::default()
    };
    let plan = Plan::load(&spec.program, &overrides, &loading)?;
    let runtime = timer_runtime()?;

    let stop = Arc::new(StopSignal::new());
    let placements: Vec<Placement> = (0..plan.program.nodes.len() as u32)
        .map(|id| match spec.nodes.contains(&id) {
            true => Placement::Local,
            false => Placement::Remote(spec.sockets[id as usize].clone()),
        })
        .collect();
    let names = plan.program.nodes.iter().map(|n| n.name.clone()).collect();
    let (router, mailboxes) = {
        let _enter = runtime.enter();
        Router::new(
            names,
            &placements,
            Wire {
                transport: spec.transport,
                spin: spec.spin,
                secret: spec.secret.clone(),
            },
            plan.funcs.clone(),
            stop.clone(),
            plan.program.call_timeout,
        )
    };
    let router = Arc::new(router);
    let control = Arc::new(Control::default());

    // Serve calls into our nodes.
    let socket = spec.sockets[spec.nodes[0] as usize].clone();
    let listener = runtime.block_on(async { grpc::bind(&socket) })?;
    {
        let (router, control) = (router.clone(), control.clone());
        let (transport, spin, secret) = (spec.transport, spec.spin, spec.secret.clone());
        runtime.spawn(async move {
            let shutdown = async move { control.shutdown.wait().await };
            let served = match transport {
                Transport::Socket => socket::serve(listener, router, spin, secret, shutdown).await,
                Transport::Grpc => grpc::serve(listener, router, secret, shutdown).await,
            };
            if let Err(e) = served {
                crate::errln!("error: {e:#}");
            }
        });
    }

    // Attach to the launcher: our events up, its commands down.
    // An output line travels with the receipt for its bytes, dropped as the
    // line goes into the stream: a node's output waits for the launcher's
    // reading (the stream's flow control) instead of piling up here.
    let (up, up_rx) = tokio::sync::mpsc::unbounded_channel::<(WorkerEvent, Receipt)>();
    let up_stream =
        tokio_stream::wrappers::UnboundedReceiverStream::new(up_rx).map(|(event, _sent)| event);
    let mut commands = runtime
        .block_on(async {
            ControlClient::with_interceptor(
                channel(&spec.control),
                grpc::PresentSecret::new(&spec.secret),
            )
            .attach(up_stream)
            .await
        })
        .context("cannot attach to the launcher")?
        .into_inner();
    let (worker, generation) = (spec.worker, spec.generation);
    let event = move |kind: worker_event::Kind, node: u32, error: String| {
        let event = WorkerEvent {
            kind: kind as i32,
            node,
            error,
            worker,
            generation,
            ..WorkerEvent::default()
        };
        (event, Receipt::none())
    };
    // Set once this worker is done: the end of the command stream then
    // means the launcher has handled every event, not that it is gone.
    let finishing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let commands_done = {
        let (stop, control, finishing) = (stop.clone(), control.clone(), finishing.clone());
        let run_dir = spec.control.clone();
        runtime.spawn(async move {
            while let Some(command) = commands.next().await {
                let Ok(command) = command else { break };
                match command::Kind::try_from(command.kind) {
                    Ok(command::Kind::Stop) => {
                        stop.stop();
                    }
                    Ok(command::Kind::Shutdown) => {
                        control.shutdown.stop();
                    }
                    Ok(command::Kind::Kill) => {
                        control.kill.stop();
                    }
                    Err(_) => {}
                }
            }
            // The launcher is gone: never outlive it.
            if !finishing.load(std::sync::atomic::Ordering::SeqCst)
                && !control.shutdown.is_stopping()
            {
                match run_dir.parent() {
                    Some(dir) => run_dir::remove_and_exit(dir),
                    None => std::process::exit(3),
                }
            }
        })
    };
    {
        let (stop, up) = (stop.clone(), up.clone());
        runtime.spawn(async move {
            stop.wait().await;
            let _ = up.send(event(worker_event::Kind::StopRequested, 0, String::new()));
        });
    }

    let (events_tx, events) = std::sync::mpsc::channel();
    let output = {
        let up = up.clone();
        let ids: std::collections::HashMap<String, u32> = plan
            .program
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.id))
            .collect();
        Output::forward_held(move |node, stream, text, receipt| {
            let (mut line, _) = event(
                worker_event::Kind::Output,
                ids.get(node).copied().unwrap_or(0),
                String::new(),
            );
            line.stream = stream.to_wire();
            line.text = text.to_string();
            let _ = up.send((line, receipt));
        })
    };
    // Nodes run as tasks on the same runtime as the transport, so a call
    // passes between a node and the socket without waking another thread.
    let wiring = Wiring {
        router: &router,
        control: &control,
        events: &events_tx,
        output: &output,
        hooks: Default::default(),
        ports: &spec.ports,
        epoch_tick: WORKER_EPOCH_TICK,
        restart_in_process: false,
    };
    start_nodes(&plan, mailboxes, wiring, |node| spawn_node(&runtime, node));
    drop(events_tx);
    // The output (holding a sender of `up`) lives on only in the nodes.
    drop(output);

    // Forward what our nodes report; tick the epoch; end when they all exit.
    let mut exited = 0;
    while exited < spec.nodes.len() {
        let (kind, node, error) = match events.recv_timeout(WORKER_EPOCH_TICK) {
            Ok(NodeEvent::Started(id)) => (worker_event::Kind::Started, id, String::new()),
            Ok(NodeEvent::RunFinished(id)) => (worker_event::Kind::RunFinished, id, String::new()),
            Ok(NodeEvent::Failed(id, error)) => (worker_event::Kind::Failed, id, error),
            Ok(NodeEvent::Exited(id)) => {
                exited += 1;
                (worker_event::Kind::Exited, id, String::new())
            }
            Err(RecvTimeoutError::Timeout) => {
                plan.sandbox.engine().increment_epoch();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let _ = up.send(event(kind, node, error));
    }
    // Let the last events reach the launcher: it ends our command stream
    // once it has handled them.
    finishing.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(up);
    let _ = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), commands_done).await });
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}
