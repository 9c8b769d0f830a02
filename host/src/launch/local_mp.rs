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

/// What every worker of `plan` loads: the program's `--set` overrides, the
/// components already built (`component` of each entry, as `files` says),
/// and the nodes whose runs are disabled.
pub fn worker_overrides(
    plan: &Plan,
    component_file: impl Fn(usize) -> Result<String>,
) -> Result<(Vec<String>, Vec<String>)> {
    let program = &plan.program;
    let mut overrides = program.overrides.clone();
    let mut seen = HashSet::new();
    for node in &program.nodes {
        if seen.insert(&node.entry) {
            let file = component_file(node.component)?;
            overrides.push(format!("{}.component={:?}", node.entry, file));
        }
    }
    let run_disabled = program
        .nodes
        .iter()
        .filter(|n| !n.run_enabled)
        .map(|n| n.name.clone())
        .collect();
    Ok((overrides, run_disabled))
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
    let (overrides, run_disabled) = worker_overrides(plan, |component| {
        Ok(plan.files[component]
            .canonicalize()?
            .to_string_lossy()
            .into_owned())
    })?;
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
