//! The program model: program.toml parsed, validated and expanded into the
//! node instances that will run, with their args and the edges (handles)
//! between them. Knows nothing of wasm or of how nodes are launched.

mod diagnostic;
mod end;
mod grants;
mod load;
mod overrides;
mod ports;
mod replay;
mod replica;
mod resources;
mod schema;
mod slurm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use diagnostic::{Diagnostic, Origin, Place, line_col};
pub use load::{load, load_str};
pub use overrides::Override;
pub use slurm::Slurm;

/// The key under which a handle is encoded in a node's args JSON.
pub const HANDLE_KEY: &str = "$lp-handle";
/// Beside it, the handle's own call deadline in milliseconds, if it has one.
pub const HANDLE_TIMEOUT_KEY: &str = "$lp-timeout-ms";

/// The key under which an address handle (another node's port) is encoded
/// in a node's args until launch, when it becomes the string "IP:port":
/// `{"$lp-address": k}`, `k` an index into the node's
/// [`NodeSpec::addresses`].
pub const ADDRESS_KEY: &str = "$lp-address";

/// Args values are JSON.
pub use serde_json::Value as JsonValue;

/// A validated program, every replica expanded into its own node.
#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    /// The program.toml this came from.
    pub file: PathBuf,
    /// Deadline of every courier call, unless a handle overrides it; `None`
    /// waits without limit.
    pub call_timeout: Option<Duration>,
    /// The components named by the program, one per distinct source.
    pub components: Vec<ComponentSource>,
    /// Every node instance; a node's id is its index here.
    pub nodes: Vec<NodeSpec>,
    /// The `--set` overrides applied, as given (worker processes load the
    /// same program with them).
    pub overrides: Vec<String>,
    /// The most wasm stack any node may use (program-wide: one engine runs
    /// every node), in KiB; `None`: wasmtime's default (512 KiB).
    pub stack_kib: Option<u64>,
    /// What is allowed but should be said before the program runs (a grant
    /// of the host's root or of a home directory), with where it is.
    pub warnings: Vec<Diagnostic>,
    /// Which nodes' runs end the program.
    pub end: EndRule,
    /// How `--launch slurm` asks for the job (`[program.slurm]`).
    pub slurm: Slurm,
}

/// What ends a program besides a stop, a failure or Ctrl-C: every node of
/// `wait_for` (by default every node with a `run`) having finished its run,
/// or with `first` the first of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndRule {
    /// `None`: every node with a `run`.
    pub wait_for: Option<Vec<WaitFor>>,
    pub first: bool,
}

/// One name in `wait_for`: a node, an entry or a group, its nodes, and
/// where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitFor {
    pub name: String,
    pub nodes: Vec<u32>,
    pub place: Place,
}

/// Where a node's component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ComponentSource {
    /// A built component file.
    Wasm(PathBuf),
    /// A node crate directory, built for wasm32-wasip2 before launch.
    Crate(PathBuf),
    /// A Python or JavaScript node: its app file, built (componentize-py,
    /// componentize-js) for `world` of the WIT at `wit` (none: a world of
    /// lp:node itself) before launch.
    Script {
        language: crate::script_nodes::Language,
        app: PathBuf,
        world: String,
        wit: Option<PathBuf>,
    },
}

/// What runs as a node.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A wasm component: an index into [`Program::components`].
    Component(usize),
    /// lp's built-in replay node (`kind = "replay"`), run by the host.
    Replay(Arc<ReplayConfig>),
}

/// A replay node's tables and checkpoint, as program.toml gives them.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub tables: Vec<lp_replay::TableConfig>,
    pub checkpoint: Option<ReplayCheckpoint>,
}

/// Where and when a replay node writes its checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayCheckpoint {
    /// The directory (absolute, or relative to program.toml as loaded).
    pub dir: PathBuf,
    /// Also every this often.
    pub every: Option<Duration>,
    /// When the program ends.
    pub at_stop: bool,
    /// Load the checkpoint there, if there is one, at start.
    pub restore: bool,
}

/// One node instance of the program.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Index in [`Program::nodes`]; what a handle to this node carries.
    pub id: u32,
    /// Unique name: the entry's name, with `/index` when it has replicas.
    pub name: String,
    /// The `[[node]]` entry this instance comes from.
    pub entry: String,
    pub group: String,
    /// Index among the entry's replicas.
    pub index: u32,
    /// A component, or a built-in kind.
    pub kind: NodeKind,
    /// Args as a JSON object; handles as `{"$lp-handle": id}`.
    pub args: serde_json::Value,
    /// The nodes this node was given handles to.
    pub edges: Vec<Edge>,
    /// Whether the host calls the node's `run` export (tests may disable it).
    pub run_enabled: bool,
    /// Nodes with the same colocation name share one process under local_mp;
    /// a node without one gets a process of its own.
    pub colocate: Option<String>,
    /// How many times the node is started again after it fails
    /// (Launchpad's num_retries_on_failure): in process under local_mt and
    /// test_mt, its worker process under local_mp (a colocation group gets
    /// the largest budget of its nodes).
    pub restarts: u32,
    /// What of the host the node may use; nothing unless granted.
    pub grants: Grants,
    /// Its resource limits (its own, else the program's defaults).
    pub limits: Limits,
    /// What it needs of a machine, for placing its process on one.
    pub resources: Resources,
    /// The ports it serves on (program.toml's `ports`), allocated at launch.
    pub ports: Vec<PortRequest>,
    /// The other nodes' ports it was given addresses of (`{ address =
    /// "node.port" }` args), in the order of their `$lp-address` indices.
    pub addresses: Vec<AddressRef>,
}

/// A port a node asks for: its name, a fixed number if program.toml gives
/// one (else any free port), and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRequest {
    pub name: String,
    pub fixed: Option<u16>,
    pub place: Place,
}

impl PortRequest {
    /// The environment variable that tells the node its port's number
    /// (`LP_PORT_HTTP` for `http`, `LP_PORT_MY_DB` for `my-db`).
    pub fn port_var(&self) -> String {
        format!("LP_PORT_{}", env_suffix(&self.name))
    }

    /// The environment variable that tells the node the address to bind
    /// (`LP_ADDRESS_HTTP`: "IP:port").
    pub fn address_var(&self) -> String {
        format!("LP_ADDRESS_{}", env_suffix(&self.name))
    }
}

fn env_suffix(port: &str) -> String {
    port.to_ascii_uppercase().replace('-', "_")
}

/// An address handle: the node and port it names, the arg that carried
/// it, and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRef {
    pub target: u32,
    pub port: String,
    pub arg: String,
    pub place: Place,
}

/// What of the host a node may use. By default: nothing (no files, no
/// environment, no network, no stdin); stdout, stderr, clocks and
/// randomness are always there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grants {
    pub dirs: Vec<DirGrant>,
    pub env: Vec<(String, String)>,
    pub network: Vec<NetGrant>,
    pub stdin: bool,
}

/// A host directory the node sees at `guest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    /// Absolute (resolved from program.toml's directory).
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// An address a node may use: an IP and a port (`None`: any port), and
/// what for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetGrant {
    pub ip: std::net::IpAddr,
    pub port: Option<u16>,
    pub usage: NetUse,
}

/// What a [`NetGrant`] lets a node do with its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetUse {
    /// Connect to it or bind it (a `grants.network` entry).
    Any,
    /// Bind it and serve on it (one of the node's own `ports`).
    Serve,
    /// Connect to it, or send datagrams to it (an address handle).
    Connect,
}

impl NetGrant {
    /// Whether the node may use `addr` to serve (bind, listen) or, with
    /// `serving` false, to reach a peer (connect, send).
    pub fn allows(&self, addr: std::net::SocketAddr, serving: bool) -> bool {
        let usage = match self.usage {
            NetUse::Any => true,
            NetUse::Serve => serving,
            NetUse::Connect => !serving,
        };
        usage && addr.ip() == self.ip && self.port.is_none_or(|p| p == addr.port())
    }
}

/// Resource limits of one node; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// The largest any one of its linear memories may grow, in MiB.
    pub memory_mib: Option<u64>,
    /// The most elements any one of its tables may hold.
    pub table_elements: Option<u64>,
    /// The most wasm instances (core instances) its component may create.
    pub instances: Option<u64>,
    /// Its total wasm CPU time (its `run` and every call it serves), in
    /// seconds, measured in epoch ticks.
    pub cpu_secs: Option<f64>,
    /// The program's wasm stack limit in KiB (the same for every node).
    pub stack_kib: Option<u64>,
}

/// What a node needs of the machine its process runs on (program.toml's
/// `resources`); nothing by default. A colocation group needs the sum of
/// its nodes'.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    /// CPUs (cores), possibly a fraction.
    pub cpus: f64,
    pub memory_mib: u64,
    pub gpus: u64,
    /// The label of the agent it must run on.
    pub host: Option<String>,
    /// Where the `resources` table (or its `--set`) was written.
    pub place: Place,
}

impl Resources {
    /// Whether it asks for anything at all.
    pub fn is_empty(&self) -> bool {
        self.cpus == 0.0 && self.memory_mib == 0 && self.gpus == 0 && self.host.is_none()
    }
}

/// A handle given to a node: the target, the arg that carried it, the
/// deadline of calls through it if it overrides the program's, and where
/// program.toml (or `--set`) wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub target: u32,
    pub arg: String,
    pub timeout: Option<Duration>,
    pub place: Place,
}

impl NodeSpec {
    /// Its component's index in [`Program::components`], if it is a
    /// component.
    pub fn component(&self) -> Option<usize> {
        match self.kind {
            NodeKind::Component(index) => Some(index),
            NodeKind::Replay(_) => None,
        }
    }
}

impl Program {
    /// The node called `name`, if any.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Disable `run` on every node of the entry or instance called `name`
    /// (its exports are still served). Returns how many nodes matched.
    pub fn disable_run(&mut self, name: &str) -> usize {
        let mut matched = 0;
        for node in self
            .nodes
            .iter_mut()
            .filter(|n| n.name == name || n.entry == name)
        {
            node.run_enabled = false;
            matched += 1;
        }
        matched
    }
}
