//! Starting a launch's worker processes, the one seam between the
//! multi-process launch (`launch::processes`) and the engine that runs
//! processes: this machine ([`local`]), the agents that joined a
//! multi-host launch ([`agents`]); a cluster engine is one more module.

pub mod agents;
pub mod local;

use std::sync::Arc;

use anyhow::Result;

use super::worker::WorkerSpec;

/// Starts worker processes.
pub trait Spawner: Send + Sync {
    /// Start a worker process that runs as `spec` says (its `worker` and
    /// `generation` say which start of which worker it is).
    fn start(&self, spec: &WorkerSpec) -> Result<Arc<dyn RunningWorker>>;
}

/// A worker process that was started.
pub trait RunningWorker: Send + Sync {
    /// Where it runs, for messages: `pid 123`, `pid 123 on agent 1 (10.0.0.2)`.
    fn describe(&self) -> String;

    /// Kill it now (SIGKILL); nothing once it has exited.
    fn kill(&self);

    /// Block the calling thread until it has exited, and say how.
    fn wait(&self) -> Exit;
}

/// How a worker process ended.
#[derive(Clone, Debug)]
pub struct Exit {
    /// It exited with status 0.
    pub success: bool,
    /// e.g. "exited with code 1", "was killed by signal 9 (SIGKILL)".
    pub how: String,
}
