//! What ends a program by itself: the nodes whose runs it waits for (every
//! node with a `run`, unless program.toml's `wait_for` names them) having
//! finished, all of them or (`end_on = "first"`) the first. The supervisor
//! and the seeded scheduler both decide with [`EndRule`]; [`RunRecord`]
//! keeps which runs finished or failed for the test API to wait on.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Plan;
use crate::lock;

/// Which finished runs end the program.
pub(super) struct EndRule {
    /// Waited-for nodes whose run has not finished yet.
    waiting: BTreeSet<u32>,
    first: bool,
    reached: bool,
}

impl EndRule {
    pub fn new(plan: &Plan) -> EndRule {
        let with_run = plan.nodes_with_run();
        let end = &plan.program.end;
        let waiting = match &end.wait_for {
            None => with_run,
            // A node whose run a test disabled is not waited for.
            Some(list) => list
                .iter()
                .flat_map(|w| w.nodes.iter().copied())
                .filter(|id| with_run.contains(id))
                .collect(),
        };
        EndRule {
            waiting,
            first: end.first,
            reached: false,
        }
    }

    /// Node `id`'s run returned.
    pub fn run_finished(&mut self, id: u32) {
        if self.waiting.remove(&id) && (self.first || self.waiting.is_empty()) {
            self.reached = true;
        }
    }

    /// Whether the runs that end the program have finished.
    pub fn reached(&self) -> bool {
        self.reached
    }
}

/// Which nodes' runs have finished, which node failed first, and whether
/// the program has ended; shared between the supervisor and a test.
#[derive(Default)]
pub struct RunRecord {
    state: Mutex<RunState>,
    changed: Condvar,
}

#[derive(Default)]
struct RunState {
    finished: BTreeSet<u32>,
    failed: Option<(u32, String)>,
    ended: bool,
}

/// Why [`RunRecord::wait`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum RunsWaited {
    /// The runs waited for have finished (all, or with `first` one).
    Finished,
    /// This node failed first (its error).
    Failed(u32, String),
    /// The program ended first.
    Ended,
    TimedOut,
}

impl RunRecord {
    /// Node `id`'s run returned. Runs that return after a node has failed
    /// (ending as the program stops) do not count.
    pub(super) fn finished(&self, id: u32) {
        let mut state = lock(&self.state);
        if state.failed.is_none() {
            state.finished.insert(id);
        }
        drop(state);
        self.changed.notify_all();
    }

    pub(super) fn failed(&self, id: u32, error: &str) {
        lock(&self.state)
            .failed
            .get_or_insert_with(|| (id, error.to_string()));
        self.changed.notify_all();
    }

    pub(super) fn ended(&self) {
        lock(&self.state).ended = true;
        self.changed.notify_all();
    }

    /// Wait until the runs of `nodes` have finished (all of them, or with
    /// `first` any one), a node fails, the program ends, or `timeout` passes.
    pub fn wait(&self, nodes: &[u32], first: bool, timeout: Duration) -> RunsWaited {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            let done = |id: &u32| state.finished.contains(id);
            if (first && nodes.iter().any(done)) || (!first && nodes.iter().all(done)) {
                return RunsWaited::Finished;
            }
            if let Some((id, error)) = &state.failed {
                return RunsWaited::Failed(*id, error.clone());
            }
            if state.ended {
                return RunsWaited::Ended;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return RunsWaited::TimedOut;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
