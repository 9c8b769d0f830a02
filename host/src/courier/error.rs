//! Why a call did not return a value ([`CallError`], the guest's
//! `call-error`), and how it crosses a process boundary: one kind number
//! and a message, the same numbers in the framed transport's ERROR frame
//! and in the gRPC `CallError` message.

use wasmtime::component::Val;

use crate::stop::StopSignal;

/// Why a call did not return a value (mirrors `lp:node/types.call-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    Unreachable(String),
    Timeout,
    RemoteTrap(String),
    Stopping,
}

impl CallError {
    /// As the guest's `call-error` variant.
    pub fn to_val(&self) -> Val {
        match self {
            CallError::Unreachable(why) => Val::Variant(
                "unreachable".into(),
                Some(Box::new(Val::String(why.clone()))),
            ),
            CallError::Timeout => Val::Variant("timeout".into(), None),
            CallError::RemoteTrap(msg) => Val::Variant(
                "remote-trap".into(),
                Some(Box::new(Val::String(msg.clone()))),
            ),
            CallError::Stopping => Val::Variant("stopping".into(), None),
        }
    }

    /// Its kind number on the wire (as `proto::call_error::Kind`) and message.
    pub fn to_wire(&self) -> (u8, &str) {
        match self {
            CallError::Unreachable(m) => (0, m),
            CallError::Timeout => (1, ""),
            CallError::RemoteTrap(m) => (2, m),
            CallError::Stopping => (3, ""),
        }
    }

    /// From a kind number and message off the wire; an unknown kind is
    /// `unreachable` with the message.
    pub fn from_wire(kind: i64, message: String) -> CallError {
        match kind {
            1 => CallError::Timeout,
            2 => CallError::RemoteTrap(message),
            3 => CallError::Stopping,
            _ => CallError::Unreachable(message),
        }
    }

    /// The error for a call whose connection broke under it, or that could
    /// not be sent on it.
    pub fn connection_lost(stop: &StopSignal) -> CallError {
        if stop.is_stopping() {
            CallError::Stopping
        } else {
            CallError::Unreachable(
                "transport: the connection to the target's process was lost".into(),
            )
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) => write!(f, "target unreachable: {why}"),
            CallError::Timeout => write!(f, "call timed out"),
            CallError::RemoteTrap(msg) => write!(f, "target trapped: {msg}"),
            CallError::Stopping => write!(f, "program is stopping"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_reads_back_from_the_wire_as_it_was() {
        for error in [
            CallError::Unreachable("gone".into()),
            CallError::Timeout,
            CallError::RemoteTrap("boom".into()),
            CallError::Stopping,
        ] {
            let (kind, message) = error.to_wire();
            assert_eq!(
                CallError::from_wire(kind.into(), message.to_string()),
                error
            );
        }
        assert_eq!(
            CallError::from_wire(77, "what".into()),
            CallError::Unreachable("what".into())
        );
    }
}
