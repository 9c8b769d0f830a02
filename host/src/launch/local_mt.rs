//! local_mt: every node of the program in this process, each with its own
//! store, running as its own task on a pool of worker threads (one per core
//! by default); calls between them go through in-process mailboxes. A
//! supervisor thread watches the nodes and ends the program.

use std::sync::Arc;
use std::sync::mpsc;

use anyhow::{Context as _, Result};

use super::pool::Pool;
use super::start::{RunningProgram, Wiring, start_nodes, timer_runtime};
use super::supervisor;
use super::{LaunchOptions, Plan, Ports};
use crate::courier::Router;
use crate::node::Control;
use crate::stop::StopSignal;

/// Start every node of `plan` as a task on the worker pool.
pub fn launch(plan: &Plan, options: LaunchOptions) -> Result<RunningProgram> {
    let program = &plan.program;
    let ports = Ports::allocate(program)?;
    let stop = Arc::new(StopSignal::new());
    let names: Vec<String> = program.nodes.iter().map(|n| n.name.clone()).collect();
    let (router, mailboxes) = Router::local(
        names,
        plan.funcs.clone(),
        stop.clone(),
        program.call_timeout,
    );
    let router = Arc::new(router);
    let control = Arc::new(Control::default());
    let timers = timer_runtime()?;
    let (events_tx, events) = mpsc::channel();
    let pool = Pool::new(options.threads, options.spin, timers.handle().clone())
        .context("cannot start the node worker threads")?;
    let wiring = Wiring {
        router: &router,
        control: &control,
        events: &events_tx,
        output: &options.output,
        hooks: Default::default(),
        ports: &ports,
        epoch_tick: supervisor::EPOCH_TICK,
        restart_in_process: true,
    };
    start_nodes(
        plan,
        mailboxes.into_iter().map(Some).collect(),
        wiring,
        |node| pool.spawn(node),
    );
    drop(events_tx);

    supervisor::start(
        plan,
        events,
        control,
        stop,
        options.termination_notice,
        router,
        // Nodes are tasks here: an interrupted one ends at its next poll.
        || {},
        move || {
            pool.close();
            drop(timers);
        },
    )
}
