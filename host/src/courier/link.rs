//! A connection between two processes of a launch as HTTP/2 runs on it:
//! the socket itself ([`SpinIo`]), or mutual TLS over it when the launch
//! spans machines ([`MutualTls`]: both ends hold certificates of the
//! launch CA). The gRPC courier and the control channel get every
//! connection they dial or accept through here, so TLS is applied in one
//! place. A connection that fails its handshake (no certificate, another
//! launch's, plain TCP, garbage) is dropped here and never reaches HTTP/2.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;
use tonic::transport::server::Connected;

use super::endpoint::{Connection, Endpoint, Listener};
use super::spin_socket::{SpinIo, SpinSocket};
use crate::trust::MutualTls;

/// How many accepted connections may be in their TLS handshake at once;
/// more wait to be accepted (the kernel's backlog holds them).
const HANDSHAKES_AT_ONCE: usize = 64;

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One connection, plain or TLS, as a byte stream.
pub struct Link(Box<dyn Io>);

/// How this process's connections are secured: not at all between the
/// processes of one machine (they are owner-only Unix sockets or loopback
/// and present the launch's secret), mutual TLS between machines.
#[derive(Clone, Default)]
pub struct Security {
    tls: Option<Arc<MutualTls>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_tls() { "mutual TLS" } else { "plain" })
    }
}

impl Security {
    /// Connections are plain.
    pub fn plain() -> Security {
        Security { tls: None }
    }

    /// Every connection is mutual TLS with these credentials.
    pub fn mutual_tls(tls: MutualTls) -> Security {
        Security {
            tls: Some(Arc::new(tls)),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The client side of a connection dialed to `endpoint`: with TLS, the
    /// peer must hold a launch certificate issued for the endpoint's
    /// address.
    pub async fn client(
        &self,
        connected: Connection,
        endpoint: &Endpoint,
        spin: Duration,
    ) -> io::Result<Link> {
        let io = SpinIo::new(SpinSocket::new(connected, spin)?);
        let Some(tls) = &self.tls else {
            return Ok(Link(Box::new(io)));
        };
        let name = match endpoint {
            Endpoint::Tcp(addr) => ServerName::IpAddress(addr.ip().into()),
            Endpoint::Unix(_) => crate::trust::Role::Launcher.server_name(),
        };
        let stream = tls
            .connect(io, name)
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, format!("{e:#}")))?;
        Ok(Link(Box::new(stream)))
    }

    /// The server side of an accepted connection; with TLS, only a peer
    /// holding a certificate of the launch CA gets through.
    pub async fn server(&self, connected: Connection, spin: Duration) -> io::Result<Link> {
        let io = SpinIo::new(SpinSocket::new(connected, spin)?);
        let Some(tls) = &self.tls else {
            return Ok(Link(Box::new(io)));
        };
        let stream = tls
            .accept(io)
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, format!("{e:#}")))?;
        Ok(Link(Box::new(stream)))
    }

    /// The connections accepted at `listener` that pass the handshake, for
    /// a tonic server. Handshakes run side by side (a slow or silent peer
    /// holds up no one else); a refused one is logged and dropped.
    pub fn incoming(
        &self,
        listener: Listener,
        spin: Duration,
    ) -> impl Stream<Item = io::Result<Link>> + Send + 'static {
        let security = self.clone();
        let (links, receiver) = tokio::sync::mpsc::channel(HANDSHAKES_AT_ONCE);
        tokio::spawn(async move {
            let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_AT_ONCE));
            loop {
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let connected = match listener.accept().await {
                    Ok(connected) => connected,
                    Err(e) => {
                        tracing::debug!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if links.is_closed() {
                    return;
                }
                let (security, links) = (security.clone(), links.clone());
                tokio::spawn(async move {
                    match security.server(connected, spin).await {
                        Ok(link) => {
                            let _ = links.send(Ok(link)).await;
                        }
                        Err(e) => tracing::debug!("refused a connection: {e}"),
                    }
                    drop(permit);
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl Connected for Link {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}
