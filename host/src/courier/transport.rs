//! The interface of a transport between processes: a [`Transport`] makes a
//! [`Remote`] (the route to another process's nodes, connecting when first
//! used) from an [`Endpoint`], and serves calls arriving at a [`Listener`]
//! into the router's local nodes. Both transports (framed and gRPC stream)
//! implement it; the CLI's `--courier` choice ([`TransportKind`]) is mapped
//! to one in [`TransportKind::build`] and nowhere else. What both do with a
//! call that arrives (decode, deliver, encode) is here too.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;

use super::endpoint::{Endpoint, Listener};
use super::{CallError, FuncKey, Payload, Reply, Router, Secret, Security, Signature};

/// How calls travel between processes.
pub trait Transport: Send + Sync {
    /// The route to the process listening at `endpoint`. It connects on
    /// its first call (waiting for the process to listen), and again on
    /// a later call if the connection broke.
    fn connect(&self, endpoint: &Endpoint) -> Arc<dyn Remote>;

    /// Serve calls arriving at `listener` into `router`'s local nodes until
    /// `shutdown` resolves.
    fn serve(
        &self,
        listener: Listener,
        router: Arc<Router>,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, Result<()>>;
}

/// The nodes of another process, as one transport reaches them.
pub trait Remote: Send + Sync {
    /// Send one call and wait for its reply. A call sent once is never
    /// sent again: if the process dies under it, the caller gets an error,
    /// and later calls wait for the process to be back (if it restarts).
    /// Dropping the future cancels the call at the callee.
    fn call<'a>(
        &'a self,
        router: &'a Router,
        target: u32,
        func: FuncKey,
        args: Payload,
    ) -> BoxFuture<'a, Reply>;
}

/// The transports to choose from (`--courier`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Length-prefixed frames on the socket, readers spinning briefly
    /// before they park: the fast path between processes.
    #[default]
    Socket,
    /// gRPC (HTTP/2): one long-lived stream per pair of processes,
    /// carrying every call between them.
    Grpc,
}

impl TransportKind {
    /// The transport itself: readers spin for `spin` before they park,
    /// every connection presents (and requires) `secret`, and is secured
    /// as `security` says (mutual TLS between machines).
    pub fn build(self, spin: Duration, secret: Secret, security: Security) -> Arc<dyn Transport> {
        match self {
            TransportKind::Socket => Arc::new(super::socket::Framed::new(spin, secret, security)),
            TransportKind::Grpc => Arc::new(super::grpc::GrpcStream::new(spin, secret, security)),
        }
    }
}

/// Run a call that arrived from another process: decode its arguments as
/// `func`'s, deliver it to `target` (the caller's side keeps the deadline),
/// and return the results with the signature to encode them by.
pub(super) async fn serve_call<'r>(
    router: &'r Router,
    target: u32,
    func: FuncKey,
    args: &[u8],
    typed: bool,
) -> Result<(&'r Signature, Payload), CallError> {
    let signature = router.signature_of_received(func)?;
    let args = signature
        .decode_args(args, typed)
        .map_err(|e| CallError::Unreachable(format!("cannot decode arguments: {e}")))?;
    let results = router.call_with_deadline(target, func, args, None).await?;
    Ok((signature, results))
}

/// The results of a call, from the bytes of its reply.
pub(super) fn decode_results(signature: &Signature, bytes: &[u8], typed: bool) -> Reply {
    signature
        .decode_results(bytes, typed)
        .map_err(|e| CallError::Unreachable(format!("cannot decode the reply: {e}")))
}

/// An argument-encoding failure, as the caller sees it.
pub(super) fn cannot_encode(what: &str, e: impl std::fmt::Display) -> CallError {
    CallError::Unreachable(format!("cannot encode {what}: {e}"))
}
