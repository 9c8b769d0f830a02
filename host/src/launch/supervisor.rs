//! The supervisor: watches what the nodes report, decides when the program
//! ends (a stop, the runs it waits for finished, a failure, Ctrl-C), gives running
//! nodes the termination notice, then shuts everything down and says how
//! the program ended. Used by every launch type; it only sees events and
//! signals, not where the nodes run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::end::{EndRule, RunRecord};
use super::start::RunningProgram;
use super::{EndReason, NodeFailure, Outcome, Plan, ProgramHandle};
use crate::courier::Router;
use crate::node::{Control, NodeEvent};
use crate::stop::StopSignal;

/// How often wasm is checked for interruption (epoch tick).
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long interrupted nodes get to exit before what hosts them is killed
/// (local_mp: their worker processes, with SIGKILL).
pub(super) const KILL_GRACE: Duration = Duration::from_secs(1);

/// Watch `plan`'s nodes through `events` on a thread of its own; once the
/// program has ended, `teardown` releases what the launch type started.
/// Nodes still there [`KILL_GRACE`] after they were interrupted (or at
/// once, at a second Ctrl-C) are ended by `force`, if the launch type can.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    plan: &Plan,
    events: mpsc::Receiver<NodeEvent>,
    control: Arc<Control>,
    stop: Arc<StopSignal>,
    notice: Option<Duration>,
    router: Arc<Router>,
    force: impl Fn() + Send + 'static,
    teardown: impl FnOnce() + Send + 'static,
) -> Result<RunningProgram> {
    let handle = ProgramHandle::new(stop);
    let runs = Arc::new(RunRecord::default());
    let supervisor = Supervisor {
        end: EndRule::new(plan),
        runs: runs.clone(),
        names: plan.program.nodes.iter().map(|n| n.name.clone()).collect(),
        with_run: plan.nodes_with_run(),
        events,
        control,
        handle: handle.clone(),
        notice,
        engine: plan.sandbox.engine().clone(),
        force: Box::new(force),
    };
    let thread = std::thread::Builder::new()
        .name("lp-supervisor".into())
        .spawn(move || {
            let outcome = supervisor.run();
            teardown();
            outcome
        })
        .context("cannot start the supervisor thread")?;
    Ok(RunningProgram::new(handle, thread, router, runs))
}

struct Supervisor {
    names: Vec<String>,
    /// Nodes whose `run` has not returned yet.
    with_run: BTreeSet<u32>,
    end: EndRule,
    runs: Arc<RunRecord>,
    events: mpsc::Receiver<NodeEvent>,
    control: Arc<Control>,
    handle: ProgramHandle,
    notice: Option<Duration>,
    engine: wasmtime::Engine,
    force: Box<dyn Fn() + Send>,
}

impl Supervisor {
    fn run(mut self) -> Outcome {
        let mut failures = Vec::new();
        let mut exited = 0;
        let mut reason = None;
        let mut stop_began: Option<Instant> = None;
        let mut interrupted = Vec::new();
        let mut last_tick = Instant::now();

        loop {
            match self.events.recv_timeout(EPOCH_TICK) {
                Ok(NodeEvent::Started(_)) => {}
                Ok(NodeEvent::RunFinished(id)) => {
                    self.with_run.remove(&id);
                    self.end.run_finished(id);
                    self.runs.finished(id);
                }
                Ok(NodeEvent::Failed(id, error)) => {
                    self.with_run.remove(&id);
                    self.runs.failed(id, &error);
                    if stop_began.is_none() || !self.control.kill.is_stopping() {
                        failures.push(NodeFailure {
                            node: self.names[id as usize].clone(),
                            error,
                        });
                        reason.get_or_insert(EndReason::Failed);
                    }
                    self.handle.stop();
                }
                Ok(NodeEvent::Exited(_)) => exited += 1,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= EPOCH_TICK {
                self.engine.increment_epoch();
                last_tick = Instant::now();
            }
            if exited == self.names.len() {
                break;
            }
            if self.end.reached() && !self.handle.stop.is_stopping() {
                reason.get_or_insert(EndReason::Finished);
                self.handle.stop();
            }
            if !self.handle.stop.is_stopping() {
                continue;
            }
            let began = *stop_began.get_or_insert_with(Instant::now);
            if self.handle.was_interrupted() {
                reason.get_or_insert(EndReason::Interrupted);
            }
            reason.get_or_insert(EndReason::Stopped);
            let expired = self.notice.is_some_and(|n| began.elapsed() >= n);
            if self.with_run.is_empty() {
                break;
            }
            if expired || self.handle.must_kill() {
                interrupted = self
                    .with_run
                    .iter()
                    .map(|&id| self.names[id as usize].clone())
                    .collect();
                self.control.kill.stop();
                break;
            }
        }

        self.control.shutdown.stop();
        self.handle.stop();
        // Wait for every node to exit, ticking the epoch so that wasm stuck
        // in a loop is interrupted; note failures reported meanwhile. The
        // wait is bounded: past the notice (or at a second Ctrl-C) nodes
        // are interrupted, and what still hosts them is then killed.
        let stop_began = stop_began.unwrap_or_else(Instant::now);
        let mut killed_at = self.control.kill.is_stopping().then(Instant::now);
        let mut forced = false;
        while exited < self.names.len() {
            match self.events.recv_timeout(Duration::from_millis(1)) {
                Ok(NodeEvent::Exited(_)) => exited += 1,
                Ok(NodeEvent::Failed(id, error)) => {
                    let name = &self.names[id as usize];
                    if !self.control.kill.is_stopping() && !interrupted.contains(name) {
                        failures.push(NodeFailure {
                            node: name.clone(),
                            error,
                        });
                    }
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => self.engine.increment_epoch(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let must_kill = self.handle.must_kill();
            if killed_at.is_none()
                && (must_kill || self.notice.is_some_and(|n| stop_began.elapsed() >= n))
            {
                self.control.kill.stop();
                killed_at = Some(Instant::now());
            }
            if !forced && killed_at.is_some_and(|at| must_kill || at.elapsed() >= KILL_GRACE) {
                forced = true;
                (self.force)();
            }
        }
        self.runs.ended();
        Outcome {
            reason: if failures.is_empty() {
                reason.unwrap_or(EndReason::Stopped)
            } else {
                EndReason::Failed
            },
            failures,
            interrupted,
        }
    }
}
