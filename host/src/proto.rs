//! lp's gRPC protocol between the processes of a launch (proto/lp.proto):
//! the generated messages, clients and servers of the courier stream and of
//! the launcher's control stream, the message size limit, and how a client
//! presents (and a server requires) the launch's secret in its metadata.

use std::sync::Arc;

use tonic::{Request, Status};

use std::time::Duration;

use crate::courier::{Endpoint, Link, Listener, Secret, Security};

tonic::include_proto!("lp.v1");

/// Large payloads are allowed (at least 64 MiB per call).
pub const MAX_MESSAGE: usize = 1 << 30;

/// The metadata key that carries the launch's secret.
const SECRET_KEY: &str = "lp-secret";

/// Adds the launch's secret to every request (stream open) a client sends.
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
pub type Authenticated =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, PresentSecret>;

/// A channel to the process listening at `endpoint`; connects lazily (each
/// connection dialed through [`Endpoint::dial`], secured as `security`
/// says). Its reads park at once (no spinning): control messages are few.
/// Across machines (mutual TLS), HTTP/2 pings every [`KEEPALIVE`] notice
/// a peer that is gone (a machine that died, a cut link) within about
/// twice that; on one machine a process's exit says it.
pub fn channel(endpoint: &Endpoint, security: &Security) -> tonic::transport::Channel {
    let (endpoint, security) = (endpoint.clone(), security.clone());
    // The URI is required by tonic but unused: the connector dials the endpoint.
    let mut channel = tonic::transport::Endpoint::from_static("http://lp.local");
    if security.is_tls() {
        channel = channel
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true);
    }
    channel.connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
        let (endpoint, security) = (endpoint.clone(), security.clone());
        async move {
            let connected = endpoint.dial().await?;
            let link = security
                .client(connected, &endpoint, Duration::ZERO)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(link))
        }
    }))
}

/// How often either end of a control stream pings the other, and how long
/// it waits for the answer.
pub const KEEPALIVE: Duration = Duration::from_millis(500);

/// A tonic server for the control services, pinging its clients as
/// [`channel`] pings it (across machines).
pub fn control_server(security: &Security) -> tonic::transport::Server {
    let server = tonic::transport::Server::builder();
    if !security.is_tls() {
        return server;
    }
    server
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE))
}

/// The connections accepted at `listener` that pass `security`'s
/// handshake, for a tonic server. Their reads park at once, as
/// [`channel`]'s do.
pub fn incoming(
    listener: Listener,
    security: &Security,
) -> impl tokio_stream::Stream<Item = std::io::Result<Link>> + Send {
    security.incoming(listener, Duration::ZERO)
}
