//! The guest SDK: what a Rust lp node depends on.
//!
//! It binds the `lp:node` runtime (name, group, index, args, stop, logging),
//! deserializes a node's args into the node's own serde struct, and turns the
//! handles in those args into typed clients (see [`client!`]).
//!
//! A node crate generates bindings for its own world with [`generate!`],
//! which maps the `lp:node` interfaces onto this crate, so every node shares
//! one definition of [`Handle`] and [`CallError`]. Its world must include
//! `lp:node/node` (or `lp:node/node-with-run`).
//!
//! With the feature `replay`, the module `replay` is the typed client of lp's
//! built-in replay node (`kind = "replay"` in program.toml).

mod bindings {
    wit_bindgen::generate!({
        world: "node",
        path: "../wit",
        pub_export_macro: true,
        additional_derives: [PartialEq, Eq, Hash],
        generate_unused_types: true,
    });
}

use std::time::Duration;

use serde::de::DeserializeOwned;

/// The generated `lp:node/runtime` interface (for `with:` in node crates).
pub use bindings::lp::node::runtime;
/// The generated `lp:node/types` interface (for `with:` in node crates).
pub use bindings::lp::node::types;
/// The generated `lp:node/waiting` interface (for `with:` in node crates).
pub use bindings::lp::node::waiting;
pub use types::{CallError, Handle};

/// Await many futures at once (a courier fan-out); results in input order.
pub use futures::future::join_all;
#[doc(hidden)]
pub use serde as __serde;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Generate a node's bindings for its world, sharing lp:node's types and
/// runtime with this crate (so a node crate needs no wit-bindgen of its own).
///
/// ```ignore
/// lp_guest::generate!({
///     world: "lp:consumer-producers/consumer-node",
///     path: "../wit",   // the node's own WIT (default "wit"); lp:node is built in
/// });
/// ```
///
/// The lp:node package comes with this crate: the node's WIT `include`s
/// `lp:node/node@0.1.0` without a copy of it. For every interface `X` of the
/// node's WIT a client interface `X-client` (async functions: the target
/// handle first, `result<T, call-error>` back) and `X-blocking-client`
/// (the same, synchronous) are generated unless the WIT declares them; a
/// world imports them by name (`import producer-client;`).
pub use lp_guest_macros::generate;

/// The key under which the host encodes a handle inside the args JSON.
pub const HANDLE_KEY: &str = "$lp-handle";
/// Beside it, the handle's own call deadline in milliseconds, if it has one.
pub const HANDLE_TIMEOUT_KEY: &str = "$lp-timeout-ms";

/// This node's full name, e.g. `producer/3`.
pub fn name() -> String {
    runtime::name()
}

/// The group this node belongs to.
pub fn group() -> String {
    runtime::group()
}

/// This node's index among the replicas of its program.toml entry.
pub fn index() -> u32 {
    runtime::index()
}

/// The node's args, deserialized into the node's own type.
///
/// Handles deserialize into typed clients declared with [`client!`] (or into
/// [`Handle`] through [`handle_from_json`]).
pub fn args<T: DeserializeOwned>() -> Result<T, ArgsError> {
    let json = runtime::args();
    serde_json::from_str(&json).map_err(|e| ArgsError {
        node: name(),
        message: e.to_string(),
        json,
    })
}

/// The address this node serves its port `port` on ("IP:port"), as
/// program.toml's `ports` declares it and the host allocated it at launch:
/// bind it (`std::net::TcpListener::bind(address)`), the node may bind no
/// other. `None` if the node has no such port. The host tells it in the
/// environment variable `LP_ADDRESS_<PORT>` (the name upper-cased, `-` as
/// `_`), and the port's number alone in `LP_PORT_<PORT>`.
pub fn own_address(port: &str) -> Option<String> {
    std::env::var(format!("LP_ADDRESS_{}", port_env_suffix(port))).ok()
}

/// The number of this node's port `port` (`LP_PORT_<PORT>`); see
/// [`own_address`].
pub fn own_port(port: &str) -> Option<u16> {
    std::env::var(format!("LP_PORT_{}", port_env_suffix(port)))
        .ok()?
        .parse()
        .ok()
}

fn port_env_suffix(port: &str) -> String {
    port.to_ascii_uppercase().replace('-', "_")
}

/// The args did not fit the node's args type. Its `Debug` is its message
/// (so `lp_guest::args().expect(..)` panics with the shortened args too).
pub struct ArgsError {
    pub node: String,
    pub message: String,
    pub json: String,
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Long args are shortened: the message is about the mismatch.
        const SHOWN: usize = 200;
        let json = match self.json.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}... ({} bytes)", &self.json[..cut], self.json.len()),
            None => self.json.clone(),
        };
        write!(
            f,
            "args of node {} do not fit its args type: {} (args were {json})",
            self.node, self.message
        )
    }
}

impl std::fmt::Debug for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ArgsError {}

/// Ask the whole program to stop. Returns at once.
pub fn stop() {
    runtime::stop()
}

/// Whether the program is stopping.
pub fn is_stopping() -> bool {
    runtime::is_stopping()
}

/// Wait until the program stops (true) or `timeout` elapses (false).
///
/// The node keeps serving its exports meanwhile. Under `--launch test_mt`
/// the timeout runs on the seeded virtual clock.
pub async fn wait_for_stop(timeout: Option<Duration>) -> bool {
    let millis = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    waiting::wait_for_stop(millis).await
}

/// Pause this task for `duration`, or less if the program stops first
/// (returns true then, so a loop can end): the way for a node to sleep.
///
/// The node keeps serving its exports meanwhile, and a stop is not held up
/// by a sleeping node. Under `--launch test_mt` the time is virtual (the
/// seeded scheduler's clock), so a seeded run stays replayable and does not
/// wait in real time. (A `std::thread::sleep` would block the whole node,
/// calls included.)
pub async fn sleep(duration: Duration) -> bool {
    wait_for_stop(Some(duration)).await
}

/// A random number from the host's `wasi:random`.
///
/// Under `--launch test_mt` the host seeds it from the run's seed, so a
/// seeded run that draws its randomness here (or from anything else built
/// on `wasi:random`, e.g. the `getrandom` and `rand` crates) replays the
/// same numbers; other launch types give the host's secure randomness.
pub fn random_u64() -> u64 {
    // wasi:random/get-random-u64 cannot fail; the fallback is unreachable.
    getrandom::u64().unwrap_or_default()
}

/// Log levels for [`log`].
pub use runtime::Level;

/// Write one log line; the host prefixes it with this node's name.
pub fn log(level: Level, message: &str) {
    runtime::log(level, message)
}

/// Log at info level with `format!` syntax.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log($crate::Level::Info, &format!($($t)*)) };
}

/// Log at warn level with `format!` syntax.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log($crate::Level::Warn, &format!($($t)*)) };
}

/// Log at error level with `format!` syntax.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log($crate::Level::Error, &format!($($t)*)) };
}

/// Decode a handle from its args JSON form `{"$lp-handle": <node>}`, with
/// `"$lp-timeout-ms": <ms>` when the handle has a deadline of its own.
pub fn handle_from_json(value: &serde_json::Value) -> Option<Handle> {
    let object = value.as_object()?;
    let node = object.get(HANDLE_KEY)?.as_u64()?;
    let timeout_ms = match object.get(HANDLE_TIMEOUT_KEY) {
        None => None,
        Some(ms) => Some(ms.as_u64()?),
    };
    Some(Handle {
        node: u32::try_from(node).ok()?,
        timeout_ms,
    })
}

#[doc(hidden)]
pub fn __deserialize_handle<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Handle, D::Error> {
    use serde::Deserialize;
    let value = serde_json::Value::deserialize(d)?;
    handle_from_json(&value).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected a handle ({{ handle = \"node\" }} in program.toml), found {value}"
        ))
    })
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

impl std::error::Error for CallError {}

mod client;
#[cfg(feature = "replay")]
pub mod replay;
#[doc(hidden)]
pub use client::{__ClientArg, __ClientOwned, __client_arg, __client_owned};
