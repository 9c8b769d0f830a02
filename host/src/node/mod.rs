//! One running node: its store, the host functions it imports (runtime and
//! courier clients), and the loop that runs its `run` while serving calls
//! from its mailbox. It knows nothing of launchers: a launch type hands it
//! a mailbox, a router, its [`hooks::Hooks`] and a channel for its events.

pub mod hooks;
mod last_words;
mod limits;
mod replay;
pub(crate) mod typed;

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use slab::Slab;
use tokio::sync::oneshot;
use wasmtime::component::types::Type;
use wasmtime::component::{
    Accessor, Component, ComponentExportIndex, Func, InstancePre, Linker, ResourceTable, Val,
};
use wasmtime::{AsContext, Engine, Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::courier::{CallError, FuncKey, FuncTable, Mailbox, Payload, Reply, Request, Router};
use crate::credit::Credit;
use crate::lock;
use crate::output::{LogLevel, Output, Stream};
use crate::program::{Grants, Limits, NetUse};
use crate::sandbox::interface::{
    LIFECYCLE_INTERFACES, RUNTIME_INTERFACE, TYPES_INTERFACE, WAITING_INTERFACE,
};
use crate::sandbox::{LineWriter, NodeInterface};
use crate::stop::StopSignal;
use hooks::Hooks;
use last_words::LastWords;
use limits::NodeLimiter;
use typed::{Bound, Shape, shape_for};

/// A served function: where it is, and its typed shape if it has one.
#[derive(Clone)]
struct Export {
    index: ComponentExportIndex,
    shape: Option<Arc<dyn Shape>>,
}

/// A served function bound in one node's store.
struct Served {
    func: Func,
    results: usize,
    typed: Option<(Arc<dyn Shape>, Bound)>,
}

/// A component ready to instantiate as nodes: linked, with its exported
/// functions indexed by [`FuncKey`].
pub struct PreparedComponent {
    pub pre: InstancePre<NodeState>,
    pub interface: NodeInterface,
    /// Each program-wide function this component serves, by [`FuncKey`].
    exports: Vec<Option<Export>>,
    run: Option<ComponentExportIndex>,
}

impl PreparedComponent {
    /// Link `component` against the runtime, WASI and its client imports.
    pub fn new(
        engine: &Engine,
        component: &Component,
        interface: NodeInterface,
        funcs: &FuncTable,
    ) -> Result<Self> {
        let mut linker = Linker::<NodeState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        add_runtime(&mut linker)?;
        linker
            .instance(TYPES_INTERFACE)
            .map_err(anyhow::Error::from)?;
        for name in &interface.type_imports {
            linker.instance(name).map_err(anyhow::Error::from)?;
        }
        for client in &interface.clients {
            let mut instance = linker.instance(&client.name).map_err(anyhow::Error::from)?;
            if client.service == crate::replay::REPLAY_SERVICE {
                replay::link_client(&mut instance, client, funcs)?;
                continue;
            }
            for f in &client.functions {
                let key = funcs
                    .get(&client.service, &f.name)
                    .ok_or_else(|| anyhow!("{}.{} was not interned", client.service, f.name))?;
                let blocking = !f.ty.async_();
                let ok = match f.results().first() {
                    Some(Type::Result(r)) => r.ok(),
                    _ => None,
                };
                let args: Vec<Type> = f.params().into_iter().skip(1).map(|(_, t)| t).collect();
                if let Some(shape) = shape_for(&args, ok.as_ref()) {
                    shape.link(&mut instance, &f.name, key, blocking)?;
                } else if blocking {
                    // Plain `func`: the calling task blocks until the reply.
                    instance.func_new_async(&f.name, move |store, _ty, params, results| {
                        let node = store.data().node.clone();
                        Box::new(async move {
                            results[0] =
                                reply_to_val(node.call(&params[0], key, &params[1..]).await);
                            Ok(())
                        })
                    })?;
                } else {
                    // `async func`: the caller gets a future; the node keeps serving.
                    instance.func_new_concurrent(
                        &f.name,
                        move |accessor, _ty, params, results| {
                            Box::pin(async move {
                                let node =
                                    accessor.with(|mut access| access.data_mut().node.clone());
                                results[0] =
                                    reply_to_val(node.call(&params[0], key, &params[1..]).await);
                                Ok(())
                            })
                        },
                    )?;
                }
            }
        }
        let pre = linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)?;

        let mut exports = vec![None; funcs.len()];
        for service in &interface.services {
            let Some(instance) = component.get_export_index(None, &service.name) else {
                continue;
            };
            for f in &service.functions {
                if let Some(key) = funcs.get(&service.name, &f.name)
                    && let Some(index) = component.get_export_index(Some(&instance), &f.name)
                {
                    let args: Vec<Type> = f.params().into_iter().map(|(_, t)| t).collect();
                    let shape = shape_for(&args, f.results().first());
                    exports[key.0 as usize] = Some(Export { index, shape });
                }
            }
        }
        let run = LIFECYCLE_INTERFACES.iter().find_map(|name| {
            let instance = component.get_export_index(None, name)?;
            component.get_export_index(Some(&instance), "run")
        });
        Ok(PreparedComponent {
            pre,
            interface,
            exports,
            run,
        })
    }
}

/// What a node is and can reach; shared by its host functions.
pub struct NodeContext {
    pub id: u32,
    pub name: String,
    pub group: String,
    pub index: u32,
    pub args: String,
    /// Sorted ids of the nodes this node holds handles to.
    pub allowed: Vec<u32>,
    pub router: Arc<Router>,
    pub output: Output,
    /// What its log lines may have on their way to the output.
    pub log_credit: Credit,
    /// What a seeded run changes in it (none otherwise).
    pub hooks: Hooks,
    /// What of the host it may use, and how much it may take.
    pub grants: Grants,
    pub limits: Limits,
    /// How often the engine's epoch ticks (for the CPU limit).
    pub epoch_tick: Duration,
    /// Its last stderr lines, for the message of a panic.
    pub last_words: LastWords,
}

impl NodeContext {
    /// What a trap of this node says: its panic message, if it printed one,
    /// else the trap itself (and which of wasmtime's limits it hit).
    fn trap_message(&self, e: &anyhow::Error) -> String {
        self.last_words
            .panic_message()
            .unwrap_or_else(|| limits::cause(e, self.limits.stack_kib))
    }

    /// A courier call from this node: `handle` must be one it was given;
    /// its deadline, if it has one, is the call's.
    async fn call(&self, handle: &Val, func: FuncKey, params: &[Val]) -> Reply {
        let malformed = || Err(CallError::Unreachable("malformed handle".into()));
        let Val::Record(fields) = handle else {
            return malformed();
        };
        let (target, deadline) = match fields.as_slice() {
            [(_, Val::U32(id)), (_, Val::Option(ms))] => match ms.as_deref() {
                None => (*id, None),
                Some(Val::U64(ms)) => (*id, Some(Duration::from_millis(*ms))),
                Some(_) => return malformed(),
            },
            _ => return malformed(),
        };
        self.call_node(target, deadline, func, Payload::Vals(params.to_vec()))
            .await
    }

    /// A courier call to node `target`, which must be one this node was
    /// given, with the handle's deadline (`None`: the program's).
    pub async fn call_node(
        &self,
        target: u32,
        deadline: Option<Duration>,
        func: FuncKey,
        args: Payload,
    ) -> Reply {
        if self.allowed.binary_search(&target).is_err() {
            return Err(CallError::Unreachable(format!(
                "node {} was not given a handle to node id {target}",
                self.name
            )));
        }
        let describe = || {
            let (service, function) = self.router.func_name(func);
            let interface = service.rsplit('/').next().unwrap_or(service);
            format!(
                "{} -> {} {}.{function}",
                self.name,
                self.router.name(target),
                interface.split('@').next().unwrap_or(interface)
            )
        };
        let call = self.router.call_through(target, func, args, deadline);
        self.hooks.around_call(describe, call).await
    }

    fn stop_signal(&self) -> &Arc<StopSignal> {
        self.router.stop_signal()
    }
}

/// A call's outcome as the client function's `result<T, call-error>`.
fn reply_to_val(reply: Reply) -> Val {
    match reply {
        Ok(Payload::Vals(mut values)) => Val::Result(Ok(values.pop().map(Box::new))),
        Ok(Payload::Typed(_)) => {
            let e = CallError::Unreachable("reply of an unexpected type".into());
            Val::Result(Err(Some(Box::new(e.to_val()))))
        }
        Err(e) => Val::Result(Err(Some(Box::new(e.to_val())))),
    }
}

/// The store data of a node.
pub struct NodeState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub node: Arc<NodeContext>,
    limiter: NodeLimiter,
}

impl WasiView for NodeState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl NodeState {
    /// The node's WASI context: its output, and only what it was granted.
    pub fn new(node: Arc<NodeContext>) -> Result<Self> {
        let line = |stream: Stream| {
            let node = node.clone();
            LineWriter::new(move |text, receipt| {
                if stream == Stream::Stderr {
                    node.last_words.record(text);
                }
                node.output.line_held(&node.name, stream, text, receipt)
            })
        };
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(line(Stream::Stdout))
            .stderr(line(Stream::Stderr))
            .args(&[node.name.as_str()]);
        node.hooks.wasi(node.id, &mut wasi);
        grant(&mut wasi, &node.grants)?;
        let wasi = wasi.build();
        Ok(NodeState {
            wasi,
            table: ResourceTable::new(),
            limiter: NodeLimiter::new(node.limits),
            node,
        })
    }
}

/// Give a node what program.toml grants it; by default it has nothing.
fn grant(wasi: &mut WasiCtxBuilder, grants: &Grants) -> Result<()> {
    for dir in &grants.dirs {
        let perms = match dir.writable {
            true => FsPerms::ReadWrite,
            false => FsPerms::ReadOnly,
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open granted directory {}", dir.host.display()))?;
    }
    for (name, value) in &grants.env {
        wasi.env(name, value);
    }
    if grants.stdin {
        wasi.inherit_stdin();
    }
    if !grants.network.is_empty() {
        let allowed = grants.network.clone();
        wasi.allow_tcp(true)
            .allow_udp(true)
            .socket_addr_check(move |addr, used| {
                // Connecting binds an ephemeral local address first: that
                // bind is allowed, the peer is what is checked.
                let ephemeral = matches!(used, SocketAddrUse::TcpBind | SocketAddrUse::UdpBind)
                    && addr.ip().is_unspecified()
                    && addr.port() == 0;
                let ok = match used {
                    // The local address of a socket the node serves on.
                    SocketAddrUse::TcpBind | SocketAddrUse::TcpListen | SocketAddrUse::UdpBind => {
                        ephemeral || allowed.iter().any(|g| g.allows(addr, true))
                    }
                    // A client of a port the node serves on (it listens
                    // only where it may), or a peer granted by address.
                    SocketAddrUse::TcpAccept | SocketAddrUse::UdpReceive => allowed
                        .iter()
                        .any(|g| g.usage == NetUse::Serve || g.allows(addr, false)),
                    SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => {
                        allowed.iter().any(|g| g.allows(addr, false))
                    }
                };
                Box::pin(async move { ok })
            });
    }
    Ok(())
}

/// `lp:node/runtime` and `lp:node/waiting`.
fn add_runtime(linker: &mut Linker<NodeState>) -> Result<()> {
    let mut rt = linker
        .instance(RUNTIME_INTERFACE)
        .map_err(anyhow::Error::from)?;
    rt.func_new("name", |store, _, _, results| {
        results[0] = Val::String(store.data().node.name.clone());
        Ok(())
    })?;
    rt.func_new("group", |store, _, _, results| {
        results[0] = Val::String(store.data().node.group.clone());
        Ok(())
    })?;
    rt.func_new("index", |store, _, _, results| {
        results[0] = Val::U32(store.data().node.index);
        Ok(())
    })?;
    rt.func_new("args", |store, _, _, results| {
        results[0] = Val::String(store.data().node.args.clone());
        Ok(())
    })?;
    rt.func_new("stop", |store, _, _, _| {
        let node = &store.data().node;
        node.hooks
            .record(|| format!("stop requested by {}", node.name));
        if node.stop_signal().stop() {
            tracing::debug!("node {} requested stop", node.name);
        }
        Ok(())
    })?;
    rt.func_new("is-stopping", |store, _, _, results| {
        results[0] = Val::Bool(store.data().node.stop_signal().is_stopping());
        Ok(())
    })?;
    // A log call waits while the node's earlier lines are still on their way.
    rt.func_new_async("log", |store, _, params, _| {
        let node = store.data().node.clone();
        Box::new(async move {
            let (Val::Enum(level), Val::String(message)) = (&params[0], &params[1]) else {
                wasmtime::bail!("log: unexpected argument types");
            };
            let stream = Stream::Log(LogLevel::from_wit(level));
            for line in message.lines() {
                let receipt = node.log_credit.take(line.len() + 1).await;
                node.output.line_held(&node.name, stream, line, receipt);
            }
            Ok(())
        })
    })?;
    let mut waiting = linker
        .instance(WAITING_INTERFACE)
        .map_err(anyhow::Error::from)?;
    waiting.func_new_concurrent("wait-for-stop", |accessor, _, params, results| {
        Box::pin(async move {
            let node = accessor.with(|mut access| access.data_mut().node.clone());
            let stop = node.stop_signal();
            let stopped = match &params[0] {
                Val::Option(Some(ms)) => {
                    let Val::U64(ms) = **ms else {
                        wasmtime::bail!("wait-for-stop: timeout is not u64")
                    };
                    tokio::time::timeout(Duration::from_millis(ms), stop.wait())
                        .await
                        .is_ok()
                }
                _ => {
                    stop.wait().await;
                    true
                }
            };
            results[0] = Val::Bool(stopped);
            Ok(())
        })
    })?;
    Ok(())
}

/// What a node thread tells its launcher.
#[derive(Debug)]
pub enum NodeEvent {
    /// Instantiated; serving calls (and running `run`, if it has one).
    Started(u32),
    /// Its `run` returned; it keeps serving until shutdown.
    RunFinished(u32),
    /// It trapped or could not start; the error with its wasm backtrace.
    Failed(u32, String),
    /// Its thread has ended.
    Exited(u32),
}

/// Signals from the launcher to every node thread.
#[derive(Default)]
pub struct Control {
    /// Leave the serve loop (the program has ended).
    pub shutdown: StopSignal,
    /// Interrupt wasm that is still running (termination notice expired).
    pub kill: StopSignal,
}

/// What runs as a node behind its mailbox. Every kind serves the calls of
/// the same [`Mailbox`], reports the same [`NodeEvent`]s and heeds the same
/// [`Control`]; the launch types do not know which kind a node is.
pub enum NodeBody {
    /// A wasm component, instantiated in a store of its own.
    Wasm(Arc<PreparedComponent>),
    /// The built-in replay node: host code, with its tables.
    Replay(Arc<crate::program::ReplayConfig>),
}

/// Everything a node thread needs.
pub struct NodeLaunch {
    pub node: Arc<NodeContext>,
    pub body: NodeBody,
    pub run_enabled: bool,
    pub mailbox: Mailbox,
    pub control: Arc<Control>,
    pub events: Sender<NodeEvent>,
    /// How many times to instantiate it again after it fails (0 in a
    /// local_mp worker, whose launcher restarts the process instead).
    pub restarts: u32,
}

/// Run one node to completion on the current thread's executor. A node
/// that fails while it has restarts left (and the program has not shut
/// down) is instantiated again, with the same mailbox, handles and args,
/// instead of being reported failed.
pub async fn run_node(mut launch: NodeLaunch) {
    let id = launch.node.id;
    let mut restarted = 0;
    while let Err(e) = serve_node(&mut launch).await {
        let error = failure_report(&launch.node, &e);
        let control = &launch.control;
        if restarted == launch.restarts
            || control.shutdown.is_stopping()
            || control.kill.is_stopping()
        {
            let _ = launch.events.send(NodeEvent::Failed(id, error));
            break;
        }
        restarted += 1;
        let node = &launch.node;
        let cause = error.lines().next().unwrap_or_default();
        let count = format!("{restarted} of {}", launch.restarts);
        tracing::warn!("node {} failed ({cause}); restart {count}", node.name);
        node.hooks
            .record(|| format!("restart {} ({count}): {cause}", node.name));
        node.last_words.clear();
    }
    let _ = launch.events.send(NodeEvent::Exited(id));
}

/// What a failure of `node` says: its panic message first, if it printed
/// one, then the error (with the limit it hit, if any) and its wasm
/// backtrace.
fn failure_report(node: &NodeContext, e: &anyhow::Error) -> String {
    let mut error = describe_failure(e, node.limits.stack_kib);
    if let Some(panic) = node.last_words.panic_message() {
        error = format!("{panic}\n  {}", error.replace('\n', "\n  "));
    }
    error
}

/// The cause first (with the limit it hit, if any), then what led to it
/// (the wasm backtrace among it).
fn describe_failure(e: &anyhow::Error, stack_kib: Option<u64>) -> String {
    let mut text = limits::cause(e, stack_kib);
    for layer in e.chain().take_while(|l| !std::ptr::eq(*l, e.root_cause())) {
        for line in layer.to_string().lines() {
            text.push_str("\n  ");
            text.push_str(line);
        }
    }
    text
}

/// Serve one instance of the node until the program shuts it down, or it fails.
async fn serve_node(launch: &mut NodeLaunch) -> Result<()> {
    match &launch.body {
        NodeBody::Wasm(component) => serve_component(component.clone(), launch).await,
        NodeBody::Replay(config) => replay::serve_replay(&config.clone(), launch).await,
    }
}

/// Instantiate a wasm component and serve its `run` and calls.
async fn serve_component(component: Arc<PreparedComponent>, launch: &mut NodeLaunch) -> Result<()> {
    let &mut NodeLaunch {
        ref node,
        body: _,
        run_enabled,
        ref mut mailbox,
        ref control,
        ref events,
        restarts: _,
    } = launch;
    let id = node.id;
    let engine = component.pre.engine().clone();
    let mut store = Store::new(&engine, NodeState::new(node.clone())?);
    store.limiter(|state| &mut state.limiter);
    limits::set_engine_limits(&mut store);
    let kill = control.clone();
    let tick = node.epoch_tick;
    store.epoch_deadline_callback(move |mut store| {
        if kill.kill.is_stopping() {
            return Ok(UpdateDeadline::Interrupt);
        }
        store.data_mut().limiter.tick(tick)?;
        Ok(UpdateDeadline::Yield(1))
    });
    store.set_epoch_deadline(1);
    if let Some(fuel) = node.hooks.fuel_per_step() {
        // Seeded runs: yield after a fixed amount of work, not at clock
        // ticks, so where a node pauses does not depend on the machine.
        store.set_fuel(u64::MAX).map_err(anyhow::Error::from)?;
        store
            .fuel_async_yield_interval(Some(fuel))
            .map_err(anyhow::Error::from)?;
    }
    let instance = component
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(anyhow::Error::from)
        .with_context(|| match store.data().limiter.instances_limit() {
            Some(n) => format!("instantiation failed (limits.instances = {n})"),
            None => "instantiation failed".to_string(),
        })?;
    let served: Vec<Option<Served>> = component
        .exports
        .iter()
        .map(|export| {
            let export = export.as_ref()?;
            let func = instance.get_func(&mut store, export.index)?;
            let results = func.ty(&store).results().len();
            let typed = export.shape.as_ref().and_then(|shape| {
                Some((shape.clone(), shape.bind_func(store.as_context(), func)?))
            });
            Some(Served {
                func,
                results,
                typed,
            })
        })
        .collect();
    let run = match (run_enabled, component.run) {
        (true, Some(index)) => instance.get_func(&mut store, index),
        _ => None,
    };
    let _ = events.send(NodeEvent::Started(id));

    // Replies owed to callers, kept outside the store's event loop so that
    // a trap that ends the loop can still answer every call in flight.
    let inflight: Mutex<Slab<oneshot::Sender<Reply>>> = Mutex::new(Slab::new());
    let serving = async {
        store
            .run_concurrent(async |accessor| {
                let mut run_call = run.map(|f| Box::pin(f.call_concurrent(accessor, &[], &mut [])));
                let mut calls = FuturesUnordered::new();
                let mut shutdown = std::pin::pin!(control.shutdown.wait());
                let mut killed = std::pin::pin!(control.kill.wait());
                futures::future::poll_fn(|cx| {
                    if let Some(call) = &mut run_call
                        && let Poll::Ready(result) = call.as_mut().poll(cx)
                    {
                        run_call = None;
                        if let Err(e) = result {
                            return Poll::Ready(Err(anyhow::Error::from(e).context("run trapped")));
                        }
                        let _ = events.send(NodeEvent::RunFinished(id));
                    }
                    while let Poll::Ready(Some(request)) = mailbox.poll_recv(cx) {
                        let Request { func, args, reply } = request;
                        if reply.is_closed() {
                            // The caller stopped waiting (dropped or cancelled
                            // the call) before it started: never run it.
                            continue;
                        }
                        match served.get(func.0 as usize).and_then(Option::as_ref) {
                            Some(export) => {
                                let slot = lock(&inflight).insert(reply);
                                calls.push(serve_call(accessor, export, args, (&inflight, slot)));
                            }
                            None => {
                                let (service, function) = node.router.func_name(func);
                                let _ = reply.send(Err(CallError::Unreachable(format!(
                                    "node {} does not export {service}.{function}",
                                    node.name
                                ))));
                            }
                        }
                    }
                    while let Poll::Ready(Some(result)) = calls.poll_next_unpin(cx) {
                        if let Err(e) = result {
                            return Poll::Ready(Err(e));
                        }
                    }
                    if killed.as_mut().poll(cx).is_ready() && run_call.is_some() {
                        return Poll::Ready(Err(anyhow!(
                            "interrupted: still running when the termination notice expired"
                        )));
                    }
                    if shutdown.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Pending
                })
                .await
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
    };
    // A node blocked in a host call (a WASI sleep, a read) runs no wasm
    // for the epoch to interrupt: it is dropped where it waits.
    let served =
        match futures::future::select(std::pin::pin!(serving), std::pin::pin!(control.kill.wait()))
            .await
        {
            futures::future::Either::Left((served, _)) => served,
            futures::future::Either::Right(((), _)) => Err(anyhow!(
                "interrupted: still running when the termination notice expired"
            )),
        };
    if let Err(e) = &served {
        let message = format!("node {} failed: {}", node.name, node.trap_message(e));
        for (_, reply) in inflight.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let _ = reply.send(Err(CallError::RemoteTrap(message.clone())));
        }
    }
    served
}

/// Serve one incoming call; a trap is answered to the caller and fails the node.
async fn serve_call(
    accessor: &Accessor<NodeState>,
    export: &Served,
    args: Payload,
    (inflight, slot): (&Mutex<Slab<oneshot::Sender<Reply>>>, usize),
) -> Result<()> {
    let outcome = match args {
        Payload::Vals(params) => {
            let mut results = vec![Val::Bool(false); export.results];
            export
                .func
                .call_concurrent(accessor, &params, &mut results)
                .await
                .map(|()| Payload::Vals(results))
                .map_err(anyhow::Error::from)
        }
        Payload::Typed(arg) => match &export.typed {
            Some((shape, bound)) => shape.serve(accessor, bound, arg).await,
            None => {
                let reply = lock(inflight).remove(slot);
                let _ = reply.send(Err(CallError::Unreachable(
                    "argument of an unexpected type".into(),
                )));
                return Ok(());
            }
        },
    };
    let reply = lock(inflight).remove(slot);
    match outcome {
        Ok(results) => {
            let _ = reply.send(Ok(results));
            Ok(())
        }
        Err(e) => {
            let node = accessor.with(|mut access| access.data_mut().node.clone());
            let _ = reply.send(Err(CallError::RemoteTrap(node.trap_message(&e))));
            Err(e.context("trapped while serving a call"))
        }
    }
}
