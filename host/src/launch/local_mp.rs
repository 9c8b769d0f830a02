//! local_mp: every node in a worker process of its own on this machine (or
//! one per colocation group, its nodes each a task there), courier calls
//! between processes over Unix sockets in a private run directory, the
//! framed transport by default. The processes are started as children of
//! the launcher ([`LocalProcesses`]) and run as `launch::processes` says;
//! they die with the launcher (PR_SET_PDEATHSIG and the control stream)
//! and then remove the run directory.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::placement;
use super::processes::{self, Network};
use super::start::{RunningProgram, timer_runtime};
use super::worker::{Peers, WorkerSpec};
use super::workers::local::{LocalProcesses, worker_exe};
use super::{LaunchOptions, Plan, Ports, run_dir};
use crate::courier::{Endpoint, Secret, Security};

/// The `--set` overrides that make a worker load each entry's component
/// as built already: `<entry>.component=FILE`, FILE as `file_of` names
/// the component's index (a built-in kind has none).
pub fn component_overrides(
    plan: &Plan,
    file_of: impl Fn(usize) -> Result<String>,
) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut overrides = Vec::new();
    for node in &plan.program.nodes {
        if let Some(component) = node.component()
            && seen.insert(&node.entry)
        {
            let file = file_of(component)?;
            overrides.push(format!("{}.component={:?}", node.entry, file));
        }
    }
    Ok(overrides)
}

/// The nodes whose `run` is disabled (a test disabled it), by name.
pub fn run_disabled(plan: &Plan) -> Vec<String> {
    plan.program
        .nodes
        .iter()
        .filter(|n| !n.run_enabled)
        .map(|n| n.name.clone())
        .collect()
}

/// Start every node of `plan` in worker processes on this machine.
pub fn launch(
    plan: &Plan,
    options: LaunchOptions,
    cache_dir: Option<PathBuf>,
) -> Result<RunningProgram> {
    let program = &plan.program;
    let ports = Ports::allocate(program)?;
    let dir = run_dir::create()?;
    let processes: Vec<Vec<u32>> = placement::processes(program)
        .into_iter()
        .map(|p| p.nodes)
        .collect();
    let mut sockets = vec![Endpoint::Unix(PathBuf::new()); program.nodes.len()];
    for (k, nodes) in processes.iter().enumerate() {
        for &id in nodes {
            sockets[id as usize] = Endpoint::Unix(dir.path().join(format!("w{k}.sock")));
        }
    }
    // Workers load the same program, with the components already built.
    let mut overrides = program.overrides.clone();
    overrides.extend(component_overrides(plan, |component| {
        Ok(plan.files[component]
            .canonicalize()?
            .to_string_lossy()
            .into_owned())
    })?);
    let run_disabled = run_disabled(plan);
    let control = Endpoint::Unix(dir.path().join("control.sock"));
    // Only the members of this launch may call its endpoints.
    let secret = Secret::generate()?;
    let program_file = program.file.canonicalize()?;
    let specs = processes
        .iter()
        .enumerate()
        .map(|(k, nodes)| WorkerSpec {
            worker: k as u32,
            generation: 0,
            program: program_file.clone(),
            overrides: overrides.clone(),
            run_disabled: run_disabled.clone(),
            nodes: nodes.clone(),
            listen: Endpoint::Unix(dir.path().join(format!("w{k}.sock"))),
            peers: Peers::Fixed(sockets.clone()),
            control: control.clone(),
            run_dir: dir.path().to_path_buf(),
            cache_dir: cache_dir.clone(),
            use_cache: plan.sandbox.cache().usable(),
            transport: options.transport,
            spin: options.spin,
            secret: secret.clone(),
            launcher: std::process::id(),
            credentials: None,
            ports: ports.clone(),
        })
        .collect();
    let runtime = timer_runtime()?;
    let network = Network {
        control: runtime.block_on(async { control.bind() })?,
        security: Security::plain(),
        transport: options.transport,
        peers: Peers::Fixed(sockets),
        secret,
    };
    let spawner = Arc::new(LocalProcesses::new(
        worker_exe(&options)?,
        dir.path().to_path_buf(),
    ));
    processes::launch(plan, options, runtime, specs, spawner, network, move || {
        drop(dir)
    })
}
