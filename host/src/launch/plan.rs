//! Program → launch plan: build node crates, load (cached) components, read
//! their interfaces, refuse anything that would fail at run time (unknown
//! imports, malformed clients, type-mismatched edges), and link each
//! component once for all its replicas. [`Plan::load`] is the one path
//! from a program.toml (and its `--set`s) to a plan.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};

use crate::builder::build_node_crate;
use wasmtime::component::types::Type;

use crate::courier::{FuncTable, Signature, TypedWire, check_client_shape, check_edge};
use crate::node::PreparedComponent;
use crate::node::typed::shape_for;
use crate::program::{self, ComponentSource, Diagnostic, Override, Program};
use crate::program::{NodeKind, NodeSpec};
use crate::sandbox::{NodeInterface, Sandbox, inspect};

/// A program ready to launch.
pub struct Plan {
    pub program: Program,
    pub sandbox: Arc<Sandbox>,
    pub funcs: Arc<FuncTable>,
    /// One per [`Program::components`].
    pub components: Vec<Arc<PreparedComponent>>,
    /// The component file each came from.
    pub files: Vec<PathBuf>,
    /// The interface of the program's replay nodes, if it has any.
    pub replay_interface: Option<NodeInterface>,
}

/// How [`Plan::load`] loads a program and makes its sandbox.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Where compiled components are cached (`None`: `$LP_CACHE_DIR`, else
    /// `~/.cache/lp`).
    pub cache_dir: Option<PathBuf>,
    /// A fuel-counting engine, for seeded runs.
    pub seeded: bool,
    /// Neither read nor write compiled components in the cache.
    pub no_cache: bool,
    /// Nodes (instances or entries) whose `run` is not called; each must
    /// name at least one node.
    pub run_disabled: Vec<String>,
    /// Plan in this sandbox instead of a new one (its engine and cache
    /// shared with other programs); `cache_dir`, `seeded` and `no_cache`
    /// are then its own.
    pub sandbox: Option<Arc<Sandbox>>,
}

/// Why [`Plan::load`] could not make a plan.
#[derive(Debug)]
pub enum LoadError {
    /// program.toml (or a `--set`) is wrong: nothing was built.
    Program(Diagnostic),
    /// The program loaded but cannot be planned: a run to disable names no
    /// node, the sandbox cannot be made, or a component or edge is refused.
    Plan {
        program: Box<Program>,
        error: anyhow::Error,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Program(diagnostic) => write!(f, "{diagnostic}"),
            LoadError::Plan { error, .. } => write!(f, "{error:#}"),
        }
    }
}

/// Into the error of the one or the other stage, so a `Diagnostic` stays
/// one (check and run report it with its line and column).
impl From<LoadError> for anyhow::Error {
    fn from(e: LoadError) -> anyhow::Error {
        match e {
            LoadError::Program(diagnostic) => anyhow::Error::new(diagnostic),
            LoadError::Plan { error, .. } => error,
        }
    }
}

impl Plan {
    /// Load the program at `path` with `overrides`, disable the runs
    /// `options` names, make its sandbox and plan it: the one way every
    /// command, the test API and a worker process get a plan.
    pub fn load(
        path: &Path,
        overrides: &[Override],
        options: &LoadOptions,
    ) -> Result<Plan, LoadError> {
        let mut program = program::load(path, overrides).map_err(LoadError::Program)?;
        let refused = |program, error| LoadError::Plan {
            program: Box::new(program),
            error,
        };
        for name in &options.run_disabled {
            if program.disable_run(name) == 0 {
                let names: Vec<&str> = program.nodes.iter().map(|n| n.name.as_str()).collect();
                let error = anyhow!(
                    "cannot disable run of `{name}`: the program has no such node\n  help: nodes are {}",
                    names.join(", ")
                );
                return Err(refused(program, error));
            }
        }
        let sandbox = match &options.sandbox {
            Some(sandbox) => sandbox.clone(),
            None => {
                match Sandbox::configured(
                    options.cache_dir.clone(),
                    options.seeded,
                    program.stack_kib,
                ) {
                    Ok(sandbox) => {
                        if options.no_cache {
                            sandbox.cache().disable();
                        }
                        Arc::new(sandbox)
                    }
                    Err(error) => return Err(refused(program, error)),
                }
            }
        };
        match prepare(&program, &sandbox) {
            Ok(prepared) => Ok(prepared.into_plan(program, sandbox)),
            Err(error) => Err(refused(program, error)),
        }
    }
}

impl Plan {
    /// The ids of the nodes whose `run` will be called.
    pub(crate) fn nodes_with_run(&self) -> BTreeSet<u32> {
        self.program
            .nodes
            .iter()
            .filter(|n| n.run_enabled && self.interface_of(n).has_run)
            .map(|n| n.id)
            .collect()
    }

    /// What node `node` runs exports and imports.
    pub fn interface_of(&self, node: &NodeSpec) -> &NodeInterface {
        interface_of(
            node,
            |index| &self.components[index].interface,
            self.replay_interface.as_ref(),
        )
    }
}

/// The interface of `node`: its component's (`component` finds it by
/// index), or the replay's (made whenever the program has a replay node).
fn interface_of<'a>(
    node: &NodeSpec,
    component: impl FnOnce(usize) -> &'a NodeInterface,
    replay: Option<&'a NodeInterface>,
) -> &'a NodeInterface {
    match node.kind {
        NodeKind::Component(index) => component(index),
        NodeKind::Replay(_) => replay.expect("a plan with replay nodes has their interface"),
    }
}

/// Build, load and check everything `program` needs.
pub fn plan(program: Program, sandbox: Arc<Sandbox>) -> Result<Plan> {
    Ok(prepare(&program, &sandbox)?.into_plan(program, sandbox))
}

/// What [`prepare`] makes of a program.
struct Prepared {
    funcs: FuncTable,
    components: Vec<Arc<PreparedComponent>>,
    files: Vec<PathBuf>,
    replay_interface: Option<NodeInterface>,
}

impl Prepared {
    fn into_plan(self, program: Program, sandbox: Arc<Sandbox>) -> Plan {
        Plan {
            program,
            sandbox,
            funcs: Arc::new(self.funcs),
            components: self.components,
            files: self.files,
            replay_interface: self.replay_interface,
        }
    }
}

/// The function table, linked components, component files and replay
/// interface of a plan of `program`.
fn prepare(program: &Program, sandbox: &Sandbox) -> Result<Prepared> {
    let started = std::time::Instant::now();
    let mut files = Vec::new();
    for source in &program.components {
        files.push(match source {
            ComponentSource::Wasm(path) => path.clone(),
            ComponentSource::Crate(dir) => build_node_crate(dir)?,
            ComponentSource::Script {
                language,
                app,
                world,
                wit,
            } => {
                let cache = sandbox.cache();
                let cache = cache.usable().then(|| cache.dir());
                crate::script_nodes::build_script_node(
                    *language,
                    app,
                    world,
                    wit.as_deref(),
                    cache,
                )?
            }
        });
    }

    tracing::debug!("components built in {:?}", started.elapsed());
    let has_replay = program
        .nodes
        .iter()
        .any(|n| matches!(n.kind, NodeKind::Replay(_)));
    let replay_interface = match has_replay {
        true => Some(crate::replay::interface(sandbox.engine())?),
        false => None,
    };
    let mut loaded = Vec::new();
    for (file, source) in files.iter().zip(&program.components) {
        // A built node is named by its sources, not by its cache entry.
        let shown = match source {
            ComponentSource::Script { app, .. } => app.as_path(),
            _ => file.as_path(),
        };
        let component = sandbox.load_as(file, shown)?;
        let interface = inspect(sandbox.engine(), &component);
        loaded.push((component, interface));
    }

    // Per component: what it imports that nobody provides, and its clients'
    // shapes; named after the first node that uses it.
    for (index, (_, interface)) in loaded.iter().enumerate() {
        let Some(node) = program.nodes.iter().find(|n| n.component() == Some(index)) else {
            continue;
        };
        if !interface.has_run && interface.services.is_empty() {
            bail!(
                "node {} ({}) is not an lp node: it exports neither `run` (lp:node/lifecycle or lp:node/blocking-lifecycle) nor any interface to call\n  help: build it for a world that includes lp:node/node or lp:node/node-with-run and exports what the node does",
                node.name,
                files[index].display()
            );
        }
        if let Some(import) = interface.unknown_imports.first() {
            bail!(
                "node {} ({}) imports `{import}`, which lp-host does not provide\n  help: a node may import lp:node/runtime, lp:node/types, WASI, and courier client interfaces named `<service>-client`",
                node.name,
                files[index].display()
            );
        }
        for client in &interface.clients {
            check_client_shape(client).map_err(|e| anyhow::anyhow!("node {}: {e}", node.name))?;
        }
    }

    let interface_of =
        |node: &NodeSpec| interface_of(node, |index| &loaded[index].1, replay_interface.as_ref());
    for node in &program.nodes {
        for edge in &node.edges {
            let target = &program.nodes[edge.target as usize];
            check_edge(
                &node.name,
                interface_of(node),
                &target.name,
                interface_of(target),
                &edge.arg,
            )
            .map_err(|e| {
                // Point at the handle in program.toml (or the `--set`).
                anyhow::Error::new(Diagnostic::at(&program.file, &edge.place, e).help(
                    "make the caller's client interface match the target's export, then rebuild both",
                ))
            })?;
        }
    }

    // A node waited for must have a run to finish.
    for wait in program.end.wait_for.iter().flatten() {
        let mut nodes = wait.nodes.iter().map(|&id| &program.nodes[id as usize]);
        if let Some(node) = nodes.find(|n| !interface_of(n).has_run) {
            return Err(anyhow::Error::new(
                Diagnostic::at(
                    &program.file,
                    &wait.place,
                    format!(
                        "wait_for names {:?}, but node {} has no `run`, so it never finishes",
                        wait.name, node.name
                    ),
                )
                .help("wait for nodes whose component exports run (lp:node/lifecycle or lp:node/blocking-lifecycle); a service ends when the program does"),
            ));
        }
    }

    tracing::debug!(
        "components loaded and checked after {:?}",
        started.elapsed()
    );
    let mut funcs = FuncTable::default();
    for (_, interface) in &loaded {
        for client in &interface.clients {
            for f in &client.functions {
                funcs.intern(&client.service, &f.name, signature_of(&client.service, f));
            }
        }
    }
    // Every exported function too (in the same order in every process), so
    // a launcher or a test can call any node, not only through a client.
    let interfaces = loaded.iter().map(|(_, i)| i).chain(&replay_interface);
    for interface in interfaces {
        for service in &interface.services {
            for f in &service.functions {
                funcs.intern(&service.name, &f.name, export_signature(&service.name, f));
            }
        }
    }
    let mut components = Vec::new();
    for ((component, interface), file) in loaded.into_iter().zip(&files) {
        let prepared = PreparedComponent::new(sandbox.engine(), &component, interface, &funcs)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot link component {}: {e:#}\n  help: a node may import lp:node/runtime, lp:node/types, WASI 0.2 (cli, clocks, random, filesystem, sockets) and courier client interfaces named `<service>-client`",
                    file.display()
                )
            })?;
        components.push(Arc::new(prepared));
    }
    Ok(Prepared {
        funcs,
        components,
        files,
        replay_interface,
    })
}

/// How a client function of `service` crosses processes: its arguments
/// after the handle, the ok type of its `result<T, call-error>`, its typed
/// encoding.
fn signature_of(service: &str, f: &crate::sandbox::Function) -> Signature {
    let args: Vec<Type> = f.params().into_iter().skip(1).map(|(_, t)| t).collect();
    let result = match f.results().first() {
        Some(Type::Result(r)) => r.ok(),
        _ => None,
    };
    signature(service, args, result)
}

/// The same for an exported function, called directly.
fn export_signature(service: &str, f: &crate::sandbox::Function) -> Signature {
    let args: Vec<Type> = f.params().into_iter().map(|(_, t)| t).collect();
    signature(service, args, f.results().first().cloned())
}

/// A function's typed encoding: the replay service's one wire, else a
/// common shape's, if it has one.
fn signature(service: &str, args: Vec<Type>, result: Option<Type>) -> Signature {
    let typed = crate::replay::wire(service).or_else(|| {
        shape_for(&args, result.as_ref()).map(|shape| shape as std::sync::Arc<dyn TypedWire>)
    });
    Signature {
        args,
        result,
        typed,
    }
}
