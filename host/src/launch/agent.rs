//! An agent (`lp-host agent --token FILE [--join ADDR]`): one per machine
//! of a multi-host launch. It joins the launch with the token (accepting
//! the launcher by the certificate pin in it, presenting its secret),
//! attaches to the launcher over mutual TLS, says what the machine offers,
//! and then starts and kills worker processes as the launcher says,
//! storing the program's files it is sent in a private run directory and
//! reporting each worker's exit. When the launch ends, or the launcher is
//! lost, it kills its workers, removes the run directory and exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use sha2::Digest as _;
use tokio_stream::StreamExt;

use super::placement::Offer;
use super::workers::agents::RemoteStart;
use super::workers::local::LocalProcesses;
use super::workers::{RunningWorker, Spawner};
use super::{PortAsk, allocate_here, lock, run_dir};
use crate::courier::{Endpoint, Security};
use crate::proto::agents_client::AgentsClient;
use crate::proto::{AgentEvent, AgentHello, WorkerExited, agent_command, agent_event};
use crate::trust::{JOIN_TIMEOUT, JoinToken, MutualTls};

/// What `lp-host agent` is given.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The join token's file (owner-only), as the launcher wrote it; else
    /// `$LP_JOIN_TOKEN` holds the token itself.
    #[arg(long, value_name = "FILE")]
    pub token: Option<PathBuf>,

    /// The launcher's address (default: the one in the token).
    #[arg(long, value_name = "ADDR")]
    pub join: Option<SocketAddr>,

    /// A label of this machine that nodes' `resources.host` can ask for.
    #[arg(long, default_value = "")]
    pub host: String,

    /// Offer this many cpus to the launch (default: this machine's, as
    /// this process may use them). A Slurm job or a Kubernetes pod gives
    /// its agent what it was allocated.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,

    /// Offer this much memory, in MiB (default: this machine's MemTotal).
    #[arg(long, value_name = "MIB")]
    pub memory_mib: Option<u64>,

    /// Offer this many gpus (default: $LP_GPUS, else none).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u64>,

    /// After a launch, wait for the next token at --token FILE (a new
    /// launch writes one there) and join that launch too; until killed.
    #[arg(long, requires = "token")]
    pub stay: bool,

    /// Say nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,

    /// Keep trying to reach the launcher for this long (it may start after
    /// this agent, as pods of one export do); 0: try once.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub wait_secs: f64,

    /// Where compiled components are cached (default: $LP_CACHE_DIR or ~/.cache/lp).
    #[arg(long, env = "LP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Run an agent; returns the process exit code.
pub fn main(args: AgentArgs) -> i32 {
    // What it offers is settled (and checked) before it joins anything.
    let offer = match offer(&args) {
        Ok(offer) => offer,
        Err(e) => {
            crate::errln!("error: agent: {e:#}");
            return 2;
        }
    };
    if let (true, Some(file)) = (args.stay, &args.token) {
        let mut last = String::new();
        loop {
            let token = next_token(file, &last);
            last = token.clone();
            if let Err(e) =
                JoinToken::parse(token.trim()).and_then(|token| run(&args, &offer, token))
            {
                crate::errln!("error: agent: {e:#}");
            }
        }
    }
    let token = match &args.token {
        Some(file) => JoinToken::read_file(file),
        None => JoinToken::from_env().and_then(|token| {
            token.context(
                "no join token: give --token FILE (the file the launcher wrote) or set LP_JOIN_TOKEN",
            )
        }),
    };
    match token.and_then(|token| run(&args, &offer, token)) {
        Ok(()) => 0,
        Err(e) => {
            crate::errln!("error: agent: {e:#}");
            1
        }
    }
}

/// The text of the token at `file` once it is there and not `last` (the
/// token of the launch this agent served last), checked as
/// [`JoinToken::read_file`] checks it.
fn next_token(file: &Path, last: &str) -> String {
    let mut said = String::new();
    loop {
        match JoinToken::read_file(file) {
            Ok(token) if token.encode() != last.trim() => return token.encode(),
            Ok(_) => {}
            // Not there (between launches), or refused: say so once.
            Err(e) if file.exists() => {
                let text = format!("{e:#}");
                if text != said {
                    crate::errln!("error: agent: {text}");
                    said = text;
                }
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The first launcher address of `token`, resolved (it may be a DNS name,
/// a Kubernetes Service's).
fn launcher_of(token: &JoinToken) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let named = &token.addresses()[0];
    named
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the launcher's address {named:?}"))?
        .next()
        .with_context(|| format!("the launcher's address {named:?} resolves to nothing"))
}

fn run(args: &AgentArgs, offer: &Offer, token: JoinToken) -> Result<()> {
    let token = match args.join {
        Some(addr) => JoinToken::new(vec![addr.to_string()], token.pin(), token.secret().clone())?,
        None => token,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let wait = Duration::try_from_secs_f64(args.wait_secs)
        .map_err(|_| anyhow::anyhow!("--wait-secs must be a number of seconds, 0 or more"))?;
    let deadline = std::time::Instant::now() + wait;
    let (address, joined) = loop {
        let attempt = (|| {
            let address = local_address_towards(launcher_of(&token)?)?;
            let joined = runtime.block_on(crate::trust::join(
                &token,
                &[address.to_string()],
                JOIN_TIMEOUT,
            ))?;
            anyhow::Ok((address, joined))
        })();
        match attempt {
            Ok(joined) => break joined,
            // A wrong secret or pin will not come right by waiting.
            Err(e) if e.downcast_ref::<crate::trust::JoinRefused>().is_some() => return Err(e),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!("not joined yet: {e:#}");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    };
    let attach: SocketAddr = joined
        .attach
        .parse()
        .with_context(|| format!("the launcher said to attach at {:?}", joined.attach))?;
    let security = Security::mutual_tls(MutualTls::new(&joined.credentials)?);
    if !args.quiet {
        crate::errln!(
            "agent {}: joined the launch at {} (this machine: {address})",
            joined.agent,
            token.addresses()[0]
        );
    }

    let dir = run_dir::create()?;
    // Started by a launcher on this machine (--local-agents): go with it.
    if !args.stay {
        // SAFETY: getppid(2) cannot fail.
        run_dir::clean_up_after(unsafe { libc::getppid() } as u32, dir.path())?;
    }
    let store = dir.path().join("files");
    std::fs::create_dir(&store).context("cannot create the agent's file store")?;
    let exe = std::env::current_exe().context("cannot find the lp-host executable")?;
    let spawner = LocalProcesses::new(exe, dir.path().to_path_buf());
    let workers: Arc<Running> = Arc::default();

    let (up, up_rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = up.send(AgentEvent {
        kind: Some(agent_event::Kind::Hello(AgentHello {
            agent: joined.agent,
            address: address.to_string(),
            host: args.host.clone(),
            cpus: offer.cpus,
            memory_mib: offer.memory_mib.unwrap_or(0),
            gpus: u32::try_from(offer.gpus).unwrap_or(u32::MAX),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })),
    });
    let ended = runtime.block_on(async {
        let channel = crate::proto::channel(&Endpoint::Tcp(attach), &security);
        let mut commands = AgentsClient::new(channel)
            .max_decoding_message_size(1 << 30)
            .attach(tokio_stream::wrappers::UnboundedReceiverStream::new(up_rx))
            .await
            .context("cannot attach to the launcher")?
            .into_inner();
        while let Some(command) = commands.next().await {
            let command = match command {
                Ok(command) => command,
                Err(status) => bail!("lost the launcher: {}", status.message()),
            };
            match command.kind {
                Some(agent_command::Kind::Blob(blob)) => {
                    store_blob(&store, &blob.digest, &blob.bytes)?
                }
                Some(agent_command::Kind::Start(json)) => {
                    let start: RemoteStart =
                        serde_json::from_str(&json).context("a bad start from the launcher")?;
                    let (worker, generation) = (start.spec.worker, start.spec.generation);
                    let exited = match start_worker(&spawner, &store, dir.path(), args, start) {
                        Ok(running) => {
                            lock(&workers).insert((worker, generation), running.clone());
                            let (up, workers) = (up.clone(), workers.clone());
                            std::thread::spawn(move || {
                                let exit = running.wait();
                                lock(&workers).remove(&(worker, generation));
                                let _ = up.send(exited(worker, generation, exit.success, exit.how));
                            });
                            continue;
                        }
                        Err(e) => {
                            exited(worker, generation, false, format!("could not start: {e:#}"))
                        }
                    };
                    let _ = up.send(exited);
                }
                Some(agent_command::Kind::Ports(asks)) => {
                    let asks: Vec<PortAsk> = serde_json::from_str(&asks)
                        .context("a bad ports request from the launcher")?;
                    let answer = serde_json::to_string(&allocate_here(address, &asks))?;
                    let _ = up.send(AgentEvent {
                        kind: Some(agent_event::Kind::Ports(answer)),
                    });
                }
                Some(agent_command::Kind::Kill(kill)) => {
                    if let Some(running) = lock(&workers).get(&(kill.worker, kill.generation)) {
                        running.kill();
                    }
                }
                None => {}
            }
        }
        anyhow::Ok(())
    });
    // Over (or the launcher is lost): no worker outlives the launch.
    let running: Vec<_> = lock(&workers).values().cloned().collect();
    for worker in &running {
        worker.kill();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !lock(&workers).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    drop(dir);
    ended
}

/// The workers running here, by (worker, generation).
type Running = Mutex<HashMap<(u32, u32), Arc<dyn RunningWorker>>>;

fn exited(worker: u32, generation: u32, success: bool, how: String) -> AgentEvent {
    AgentEvent {
        kind: Some(agent_event::Kind::Exited(WorkerExited {
            worker,
            generation,
            success,
            how,
        })),
    }
}

/// Keep a file the launcher sent, if its bytes are what its digest says.
fn store_blob(store: &Path, digest: &str, bytes: &[u8]) -> Result<()> {
    let actual = hex::encode(sha2::Sha256::digest(bytes));
    if actual != digest || digest.len() != 64 {
        bail!("the launcher sent a file whose bytes do not match its digest {digest:?}");
    }
    run_dir::write_private(&store.join(digest), bytes)
}

/// The stored file with `digest`, under a name ending in `extension` (the
/// loader tells a component from a crate by it).
fn stored(store: &Path, digest: &str, extension: &str) -> Result<PathBuf> {
    let file = store.join(digest);
    if !file.is_file() || digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("the launcher never sent file {digest:?}");
    }
    let named = store.join(format!("{digest}.{extension}"));
    if !named.exists() {
        std::fs::hard_link(&file, &named)
            .with_context(|| format!("cannot name {}", named.display()))?;
    }
    Ok(named)
}

/// Start the worker `start` describes, on this machine, from the files stored.
fn start_worker(
    spawner: &LocalProcesses,
    store: &Path,
    dir: &Path,
    args: &AgentArgs,
    start: RemoteStart,
) -> Result<Arc<dyn RunningWorker>> {
    let mut spec = start.spec;
    spec.program = stored(store, &start.program, "toml")?;
    for (entry, digest) in &start.components {
        let file = stored(store, digest, "wasm")?;
        spec.overrides
            .push(format!("{entry}.component={:?}", file.to_string_lossy()));
    }
    spec.run_dir = dir.to_path_buf();
    spec.launcher = std::process::id();
    spec.cache_dir = args.cache_dir.clone();
    spawner.start(&spec)
}

/// This machine's address on the route to `launcher` (what its workers
/// listen at and are reached at).
fn local_address_towards(launcher: SocketAddr) -> Result<std::net::IpAddr> {
    let any: SocketAddr = match launcher {
        SocketAddr::V4(_) => "0.0.0.0:0".parse()?,
        SocketAddr::V6(_) => "[::]:0".parse()?,
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket
        .connect(launcher)
        .with_context(|| format!("no route to the launcher at {launcher}"))?;
    Ok(socket.local_addr()?.ip())
}

/// What this agent offers: its machine, less what it was told to offer.
fn offer(args: &AgentArgs) -> Result<Offer> {
    let mut offer = Offer::of_this_machine(None)?;
    if let Some(cpus) = args.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            bail!("--cpus {cpus}: give a number of cpus above 0, e.g. --cpus 2 or --cpus 0.5");
        }
        offer.cpus = cpus;
    }
    if let Some(memory_mib) = args.memory_mib {
        if memory_mib == 0 {
            bail!("--memory-mib 0: give the MiB this agent offers, e.g. --memory-mib 4096");
        }
        offer.memory_mib = Some(memory_mib);
    }
    if let Some(gpus) = args.gpus {
        offer.gpus = gpus;
    }
    Ok(offer)
}
