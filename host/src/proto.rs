//! lp's gRPC protocol between the processes of a launch (proto/lp.proto):
//! the generated messages, clients and servers of the courier stream and of
//! the launcher's control stream, the message size limit, and how a client
//! presents (and a server requires) the launch's secret in its metadata.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::courier::spin_socket::{SpinIo, SpinSocket};
use crate::courier::{Endpoint, Listener, Secret};

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
/// connection dialed through [`Endpoint::dial`]). Its reads park at once
/// (no spinning): control messages are few.
pub fn channel(endpoint: &Endpoint) -> tonic::transport::Channel {
    let endpoint = endpoint.clone();
    // The URI is required by tonic but unused: the connector dials the endpoint.
    tonic::transport::Endpoint::from_static("http://lp.local").connect_with_connector_lazy(
        tower::service_fn(move |_: tonic::transport::Uri| {
            let endpoint = endpoint.clone();
            async move {
                let socket = SpinSocket::new(endpoint.dial().await?, std::time::Duration::ZERO)?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(SpinIo::new(socket)))
            }
        }),
    )
}

/// The connections accepted at `listener`, for a tonic server. Its reads
/// park at once, as [`channel`]'s do.
pub fn incoming(
    listener: Listener,
) -> impl tokio_stream::Stream<Item = std::io::Result<SpinIo>> + Send {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener
            .accept()
            .await
            .and_then(|connected| SpinSocket::new(connected, std::time::Duration::ZERO))
            .map(SpinIo::new);
        Some((accepted, listener))
    })
}
