//! lp-host: runs lp programs, graphs of WebAssembly component nodes joined
//! by typed courier calls.
//!
//! Data flows one way: program.toml → [`program::Program`] (validated,
//! expanded) → [`launch::Plan`] (components built, loaded, type-checked,
//! linked) → running nodes ([`launch::local_mt`]).

pub mod bench;
pub mod builder;
pub mod check;
pub mod cli;
pub mod console;
pub mod courier;
pub mod credit;
pub mod explore;
pub(crate) mod files;
pub mod fuzzing;
pub mod k8s;
pub mod launch;
pub mod node;
pub mod output;
pub mod program;
pub mod proto;
pub mod replay;
pub mod sandbox;
pub mod scaffold;
pub mod script_nodes;
pub mod signals;
pub mod stop;
pub mod terminal;
pub mod testing;
pub mod trust;

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

/// Lock a mutex, going on past a poisoned one (a panicked holder cannot
/// leave these maps or buffers half-updated in a way that matters more than
/// stopping).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub use launch::{EndReason, LaunchOptions, LaunchType, Outcome};
pub use output::Output;
pub use program::{Override, Program};
pub use sandbox::Sandbox;

/// Load, plan and run the program at `path` to its end.
pub fn run(
    path: &Path,
    overrides: &[Override],
    sandbox: Arc<Sandbox>,
    options: LaunchOptions,
) -> Result<Outcome> {
    let loading = launch::LoadOptions {
        sandbox: Some(sandbox),
        ..launch::LoadOptions::default()
    };
    let plan = launch::Plan::load(path, overrides, &loading)?;
    let running = launch::local_mt::launch(&plan, options)?;
    Ok(running.wait())
}
