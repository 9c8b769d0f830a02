//! rustls configurations for a launch (ring provider, TLS 1.3 only) and
//! the acceptor/connector a transport wraps its connections with: mutual
//! TLS where both ends hold certificates of the launch CA and trust that CA
//! alone (no webpki roots, no system store), and the two one-sided configs
//! of the join handshake.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, CommonState, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use super::ca::{Credentials, Role};
use super::pin::{CertPin, PinnedServerVerifier};

/// How long a TLS handshake may take before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The crypto provider every config of a launch uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(credentials: &Credentials) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(credentials.ca_cert().clone())
        .context("the launch CA's certificate is not usable as a trust anchor")?;
    Ok(Arc::new(roots))
}

/// A server config that requires a client certificate chained to the
/// launch CA and presents this process's own certificate.
pub fn server_config(credentials: &Credentials) -> Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(credentials)?, provider())
        .build()
        .context("cannot build the client-certificate verifier")?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![credentials.cert().clone()], credentials.key())
        .context("this process's certificate and key do not make a TLS server")?;
    Ok(Arc::new(config))
}

/// A client config that trusts only the launch CA and presents this
/// process's own certificate.
pub fn client_config(credentials: &Credentials) -> Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_root_certificates(roots(credentials)?)
        .with_client_auth_cert(vec![credentials.cert().clone()], credentials.key())
        .context("this process's certificate and key do not make a TLS client")?;
    Ok(Arc::new(config))
}

/// The launcher's join listener: its own certificate, no client
/// certificate asked for (a joining agent has none yet).
pub fn join_server_config(launcher: &Credentials) -> Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_no_client_auth()
        .with_single_cert(vec![launcher.cert().clone()], launcher.key())
        .context("the launcher's certificate and key do not make a TLS server")?;
    Ok(Arc::new(config))
}

/// A joining agent's client: no client certificate, and the server is
/// accepted by `pin` alone.
pub fn pinned_client_config(pin: CertPin) -> Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(pin, provider())))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Mutual TLS for one process of a launch: accepts connections from, and
/// connects to, other processes holding certificates of the same CA.
#[derive(Clone)]
pub struct MutualTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    handshake_timeout: Duration,
}

impl MutualTls {
    pub fn new(credentials: &Credentials) -> Result<MutualTls> {
        Ok(MutualTls {
            acceptor: TlsAcceptor::from(server_config(credentials)?),
            connector: TlsConnector::from(client_config(credentials)?),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// The same, with handshakes bounded by `timeout` instead of
    /// [`HANDSHAKE_TIMEOUT`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> MutualTls {
        self.handshake_timeout = timeout;
        self
    }

    /// Run the server side of the handshake on `io`. The stream is handed
    /// on only if the peer presented a certificate chained to the launch
    /// CA; anything else (no certificate, another CA's, no TLS at all,
    /// garbage, silence past the timeout) is an error and `io` is dropped.
    pub async fn accept<IO>(&self, io: IO) -> Result<server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        bounded(self.handshake_timeout, self.acceptor.accept(io))
            .await
            .context("TLS handshake with a connecting peer failed")
    }

    /// Run the client side of the handshake on `io`, requiring the server
    /// to hold a certificate of the launch CA valid for `peer` (a role's
    /// [`Role::server_name`] or the address it was issued for).
    pub async fn connect<IO>(
        &self,
        io: IO,
        peer: ServerName<'static>,
    ) -> Result<client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = peer.to_str().into_owned();
        bounded(self.handshake_timeout, self.connector.connect(peer, io))
            .await
            .with_context(|| format!("TLS handshake with {name} failed"))
    }
}

/// `handshake`, or an error once `timeout` has passed.
pub(super) async fn bounded<T>(
    timeout: Duration,
    handshake: impl Future<Output = std::io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, handshake).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(anyhow!("timed out after {timeout:?}")),
    }
}

/// The certificate the peer of an established connection presented.
pub fn peer_certificate(connection: &CommonState) -> Option<&CertificateDer<'static>> {
    connection.peer_certificates()?.first()
}

/// Whether `cert` names `role` (has its DNS name among its subject
/// alternative names). Says nothing of who signed it: use it on a
/// certificate a handshake has already verified.
pub fn names_role(cert: &CertificateDer<'_>, role: Role) -> bool {
    ParsedCertificate::try_from(cert)
        .and_then(|parsed| rustls::client::verify_server_name(&parsed, &role.server_name()))
        .is_ok()
}
