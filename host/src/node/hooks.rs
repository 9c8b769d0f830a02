//! What a seeded run (test_mt) changes in a node, behind one small type so
//! that the node loop has no seeded-specific branches: the run's trace,
//! seeded delays and faults before calls, virtual clocks and seeded
//! randomness in WASI, and fuel instead of epoch ticks. Production nodes
//! carry `Hooks::default()` (no hooks), which costs a `None` check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;

use crate::courier::{CallError, Reply};

/// What a seeded scheduler provides to the nodes it runs.
pub trait NodeHooks: Send + Sync {
    /// Add an event to the run's trace.
    fn record(&self, event: String);
    /// Before a call described by `call` is delivered: a seeded delay, or
    /// an injected failure.
    fn before_call<'a>(
        &'a self,
        call: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send + 'a>>;
    /// Give node `node` its clocks and randomness.
    fn wasi(&self, node: u32, wasi: &mut WasiCtxBuilder);
    /// Wasm yields after this much fuel instead of at epoch ticks.
    fn fuel_per_step(&self) -> u64;
    /// The seed of node `node`'s own randomness (a native node's).
    fn seed(&self, node: u32) -> u64;
}

/// A node's hooks: none in production.
#[derive(Clone, Default)]
pub struct Hooks(Option<Arc<dyn NodeHooks>>);

impl Hooks {
    pub fn new(hooks: Arc<dyn NodeHooks>) -> Hooks {
        Hooks(Some(hooks))
    }

    /// Trace an event; `event` is only formatted when there is a trace.
    pub fn record(&self, event: impl FnOnce() -> String) {
        if let Some(hooks) = &self.0 {
            hooks.record(event());
        }
    }

    /// Run `call`, traced and perhaps delayed or failed first; `describe`
    /// names it in the trace and is only called when there are hooks.
    pub async fn around_call(
        &self,
        describe: impl FnOnce() -> String,
        call: impl Future<Output = Reply>,
    ) -> Reply {
        let Some(hooks) = &self.0 else {
            return call.await;
        };
        let described = describe();
        hooks.record(format!("call {described}"));
        hooks.before_call(&described).await?;
        let reply = call.await;
        match &reply {
            Ok(_) => hooks.record(format!("return {described}: ok")),
            Err(e) => hooks.record(format!("return {described}: {e}")),
        }
        reply
    }

    /// Set up node `node`'s WASI clocks and randomness, if hooked.
    pub fn wasi(&self, node: u32, wasi: &mut WasiCtxBuilder) {
        if let Some(hooks) = &self.0 {
            hooks.wasi(node, wasi);
        }
    }

    /// The seed of node `node`'s own randomness, if the run seeds it
    /// (`None`: the node draws a fresh one).
    pub fn seed(&self, node: u32) -> Option<u64> {
        self.0.as_ref().map(|hooks| hooks.seed(node))
    }

    /// How much fuel wasm may burn between yields (`None`: it yields at
    /// epoch ticks instead).
    pub fn fuel_per_step(&self) -> Option<u64> {
        self.0.as_ref().map(|hooks| hooks.fuel_per_step())
    }
}
