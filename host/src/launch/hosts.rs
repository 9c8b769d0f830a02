//! hosts: a program across machines. The launcher listens for agents
//! (`lp-host agent --join ADDR --token FILE`, one per machine) at
//! `--listen`, admits `--agents N` of them with the join token it writes
//! (it pins the launcher's certificate and holds a secret: see
//! docs/security.md), places the program's processes on them, ships each
//! agent the program's files, and runs the processes as local_mp does,
//! each on its agent's machine. Every connection between machines is
//! mutual TLS with certificates of a CA made for this launch; courier
//! calls go over gRPC; processes announce the TCP port they got.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use sha2::Digest as _;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::local_mp::run_disabled;
use super::placement;
use super::processes::{self, Network};
use super::slurm;
use super::start::{RunningProgram, timer_runtime};
use super::worker::{Peers, WorkerSpec};
use super::workers::agents::{Agent, Agents, Files};
use super::workers::local::{dies_with_parent, worker_exe};
use super::{LaunchOptions, Plan, PortAsk, Ports, run_dir};
use crate::courier::{Endpoint, Secret, Security};
use crate::proto::agents_server::{Agents as AgentsService, AgentsServer};
use crate::proto::{AgentCommand, AgentEvent, agent_event};
use crate::trust::{JoinDesk, JoinMaterial, LaunchCa, MutualTls, Role};

/// Settings of a multi-host launch.
#[derive(Clone, Debug)]
pub struct HostsOptions {
    /// Where agents join (an address of this machine they can reach).
    pub listen: SocketAddr,
    /// How many agents to wait for.
    pub agents: usize,
    /// Where the join token is written (owner-only; removed once the
    /// agents have joined). Default: `lp-join.token` here, or a private
    /// directory with local agents (a Slurm job's own directory).
    pub token_file: Option<PathBuf>,
    /// Who starts the agents.
    pub recruit: Recruit,
    /// How long to wait for them.
    pub join_timeout: Duration,
}

/// Who starts the agents of a launch.
#[derive(Clone, Debug)]
pub enum Recruit {
    /// People, on their machines, with the command the launcher prints.
    ByHand,
    /// The launcher, on this machine, as its children (to try a multi-host
    /// program on one machine, and for tests); `exe`: the lp-host binary
    /// they run (default: as workers find it).
    Local { exe: Option<PathBuf> },
    /// A Slurm job, one agent per node of `layout` (`--launch slurm`).
    Slurm {
        job: slurm::JobOptions,
        layout: super::classes::Layout,
    },
    /// Started elsewhere (pods of a Kubernetes export) with a token made
    /// ahead, whose material the join listener presents.
    Prepared(Arc<JoinMaterial>),
}

impl Recruit {
    /// How the launcher's lines about the agents begin.
    fn prefix(&self) -> &'static str {
        match self {
            Recruit::Slurm { .. } => "slurm",
            _ => "hosts",
        }
    }
}

/// Start every node of `plan` on the agents that join.
pub fn launch(plan: &Plan, options: LaunchOptions, hosts: &HostsOptions) -> Result<RunningProgram> {
    let local_agents = matches!(hosts.recruit, Recruit::Local { .. });
    if hosts.listen.ip().is_unspecified() && !local_agents {
        bail!(
            "--listen {} names no one address: give the address agents reach this machine at, \
             e.g. --listen 10.0.0.1:7070 (it goes into the join token and the launcher's certificate)",
            hosts.listen
        );
    }
    if hosts.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let runtime = timer_runtime()?;
    let ca = Arc::new(LaunchCa::generate()?);
    let ip = match hosts.listen.ip() {
        ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip => ip,
    };
    let listen = SocketAddr::new(ip, hosts.listen.port());
    let launcher = ca.issue(Role::Launcher, &[ip.to_string()])?;
    let security = Security::mutual_tls(MutualTls::new(&launcher)?);
    let (join_listener, agents_listener, control) = runtime.block_on(async {
        let join = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen for agents at {listen}"))?;
        let agents = Endpoint::Tcp(SocketAddr::new(ip, 0)).bind()?;
        let control = Endpoint::Tcp(SocketAddr::new(ip, 0)).bind()?;
        anyhow::Ok((join, agents, control))
    })?;
    let agents_endpoint = agents_listener.endpoint()?;
    let control_endpoint = control.endpoint()?;
    let Endpoint::Tcp(agents_addr) = agents_endpoint else {
        unreachable!("bound as TCP")
    };
    let desk = match &hosts.recruit {
        Recruit::Prepared(material) => {
            JoinDesk::new(ca.clone(), &material.credentials, material.secret.clone())?
        }
        _ => JoinDesk::new(ca.clone(), &launcher, Secret::generate()?)?,
    };
    let desk = Arc::new(desk.with_attach(agents_addr.to_string()));
    // Port 0 took a port: the token names the one taken.
    let listen = join_listener.local_addr()?;
    let token = desk.token(vec![listen.to_string()])?;
    let private = run_dir::create()?;
    let mut crew = Crew {
        agents: Vec::new(),
        local: Vec::new(),
        job: None,
    };
    let token_path = match (&hosts.token_file, &hosts.recruit) {
        // The job's agents read the token in the job's own directory.
        (_, Recruit::Slurm { job, layout }) => {
            let exe = match &job.agent_exe {
                Some(exe) => exe.clone(),
                None => std::path::absolute(worker_exe(&options)?)?,
            };
            let submitted = slurm::Job::submit(&plan.program, layout, job, &exe, |file| {
                token.write_file(file)
            })?;
            crate::errln!(
                "slurm: {} runs the agents ({}); they join at {listen}",
                submitted.describe(),
                submitted.nodes()
            );
            let file = submitted.dir().join("join.token");
            crew.job = Some(submitted);
            file
        }
        (Some(file), _) => file.clone(),
        (None, Recruit::Local { .. }) => private.path().join("join.token"),
        (None, Recruit::ByHand) => PathBuf::from("lp-join.token"),
        // The agents hold a token of their own: none is written.
        (None, Recruit::Prepared(_)) => private.path().join("join.token"),
    };
    if crew.job.is_none() && !matches!(hosts.recruit, Recruit::Prepared(_)) {
        token.write_file(&token_path)?;
    }
    let token_file = TokenFile {
        file: token_path.clone(),
        _dir: private,
    };
    match &hosts.recruit {
        Recruit::Local { exe } => {
            let exe = match exe {
                Some(exe) => exe.clone(),
                None => worker_exe(&options)?,
            };
            for _ in 0..hosts.agents {
                let mut command = std::process::Command::new(&exe);
                command
                    .args(["agent", "--quiet", "--token"])
                    .arg(&token_path);
                dies_with_parent(&mut command);
                crew.local
                    .push(command.spawn().context("cannot start a local agent")?);
            }
        }
        Recruit::ByHand => crate::errln!(
            "hosts: waiting for {} agent(s) at {listen}; on each machine run\n  lp-host agent --token {}\n\
             (copy the file there, owner-only: it is this launch's join secret)",
            hosts.agents,
            token_path.display()
        ),
        Recruit::Slurm { .. } => {}
        Recruit::Prepared(_) => crate::errln!(
            "hosts: waiting for {} agent(s) at {listen} (they hold the token prepared with this launch's join material)",
            hosts.agents
        ),
    }

    // Joins, then attaches of the agents that joined.
    let (attached, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let quiet = local_agents;
    let prefix = hosts.recruit.prefix();
    let joins = runtime.spawn({
        let desk = desk.clone();
        async move {
            loop {
                let Ok((tcp, _)) = join_listener.accept().await else {
                    continue;
                };
                let desk = desk.clone();
                tokio::spawn(async move {
                    match desk.admit(tcp).await {
                        Ok(admitted) if quiet => {
                            tracing::debug!(
                                "agent {} joined from {}",
                                admitted.agent,
                                admitted.peer
                            )
                        }
                        Ok(admitted) => crate::errln!(
                            "{prefix}: agent {} joined from {}",
                            admitted.agent,
                            admitted.peer
                        ),
                        Err(e) => tracing::warn!("{e:#}"),
                    }
                });
            }
        }
    });
    {
        let security = security.clone();
        let service = AgentDesk { attached };
        runtime.spawn(async move {
            let _ = crate::proto::control_server(&security)
                .add_service(AgentsServer::new(service).max_decoding_message_size(1 << 30))
                .serve_with_incoming(crate::proto::incoming(agents_listener, &security))
                .await;
        });
    }
    runtime.block_on(async {
        let crew_has_job = crew.job.is_some();
        let agents = &mut crew.agents;
        let job = &mut crew.job;
        let deadline = tokio::time::sleep(hosts.join_timeout);
        tokio::pin!(deadline);
        // A Slurm job is watched meanwhile: one it cannot place, or that
        // ended, will bring no (more) agents.
        let mut checks = tokio::time::interval(Duration::from_millis(500));
        while agents.len() < hosts.agents {
            tokio::select! {
                agent = arrivals.recv() => match agent {
                    Some(agent) => agents.push(agent),
                    None => break,
                },
                _ = checks.tick(), if crew_has_job => {
                    if let Some(why) = job.as_mut().and_then(|job| job.hopeless()) {
                        bail!("{why}");
                    }
                }
                () = &mut deadline => bail!(
                    "only {} of {} agents joined within {:?}",
                    agents.len(),
                    hosts.agents,
                    hosts.join_timeout
                ),
            }
        }
        anyhow::Ok(())
    })?;
    let agents = crew.agents.clone();
    // No one else joins this launch.
    joins.abort();
    drop(token_file);

    // Processes placed on the agents by what they need (spread where
    // they say nothing); a program that does not fit is refused here.
    let program = &plan.program;
    let wanted = placement::processes(program);
    let offers: Vec<placement::Agent> = agents
        .iter()
        .map(|agent| placement::Agent {
            id: agent.hello.agent,
            offer: placement::Offer {
                hosts: match agent.hello.host.as_str() {
                    "" => Vec::new(),
                    host => vec![host.to_string()],
                },
                cpus: agent.hello.cpus,
                memory_mib: (agent.hello.memory_mib > 0).then_some(agent.hello.memory_mib),
                gpus: agent.hello.gpus.into(),
            },
        })
        .collect();
    let placement = placement::place(&wanted, &offers)
        .map_err(|unplaceable| anyhow::anyhow!("{}", unplaceable.diagnostic(&program.file)))?;
    let processes: Vec<Vec<u32>> = wanted.into_iter().map(|p| p.nodes).collect();
    for (a, agent) in agents.iter().enumerate() {
        let names: Vec<&str> = processes
            .iter()
            .zip(&placement)
            .filter(|&(_, &p)| p == a)
            .flat_map(|(nodes, _)| nodes)
            .map(|&id| program.nodes[id as usize].name.as_str())
            .collect();
        if names.is_empty() {
            continue;
        }
        let line = match agent.hello.host.as_str() {
            "" => format!("{} runs {}", agent.describe(), names.join(", ")),
            label => format!("{} [{label}] runs {}", agent.describe(), names.join(", ")),
        };
        match local_agents {
            true => tracing::debug!("{line}"),
            false => crate::errln!("{prefix}: {line}"),
        }
    }
    let mut process_of = vec![0u32; program.nodes.len()];
    for (k, nodes) in processes.iter().enumerate() {
        for &id in nodes {
            process_of[id as usize] = k as u32;
        }
    }
    let ports = runtime.block_on(allocate_ports(program, &processes, &placement, &agents))?;
    let files = files_of(plan)?;
    // The agent names each component's file: only the user's overrides go.
    let overrides = program.overrides.clone();
    let run_disabled = run_disabled(plan);
    let secret = Secret::generate()?;
    let specs = processes
        .iter()
        .enumerate()
        .map(|(k, nodes)| WorkerSpec {
            worker: k as u32,
            generation: 0,
            program: PathBuf::new(),
            overrides: overrides.clone(),
            run_disabled: run_disabled.clone(),
            nodes: nodes.clone(),
            // The agent's address, any port.
            listen: Endpoint::Tcp(SocketAddr::new(ip, 0)),
            peers: Peers::Announced(process_of.clone()),
            control: control_endpoint.clone(),
            run_dir: PathBuf::new(),
            cache_dir: None,
            use_cache: true,
            transport: options.transport,
            spin: options.spin,
            secret: secret.clone(),
            launcher: 0,
            credentials: None,
            ports: ports.clone(),
        })
        .collect();
    let network = Network {
        control,
        security,
        transport: options.transport,
        peers: Peers::Announced(process_of),
        secret,
    };
    let spawner = Arc::new(Agents::new(agents.clone(), placement, ca, files));
    // The launch is over when the program is: the crew goes then.
    processes::launch(plan, options, runtime, specs, spawner, network, move || {
        drop(crew)
    })
}

/// The agents of a launch, told the launch is over (and local ones
/// reaped) when dropped: at its end, or when it is refused after they
/// joined.
struct Crew {
    agents: Vec<Arc<Agent>>,
    /// Agents started on this machine (`--local-agents`).
    local: Vec<std::process::Child>,
    /// The Slurm job the agents run in (`--launch slurm`): cancelled once
    /// they have gone.
    job: Option<slurm::Job>,
}

impl Drop for Crew {
    fn drop(&mut self) {
        // Their streams end, and they exit (their side of the stream ends
        // when they have seen it).
        tracing::debug!("the launch is over: telling the agents");
        for agent in &self.agents {
            agent.finish();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self.agents.iter().any(|a| !a.is_lost()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for agent in &mut self.local {
            if !matches!(agent.try_wait(), Ok(Some(_))) {
                let _ = agent.kill();
            }
            let _ = agent.wait();
        }
        tracing::debug!("the agents have gone");
        if let Some(job) = &mut self.job {
            job.cancel();
            tracing::debug!("job {} cancelled", job.id);
        }
    }
}

/// Every node's ports, each allocated by the agent its process runs on
/// (on that machine, at its address); a port a machine refuses refuses
/// the launch at the port's line.
async fn allocate_ports(
    program: &crate::program::Program,
    processes: &[Vec<u32>],
    placement: &[usize],
    agents: &[Arc<Agent>],
) -> Result<Ports> {
    let mut allocated = Vec::new();
    for (a, agent) in agents.iter().enumerate() {
        let asks: Vec<PortAsk> = processes
            .iter()
            .zip(placement)
            .filter(|&(_, &p)| p == a)
            .flat_map(|(nodes, _)| nodes)
            .flat_map(|&id| {
                program.nodes[id as usize]
                    .ports
                    .iter()
                    .map(move |request| PortAsk {
                        node: id,
                        name: request.name.clone(),
                        port: request.fixed.unwrap_or(0),
                    })
            })
            .collect();
        if asks.is_empty() {
            continue;
        }
        match agent.allocate(&asks).await? {
            Ok(addresses) => allocated.extend(
                asks.into_iter()
                    .zip(addresses)
                    .map(|(ask, addr)| (ask.node, ask.name, addr)),
            ),
            Err(refused) => {
                let Some(ask) = asks.get(refused.ask) else {
                    bail!("{} refused a port it was not asked for", agent.describe());
                };
                let node = &program.nodes[ask.node as usize];
                let place = node
                    .ports
                    .iter()
                    .find(|r| r.name == ask.name)
                    .map(|r| r.place.clone());
                let message = format!(
                    "port {} of node {} cannot be had on {}: {}",
                    ask.name,
                    node.name,
                    agent.describe(),
                    refused.error
                );
                match place {
                    Some(place) => bail!(
                        "{}",
                        crate::program::Diagnostic::at(&program.file, &place, message).help(
                            "stop what uses the port on that machine, or give it another number (--set <node>.ports.<name>=N; 0 for any free port)"
                        )
                    ),
                    None => bail!("{message}"),
                }
            }
        }
    }
    Ok(Ports::from_allocated(program, allocated))
}

/// The join token's file (and the private directory it may be in),
/// removed when the joining is over.
struct TokenFile {
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// program.toml and every entry's component, with their digests.
fn files_of(plan: &Plan) -> Result<Files> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let digest = |bytes: &[u8]| hex::encode(sha2::Sha256::digest(bytes));
    let toml = read(&plan.program.file)?;
    let mut components: Vec<(String, String, Arc<Vec<u8>>)> = Vec::new();
    let mut read_files: std::collections::HashMap<usize, (String, Arc<Vec<u8>>)> =
        std::collections::HashMap::new();
    for node in &plan.program.nodes {
        let Some(component) = node.component() else {
            continue;
        };
        if components.iter().any(|(entry, _, _)| entry == &node.entry) {
            continue;
        }
        let (digest, bytes) = match read_files.get(&component) {
            Some(known) => known.clone(),
            None => {
                let bytes = Arc::new(read(&plan.files[component])?);
                let known = (digest(&bytes), bytes);
                read_files.insert(component, known.clone());
                known
            }
        };
        components.push((node.entry.clone(), digest, bytes));
    }
    Ok(Files {
        program: (digest(&toml), toml),
        components,
    })
}

/// The launcher's agent service: each agent attaches once after joining.
struct AgentDesk {
    attached: tokio::sync::mpsc::UnboundedSender<Arc<Agent>>,
}

type AgentCommands = Pin<Box<dyn Stream<Item = Result<AgentCommand, Status>> + Send>>;

#[tonic::async_trait]
impl AgentsService for AgentDesk {
    type AttachStream = AgentCommands;

    async fn attach(
        &self,
        request: Request<Streaming<AgentEvent>>,
    ) -> Result<Response<AgentCommands>, Status> {
        let mut events = request.into_inner();
        let hello = match events.next().await {
            Some(Ok(AgentEvent {
                kind: Some(agent_event::Kind::Hello(hello)),
            })) => hello,
            _ => return Err(Status::invalid_argument("an agent says hello first")),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let agent = Agent::new(hello, tx);
        if self.attached.send(agent.clone()).is_err() {
            return Err(Status::resource_exhausted("this launch has all its agents"));
        }
        tokio::spawn(async move {
            let why = loop {
                match events.next().await {
                    Some(Ok(AgentEvent {
                        kind: Some(agent_event::Kind::Exited(exited)),
                    })) => agent.exited(exited),
                    Some(Ok(AgentEvent {
                        kind: Some(agent_event::Kind::Ports(answer)),
                    })) => agent.allocated(answer),
                    Some(Ok(_)) => {}
                    Some(Err(status)) => {
                        break format!("its connection broke: {}", status.message());
                    }
                    None => break "it closed its connection".to_string(),
                }
            };
            if !agent.is_finished() {
                tracing::warn!("lost {}: {why}", agent.describe());
            }
            agent.lost(&why);
        });
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream) as AgentCommands))
    }
}
