//! local_mt: every node of the program in this process, each with its own
//! store, running as its own task on a pool of worker threads (one per core
//! by default); calls between them go through in-process mailboxes. A
//! supervisor thread watches the nodes and ends the program.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::node::{Control, NodeContext, NodeEvent, NodeLaunch, run_node};
use super::pool::Pool;
use super::{EndReason, LaunchOptions, NodeFailure, Outcome, Plan, ProgramHandle};
use crate::courier::Router;
use crate::stop::StopSignal;

/// How often wasm is checked for interruption (epoch tick).
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A program running under local_mt.
pub struct RunningProgram {
    handle: ProgramHandle,
    supervisor: std::thread::JoinHandle<Outcome>,
}

impl RunningProgram {
    pub fn handle(&self) -> ProgramHandle {
        self.handle.clone()
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

/// Start every node of `plan` as a task on the worker pool.
pub fn launch(plan: &Plan, options: LaunchOptions) -> Result<RunningProgram> {
    let program = &plan.program;
    let stop = Arc::new(StopSignal::new());
    let names: Vec<String> = program.nodes.iter().map(|n| n.name.clone()).collect();
    let (router, mailboxes) = Router::local(
        names.clone(),
        plan.funcs.clone(),
        stop.clone(),
        program.call_timeout,
    );
    let router = Arc::new(router);
    let control = Arc::new(Control {
        shutdown: StopSignal::new(),
        kill: StopSignal::new(),
    });
    let timers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lp-timers")
        .enable_all()
        .build()
        .context("cannot start the host's timer thread")?;
    let pool = Pool::new(options.threads, options.spin, timers.handle().clone())
        .context("cannot start the node worker threads")?;
    let (events_tx, events) = mpsc::channel();

    let mut with_run = BTreeSet::new();
    for (spec, mailbox) in program.nodes.iter().zip(mailboxes) {
        let component = plan.components[spec.component].clone();
        if spec.run_enabled && component.interface.has_run {
            with_run.insert(spec.id);
        }
        let mut allowed: Vec<u32> = spec.edges.iter().map(|e| e.target).collect();
        allowed.sort_unstable();
        allowed.dedup();
        let node = Arc::new(NodeContext {
            id: spec.id,
            name: spec.name.clone(),
            group: spec.group.clone(),
            index: spec.index,
            args: spec.args.to_string(),
            allowed,
            router: router.clone(),
            output: options.output.clone(),
        });
        let launch = NodeLaunch {
            node,
            component,
            run_enabled: spec.run_enabled,
            mailbox,
            control: control.clone(),
            events: events_tx.clone(),
        };
        pool.spawn(run_node(launch));
    }
    drop(events_tx);

    let handle = ProgramHandle::new(stop.clone());
    let supervisor = Supervisor {
        names,
        with_run,
        events,
        control,
        handle: handle.clone(),
        notice: options.termination_notice,
        engine: plan.sandbox.engine().clone(),
    };
    let supervisor = std::thread::Builder::new()
        .name("lp-supervisor".into())
        .spawn(move || {
            let outcome = supervisor.run();
            pool.close();
            drop(timers);
            outcome
        })
        .context("cannot start the supervisor thread")?;
    Ok(RunningProgram { handle, supervisor })
}

struct Supervisor {
    names: Vec<String>,
    /// Nodes whose `run` has not returned yet.
    with_run: BTreeSet<u32>,
    events: mpsc::Receiver<NodeEvent>,
    control: Arc<Control>,
    handle: ProgramHandle,
    notice: Option<Duration>,
    engine: wasmtime::Engine,
}

impl Supervisor {
    fn run(mut self) -> Outcome {
        let had_runs = !self.with_run.is_empty();
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
                }
                Ok(NodeEvent::Failed(id, error)) => {
                    self.with_run.remove(&id);
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
            if had_runs && self.with_run.is_empty() && !self.handle.stop.is_stopping() {
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
        // in a loop is interrupted; note failures reported meanwhile.
        while exited < self.names.len() {
            let event = match self.events.recv_timeout(Duration::from_millis(1)) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    self.engine.increment_epoch();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let NodeEvent::Exited(_) = event {
                exited += 1;
            }
            if let NodeEvent::Failed(id, error) = event {
                let name = &self.names[id as usize];
                if !self.control.kill.is_stopping() && !interrupted.contains(name) {
                    failures.push(NodeFailure {
                        node: name.clone(),
                        error,
                    });
                }
            }
        }
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
