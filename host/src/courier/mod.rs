//! The courier: typed calls between nodes. A call names its target node and
//! a function (a [`FuncKey`]) and carries component values; the router hands
//! it to the target's mailbox and the reply comes back on a oneshot channel.
//! Errors reach the caller as a typed [`CallError`], never as a caller trap.

pub mod codec;
mod typecheck;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasmtime::component::Val;

use crate::stop::StopSignal;
pub use typecheck::{check_client_shape, check_edge, describe};

/// Why a call did not return a value (mirrors `lp:node/types.call-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    Unreachable(String),
    Timeout,
    RemoteTrap(String),
    Stopping,
}

impl CallError {
    /// As the guest's `call-error` variant.
    pub fn to_val(&self) -> Val {
        match self {
            CallError::Unreachable(why) => Val::Variant(
                "unreachable".into(),
                Some(Box::new(Val::String(why.clone()))),
            ),
            CallError::Timeout => Val::Variant("timeout".into(), None),
            CallError::RemoteTrap(msg) => Val::Variant(
                "remote-trap".into(),
                Some(Box::new(Val::String(msg.clone()))),
            ),
            CallError::Stopping => Val::Variant("stopping".into(), None),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) => write!(f, "target unreachable: {why}"),
            CallError::Timeout => write!(f, "call timed out"),
            CallError::RemoteTrap(msg) => write!(f, "target trapped: {msg}"),
            CallError::Stopping => write!(f, "program is stopping"),
        }
    }
}

/// A call's arguments (after the target handle) or its results: dynamic
/// component values, or, for calls of a common shape, the typed Rust value
/// itself (see `launch::typed`), which skips per-element conversion.
pub enum Payload {
    Vals(Vec<Val>),
    Typed(Box<dyn Any + Send>),
}

/// What a call returns: the function's results, or why not.
pub type Reply = Result<Payload, CallError>;

/// Names one exported function program-wide (service interface + function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FuncKey(pub u32);

/// Interns (service, function) names as [`FuncKey`]s.
#[derive(Default, Debug)]
pub struct FuncTable {
    names: Vec<(String, String)>,
    keys: HashMap<(String, String), FuncKey>,
}

impl FuncTable {
    pub fn intern(&mut self, service: &str, function: &str) -> FuncKey {
        let name = (service.to_string(), function.to_string());
        if let Some(&k) = self.keys.get(&name) {
            return k;
        }
        let key = FuncKey(self.names.len() as u32);
        self.names.push(name.clone());
        self.keys.insert(name, key);
        key
    }

    pub fn get(&self, service: &str, function: &str) -> Option<FuncKey> {
        self.keys
            .get(&(service.to_string(), function.to_string()))
            .copied()
    }

    pub fn name(&self, key: FuncKey) -> (&str, &str) {
        let (s, f) = &self.names[key.0 as usize];
        (s, f)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One call delivered to a node.
pub struct Request {
    pub func: FuncKey,
    pub args: Payload,
    pub reply: oneshot::Sender<Reply>,
}

/// A node's incoming calls.
pub type Mailbox = mpsc::UnboundedReceiver<Request>;

/// How to reach one node.
enum Route {
    /// A node in this process.
    Local(mpsc::UnboundedSender<Request>),
}

/// Delivers calls to nodes by id.
pub struct Router {
    routes: Vec<Route>,
    names: Vec<String>,
    funcs: Arc<FuncTable>,
    stop: Arc<StopSignal>,
    call_timeout: Option<Duration>,
}

impl Router {
    /// A router for `names.len()` local nodes, and each node's mailbox.
    pub fn local(
        names: Vec<String>,
        funcs: Arc<FuncTable>,
        stop: Arc<StopSignal>,
        call_timeout: Option<Duration>,
    ) -> (Router, Vec<Mailbox>) {
        let (routes, mailboxes) = names
            .iter()
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                (Route::Local(tx), rx)
            })
            .unzip();
        (
            Router {
                routes,
                names,
                funcs,
                stop,
                call_timeout,
            },
            mailboxes,
        )
    }

    pub fn name(&self, node: u32) -> &str {
        &self.names[node as usize]
    }

    /// The (service, function) names of `key`.
    pub fn func_name(&self, key: FuncKey) -> (&str, &str) {
        self.funcs.name(key)
    }

    pub fn stop_signal(&self) -> &Arc<StopSignal> {
        &self.stop
    }

    /// Call `func` on `target` and wait for its reply (or the deadline).
    pub async fn call(&self, target: u32, func: FuncKey, args: Payload) -> Reply {
        let Some(route) = self.routes.get(target as usize) else {
            return Err(CallError::Unreachable(format!("no node has id {target}")));
        };
        let (reply, rx) = oneshot::channel();
        let sent = match route {
            Route::Local(tx) => tx.send(Request { func, args, reply }).is_ok(),
        };
        if !sent {
            return Err(self.gone(target));
        }
        let outcome = match self.call_timeout {
            None => rx.await,
            Some(deadline) => match tokio::time::timeout(deadline, rx).await {
                Ok(r) => r,
                Err(_) => return Err(CallError::Timeout),
            },
        };
        outcome.unwrap_or_else(|_| Err(self.gone(target)))
    }

    /// The error for a target that is no longer taking calls.
    fn gone(&self, target: u32) -> CallError {
        if self.stop.is_stopping() {
            CallError::Stopping
        } else {
            CallError::Unreachable(format!("node {} is not running", self.name(target)))
        }
    }
}
