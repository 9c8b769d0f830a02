//! Certificate pins: the SHA-256 digest of a certificate's DER, and a
//! rustls server-certificate verifier that accepts exactly the certificate
//! with that digest (used by a joining agent, which knows the launcher's
//! certificate only by the pin in its join token).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};

/// The SHA-256 digest of one certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertPin([u8; 32]);

impl CertPin {
    pub fn of(cert: &CertificateDer<'_>) -> CertPin {
        CertPin(Sha256::digest(cert.as_ref()).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> CertPin {
        CertPin(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `cert` is the pinned certificate.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        CertPin::of(cert) == *self
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertPin(sha256:{})", hex::encode(self.0))
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// Accepts the server's certificate if and only if it is the pinned one
/// (no CA, no name, no system store), and checks the handshake's
/// signatures against that certificate's key as usual.
#[derive(Debug)]
pub(super) struct PinnedServerVerifier {
    pin: CertPin,
    provider: Arc<CryptoProvider>,
}

impl PinnedServerVerifier {
    pub(super) fn new(pin: CertPin, provider: Arc<CryptoProvider>) -> PinnedServerVerifier {
        PinnedServerVerifier { pin, provider }
    }
}

/// The message a pin mismatch fails the handshake with.
pub const PIN_MISMATCH: &str = "the server's certificate does not match the pin in the join token";

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pin.matches(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(PIN_MISMATCH.to_string()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
