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
use crate::courier::{
    Directory, Endpoint, Placement, Router, Secret, Security, TransportKind, Wire,
};
use crate::credit::Receipt;
use crate::node::{Control, NodeEvent};
use crate::output::Output;
use crate::program::Override;
use crate::proto::control_client::ControlClient;
use crate::proto::{self, WorkerEvent, command, worker_event};
use crate::stop::StopSignal;
use crate::trust::{Credentials, MutualTls, Role};

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
    /// Where it serves calls into them (a TCP port 0 takes any free port;
    /// the worker announces the one it got).
    pub listen: Endpoint,
    /// How it reaches the other nodes.
    pub peers: Peers,
    /// The launcher's control service.
    pub control: Endpoint,
    /// The run directory on this machine (removed if the parent goes).
    pub run_dir: PathBuf,
    pub cache_dir: Option<PathBuf>,
    /// Whether it may use that cache: not if the launcher found it unusable
    /// (and said why, once for the launch).
    pub use_cache: bool,
    /// How calls travel between processes.
    pub transport: TransportKind,
    /// How long a reader of the socket transport spins before it parks.
    pub spin: Duration,
    /// What every connection between processes of this launch presents.
    pub secret: Secret,
    /// The parent's pid (a worker that outlives it cleans up after it).
    pub launcher: u32,
    /// This process's certificate of the launch, when its connections are
    /// mutual TLS (a multi-host launch).
    pub credentials: Option<SpecCredentials>,
    /// The ports the launcher allocated for the program's nodes.
    pub ports: Ports,
}

/// Where the other processes of a launch listen.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum Peers {
    /// For every node of the program, the endpoint of the process hosting it.
    Fixed(Vec<Endpoint>),
    /// For every node, the index of the process hosting it; processes
    /// announce their endpoints through the launcher.
    Announced(Vec<u32>),
}

/// A certificate and key of the launch CA and the CA's certificate, DER
/// in base64.
#[derive(Serialize, Deserialize, Clone)]
pub struct SpecCredentials {
    pub worker: u32,
    pub ca_cert: String,
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for SpecCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpecCredentials(worker {})", self.worker)
    }
}

impl SpecCredentials {
    pub fn of(worker: u32, credentials: &Credentials) -> SpecCredentials {
        use base64::Engine as _;
        let encode = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
        SpecCredentials {
            worker,
            ca_cert: encode(credentials.ca_cert()),
            cert: encode(credentials.cert()),
            key: encode(credentials.key_der()),
        }
    }

    /// Mutual TLS with these credentials.
    pub fn security(&self) -> Result<Security> {
        use base64::Engine as _;
        let decode = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .context("bad credentials in the worker spec")
        };
        let credentials = Credentials::from_der(
            Role::Worker(self.worker),
            decode(&self.ca_cert)?,
            decode(&self.cert)?,
            decode(&self.key)?,
        );
        Ok(Security::mutual_tls(MutualTls::new(&credentials)?))
    }
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
    run_dir::clean_up_after(spec.launcher, &spec.run_dir)?;
    let security = match &spec.credentials {
        Some(credentials) => credentials.security()?,
        None => Security::plain(),
    };
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
    let directory = match &spec.peers {
        Peers::Announced(process_of) => Some(Directory::new(
            process_of.iter().max().map_or(0, |&k| k as usize + 1),
        )),
        Peers::Fixed(_) => None,
    };
    let placements: Vec<Placement> = (0..plan.program.nodes.len())
        .map(|id| {
            if spec.nodes.contains(&(id as u32)) {
                return Ok(Placement::Local);
            }
            match (&spec.peers, &directory) {
                (Peers::Fixed(endpoints), _) => endpoints
                    .get(id)
                    .cloned()
                    .map(Placement::Remote)
                    .context("the worker spec has no endpoint for every node"),
                (Peers::Announced(process_of), Some(directory)) => process_of
                    .get(id)
                    .map(|&process| Placement::Announced {
                        directory: directory.clone(),
                        process: process as usize,
                    })
                    .context("the worker spec has no process for every node"),
                (Peers::Announced(_), None) => unreachable!("announced peers have a directory"),
            }
        })
        .collect::<Result<_>>()?;
    let names = plan.program.nodes.iter().map(|n| n.name.clone()).collect();
    let wire = Wire {
        transport: spec.transport,
        spin: spec.spin,
        secret: spec.secret.clone(),
        security: security.clone(),
    };
    let (router, mailboxes) = {
        let _enter = runtime.enter();
        Router::new(
            names,
            &placements,
            wire.clone(),
            plan.funcs.clone(),
            stop.clone(),
            plan.program.call_timeout,
        )
    };
    let router = Arc::new(router);
    let control = Arc::new(Control::default());

    // Serve calls into our nodes.
    let listener = runtime.block_on(async { spec.listen.bind() })?;
    let listening = listener.endpoint()?;
    {
        let (router, control) = (router.clone(), control.clone());
        let transport = wire.transport();
        runtime.spawn(async move {
            let shutdown = Box::pin(async move { control.shutdown.wait().await });
            if let Err(e) = transport.serve(listener, router, shutdown).await {
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
                proto::channel(&spec.control, &security),
                proto::PresentSecret::new(&spec.secret),
            )
            .attach(up_stream)
            .await
        })
        .context("cannot attach to the launcher")?
        .into_inner();
    let (worker, generation) = (spec.worker, spec.generation);
    // First: where this worker listens, and what its function table is
    // (a launcher with another table refuses it).
    let _ = up.send((
        WorkerEvent {
            kind: worker_event::Kind::Listening as i32,
            worker,
            generation,
            text: listening.to_string(),
            error: plan.funcs.digest(),
            ..WorkerEvent::default()
        },
        Receipt::none(),
    ));
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
        let run_dir = spec.run_dir.clone();
        let directory = directory.clone();
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
                    Ok(command::Kind::Peer) => {
                        if let (Some(directory), Ok(endpoint)) =
                            (&directory, command.endpoint.parse::<Endpoint>())
                        {
                            directory.set(command.worker as usize, endpoint);
                        }
                    }
                    Err(_) => {}
                }
            }
            // The launcher is gone: never outlive it.
            if !finishing.load(std::sync::atomic::Ordering::SeqCst)
                && !control.shutdown.is_stopping()
            {
                run_dir::remove_and_exit(&run_dir);
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
