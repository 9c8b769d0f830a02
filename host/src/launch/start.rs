//! What every launch type shares: the handle on a running program, how a
//! launch wires its nodes (router, control, events, output), and
//! starting each node of a plan as a task on whatever runs it (the worker
//! pool, a worker process's runtime, the seeded scheduler).

use std::sync::Arc;
use std::sync::mpsc;

use anyhow::{Context as _, Result};

use super::end::RunRecord;
use super::{EndReason, NodeFailure, Outcome, Plan, Ports, ProgramHandle};
use crate::courier::{Mailbox, Router};
use crate::node::hooks::Hooks;
use crate::node::{Control, NodeBody, NodeContext, NodeEvent, NodeLaunch, run_node};
use crate::output::Output;
use crate::program::NodeKind;

/// A running program (any launch type).
pub struct RunningProgram {
    handle: ProgramHandle,
    supervisor: std::thread::JoinHandle<Outcome>,
    /// Reaches every node from the launcher (for tests).
    router: Arc<Router>,
    /// Which runs finished (for tests).
    runs: Arc<RunRecord>,
}

impl RunningProgram {
    pub(super) fn new(
        handle: ProgramHandle,
        supervisor: std::thread::JoinHandle<Outcome>,
        router: Arc<Router>,
        runs: Arc<RunRecord>,
    ) -> Self {
        RunningProgram {
            handle,
            supervisor,
            router,
            runs,
        }
    }

    /// Which nodes' runs have finished or failed so far.
    pub fn runs(&self) -> Arc<RunRecord> {
        self.runs.clone()
    }

    pub fn handle(&self) -> ProgramHandle {
        self.handle.clone()
    }

    /// Calls any node of the program by id.
    pub fn router(&self) -> Arc<Router> {
        self.router.clone()
    }

    /// Wait for the program to end.
    pub fn wait(self) -> Outcome {
        self.supervisor.join().unwrap_or_else(|_| Outcome {
            reason: EndReason::Failed,
            failures: vec![NodeFailure {
                node: "<supervisor>".into(),
                error: "the supervisor panicked".into(),
            }],
            interrupted: Vec::new(),
        })
    }
}

/// The runtime for timers (call deadlines, `wait-for-stop` timeouts) and,
/// in worker processes, the gRPC transport.
pub(super) fn timer_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lp-io")
        .enable_all()
        .build()
        .context("cannot start the host's timer thread")
}

/// Start a node's task on a worker process's runtime, outside tokio's
/// cooperative budget. A node's task polls the host side of every call it
/// has in flight; under the budget (128 tokio operations a poll), once it is
/// spent every channel and lock those calls touch answers "not yet" and
/// wakes its call again, so the store's event loop polls waiting calls over
/// and over, more the more are in flight: one node awaiting 60,000 futures
/// took 19 s instead of 2. A node still yields: when it waits, and at
/// every epoch tick while its wasm computes.
pub(super) fn spawn_node(
    runtime: &tokio::runtime::Runtime,
    node: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) -> tokio::task::JoinHandle<()> {
    runtime.spawn(tokio::task::coop::unconstrained(node))
}

/// What every node of a launch shares: where calls go, the launcher's
/// signals, where it reports, where its output goes, and (seeded runs) the
/// hooks that give the run its choices and trace.
pub(super) struct Wiring<'a> {
    pub router: &'a Arc<Router>,
    pub control: &'a Arc<Control>,
    pub events: &'a mpsc::Sender<NodeEvent>,
    pub output: &'a Output,
    pub hooks: Hooks,
    /// The ports allocated for this launch (nodes' own and their peers').
    pub ports: &'a Ports,
    /// How often the engine's epoch ticks here (nodes count it for their
    /// CPU limit).
    pub epoch_tick: std::time::Duration,
    /// Whether a failed node is instantiated again here while its
    /// `restarts` last (not in a local_mp worker: its launcher restarts the
    /// process).
    pub restart_in_process: bool,
}

/// Start every node that has a mailbox here, each as a task handed to
/// `spawn` (the worker pool, a worker process's runtime, or the seeded
/// scheduler).
pub(super) fn start_nodes<R>(
    plan: &Plan,
    mailboxes: Vec<Option<Mailbox>>,
    wiring: Wiring<'_>,
    spawn: impl Fn(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> R,
) {
    let Wiring {
        router,
        control,
        events,
        output,
        hooks,
        ports,
        epoch_tick,
        restart_in_process,
    } = wiring;
    for (spec, mailbox) in plan.program.nodes.iter().zip(mailboxes) {
        let Some(mailbox) = mailbox else { continue };
        let mut allowed: Vec<u32> = spec.edges.iter().map(|e| e.target).collect();
        allowed.sort_unstable();
        allowed.dedup();
        let node = Arc::new(NodeContext {
            id: spec.id,
            name: spec.name.clone(),
            group: spec.group.clone(),
            index: spec.index,
            args: ports.args_of(spec).to_string(),
            allowed,
            router: router.clone(),
            output: output.clone(),
            log_credit: crate::credit::Credit::new(crate::sandbox::OUTPUT_CREDIT),
            hooks: hooks.clone(),
            grants: ports.grants_of(spec),
            limits: spec.limits,
            epoch_tick,
            last_words: Default::default(),
        });
        drop(spawn(Box::pin(run_node(NodeLaunch {
            node,
            body: match &spec.kind {
                NodeKind::Component(index) => NodeBody::Wasm(plan.components[*index].clone()),
                NodeKind::Replay(config) => NodeBody::Replay(config.clone()),
            },
            run_enabled: spec.run_enabled,
            mailbox,
            control: control.clone(),
            events: events.clone(),
            restarts: if restart_in_process { spec.restarts } else { 0 },
        }))));
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::{spawn_node, timer_runtime};

    #[test]
    fn a_node_task_in_a_worker_is_not_held_to_tokios_budget() {
        let runtime = timer_runtime().unwrap();
        // Far more ready tokio operations in one poll than the budget allows:
        // every one must go through at once.
        let node = spawn_node(
            &runtime,
            Box::pin(async {
                for i in 0..1_000 {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    tx.send(i).unwrap();
                    assert_eq!(rx.now_or_never(), Some(Ok(i)), "operation {i}");
                }
            }),
        );
        runtime.block_on(node).unwrap();
    }
}
