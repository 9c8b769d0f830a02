//! The per-launch secret: 32 random bytes the launcher makes and hands to
//! its workers (in their spec files, in the launch's private directory).
//! Every courier and control connection between processes of a launch
//! presents it first; a connection that does not is closed unanswered.

use std::io::Read as _;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Secret([u8; 32]);

impl Secret {
    /// A fresh secret from the system's random source.
    pub fn generate() -> Result<Secret> {
        let mut bytes = [0; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("cannot read /dev/urandom for the launch secret")?;
        Ok(Secret(bytes))
    }

    /// For routers whose nodes are all in this process.
    pub(super) fn unused() -> Secret {
        Secret([0; 32])
    }

    /// A secret received as bytes (in a join token).
    pub fn from_bytes(bytes: [u8; 32]) -> Secret {
        Secret(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `presented` is this secret (in constant time).
    pub fn matches(&self, presented: &[u8]) -> bool {
        presented.len() == 32
            && self
                .0
                .iter()
                .zip(presented)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl From<Secret> for String {
    fn from(secret: Secret) -> String {
        secret.to_hex()
    }
}

impl TryFrom<String> for Secret {
    type Error = String;

    fn try_from(text: String) -> Result<Secret, String> {
        let bytes = hex::decode(&text).map_err(|e| format!("bad secret: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a secret is 32 bytes".to_string())?;
        Ok(Secret(bytes))
    }
}
