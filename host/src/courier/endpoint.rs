//! Where a process of a launch listens for courier calls: a Unix socket
//! path or a TCP address (`unix:/path`, `tcp:1.2.3.4:5`). Binding, dialing
//! and the one wait-for-ready backoff live here, so every transport gets
//! its connections the same way; the transport then runs its protocol on
//! the connected socket (and is where a TLS layer would wrap it).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

use super::CallError;
use crate::stop::StopSignal;

/// An address a process of a launch listens at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Endpoint {
    /// A Unix socket at this path (owner-only).
    Unix(PathBuf),
    /// A TCP address; binding port 0 takes any free port.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("a unix: endpoint needs a path".into());
            }
            Ok(Endpoint::Unix(PathBuf::from(path)))
        } else if let Some(addr) = text.strip_prefix("tcp:") {
            addr.parse()
                .map(Endpoint::Tcp)
                .map_err(|e| format!("bad TCP address {addr:?}: {e}"))
        } else {
            Err(format!(
                "{text:?} is not an endpoint (unix:PATH or tcp:HOST:PORT)"
            ))
        }
    }
}

impl From<Endpoint> for String {
    fn from(endpoint: Endpoint) -> String {
        endpoint.to_string()
    }
}

impl TryFrom<String> for Endpoint {
    type Error = String;

    fn try_from(text: String) -> Result<Endpoint, String> {
        text.parse()
    }
}

/// A connected socket (non-blocking, no longer registered with tokio): the
/// transports register it themselves and read it their own way.
pub enum Connection {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Connection::Unix(stream) => stream.as_raw_fd(),
            Connection::Tcp(stream) => stream.as_raw_fd(),
        }
    }
}

impl Connection {
    fn unix(stream: UnixStream) -> io::Result<Connection> {
        Ok(Connection::Unix(stream.into_std()?))
    }

    fn tcp(stream: TcpStream) -> io::Result<Connection> {
        // Calls are small messages answered at once: never hold one back.
        stream.set_nodelay(true)?;
        Ok(Connection::Tcp(stream.into_std()?))
    }

    /// Close one or both directions.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self {
            Connection::Unix(stream) => stream.shutdown(how),
            Connection::Tcp(stream) => stream.shutdown(how),
        }
    }
}

/// A bound endpoint, accepting connections.
pub enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl Listener {
    /// The address really bound (a TCP port 0 resolved to the port taken).
    pub fn endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Unix(_, path) => Ok(Endpoint::Unix(path.clone())),
            Listener::Tcp(listener) => listener.local_addr().map(Endpoint::Tcp),
        }
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<Connection> {
        match self {
            Listener::Unix(listener, _) => Connection::unix(listener.accept().await?.0),
            Listener::Tcp(listener) => Connection::tcp(listener.accept().await?.0),
        }
    }
}

impl Endpoint {
    /// Listen here (inside a tokio runtime). A Unix socket replaces a stale
    /// one at its path and is made its owner's only.
    pub fn bind(&self) -> Result<Listener> {
        match self {
            Endpoint::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path)
                    .with_context(|| format!("cannot listen on {}", path.display()))?;
                // Its owner's only, whatever the umask (the run directory is, too).
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
                Ok(Listener::Unix(listener, path.clone()))
            }
            Endpoint::Tcp(addr) => {
                let bind = || -> io::Result<TcpListener> {
                    let socket = match addr {
                        SocketAddr::V4(_) => TcpSocket::new_v4()?,
                        SocketAddr::V6(_) => TcpSocket::new_v6()?,
                    };
                    // A restarted process takes its old port again at once.
                    socket.set_reuseaddr(true)?;
                    socket.bind(*addr)?;
                    socket.listen(1024)
                };
                Ok(Listener::Tcp(
                    bind().with_context(|| format!("cannot listen on {self}"))?,
                ))
            }
        }
    }

    /// Connect once.
    pub async fn dial(&self) -> io::Result<Connection> {
        match self {
            Endpoint::Unix(path) => Connection::unix(UnixStream::connect(path).await?),
            Endpoint::Tcp(addr) => Connection::tcp(TcpStream::connect(addr).await?),
        }
    }

    /// Connect once the process listens (wait-for-ready), backing off from
    /// 0.5 ms to 50 ms between tries; the caller's deadline bounds the
    /// wait, and a stopping program ends it, even in the middle of a try
    /// (a machine that is gone leaves a TCP connect unanswered for minutes).
    pub async fn dial_when_ready(&self, stop: &StopSignal) -> Result<Connection, CallError> {
        let mut backoff = Duration::from_micros(500);
        loop {
            let dialed = tokio::select! {
                dialed = self.dial() => dialed,
                () = stop.wait() => return Err(CallError::Stopping),
            };
            match dialed {
                Ok(connection) => return Ok(connection),
                Err(_) if stop.is_stopping() => return Err(CallError::Stopping),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_read_back_as_written() {
        for text in ["unix:/run/lp/w0.sock", "tcp:127.0.0.1:5000", "tcp:[::1]:7"] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
        assert_eq!(
            "tcp:1.2.3.4:5".parse::<Endpoint>(),
            Ok(Endpoint::Tcp("1.2.3.4:5".parse().unwrap()))
        );
        for bad in [
            "/run/w0.sock",
            "unix:",
            "tcp:localhost",
            "tcp:1.2.3.4",
            "udp:1.2.3.4:5",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Endpoint::Unix("/a b".into())).unwrap();
        assert_eq!(json, "\"unix:/a b\"");
        assert_eq!(
            serde_json::from_str::<Endpoint>(&json).unwrap(),
            Endpoint::Unix("/a b".into())
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_tcp_port_0_listener_reports_the_port_it_took_and_is_dialed_there() {
        let listener = Endpoint::Tcp("127.0.0.1:0".parse().unwrap())
            .bind()
            .unwrap();
        let bound = listener.endpoint().unwrap();
        let Endpoint::Tcp(addr) = &bound else {
            panic!("{bound}")
        };
        assert_ne!(addr.port(), 0);
        let (dialed, accepted) = tokio::join!(bound.dial(), listener.accept());
        let (dialed, accepted) = (dialed.unwrap(), accepted.unwrap());
        assert!(matches!(dialed, Connection::Tcp(_)));
        assert!(matches!(accepted, Connection::Tcp(_)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_unix_listener_is_its_owners_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        let listener = Endpoint::Unix(path.clone()).bind().unwrap();
        assert_eq!(listener.endpoint().unwrap(), Endpoint::Unix(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let endpoint = Endpoint::Unix(path);
        let (dialed, accepted) = tokio::join!(endpoint.dial(), listener.accept());
        assert!(dialed.is_ok() && accepted.is_ok());
    }
}
