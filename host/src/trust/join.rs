//! The join handshake. An agent holding a [`JoinToken`] connects to the
//! launcher over TLS without a client certificate, accepts the launcher by
//! the token's pin alone, and presents the token's secret; the launcher
//! compares it in constant time and, if it matches, issues the agent a key
//! and a certificate of the launch CA and sends them with the CA's
//! certificate. From then on the agent speaks mutual TLS ([`MutualTls`]).
//!
//! Each side sends one length-prefixed JSON message ([`super::frame`]),
//! bounded in size; the launcher bounds the whole exchange in time, so a
//! peer that sends garbage or nothing is dropped, never waited on forever.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::ca::{Credentials, LaunchCa, Role};
use super::frame::{read_message, write_message};
use super::pin::CertPin;
use super::tls::{MutualTls, bounded, join_server_config, pinned_client_config};
use super::token::JoinToken;
use crate::courier::Secret;

/// How long one join may take, from the TCP connection to the reply.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest message either side of a join reads.
pub const MAX_JOIN_MESSAGE: usize = 64 * 1024;

/// The most addresses an agent may ask its certificate to name.
const MAX_AGENT_ADDRESSES: usize = 8;

/// What the agent sends once TLS is up.
#[derive(Serialize, Deserialize)]
struct JoinRequest {
    /// The join secret, hex.
    secret: String,
    /// Addresses (IP or DNS name) the agent will be reached at, for its
    /// certificate.
    addresses: Vec<String>,
}

/// What the launcher answers.
#[derive(Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
enum JoinReply {
    /// DER, base64.
    Accepted {
        agent: u32,
        ca_cert: String,
        cert: String,
        key: String,
        /// Where to attach next (the launch's agent service), if anywhere.
        #[serde(default)]
        attach: String,
    },
    Refused {
        reason: String,
    },
}

/// The launcher's answer to a join was a refusal (a wrong secret, a bad
/// address): trying another of its addresses would get the same answer.
#[derive(Debug)]
pub struct JoinRefused(pub String);

impl fmt::Display for JoinRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the launcher refused the join: {}", self.0)
    }
}

impl std::error::Error for JoinRefused {}

/// An agent the launcher has admitted.
#[derive(Debug)]
pub struct Admitted {
    /// Its id (its role is `Role::Agent(agent)`).
    pub agent: u32,
    /// Where it connected from.
    pub peer: SocketAddr,
    /// The addresses its certificate names.
    pub addresses: Vec<String>,
}

/// The launcher's side of joins: its join listener's TLS (its own
/// certificate, no client certificate asked for), the join secret and the
/// CA that issues joining agents their certificates.
pub struct JoinDesk {
    ca: Arc<LaunchCa>,
    acceptor: TlsAcceptor,
    pin: CertPin,
    secret: Secret,
    next_agent: AtomicU32,
    timeout: Duration,
    /// Where an admitted agent attaches next (the launch's agent service).
    attach: String,
}

impl JoinDesk {
    /// A desk presenting `launcher`'s certificate (issued by `ca`) and
    /// admitting agents that present `secret`.
    pub fn new(ca: Arc<LaunchCa>, launcher: &Credentials, secret: Secret) -> Result<JoinDesk> {
        Ok(JoinDesk {
            acceptor: TlsAcceptor::from(join_server_config(launcher)?),
            pin: CertPin::of(launcher.cert()),
            ca,
            secret,
            next_agent: AtomicU32::new(0),
            timeout: JOIN_TIMEOUT,
            attach: String::new(),
        })
    }

    /// The same, telling admitted agents to attach at `address`.
    pub fn with_attach(mut self, address: String) -> JoinDesk {
        self.attach = address;
        self
    }

    /// The same, with each join bounded by `timeout` instead of
    /// [`JOIN_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> JoinDesk {
        self.timeout = timeout;
        self
    }

    /// The token that lets an agent join through this desk at `addresses`.
    pub fn token(&self, addresses: Vec<String>) -> Result<JoinToken> {
        JoinToken::new(addresses, self.pin, self.secret.clone())
    }

    /// Serve one join on `tcp`. An agent that presents the secret gets the
    /// next agent id, a certificate for it and the CA's certificate, and is
    /// returned; anything else (a wrong secret, no TLS, garbage, silence
    /// past the timeout, a pin mismatch on the agent's side) is an error,
    /// and the connection is closed.
    pub async fn admit(&self, tcp: TcpStream) -> Result<Admitted> {
        let peer = tcp.peer_addr().context("a joining peer's address")?;
        match tokio::time::timeout(self.timeout, self.exchange(tcp, peer)).await {
            Ok(result) => result.with_context(|| format!("join from {peer} failed")),
            Err(_) => Err(anyhow!(
                "join from {peer} failed: not done after {:?}",
                self.timeout
            )),
        }
    }

    async fn exchange(&self, tcp: TcpStream, peer: SocketAddr) -> Result<Admitted> {
        let mut tls = self.acceptor.accept(tcp).await.context("TLS handshake")?;
        let request: JoinRequest = read_message(&mut tls, MAX_JOIN_MESSAGE)
            .await
            .context("reading the join request")?;
        let presented = hex::decode(&request.secret).unwrap_or_default();
        let verdict = if !self.secret.matches(&presented) {
            Err("wrong join secret".to_string())
        } else {
            self.issue(request.addresses, peer)
        };
        let reply = match &verdict {
            Ok((admitted, credentials)) => JoinReply::Accepted {
                agent: admitted.agent,
                ca_cert: STANDARD.encode(credentials.ca_cert()),
                cert: STANDARD.encode(credentials.cert()),
                key: STANDARD.encode(credentials.key_der()),
                attach: self.attach.clone(),
            },
            Err(reason) => JoinReply::Refused {
                reason: reason.clone(),
            },
        };
        write_message(&mut tls, &reply)
            .await
            .context("sending the join reply")?;
        // The reply is on its way; a peer that is already gone changes nothing.
        let _ = tls.shutdown().await;
        match verdict {
            Ok((admitted, _)) => Ok(admitted),
            Err(reason) => bail!("refused: {reason}"),
        }
    }

    /// A certificate for the next agent, naming `addresses` and the
    /// address it connected from; or why not.
    fn issue(
        &self,
        mut addresses: Vec<String>,
        peer: SocketAddr,
    ) -> Result<(Admitted, Credentials), String> {
        if addresses.len() > MAX_AGENT_ADDRESSES {
            return Err(format!(
                "at most {MAX_AGENT_ADDRESSES} addresses, not {}",
                addresses.len()
            ));
        }
        let seen = peer.ip().to_string();
        if !addresses.contains(&seen) {
            addresses.push(seen);
        }
        let agent = self.next_agent.fetch_add(1, Ordering::Relaxed);
        let credentials = self
            .ca
            .issue(Role::Agent(agent), &addresses)
            .map_err(|e| format!("{e:#}"))?;
        let admitted = Admitted {
            agent,
            peer,
            addresses,
        };
        Ok((admitted, credentials))
    }
}

/// An agent's result of joining a launch.
#[derive(Debug)]
pub struct Joined {
    pub agent: u32,
    pub credentials: Credentials,
    /// Where the launcher said to attach next (empty: nowhere).
    pub attach: String,
}

/// Join the launch `token` names: try each of its launcher addresses in
/// turn (each within `timeout`) until one admits this agent, asking for a
/// certificate that names `addresses` (the agent's own, IP or DNS).
pub async fn join(token: &JoinToken, addresses: &[String], timeout: Duration) -> Result<Joined> {
    let connector = TlsConnector::from(pinned_client_config(token.pin())?);
    let mut failures = Vec::new();
    for launcher in token.addresses() {
        let attempt = join_at(launcher, &connector, token, addresses);
        let outcome = match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow!("not done after {timeout:?}")),
        };
        match outcome {
            Ok(joined) => return Ok(joined),
            Err(e) if e.is::<JoinRefused>() => {
                return Err(e.context(format!("joining the launch at {launcher}")));
            }
            Err(e) => failures.push(format!("{launcher}: {e:#}")),
        }
    }
    bail!(
        "cannot join the launch at any of its addresses:\n  {}",
        failures.join("\n  ")
    )
}

async fn join_at(
    launcher: &str,
    connector: &TlsConnector,
    token: &JoinToken,
    addresses: &[String],
) -> Result<Joined> {
    let tcp = TcpStream::connect(launcher)
        .await
        .context("cannot connect")?;
    let mut tls = bounded(
        super::tls::HANDSHAKE_TIMEOUT,
        connector.connect(Role::Launcher.server_name(), tcp),
    )
    .await
    .context("TLS handshake with the launcher failed")?;
    let request = JoinRequest {
        secret: token.secret().to_hex(),
        addresses: addresses.to_vec(),
    };
    write_message(&mut tls, &request)
        .await
        .context("sending the join request")?;
    let reply: JoinReply = read_message(&mut tls, MAX_JOIN_MESSAGE)
        .await
        .context("reading the launcher's reply")?;
    match reply {
        JoinReply::Refused { reason } => Err(JoinRefused(reason).into()),
        JoinReply::Accepted {
            agent,
            ca_cert,
            cert,
            key,
            attach,
        } => {
            let decode = |what: &str, text: &str| {
                STANDARD
                    .decode(text)
                    .with_context(|| format!("the launcher sent a {what} that is not base64"))
            };
            let credentials = Credentials::from_der(
                Role::Agent(agent),
                decode("CA certificate", &ca_cert)?,
                decode("certificate", &cert)?,
                decode("key", &key)?,
            );
            // Refuse now, not at first use, what rustls cannot use.
            MutualTls::new(&credentials).context("the launcher sent unusable credentials")?;
            Ok(Joined {
                agent,
                credentials,
                attach,
            })
        }
    }
}
