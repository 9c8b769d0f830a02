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
///     path: ["../../../wit", "../wit"],   // lp:node, then the node's own WIT
/// });
/// ```
#[macro_export]
macro_rules! generate {
    ({ world: $world:literal, path: [$($path:literal),* $(,)?] $(,)? }) => {
        $crate::__wit_bindgen::generate!({
            world: $world,
            path: [$($path),*],
            runtime_path: "::lp_guest::__wit_bindgen::rt",
            with: {
                "lp:node/types@0.1.0": ::lp_guest::types,
                "lp:node/runtime@0.1.0": ::lp_guest::runtime,
                "lp:node/waiting@0.1.0": ::lp_guest::waiting,
            },
        });
    };
}

/// The key under which the host encodes a handle inside the args JSON.
pub const HANDLE_KEY: &str = "$lp-handle";

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

/// The args did not fit the node's args type.
#[derive(Debug)]
pub struct ArgsError {
    pub node: String,
    pub message: String,
    pub json: String,
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "args of node {} do not fit its args type: {} (args were {})",
            self.node, self.message, self.json
        )
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
pub async fn wait_for_stop(timeout: Option<Duration>) -> bool {
    waiting::wait_for_stop(timeout.map(|t| t.as_millis() as u64)).await
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

/// Decode a handle from its args JSON form `{"$lp-handle": <node>}`.
pub fn handle_from_json(value: &serde_json::Value) -> Option<Handle> {
    let node = value.as_object()?.get(HANDLE_KEY)?.as_u64()?;
    Some(Handle {
        node: u32::try_from(node).ok()?,
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

/// Declare a typed client for a service's client interface.
///
/// ```ignore
/// lp_guest::client! {
///     /// A producer, as the consumer sees it.
///     pub struct Producer => lp::examples::producer_client {
///         fn work(context: u64) -> u64;
///     }
/// }
/// // in args: `producers: Vec<Producer>`; then
/// let fut = producers[0].work(7);          // a future: fan out, join later
/// let v = producers[0].work(7).await?;     // the blocking call, in async code
/// ```
///
/// For a `-blocking-client` interface (synchronous client functions, for
/// synchronous code such as a `blocking-lifecycle` run), write `blocking`
/// before the module path; the methods then return the result directly.
///
/// Each method forwards to the generated client function, so the compiler
/// checks the declared signatures against the WIT.
#[macro_export]
macro_rules! client {
    ($(#[$meta:meta])* $vis:vis struct $name:ident => blocking $module:path {
        $( fn $func:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty ; )*
    }) => {
        $crate::client!(@struct $(#[$meta])* $vis $name);
        impl $name {
            $(
                pub fn $func(&self, $($arg: $ty),*) -> Result<$ret, $crate::CallError> {
                    use $module as client_module;
                    client_module::$func(self.0, $($arg),*)
                }
            )*
        }
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident => $module:path {
        $( fn $func:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty ; )*
    }) => {
        $crate::client!(@struct $(#[$meta])* $vis $name);
        impl $name {
            $(
                pub fn $func(&self, $($arg: $ty),*)
                    -> impl ::core::future::Future<Output = Result<$ret, $crate::CallError>> + 'static
                {
                    use $module as client_module;
                    client_module::$func(self.0, $($arg),*)
                }
            )*
        }
    };
    (@struct $(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis struct $name(pub $crate::Handle);

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::__deserialize_handle(d).map($name)
            }
        }

        impl $name {
            /// The handle this client calls.
            pub fn handle(&self) -> $crate::Handle {
                self.0
            }
        }
    };
}
