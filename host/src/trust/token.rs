//! Join tokens: what an agent needs to join a launch (the launcher's
//! addresses, the SHA-256 pin of the launcher's certificate and the
//! launch's 256-bit join secret) as one printable string,
//! `lp1.<base64url>`. A token is read from a file only the user can read,
//! or from the `LP_JOIN_TOKEN` environment variable; never from argv,
//! where every user of the machine could see it.

use std::fmt;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::ca::is_dns_name;
use super::pin::CertPin;
use crate::courier::Secret;
use crate::files::{Symlinks, open_regular};

/// The environment variable a token may be passed in.
pub const TOKEN_ENV: &str = "LP_JOIN_TOKEN";

/// What every token of this format starts with.
pub const TOKEN_PREFIX: &str = "lp1.";

/// The most addresses a token holds, and the longest token read.
const MAX_ADDRESSES: usize = 16;
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The pin and secret fill the first 64 bytes of the decoded token; the
/// addresses follow, newline-separated.
const FIXED_LEN: usize = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    addresses: Vec<String>,
    pin: CertPin,
    secret: Secret,
}

impl JoinToken {
    /// A token for a launcher reachable at `addresses` (each `host:port`,
    /// the host an IP address, `[v6]`, or a DNS name), whose join listener
    /// presents the certificate pinned by `pin`.
    pub fn new(addresses: Vec<String>, pin: CertPin, secret: Secret) -> Result<JoinToken> {
        if addresses.is_empty() {
            bail!("a join token needs at least one launcher address");
        }
        if addresses.len() > MAX_ADDRESSES {
            bail!(
                "a join token holds at most {MAX_ADDRESSES} launcher addresses, not {}",
                addresses.len()
            );
        }
        for address in &addresses {
            check_address(address)?;
        }
        Ok(JoinToken {
            addresses,
            pin,
            secret,
        })
    }

    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    pub fn pin(&self) -> CertPin {
        self.pin
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The token as one printable string: `lp1.` and the base64url (no
    /// padding) of pin, secret and the addresses.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(FIXED_LEN + 32 * self.addresses.len());
        bytes.extend_from_slice(self.pin.bytes());
        bytes.extend_from_slice(self.secret.bytes());
        bytes.extend_from_slice(self.addresses.join("\n").as_bytes());
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parse a token made by [`JoinToken::encode`] (surrounding whitespace
    /// is ignored). Anything else is an error saying what is wrong with it;
    /// the error never quotes the text, which may hold a real secret.
    pub fn parse(text: &str) -> Result<JoinToken> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            bail!(
                "not a join token: {} characters, more than the {MAX_TOKEN_LEN} a token may have",
                text.len()
            );
        }
        let Some(body) = text.strip_prefix(TOKEN_PREFIX) else {
            if let Some(version) = other_version(text) {
                bail!(
                    "join token version `{version}` is not supported (this lp-host reads `{TOKEN_PREFIX}` tokens)"
                );
            }
            bail!("not a join token: it does not start with `{TOKEN_PREFIX}`");
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .context("not a join token: what follows `lp1.` is not base64url")?;
        if bytes.len() <= FIXED_LEN {
            bail!("not a join token: too short to hold a pin, a secret and an address");
        }
        let (mut pin, mut secret) = ([0; 32], [0; 32]);
        pin.copy_from_slice(&bytes[..32]);
        secret.copy_from_slice(&bytes[32..FIXED_LEN]);
        let (pin, secret) = (CertPin::from_bytes(pin), Secret::from_bytes(secret));
        let addresses = &bytes[FIXED_LEN..];
        let addresses = std::str::from_utf8(addresses)
            .context("not a join token: its addresses are not UTF-8")?;
        let addresses = addresses.split('\n').map(str::to_string).collect();
        JoinToken::new(addresses, pin, secret).context("not a valid join token")
    }

    /// Read a token from `path`, which must be a regular file (not a
    /// symlink) that neither group nor others may read or write.
    pub fn read_file(path: &Path) -> Result<JoinToken> {
        let shown = path.display();
        let (file, meta) = open_regular(path, Symlinks::Refuse)
            .with_context(|| format!("cannot read the join token file {shown}"))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "the join token file {shown} is open to other users (mode {:03o}); \
                 it holds the launch's secret: `chmod 600 {shown}`",
                mode & 0o777
            );
        }
        let text = read_token_text(file)
            .with_context(|| format!("cannot read the join token file {shown}"))?;
        JoinToken::parse(&text).with_context(|| format!("in the join token file {shown}"))
    }

    /// Write the token to a new file at `path` that only the user can read
    /// (mode 600); an existing file is not overwritten.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let shown = path.display();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the join token file {shown}"))?;
        // The mode given at creation is narrowed by the umask, never widened.
        file.write_all(format!("{}\n", self.encode()).as_bytes())
            .with_context(|| format!("cannot write the join token file {shown}"))?;
        Ok(())
    }

    /// The token in the `LP_JOIN_TOKEN` environment variable, if it is set.
    pub fn from_env() -> Result<Option<JoinToken>> {
        match std::env::var(TOKEN_ENV) {
            Ok(text) => JoinToken::parse(&text)
                .map(Some)
                .with_context(|| format!("in the environment variable {TOKEN_ENV}")),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("the environment variable {TOKEN_ENV} is not a join token: not UTF-8")
            }
        }
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("addresses", &self.addresses)
            .field("pin", &self.pin)
            .field("secret", &self.secret)
            .finish()
    }
}

/// The text of a token file: at most a token's length, and UTF-8.
fn read_token_text(file: std::fs::File) -> Result<String> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_TOKEN_LEN as u64 + 1),
        &mut bytes,
    )?;
    if bytes.len() > MAX_TOKEN_LEN {
        bail!("not a join token: more than {MAX_TOKEN_LEN} bytes");
    }
    String::from_utf8(bytes).context("not a join token: not UTF-8")
}

/// `lp7` in `lp7.xxxx`: a token of a version this code does not read.
fn other_version(text: &str) -> Option<&str> {
    let (version, _) = text.split_once('.')?;
    let digits = version.strip_prefix("lp")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(version)
}

/// `host:port`, with a non-zero port and a host that is an IPv4 address,
/// a bracketed IPv6 address or a DNS name.
fn check_address(address: &str) -> Result<()> {
    let Some((host, port)) = address.rsplit_once(':') else {
        bail!("launcher address `{address}` is not host:port");
    };
    match port.parse::<u16>() {
        Ok(port) if port != 0 => {}
        _ => bail!("launcher address `{address}` has no valid port (1-65535)"),
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<Ipv6Addr>().map(drop).map_err(|_| {
            anyhow::anyhow!("launcher address `{address}`: `{inner}` is not an IPv6 address")
        })
    } else {
        if host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host) {
            Ok(())
        } else {
            bail!("launcher address `{address}`: `{host}` is neither an IP address nor a DNS name")
        }
    }
}
