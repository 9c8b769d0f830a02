//! The replay node itself: host code that answers each request from its
//! `lp_replay::Replay` behind the same mailbox, events and stop every node
//! has ([`serve_replay`]). A call the rate limiter holds waits here until it
//! can go on, its deadline passes (it is withdrawn, having changed nothing,
//! and answered timed-out), or the program stops. How calling nodes reach
//! it: `client`.

mod client;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context as _, Result, anyhow};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{NodeContext, NodeEvent, NodeLaunch};
use crate::courier::{CallError, Payload, Request};
use crate::output::{LogLevel, Stream};
use crate::program::ReplayConfig;
use crate::replay::wire::{ReplayCall, ReplayReply};
use crate::stop::StopSignal;
use lp_replay::{CheckpointSummary, Replay};

pub(super) use client::link_client;

/// Where replay node `name` keeps its checkpoint in `dir`.
fn checkpoint_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.lpreplay", name.replace('/', "-")))
}

/// Run a replay node until the program shuts it down: restore its
/// checkpoint (if it has one and may), serve every call, checkpoint on the
/// way out (if it should).
pub(super) async fn serve_replay(config: &ReplayConfig, launch: &mut NodeLaunch) -> Result<()> {
    let NodeLaunch {
        node,
        mailbox,
        control,
        events,
        ..
    } = launch;
    let seeded = node.hooks.seed(node.id);
    let replay = Replay::new(config.tables.clone(), seeded.unwrap_or_else(fresh_seed))
        .map_err(|e| anyhow!("replay node {}: {e}", node.name))?;
    let checkpoint = config.checkpoint.as_ref().map(|c| {
        let writer = Checkpointer {
            path: checkpoint_file(&c.dir, &node.name),
            turn: tokio::sync::Mutex::new(()),
            off_task: seeded.is_none(),
        };
        (c, writer)
    });
    if let Some((settings, writer)) = &checkpoint {
        let dir = &settings.dir;
        crate::files::create_private_dir(dir)
            .with_context(|| format!("cannot create the checkpoint directory {}", dir.display()))?;
        let path = &writer.path;
        if settings.restore && path.exists() {
            let summary = replay
                .restore(path)
                .map_err(|e| anyhow!("{e}"))
                .context("cannot restore the replay's checkpoint")?;
            log(
                node,
                LogLevel::Info,
                &format!(
                    "restored {} items of {} tables from {}",
                    summary.items,
                    summary.tables,
                    path.display()
                ),
            );
        }
    }
    let _ = events.send(NodeEvent::Started(node.id));

    let replay = &replay;
    let node: &NodeContext = node;
    let writer = checkpoint.as_ref().map(|(_, writer)| writer);
    let mut calls: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send + '_>>> =
        FuturesUnordered::new();
    let every = checkpoint.as_ref().and_then(|(c, _)| c.every);
    let mut ticks = every.map(|every| {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let mut shutdown = std::pin::pin!(control.shutdown.wait());
    let mut killed = std::pin::pin!(control.kill.wait());
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = &mut killed => break,
            request = mailbox.recv() => match request {
                Some(request) => calls.push(Box::pin(serve_call(
                    replay,
                    writer,
                    request,
                    node.router.stop_signal(),
                ))),
                None => break,
            },
            Some(()) = calls.next(), if !calls.is_empty() => {}
            _ = async { ticks.as_mut().expect("guarded").tick().await }, if ticks.is_some() => {
                if let Some(writer) = writer {
                    calls.push(Box::pin(async move {
                        writer.write_logged(node, replay, "periodic").await;
                    }));
                }
            }
        }
    }
    // Calls still waiting are dropped: their callers hear the program is
    // stopping.
    drop(calls);
    if let Some((settings, writer)) = &checkpoint
        && !control.kill.is_stopping()
    {
        if settings.at_stop {
            writer.write_logged(node, replay, "at stop").await;
        }
        // A checkpoint still being written (periodic, or asked for) is
        // let finish, unless the termination notice runs out first.
        let killed = control.kill.wait();
        tokio::select! {
            () = writer.written(replay) => {}
            () = killed => {}
        }
    }
    Ok(())
}

/// Writes a replay node's checkpoints, one after another (in the order
/// they were asked for), each from a snapshot taken under the replay's
/// lock and written off the node's task, so the replay goes on serving
/// while a large checkpoint is written. (In a seeded run it is written on
/// the task: a thread of its own would make the run's order depend on the
/// machine.)
struct Checkpointer {
    path: PathBuf,
    turn: tokio::sync::Mutex<()>,
    off_task: bool,
}

impl Checkpointer {
    async fn write(&self, replay: &Replay) -> Result<CheckpointSummary, lp_replay::ReplayError> {
        let _turn = self.turn.lock().await;
        let snapshot = replay.snapshot();
        if !self.off_task {
            return snapshot.write(&self.path);
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || snapshot.write(&path))
            .await
            .unwrap_or_else(|e| {
                Err(lp_replay::ReplayError::Checkpoint(format!(
                    "writing the checkpoint failed: {e}"
                )))
            })
    }

    /// Once no checkpoint of `replay` is being written.
    async fn written(&self, replay: &Replay) {
        if !self.off_task {
            return;
        }
        let waiting = replay.checkpoint_waiter();
        let _ = tokio::task::spawn_blocking(waiting).await;
    }

    /// Checkpoint now, saying so (or why not) in the node's log.
    async fn write_logged(&self, node: &NodeContext, replay: &Replay, why: &str) {
        match self.write(replay).await {
            Ok(summary) => log(
                node,
                LogLevel::Info,
                &format!(
                    "checkpoint ({why}): {} items of {} tables, {} bytes, in {}",
                    summary.items,
                    summary.tables,
                    summary.bytes,
                    summary.path.display()
                ),
            ),
            Err(e) => log(
                node,
                LogLevel::Error,
                &format!("checkpoint ({why}) failed: {e}"),
            ),
        }
    }
}

/// Answer one call. A call the rate limiter holds is withdrawn (having
/// changed nothing) and answered `TimedOut` at its deadline, dropped if its
/// caller stops waiting, and answered `stopping` when the program stops, so
/// a node waiting on a full table is not left waiting until the
/// termination notice runs out. An operation that can go on is carried out
/// even if the deadline passes in the same instant: the answer, not the
/// caller's clock, says what happened.
async fn serve_call(
    replay: &Replay,
    writer: Option<&Checkpointer>,
    request: Request,
    stop: &StopSignal,
) {
    let Request {
        args, mut reply, ..
    } = request;
    if reply.is_closed() {
        return;
    }
    let call = match args {
        Payload::Typed(value) => value.downcast::<ReplayCall>().ok(),
        Payload::Vals(_) => None,
    };
    let Some(call) = call else {
        let _ = reply.send(Err(CallError::Unreachable(
            "a replay node is called through lp:replay/replay-client".into(),
        )));
        return;
    };
    let ReplayCall { request, within } = *call;
    let deadline = async {
        match within {
            Some(within) => tokio::time::sleep(within).await,
            None => std::future::pending().await,
        }
    };
    let response = async {
        match (request, writer) {
            (lp_replay::Request::Checkpoint, Some(writer)) => lp_replay::Response::Checkpointed(
                writer
                    .write(replay)
                    .await
                    .map(|summary| summary.path.display().to_string()),
            ),
            (request, _) => replay.handle(request).await,
        }
    };
    let answer = tokio::select! {
        biased;
        response = response => ReplayReply::Done(response),
        () = reply.closed() => return,
        () = stop.wait() => {
            let _ = reply.send(Err(CallError::Stopping));
            return;
        }
        () = deadline => ReplayReply::TimedOut,
    };
    let _ = reply.send(Ok(Payload::Typed(Box::new(answer))));
}

fn log(node: &NodeContext, level: LogLevel, message: &str) {
    node.output.line(&node.name, Stream::Log(level), message);
}

/// A seed nobody can predict, for a run that is not seeded.
fn fresh_seed() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()))
}
