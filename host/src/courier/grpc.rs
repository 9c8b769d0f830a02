//! The courier between processes: gRPC (tonic) over Unix sockets. Each
//! worker process serves `Courier.Call` for the nodes it hosts; a caller in
//! another process reaches them through a [`Remote`] route. Values travel in
//! the binary encoding of `codec` (or the typed-shape encoding), directed by
//! the function's [`Signature`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Request, Response, Status};

use super::{CallError, FuncKey, Payload, Reply, Router, Secret};

/// The generated protocol (proto/lp.proto).
pub mod proto {
    tonic::include_proto!("lp.v1");
}

use proto::courier_client::CourierClient;
use proto::courier_server::{Courier, CourierServer};
use proto::{CallReply, CallRequest, call_error, call_reply};

/// Large payloads are allowed (at least 64 MiB per call).
pub const MAX_MESSAGE: usize = 1 << 30;

/// The metadata key that carries the launch's secret.
const SECRET_KEY: &str = "lp-secret";

/// Adds the launch's secret to every request a client sends.
#[derive(Clone)]
pub struct PresentSecret(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl PresentSecret {
    pub fn new(secret: &Secret) -> PresentSecret {
        PresentSecret(secret.to_hex().parse().expect("hex is valid metadata"))
    }
}

impl tonic::service::Interceptor for PresentSecret {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(SECRET_KEY, self.0.clone());
        Ok(request)
    }
}

/// Refuses every request that does not carry the launch's secret.
#[derive(Clone)]
pub struct RequireSecret(pub Arc<Secret>);

impl tonic::service::Interceptor for RequireSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get(SECRET_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| hex::decode(v).ok());
        match presented {
            Some(bytes) if self.0.matches(&bytes) => Ok(request),
            _ => Err(Status::unauthenticated(
                "this endpoint serves the members of one launch only",
            )),
        }
    }
}

/// A client of a launch's endpoint, presenting its secret.
pub type Authenticated = tonic::service::interceptor::InterceptedService<Channel, PresentSecret>;

/// A channel to the process listening on a Unix socket; connects lazily.
pub fn channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::from_static("http://lp.local").connect_with_connector_lazy(tower::service_fn(
        move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        },
    ))
}

/// The nodes of another process, reached over its socket.
pub struct Remote {
    client: CourierClient<Authenticated>,
    socket: PathBuf,
    /// Whether the process has been seen listening since it (re)started.
    ready: AtomicBool,
}

impl Remote {
    pub fn new(socket: &Path, secret: Secret) -> Remote {
        let client = CourierClient::with_interceptor(channel(socket), PresentSecret::new(&secret))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Remote {
            client,
            socket: socket.to_path_buf(),
            ready: AtomicBool::new(false),
        }
    }

    /// Wait until the process listens (wait-for-ready); the caller's
    /// deadline bounds the wait.
    async fn wait_ready(&self, router: &Router) -> Result<(), CallError> {
        let mut backoff = Duration::from_micros(500);
        while !self.ready.load(Ordering::Acquire) {
            if UnixStream::connect(&self.socket).await.is_ok() {
                self.ready.store(true, Ordering::Release);
            } else if router.stop_signal().is_stopping() {
                return Err(CallError::Stopping);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Send one call. A call sent once is never sent again: if the process
    /// dies under it, the caller gets an error, and later calls wait for
    /// the process to be back (if it is restarted).
    pub async fn call(&self, router: &Router, target: u32, func: FuncKey, args: Payload) -> Reply {
        let signature = router.signature(func);
        let (bytes, typed) = signature
            .encode_args(&args)
            .map_err(|e| CallError::Unreachable(format!("cannot encode arguments: {e}")))?;
        let request = CallRequest {
            target,
            func: func.0,
            args: bytes,
            typed,
        };
        self.wait_ready(router).await?;
        let mut client = self.client.clone();
        let reply = match client.call(Request::new(request)).await {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                self.ready.store(false, Ordering::Release);
                return Err(from_status(&status, router));
            }
        };
        match reply.outcome {
            Some(call_reply::Outcome::Results(bytes)) => signature
                .decode_results(&bytes, typed)
                .map_err(|e| CallError::Unreachable(format!("cannot decode the reply: {e}"))),
            Some(call_reply::Outcome::Error(e)) => Err(from_proto(e)),
            None => Err(CallError::Unreachable("empty reply".into())),
        }
    }
}

fn from_status(status: &Status, router: &Router) -> CallError {
    if router.stop_signal().is_stopping() {
        CallError::Stopping
    } else {
        CallError::Unreachable(format!("transport: {}", status.message()))
    }
}

fn from_proto(e: proto::CallError) -> CallError {
    match call_error::Kind::try_from(e.kind).unwrap_or(call_error::Kind::Unreachable) {
        call_error::Kind::Unreachable => CallError::Unreachable(e.message),
        call_error::Kind::Timeout => CallError::Timeout,
        call_error::Kind::RemoteTrap => CallError::RemoteTrap(e.message),
        call_error::Kind::Stopping => CallError::Stopping,
    }
}

fn to_proto(e: CallError) -> proto::CallError {
    let (kind, message) = match e {
        CallError::Unreachable(m) => (call_error::Kind::Unreachable, m),
        CallError::Timeout => (call_error::Kind::Timeout, String::new()),
        CallError::RemoteTrap(m) => (call_error::Kind::RemoteTrap, m),
        CallError::Stopping => (call_error::Kind::Stopping, String::new()),
    };
    proto::CallError {
        kind: kind as i32,
        message,
    }
}

/// Serves `Courier.Call` into the nodes of this process.
struct CourierService {
    router: Arc<Router>,
}

#[tonic::async_trait]
impl Courier for CourierService {
    async fn call(&self, request: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        let CallRequest {
            target,
            func,
            args,
            typed,
        } = request.into_inner();
        let func = FuncKey(func);
        let outcome = async {
            let signature = self.router.signature_of_received(func)?;
            let args = signature
                .decode_args(&args, typed)
                .map_err(|e| CallError::Unreachable(format!("cannot decode arguments: {e}")))?;
            // The caller's side keeps the deadline.
            let results = self
                .router
                .call_with_deadline(target, func, args, None)
                .await?;
            signature
                .encode_results(&results)
                .map_err(|e| CallError::Unreachable(format!("cannot encode results: {e}")))
        }
        .await;
        let outcome = match outcome {
            Ok(bytes) => call_reply::Outcome::Results(bytes),
            Err(e) => call_reply::Outcome::Error(to_proto(e)),
        };
        Ok(Response::new(CallReply {
            outcome: Some(outcome),
        }))
    }
}

/// Listen on `socket` (inside a tokio runtime).
pub fn bind(socket: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    // Its owner's only, whatever the umask (the run directory is, too).
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to its owner", socket.display()))?;
    Ok(listener)
}

/// Serve calls into `router`'s local nodes until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    router: Arc<Router>,
    secret: Secret,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let service = CourierServer::new(CourierService { router })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        RequireSecret(Arc::new(secret)),
    );
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("courier server failed")
}
