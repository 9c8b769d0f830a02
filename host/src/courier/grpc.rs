//! The gRPC transport (tonic + prost): one long-lived bidirectional
//! `Courier.Calls` stream per pair of processes carries every call from one
//! to the other, each message tagged with an id that its reply carries back
//! (as the framed transport's frames are), so a call costs a message each
//! way and no HTTP/2 stream of its own. The launch's secret is checked once,
//! when the stream opens. Dropping a call sends a `Cancel` for its id. The
//! HTTP/2 connection runs on a [`SpinIo`], whose reads spin briefly before
//! they park, as the framed transport's do.
//!
//! Connections are plain or mutual TLS as the launch's [`Security`] says
//! (see [`super::link`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::endpoint::{Endpoint, Listener};
use super::transport::{self, Transport};
use super::{CallError, FuncKey, Payload, Reply, Router, Secret, Security};
use crate::lock;
use crate::proto::courier_client::CourierClient;
use crate::proto::courier_server::{Courier, CourierServer};
use crate::proto::{self, KEEPALIVE};
use crate::proto::{
    Authenticated, CallMessage, CallReply, CallRequest, Cancel, MAX_MESSAGE, PresentSecret,
    ReplyMessage, RequireSecret, call_message, call_reply,
};

/// HTTP/2 flow-control windows: large enough that a 1 MiB call is sent
/// without waiting for a window update.
const WINDOW: u32 = 16 << 20;

/// The largest HTTP/2 frame either side accepts (fewer frames per large call).
const FRAME: u32 = 1 << 20;

/// The gRPC stream transport: readers spin for `spin` before they park;
/// every stream presents the launch's secret.
pub struct GrpcStream {
    spin: Duration,
    secret: Secret,
    security: Security,
}

impl GrpcStream {
    pub fn new(spin: Duration, secret: Secret, security: Security) -> GrpcStream {
        GrpcStream {
            spin,
            secret,
            security,
        }
    }
}

impl Transport for GrpcStream {
    fn connect(&self, endpoint: &Endpoint) -> Arc<dyn transport::Remote> {
        Arc::new(Remote {
            endpoint: endpoint.clone(),
            spin: self.spin,
            secret: self.secret.clone(),
            security: self.security.clone(),
            stream: tokio::sync::Mutex::new(None),
        })
    }

    fn serve(
        &self,
        listener: Listener,
        router: Arc<Router>,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, Result<()>> {
        Box::pin(serve(
            listener,
            router,
            self.spin,
            self.secret.clone(),
            self.security.clone(),
            shutdown,
        ))
    }
}

/// What a caller waits for: its call's reply, or the stream's end.
type Pending = Mutex<HashMap<u64, oneshot::Sender<CallReply>>>;

/// The caller's end of one open `Calls` stream.
struct CallStream {
    calls: mpsc::UnboundedSender<CallMessage>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

impl CallStream {
    /// Open the stream on a connection to `endpoint` (once it listens).
    async fn open(remote: &Remote, router: &Router) -> Result<CallStream, CallError> {
        let (endpoint, secret) = (&remote.endpoint, &remote.secret);
        let transport_error =
            |e: &dyn std::fmt::Display| CallError::Unreachable(format!("transport: {e}"));
        let connected = endpoint.dial_when_ready(router.stop_signal()).await?;
        let io = remote
            .security
            .client(connected, endpoint, remote.spin)
            .await
            .map_err(|e| transport_error(&e))?;
        // The channel runs on this one connection: a broken stream is
        // opened again by a later call, on a new connection.
        let io = Mutex::new(Some(io));
        let mut channel = tonic::transport::Endpoint::from_static("http://lp.local")
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .max_frame_size(FRAME);
        // Across machines, pings notice a peer that is gone (see proto::channel).
        if remote.security.is_tls() {
            channel = channel
                .http2_keep_alive_interval(KEEPALIVE)
                .keep_alive_timeout(KEEPALIVE)
                .keep_alive_while_idle(true);
        }
        let channel = channel
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let io = lock(&io).take();
                async move {
                    io.map(TokioIo::new)
                        .ok_or_else(|| std::io::Error::other("the connection is closed"))
                }
            }))
            .await
            .map_err(|e| transport_error(&e))?;
        let mut client: CourierClient<Authenticated> =
            CourierClient::with_interceptor(channel, PresentSecret::new(secret))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
        let (calls, outgoing) = mpsc::unbounded_channel();
        let mut replies = client
            .calls(UnboundedReceiverStream::new(outgoing))
            .await
            .map_err(|status| {
                if router.stop_signal().is_stopping() {
                    CallError::Stopping
                } else {
                    transport_error(&status.message())
                }
            })?
            .into_inner();
        let pending: Arc<Pending> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (reader_pending, reader_closed) = (pending.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok(Some(ReplyMessage { id, reply })) = replies.message().await {
                if let Some(waiter) = lock(&reader_pending).remove(&id) {
                    let _ = waiter.send(reply.unwrap_or_default());
                }
            }
            // Waiters see their sender dropped: the stream is gone.
            reader_closed.store(true, Ordering::Release);
            lock(&reader_pending).clear();
        });
        Ok(CallStream {
            calls,
            pending,
            next_id: AtomicU64::new(0),
            closed,
        })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.calls.is_closed()
    }
}

/// Sends a `Cancel` for a call whose caller stopped waiting.
struct CancelOnDrop<'a> {
    stream: &'a CallStream,
    id: u64,
    done: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.done && lock(&self.stream.pending).remove(&self.id).is_some() {
            let _ = self.stream.calls.send(CallMessage {
                id: self.id,
                kind: Some(call_message::Kind::Cancel(Cancel {})),
            });
        }
    }
}

/// The nodes of another process, reached over one `Calls` stream.
struct Remote {
    endpoint: Endpoint,
    spin: Duration,
    secret: Secret,
    security: Security,
    stream: tokio::sync::Mutex<Option<Arc<CallStream>>>,
}

impl Remote {
    /// The open stream, else a new one.
    async fn stream(&self, router: &Router) -> Result<Arc<CallStream>, CallError> {
        let mut current = self.stream.lock().await;
        if let Some(stream) = current.as_ref().filter(|s| !s.is_closed()) {
            return Ok(stream.clone());
        }
        let stream = Arc::new(CallStream::open(self, router).await?);
        *current = Some(stream.clone());
        Ok(stream)
    }

    async fn send(&self, router: &Router, target: u32, func: FuncKey, args: Payload) -> Reply {
        let signature = router.signature(func);
        let (args, typed) = signature
            .encode_args(&args)
            .map_err(|e| transport::cannot_encode("arguments", e))?;
        let stream = self.stream(router).await?;
        let id = stream.next_id.fetch_add(1, Ordering::Relaxed);
        let (waiter, reply) = oneshot::channel();
        lock(&stream.pending).insert(id, waiter);
        if stream.is_closed() {
            lock(&stream.pending).remove(&id);
            return Err(CallError::connection_lost(router.stop_signal()));
        }
        let mut cancel = CancelOnDrop {
            stream: &stream,
            id,
            done: false,
        };
        let call = CallMessage {
            id,
            kind: Some(call_message::Kind::Call(CallRequest {
                target,
                func: func.0,
                args,
                typed,
            })),
        };
        if stream.calls.send(call).is_err() {
            return Err(CallError::connection_lost(router.stop_signal()));
        }
        let reply = reply.await;
        cancel.done = true;
        match reply.map(|r| r.outcome) {
            Ok(Some(call_reply::Outcome::Results(bytes))) => {
                transport::decode_results(signature, &bytes, typed)
            }
            Ok(Some(call_reply::Outcome::Error(e))) => {
                Err(CallError::from_wire(e.kind.into(), e.message))
            }
            Ok(None) => Err(CallError::Unreachable("empty reply".into())),
            Err(_) => Err(CallError::connection_lost(router.stop_signal())),
        }
    }
}

impl transport::Remote for Remote {
    fn call<'a>(
        &'a self,
        router: &'a Router,
        target: u32,
        func: FuncKey,
        args: Payload,
    ) -> BoxFuture<'a, Reply> {
        Box::pin(self.send(router, target, func, args))
    }
}

/// The reply to one call that arrived.
async fn answer(router: &Router, call: CallRequest) -> CallReply {
    let outcome = async {
        let func = FuncKey(call.func);
        let (signature, results) =
            transport::serve_call(router, call.target, func, &call.args, call.typed).await?;
        signature
            .encode_results(&results)
            .map_err(|e| transport::cannot_encode("results", e))
    }
    .await;
    let outcome = match outcome {
        Ok(bytes) => call_reply::Outcome::Results(bytes),
        Err(e) => call_reply::Outcome::Error(error_message(&e)),
    };
    CallReply {
        outcome: Some(outcome),
    }
}

fn error_message(error: &CallError) -> crate::proto::CallError {
    let (kind, message) = error.to_wire();
    crate::proto::CallError {
        kind: kind.into(),
        message: message.to_string(),
    }
}

/// Serves `Courier.Calls` into the nodes of this process: each call as a
/// task of its own (a `Cancel` aborts it).
struct CourierService {
    router: Arc<Router>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<ReplyMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Courier for CourierService {
    type CallsStream = ReplyStream;

    async fn calls(
        &self,
        request: Request<Streaming<CallMessage>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut incoming = request.into_inner();
        let (replies, outgoing) = mpsc::unbounded_channel();
        let router = self.router.clone();
        tokio::spawn(async move {
            let calls: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>> = Arc::default();
            loop {
                let CallMessage { id, kind } = match incoming.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    // A message this side refuses (too large, not
                    // protobuf): the stream ends with that status.
                    Err(status) => {
                        let _ = replies.send(Err(status));
                        break;
                    }
                };
                match kind {
                    Some(call_message::Kind::Call(call)) => {
                        let (router, replies, finished) =
                            (router.clone(), replies.clone(), calls.clone());
                        // Registered before the task can run, so it can
                        // always remove itself.
                        let mut running = lock(&calls);
                        let task = tokio::spawn(async move {
                            let reply = answer(&router, call).await;
                            lock(&finished).remove(&id);
                            let _ = replies.send(Ok(ReplyMessage {
                                id,
                                reply: Some(reply),
                            }));
                        });
                        running.insert(id, task.abort_handle());
                    }
                    Some(call_message::Kind::Cancel(Cancel {})) => {
                        if let Some(call) = lock(&calls).remove(&id) {
                            call.abort();
                        }
                    }
                    // A kind this host does not know: an error for that id.
                    None => {
                        let error = CallError::Unreachable("unknown message kind".into());
                        let reply = CallReply {
                            outcome: Some(call_reply::Outcome::Error(error_message(&error))),
                        };
                        let _ = replies.send(Ok(ReplyMessage {
                            id,
                            reply: Some(reply),
                        }));
                    }
                }
            }
            // The caller is gone: so are the calls it was waiting for.
            for (_, call) in lock(&calls).drain() {
                call.abort();
            }
        });
        Ok(Response::new(
            Box::pin(UnboundedReceiverStream::new(outgoing)) as ReplyStream,
        ))
    }
}

/// Serve calls into `router`'s local nodes until `shutdown` resolves.
async fn serve(
    listener: Listener,
    router: Arc<Router>,
    spin: Duration,
    secret: Secret,
    security: Security,
    shutdown: BoxFuture<'static, ()>,
) -> Result<()> {
    let service = CourierServer::new(CourierService { router })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        RequireSecret(Arc::new(secret)),
    );
    let incoming = security.incoming(listener, spin);
    proto::control_server(&security)
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(FRAME)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("courier server failed")
}
