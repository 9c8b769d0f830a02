//! Join material made ahead of a launch, for engines that start the
//! launcher and the agents at the same time from one description (the
//! Kubernetes export): the launcher's join certificate and key, and the
//! join secret. The token the agents hold pins that certificate, as a
//! launcher's own token does; everything after the join (the launch's CA,
//! every process's certificate) is still made by the launcher when it
//! runs. One printable string, `lpjm1.<base64url>`, read from the
//! environment (a Kubernetes Secret), never from argv.

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::ca::{Credentials, LaunchCa, Role};
use super::pin::CertPin;
use super::token::JoinToken;
use crate::courier::Secret;

/// The environment variable the launcher reads the material from.
pub const MATERIAL_ENV: &str = "LP_JOIN_MATERIAL";

const PREFIX: &str = "lpjm1.";

/// The launcher's side of a join prepared ahead.
pub struct JoinMaterial {
    /// What the join listener presents (the token pins its certificate).
    pub credentials: Credentials,
    pub secret: Secret,
}

impl std::fmt::Debug for JoinMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinMaterial(..)")
    }
}

impl JoinMaterial {
    /// New material for a launcher the agents reach at `addresses`
    /// (`host:port`, the host a DNS name or an IP), and the agents' token.
    pub fn generate(addresses: Vec<String>) -> Result<(JoinMaterial, JoinToken)> {
        let hosts: Vec<String> = addresses
            .iter()
            .map(|a| {
                a.rsplit_once(':')
                    .map_or(a.as_str(), |(h, _)| h)
                    .to_string()
            })
            .collect();
        let credentials = LaunchCa::generate()?.issue(Role::Launcher, &hosts)?;
        let secret = Secret::generate()?;
        let token = JoinToken::new(addresses, CertPin::of(credentials.cert()), secret.clone())?;
        Ok((
            JoinMaterial {
                credentials,
                secret,
            },
            token,
        ))
    }

    /// As one string: `lpjm1.` and the base64url of the CA certificate,
    /// certificate and key (each after its length, u32 little-endian) and
    /// the secret.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        let key = self.credentials.key_der().to_vec();
        for part in [
            self.credentials.ca_cert().as_ref(),
            self.credentials.cert().as_ref(),
            &key[..],
        ] {
            bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(self.secret.bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parse what [`JoinMaterial::encode`] made; the error never quotes it.
    pub fn parse(text: &str) -> Result<JoinMaterial> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .with_context(|| format!("not join material: it does not start with `{PREFIX}`"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .context("not join material: what follows the prefix is not base64url")?;
        let mut rest = &bytes[..];
        let mut parts = Vec::new();
        for _ in 0..3 {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                bail!("not join material: it is cut short");
            };
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                bail!("not join material: it is cut short");
            }
            parts.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        let secret: [u8; 32] = rest
            .try_into()
            .map_err(|_| anyhow::anyhow!("not join material: its secret is not 32 bytes"))?;
        let key = parts.pop().expect("three parts");
        let cert = parts.pop().expect("three parts");
        let ca = parts.pop().expect("three parts");
        Ok(JoinMaterial {
            credentials: Credentials::from_der(Role::Launcher, ca, cert, key),
            secret: Secret::from_bytes(secret),
        })
    }

    /// The material in `$LP_JOIN_MATERIAL`.
    pub fn from_env() -> Result<JoinMaterial> {
        let text = std::env::var(MATERIAL_ENV).with_context(|| {
            format!("--join-material-from-env: ${MATERIAL_ENV} is not set (it comes from the launch's Secret)")
        })?;
        JoinMaterial::parse(&text).with_context(|| format!("${MATERIAL_ENV}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_reads_back_and_its_token_pins_its_certificate() {
        let (material, token) =
            JoinMaterial::generate(vec!["lp-p-launcher.default.svc:7070".into()]).unwrap();
        let read = JoinMaterial::parse(&material.encode()).unwrap();
        assert_eq!(read.credentials.cert(), material.credentials.cert());
        assert_eq!(read.credentials.key_der(), material.credentials.key_der());
        assert!(read.secret.matches(material.secret.bytes()));
        assert!(token.pin().matches(read.credentials.cert()));
        assert_eq!(token.addresses(), ["lp-p-launcher.default.svc:7070"]);
        let encoded = material.encode();
        for bad in ["", "lpjm1.", "lpjm1.AAAA", &encoded[..encoded.len() - 4]] {
            assert!(JoinMaterial::parse(bad).is_err(), "{bad}");
        }
    }
}
