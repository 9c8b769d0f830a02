//! Trust between the processes of one launch across machines: a
//! per-launch certificate authority held in memory by the launcher
//! ([`LaunchCa`]), certificates it issues to each process
//! ([`Credentials`]), mutual TLS between holders of those certificates
//! ([`MutualTls`]), and the join handshake by which an agent on another
//! machine, given a [`JoinToken`], gets its certificate ([`join`],
//! [`JoinDesk`]). See docs/security.md.

mod ca;
mod exported;
mod frame;
mod join;
mod pin;
mod tls;
mod token;

pub use ca::{Credentials, LaunchCa, ROLE_DOMAIN, Role};
pub use exported::{JoinMaterial, MATERIAL_ENV};
pub use frame::{read_message, write_message};
pub use join::{Admitted, JOIN_TIMEOUT, JoinDesk, JoinRefused, Joined, MAX_JOIN_MESSAGE, join};
pub use pin::{CertPin, PIN_MISMATCH};
pub use tls::{
    HANDSHAKE_TIMEOUT, MutualTls, client_config, join_server_config, names_role, peer_certificate,
    pinned_client_config, provider, server_config,
};
pub use token::{JoinToken, TOKEN_ENV, TOKEN_PREFIX};
