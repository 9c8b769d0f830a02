//! The per-launch certificate authority: an ECDSA P-256 key and a
//! self-signed CA certificate made in memory when a launch starts (never
//! written to disk), and the certificates it issues to each process of the
//! launch, naming the process's role and addresses.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

/// Suffix of the DNS name that every certificate of a launch carries for
/// its role (`launcher.lp.internal`, `agent-3.lp.internal`).
pub const ROLE_DOMAIN: &str = "lp.internal";

/// How far before "now" certificates start being valid, so that a peer
/// whose clock is a little behind still accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(60 * 60);

/// How long the CA and its certificates are valid: longer than any launch
/// runs; the CA's key lives only as long as the launcher process.
const VALIDITY: Duration = Duration::from_secs(400 * 24 * 60 * 60);

/// The part a process plays in a launch, named in its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The process that started the launch and holds the CA.
    Launcher,
    /// A process on some machine that joined the launch with a token.
    Agent(u32),
    /// A worker process running nodes.
    Worker(u32),
}

impl Role {
    /// The DNS name in this role's certificates, e.g. `agent-3.lp.internal`.
    pub fn dns_name(&self) -> String {
        match self {
            Role::Launcher => format!("launcher.{ROLE_DOMAIN}"),
            Role::Agent(id) => format!("agent-{id}.{ROLE_DOMAIN}"),
            Role::Worker(id) => format!("worker-{id}.{ROLE_DOMAIN}"),
        }
    }

    /// The name a client verifies a server of this role by.
    pub fn server_name(&self) -> ServerName<'static> {
        ServerName::try_from(self.dns_name()).expect("role names are valid DNS names")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Launcher => f.write_str("launcher"),
            Role::Agent(id) => write!(f, "agent {id}"),
            Role::Worker(id) => write!(f, "worker {id}"),
        }
    }
}

/// One process's TLS identity in a launch: its certificate and private key,
/// and the launch CA's certificate that its peers' certificates must chain to.
pub struct Credentials {
    role: Role,
    ca_cert: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Credentials {
    /// Credentials received from elsewhere (a join reply), as DER.
    pub fn from_der(role: Role, ca_cert: Vec<u8>, cert: Vec<u8>, key: Vec<u8>) -> Credentials {
        Credentials {
            role,
            ca_cert: CertificateDer::from(ca_cert),
            cert: CertificateDer::from(cert),
            key: PrivatePkcs8KeyDer::from(key),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The private key as PKCS#8 DER (to hand to the process it is for).
    pub fn key_der(&self) -> &[u8] {
        self.key.secret_pkcs8_der()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("role", &self.role)
            .field("key", &"..")
            .finish_non_exhaustive()
    }
}

/// A launch's certificate authority. Its key exists only in this value.
pub struct LaunchCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    name: String,
}

impl LaunchCa {
    /// A fresh CA with a new key, named after a digest of that key
    /// (`lp launch CA 1a2b3c4d`) so that two launches' CAs differ by name too.
    pub fn generate() -> Result<LaunchCa> {
        let key = KeyPair::generate().context("cannot generate the launch CA's key")?;
        let digest = Sha256::digest(key.public_key_raw());
        let name = format!("lp launch CA {}", hex::encode(&digest[..4]));
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity();
        let cert = params
            .self_signed(&key)
            .context("cannot sign the launch CA's certificate")?;
        Ok(LaunchCa {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            name,
        })
    }

    /// The CA's certificate (DER), which every process of the launch trusts.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA's name (its certificate's common name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new key and a certificate for it, signed by this CA, good for both
    /// ends of a mutual-TLS connection, with subject alternative names for
    /// the role (`agent-3.lp.internal`) and for each of `addresses` (an IP
    /// address or a DNS name each).
    pub fn issue(&self, role: Role, addresses: &[String]) -> Result<Credentials> {
        let mut names = vec![SanType::DnsName(
            Ia5String::try_from(role.dns_name()).context("role name")?,
        )];
        for address in addresses {
            names.push(san_for(address)?);
        }
        let key =
            KeyPair::generate().with_context(|| format!("cannot generate a key for {role}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&role.dns_name());
        params.subject_alt_names = names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity();
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("cannot sign a certificate for {role}"))?;
        Ok(Credentials {
            role,
            ca_cert: self.cert.clone(),
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

impl fmt::Debug for LaunchCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn validity() -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - CLOCK_SKEW, now + VALIDITY)
}

/// An address as a subject alternative name: an IP address, or else a DNS
/// name (letters, digits, `-` and `.`).
fn san_for(address: &str) -> Result<SanType> {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if !is_dns_name(address) {
        bail!("`{address}` is neither an IP address nor a DNS name");
    }
    Ok(SanType::DnsName(
        Ia5String::try_from(address.to_string()).context("DNS name")?,
    ))
}

/// Whether `name` looks like a DNS name: dot-separated labels of 1 to 63
/// letters, digits and `-`, 253 characters at most.
pub(super) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
