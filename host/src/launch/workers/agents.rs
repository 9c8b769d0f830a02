//! Worker processes on the agents that joined a multi-host launch. The
//! launcher holds one [`Agent`] per joined machine (its attach stream);
//! starting a worker sends the agent the program's files it lacks (each
//! once, by content digest), a certificate of the launch for the worker,
//! and the worker's spec; the agent starts it and reports its exit. A lost
//! agent (its stream broke: killed, or the link cut) counts as the exit of
//! every worker on it, and a worker restarted after that goes to a live
//! agent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::{Exit, RunningWorker, Spawner};
use std::net::SocketAddr;

use crate::launch::worker::{SpecCredentials, WorkerSpec};
use crate::launch::{PortAsk, PortRefused, lock};
use crate::proto::{AgentCommand, AgentHello, Blob, KillWorker, WorkerExited, agent_command};
use crate::trust::{LaunchCa, Role};

/// What an agent is told to start: the worker's spec (its program path and
/// component overrides filled in by the agent, where it stored the files)
/// and the program's files by digest.
#[derive(Serialize, Deserialize, Debug)]
pub struct RemoteStart {
    pub spec: WorkerSpec,
    /// The digest of program.toml.
    pub program: String,
    /// Each entry's component, by digest.
    pub components: Vec<(String, String)>,
}

/// The sending end of an agent's command stream.
pub type AgentCommands = tokio::sync::mpsc::UnboundedSender<Result<AgentCommand, Status>>;

/// One agent of the launch, as the launcher sees it.
pub struct Agent {
    pub hello: AgentHello,
    /// None once the launch is over (the agent's stream ends).
    commands: Mutex<Option<AgentCommands>>,
    /// Digests of the files sent to it.
    sent: Mutex<HashSet<String>>,
    /// Its workers still running, by (worker, generation).
    running: Mutex<HashMap<(u32, u32), Arc<RemoteWorker>>>,
    /// Why it was lost, once it was.
    lost: Mutex<Option<String>>,
    /// Who waits for its answer to a `ports` request.
    ports: Mutex<Option<tokio::sync::oneshot::Sender<String>>>,
}

impl Agent {
    pub fn new(hello: AgentHello, commands: AgentCommands) -> Arc<Agent> {
        Arc::new(Agent {
            hello,
            commands: Mutex::new(Some(commands)),
            sent: Mutex::default(),
            running: Mutex::default(),
            lost: Mutex::default(),
            ports: Mutex::default(),
        })
    }

    /// Allocate `asks` on the agent's machine (see
    /// [`crate::launch::allocate_here`]): the addresses, or which ask the
    /// machine refused; an error if the agent did not answer.
    pub async fn allocate(&self, asks: &[PortAsk]) -> Result<Result<Vec<SocketAddr>, PortRefused>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *lock(&self.ports) = Some(tx);
        self.send(agent_command::Kind::Ports(serde_json::to_string(asks)?))?;
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .map_err(|_| anyhow::anyhow!("{} did not allocate ports within 10 s", self.describe()))?
            .map_err(|_| anyhow::anyhow!("{} was lost", self.describe()))?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// The agent answered a `ports` request.
    pub fn allocated(&self, answer: String) {
        if let Some(waiting) = lock(&self.ports).take() {
            let _ = waiting.send(answer);
        }
    }

    /// `agent 1 (10.0.0.2)`.
    pub fn describe(&self) -> String {
        format!("agent {} ({})", self.hello.agent, self.hello.address)
    }

    pub fn is_lost(&self) -> bool {
        lock(&self.lost).is_some()
    }

    fn send(&self, kind: agent_command::Kind) -> Result<()> {
        let sent = lock(&self.commands)
            .as_ref()
            .is_some_and(|commands| commands.send(Ok(AgentCommand { kind: Some(kind) })).is_ok());
        if !sent {
            bail!("{} is gone", self.describe());
        }
        Ok(())
    }

    /// The launch is over: end the agent's command stream (it exits).
    pub fn finish(&self) {
        lock(&self.commands).take();
    }

    /// Whether the launch is over for this agent.
    pub fn is_finished(&self) -> bool {
        lock(&self.commands).is_none()
    }

    /// Send `bytes` as the file with `digest`, unless it was sent before.
    fn ship(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        if lock(&self.sent).insert(digest.to_string()) {
            self.send(agent_command::Kind::Blob(Blob {
                digest: digest.to_string(),
                bytes: bytes.to_vec(),
            }))?;
        }
        Ok(())
    }

    /// The agent says a worker exited.
    pub fn exited(&self, exited: WorkerExited) {
        let worker = lock(&self.running).remove(&(exited.worker, exited.generation));
        if let Some(worker) = worker {
            worker.ended(Exit {
                success: exited.success,
                how: exited.how,
            });
        }
    }

    /// The agent's stream ended: each of its workers is gone with it.
    pub fn lost(&self, why: &str) {
        *lock(&self.lost) = Some(why.to_string());
        let running: Vec<_> = lock(&self.running).drain().map(|(_, w)| w).collect();
        for worker in running {
            worker.ended(Exit {
                success: false,
                how: format!("was lost with {} ({why})", self.describe()),
            });
        }
    }
}

/// The files of the program an agent may be sent, by digest.
pub struct Files {
    /// program.toml's digest and bytes.
    pub program: (String, Vec<u8>),
    /// Each entry's component: entry name, digest, bytes.
    pub components: Vec<(String, String, Arc<Vec<u8>>)>,
}

/// Starts workers on the agents of a launch.
pub struct Agents {
    agents: Vec<Arc<Agent>>,
    /// The agent each worker goes to (a worker whose agent was lost moves).
    placement: Mutex<Vec<usize>>,
    ca: Arc<LaunchCa>,
    files: Files,
}

impl Agents {
    pub fn new(
        agents: Vec<Arc<Agent>>,
        placement: Vec<usize>,
        ca: Arc<LaunchCa>,
        files: Files,
    ) -> Agents {
        Agents {
            agents,
            placement: Mutex::new(placement),
            ca,
            files,
        }
    }

    /// The agent worker `worker` starts on: its own, else the live agent
    /// with the fewest workers.
    fn agent_for(&self, worker: usize) -> Result<Arc<Agent>> {
        let mut placement = lock(&self.placement);
        let current = placement[worker];
        if !self.agents[current].is_lost() {
            return Ok(self.agents[current].clone());
        }
        let load = |a: usize| placement.iter().filter(|&&p| p == a).count();
        let Some(next) = (0..self.agents.len())
            .filter(|&a| !self.agents[a].is_lost())
            .min_by_key(|&a| load(a))
        else {
            bail!("every agent of the launch is lost");
        };
        tracing::warn!(
            "worker {worker} moves from {} to {}",
            self.agents[current].describe(),
            self.agents[next].describe()
        );
        placement[worker] = next;
        Ok(self.agents[next].clone())
    }
}

impl Spawner for Agents {
    fn start(&self, spec: &WorkerSpec) -> Result<Arc<dyn RunningWorker>> {
        let agent = self.agent_for(spec.worker as usize)?;
        let (digest, bytes) = &self.files.program;
        agent.ship(digest, bytes)?;
        for (_, digest, bytes) in &self.files.components {
            agent.ship(digest, bytes)?;
        }
        let addresses = vec![agent.hello.address.clone()];
        let credentials = self.ca.issue(Role::Worker(spec.worker), &addresses)?;
        let mut spec = spec.clone();
        spec.credentials = Some(SpecCredentials::of(spec.worker, &credentials));
        if let crate::courier::Endpoint::Tcp(addr) = &mut spec.listen {
            addr.set_ip(agent.hello.address.parse()?);
        }
        let start = RemoteStart {
            program: digest.clone(),
            components: self
                .files
                .components
                .iter()
                .map(|(entry, digest, _)| (entry.clone(), digest.clone()))
                .collect(),
            spec,
        };
        let worker = Arc::new(RemoteWorker {
            agent: agent.clone(),
            worker: start.spec.worker,
            generation: start.spec.generation,
            exit: Mutex::new(None),
            ended: Condvar::new(),
        });
        lock(&agent.running).insert((worker.worker, worker.generation), worker.clone());
        if let Err(e) = agent.send(agent_command::Kind::Start(serde_json::to_string(&start)?)) {
            lock(&agent.running).remove(&(worker.worker, worker.generation));
            return Err(e);
        }
        if agent.is_lost() {
            // Lost between the check and the registration: it never ran.
            agent.lost("lost before the worker started");
        }
        Ok(worker)
    }
}

/// A worker process on an agent.
pub struct RemoteWorker {
    agent: Arc<Agent>,
    worker: u32,
    generation: u32,
    exit: Mutex<Option<Exit>>,
    ended: Condvar,
}

impl RemoteWorker {
    fn ended(&self, exit: Exit) {
        let mut slot = lock(&self.exit);
        if slot.is_none() {
            *slot = Some(exit);
        }
        self.ended.notify_all();
    }
}

impl RunningWorker for RemoteWorker {
    fn describe(&self) -> String {
        format!("worker {} on {}", self.worker, self.agent.describe())
    }

    fn kill(&self) {
        if lock(&self.exit).is_none() {
            let _ = self.agent.send(agent_command::Kind::Kill(KillWorker {
                worker: self.worker,
                generation: self.generation,
            }));
        }
    }

    fn wait(&self) -> Exit {
        let mut exit = lock(&self.exit);
        loop {
            if let Some(exit) = exit.as_ref() {
                return exit.clone();
            }
            exit = self
                .ended
                .wait(exit)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}
