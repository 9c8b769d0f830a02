//! The program model: program.toml parsed, validated and expanded into the
//! node instances that will run, with their args and the edges (handles)
//! between them. Knows nothing of wasm or of how nodes are launched.

mod diagnostic;
mod load;
mod overrides;

use std::path::PathBuf;
use std::time::Duration;

pub use diagnostic::{Diagnostic, Origin, line_col};
pub use load::{load, load_str};
pub use overrides::Override;

/// The key under which a handle is encoded in a node's args JSON.
pub const HANDLE_KEY: &str = "$lp-handle";

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
}

/// Where a node's component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ComponentSource {
    /// A built component file.
    Wasm(PathBuf),
    /// A node crate directory, built for wasm32-wasip2 before launch.
    Crate(PathBuf),
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
    /// Index into [`Program::components`].
    pub component: usize,
    /// Args as a JSON object; handles as `{"$lp-handle": id}`.
    pub args: serde_json::Value,
    /// The nodes this node was given handles to.
    pub edges: Vec<Edge>,
    /// Whether the host calls the node's `run` export (tests may disable it).
    pub run_enabled: bool,
    /// Nodes with the same colocation name share one process under local_mp;
    /// a node without one gets a process of its own.
    pub colocate: Option<String>,
    /// How many times local_mp starts the node's process again after it
    /// fails (Launchpad's num_retries_on_failure); a colocation group gets
    /// the largest budget of its nodes.
    pub restarts: u32,
}

/// A handle given to a node: the target, the arg that carried it, and the
/// deadline of calls through it if it overrides the program's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub target: u32,
    pub arg: String,
    pub timeout: Option<Duration>,
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
