//! The courier: typed calls between nodes. A call names its target node and
//! a function (a [`FuncKey`]) and carries component values; the router hands
//! it to the target's mailbox and the reply comes back on a oneshot channel.
//! Errors reach the caller as a typed [`CallError`], never as a caller trap.

pub mod codec;
pub mod directory;
pub mod endpoint;
mod error;
pub mod grpc;
pub mod link;
mod secret;
pub mod socket;
pub(crate) mod spin_socket;
pub mod transport;
mod typecheck;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use codec::CodecError;

use crate::stop::StopSignal;
pub use directory::Directory;
pub use endpoint::{Endpoint, Listener};
pub use error::CallError;
pub use link::{Link, Security};
pub use secret::Secret;
pub use transport::{Remote, Transport, TransportKind};
pub use typecheck::{check_client_shape, check_edge, describe};

/// A call's arguments (after the target handle) or its results: dynamic
/// component values, or, for calls of a common shape, the typed Rust value
/// itself (see `node::typed`), which skips per-element conversion.
pub enum Payload {
    Vals(Vec<Val>),
    Typed(Box<dyn Any + Send>),
}

/// What a call returns: the function's results, or why not.
pub type Reply = Result<Payload, CallError>;

/// Names one exported function program-wide (service interface + function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FuncKey(pub u32);

/// How a function's values cross a process boundary: the argument types
/// (after the handle) and result type, and its typed-shape encoding if it
/// has one.
#[derive(Clone)]
pub struct Signature {
    pub args: Vec<Type>,
    pub result: Option<Type>,
    pub typed: Option<Arc<dyn TypedWire>>,
}

/// Encodes the typed-shape payloads of one function.
pub trait TypedWire: Send + Sync {
    fn encode_args(&self, args: &(dyn Any + Send), out: &mut Vec<u8>) -> Result<(), CodecError>;
    fn decode_args(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError>;
    fn encode_result(&self, result: &(dyn Any + Send), out: &mut Vec<u8>)
    -> Result<(), CodecError>;
    fn decode_result(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError>;
}

impl Signature {
    fn typed(&self) -> Result<&dyn TypedWire, CodecError> {
        self.typed
            .as_deref()
            .ok_or_else(|| CodecError("this function has no typed encoding".into()))
    }

    /// The arguments as bytes, and whether they are the typed encoding.
    pub fn encode_args(&self, args: &Payload) -> Result<(Vec<u8>, bool), CodecError> {
        let mut out = Vec::new();
        let typed = self.encode_args_into(args, &mut out)?;
        Ok((out, typed))
    }

    /// Like [`Self::encode_args_into`], but a `list<u8>` argument of the
    /// typed shape is handed back whole rather than copied: `out` gets its
    /// length prefix, and the caller sends the bytes after it.
    pub fn encode_args_split(
        &self,
        args: Payload,
        out: &mut Vec<u8>,
    ) -> Result<(bool, Option<Vec<u8>>), CodecError> {
        match take_bytes(args) {
            Ok(bytes) => {
                codec::put_unsigned(out, bytes.len() as u64);
                Ok((true, Some(bytes)))
            }
            Err(args) => Ok((self.encode_args_into(&args, out)?, None)),
        }
    }

    /// Like [`Self::encode_results_into`], handing a `list<u8>` result back
    /// whole (see [`Self::encode_args_split`]).
    pub fn encode_results_split(
        &self,
        results: Payload,
        out: &mut Vec<u8>,
    ) -> Result<Option<Vec<u8>>, CodecError> {
        match take_bytes(results) {
            Ok(bytes) => {
                codec::put_unsigned(out, bytes.len() as u64);
                Ok(Some(bytes))
            }
            Err(results) => self.encode_results_into(&results, out).map(|()| None),
        }
    }

    /// Append the arguments to `out`; whether they are the typed encoding.
    pub fn encode_args_into(&self, args: &Payload, out: &mut Vec<u8>) -> Result<bool, CodecError> {
        match args {
            Payload::Vals(vals) => {
                if vals.len() != self.args.len() {
                    return Err(CodecError(format!(
                        "{} arguments for {}",
                        vals.len(),
                        self.args.len()
                    )));
                }
                for (val, ty) in vals.iter().zip(&self.args) {
                    codec::encode(val, ty, out)?;
                }
                Ok(false)
            }
            Payload::Typed(value) => {
                self.typed()?.encode_args(value.as_ref(), out)?;
                Ok(true)
            }
        }
    }

    pub fn decode_args(&self, mut bytes: &[u8], typed: bool) -> Result<Payload, CodecError> {
        let payload = if typed {
            Payload::Typed(self.typed()?.decode_args(&mut bytes)?)
        } else {
            Payload::Vals(
                self.args
                    .iter()
                    .map(|ty| codec::decode(&mut bytes, ty))
                    .collect::<Result<_, _>>()?,
            )
        };
        end(bytes)?;
        Ok(payload)
    }

    pub fn encode_results(&self, results: &Payload) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode_results_into(results, &mut out)?;
        Ok(out)
    }

    /// Append the results to `out`.
    pub fn encode_results_into(
        &self,
        results: &Payload,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match results {
            Payload::Vals(vals) => {
                if let (Some(ty), Some(val)) = (&self.result, vals.first()) {
                    codec::encode(val, ty, out)?;
                }
            }
            Payload::Typed(value) => self.typed()?.encode_result(value.as_ref(), out)?,
        }
        Ok(())
    }

    pub fn decode_results(&self, mut bytes: &[u8], typed: bool) -> Result<Payload, CodecError> {
        let payload = if typed {
            Payload::Typed(self.typed()?.decode_result(&mut bytes)?)
        } else {
            Payload::Vals(match &self.result {
                Some(ty) => vec![codec::decode(&mut bytes, ty)?],
                None => Vec::new(),
            })
        };
        end(bytes)?;
        Ok(payload)
    }
}

/// The bytes of a typed `list<u8>` payload (whose encoding is a length and
/// the bytes, as `node::typed` writes it), or the payload back.
fn take_bytes(payload: Payload) -> Result<Vec<u8>, Payload> {
    match payload {
        Payload::Typed(value) => value
            .downcast::<Vec<u8>>()
            .map(|bytes| *bytes)
            .map_err(Payload::Typed),
        other => Err(other),
    }
}

fn end(rest: &[u8]) -> Result<(), CodecError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(CodecError(format!("{} bytes left over", rest.len())))
    }
}

/// Interns (service, function) names as [`FuncKey`]s, with their signatures.
#[derive(Default)]
pub struct FuncTable {
    names: Vec<(String, String)>,
    signatures: Vec<Signature>,
    keys: HashMap<(String, String), FuncKey>,
}

impl FuncTable {
    /// The key of `service.function`; the first signature given is kept.
    pub fn intern(&mut self, service: &str, function: &str, signature: Signature) -> FuncKey {
        let name = (service.to_string(), function.to_string());
        if let Some(&k) = self.keys.get(&name) {
            return k;
        }
        let key = FuncKey(self.names.len() as u32);
        self.names.push(name.clone());
        self.signatures.push(signature);
        self.keys.insert(name, key);
        key
    }

    pub fn signature(&self, key: FuncKey) -> &Signature {
        &self.signatures[key.0 as usize]
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

    /// A digest of the table: every function's key, name and types, and
    /// whether it has a typed encoding. Processes of one launch compare
    /// digests when they connect: equal digests mean a key names the same
    /// function with the same types on both sides.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        for ((service, function), signature) in self.names.iter().zip(&self.signatures) {
            let args: Vec<String> = signature.args.iter().map(describe).collect();
            let result = signature.result.as_ref().map(describe).unwrap_or_default();
            let typed = signature.typed.is_some();
            hash.update(format!(
                "{service}.{function}({}) -> {result} {typed}\n",
                args.join(", ")
            ));
        }
        hex::encode(&hash.finalize()[..8])
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
#[derive(Clone)]
enum Route {
    /// A node in this process.
    Local(mpsc::UnboundedSender<Request>),
    /// A node in another process, over the transport.
    Remote(Arc<dyn Remote>),
}

/// Where a node runs, as seen from this process.
#[derive(Clone, Debug)]
pub enum Placement {
    Local,
    /// In the process listening at this endpoint.
    Remote(Endpoint),
    /// In process `process` of the launch, listening where `directory`
    /// will say once that process has announced it.
    Announced {
        directory: Arc<Directory>,
        process: usize,
    },
}

/// How this process reaches the others: the transport, how long a reader
/// spins before it parks, and the launch's secret.
#[derive(Clone, Debug)]
pub struct Wire {
    pub transport: TransportKind,
    pub spin: Duration,
    pub secret: Secret,
    /// Plain connections, or mutual TLS (between machines).
    pub security: Security,
}

impl Wire {
    /// The transport these settings make.
    pub fn transport(&self) -> Arc<dyn Transport> {
        self.transport
            .build(self.spin, self.secret.clone(), self.security.clone())
    }
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
        let placements = vec![Placement::Local; names.len()];
        // Nothing leaves the process: no transport, no secret needed.
        let wire = Wire {
            transport: TransportKind::Socket,
            spin: Duration::ZERO,
            secret: Secret::unused(),
            security: Security::plain(),
        };
        let (router, mailboxes) = Router::new(names, &placements, wire, funcs, stop, call_timeout);
        (
            router,
            mailboxes
                .into_iter()
                .map(|m| m.expect("every node is local"))
                .collect(),
        )
    }

    /// A router for nodes placed as `placements` says; the mailbox of each
    /// local node (`None` for remote ones).
    pub fn new(
        names: Vec<String>,
        placements: &[Placement],
        wire: Wire,
        funcs: Arc<FuncTable>,
        stop: Arc<StopSignal>,
        call_timeout: Option<Duration>,
    ) -> (Router, Vec<Option<Mailbox>>) {
        // One route (and connection) per remote process.
        let transport = wire.transport();
        let mut by_endpoint: HashMap<&Endpoint, Arc<dyn Remote>> = HashMap::new();
        let mut by_process: HashMap<(*const Directory, usize), Arc<dyn Remote>> = HashMap::new();
        let (routes, mailboxes) = placements
            .iter()
            .map(|placement| match placement {
                Placement::Local => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    (Route::Local(tx), Some(rx))
                }
                Placement::Remote(endpoint) => {
                    let remote = by_endpoint
                        .entry(endpoint)
                        .or_insert_with(|| transport.connect(endpoint));
                    (Route::Remote(remote.clone()), None)
                }
                Placement::Announced { directory, process } => {
                    let remote = by_process
                        .entry((Arc::as_ptr(directory), *process))
                        .or_insert_with(|| {
                            Arc::new(directory::Announced {
                                directory: directory.clone(),
                                process: *process,
                                transport: transport.clone(),
                                remote: Default::default(),
                            })
                        });
                    (Route::Remote(remote.clone()), None)
                }
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

    pub fn signature(&self, key: FuncKey) -> &Signature {
        self.funcs.signature(key)
    }

    /// The deadline of calls through handles without one of their own.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// The signature of a key that arrived from another process.
    pub fn signature_of_received(&self, key: FuncKey) -> Result<&Signature, CallError> {
        if (key.0 as usize) < self.funcs.len() {
            Ok(self.funcs.signature(key))
        } else {
            Err(CallError::Unreachable(format!(
                "no function has key {}",
                key.0
            )))
        }
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

    /// Call `func` on `target` and wait for its reply (or the program's
    /// call deadline).
    pub async fn call(&self, target: u32, func: FuncKey, args: Payload) -> Reply {
        self.call_through(target, func, args, None).await
    }

    /// Call through a handle: its own deadline if it has one, else the
    /// program's.
    pub async fn call_through(
        &self,
        target: u32,
        func: FuncKey,
        args: Payload,
        handle_deadline: Option<Duration>,
    ) -> Reply {
        let deadline = handle_deadline.or(self.call_timeout);
        self.call_with_deadline(target, func, args, deadline).await
    }

    /// Call with a deadline of its own (`None`: wait without limit).
    pub async fn call_with_deadline(
        &self,
        target: u32,
        func: FuncKey,
        args: Payload,
        deadline: Option<Duration>,
    ) -> Reply {
        let Some(route) = self.routes.get(target as usize) else {
            return Err(CallError::Unreachable(format!("no node has id {target}")));
        };
        match deadline {
            None => self.deliver(route, target, func, args).await,
            Some(deadline) => {
                tokio::time::timeout(deadline, self.deliver(route, target, func, args))
                    .await
                    .unwrap_or(Err(CallError::Timeout))
            }
        }
    }

    async fn deliver(&self, route: &Route, target: u32, func: FuncKey, args: Payload) -> Reply {
        match route {
            Route::Local(tx) => {
                let (reply, rx) = oneshot::channel();
                if tx.send(Request { func, args, reply }).is_err() {
                    return Err(self.gone(target));
                }
                rx.await.unwrap_or_else(|_| Err(self.gone(target)))
            }
            Route::Remote(remote) => remote.call(self, target, func, args).await,
        }
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
