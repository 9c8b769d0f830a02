//! program.toml as written: the raw TOML tables (unknown keys rejected),
//! a node entry after `--set` overrides, values with where they were
//! written, and the file being loaded (for diagnostics). What every step
//! of loading shares, so the steps depend on this and not on each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostic, Origin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub program: Spanned<RawProgram>,
    #[serde(default, rename = "node")]
    pub nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProgram {
    pub name: Spanned<String>,
    #[serde(default)]
    pub call_timeout_secs: Option<Spanned<f64>>,
    /// Limits of every node that does not set its own, and the stack limit.
    #[serde(default)]
    pub limits: Option<Spanned<RawLimits>>,
    /// The nodes, entries or groups whose runs end the program.
    #[serde(default)]
    pub wait_for: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    /// "all" (the default) or "first" of them.
    #[serde(default)]
    pub end_on: Option<Spanned<toml::Value>>,
    /// How `--launch slurm` asks for the job.
    #[serde(default)]
    pub slurm: Option<Spanned<super::slurm::RawSlurm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub name: Spanned<String>,
    /// What it runs: a .wasm file, a node crate, a .py or .js app file.
    #[serde(default)]
    pub component: Option<Spanned<String>>,
    /// A built-in node kind instead of a component: "replay".
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    /// A replay node's tables.
    #[serde(default)]
    pub tables: Option<Spanned<Vec<Spanned<super::replay::RawTable>>>>,
    /// A replay node's checkpoint directory.
    #[serde(default)]
    pub checkpoint: Option<Spanned<super::replay::RawCheckpoint>>,
    /// A Python node's WIT world ("pkg:name/world"), which it is built for.
    #[serde(default)]
    pub world: Option<Spanned<String>>,
    /// A Python node's WIT (a directory or file, relative to program.toml;
    /// default `wit`).
    #[serde(default)]
    pub wit: Option<Spanned<String>>,
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    #[serde(default)]
    pub replicas: Option<Spanned<i64>>,
    /// Nodes with the same `colocate` name share one process under local_mp.
    #[serde(default)]
    pub colocate: Option<Spanned<String>>,
    /// How many times the node is started again after it fails.
    #[serde(default)]
    pub restarts: Option<Spanned<i64>>,
    /// The ports it serves on: `["http"]`, or `{ http = 8080, metrics = 0 }`.
    #[serde(default)]
    pub ports: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub args: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub grants: Option<Spanned<RawGrants>>,
    #[serde(default)]
    pub limits: Option<Spanned<RawLimits>>,
    /// What the node needs of a machine, for placing it on one.
    #[serde(default)]
    pub resources: Option<Spanned<RawResources>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrants {
    /// `{ host = "data", guest = "/data", write = false }`
    #[serde(default)]
    pub dirs: Vec<Spanned<RawDir>>,
    /// Environment variables the node sees: `{ NAME = "value" }`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Addresses it may connect to or bind: `"127.0.0.1:8080"`, `"10.0.0.2:*"`.
    #[serde(default)]
    pub network: Vec<Spanned<String>>,
    /// Whether it reads the host's stdin.
    #[serde(default)]
    pub stdin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDir {
    pub host: Spanned<String>,
    pub guest: Spanned<String>,
    #[serde(default)]
    pub write: bool,
    /// Allows `write` on the host's root, a home directory, or a directory
    /// that holds one: refused without it.
    #[serde(default)]
    pub allow_home_write: bool,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default)]
    pub memory_mib: Option<Spanned<i64>>,
    #[serde(default)]
    pub table_elements: Option<Spanned<i64>>,
    #[serde(default)]
    pub instances: Option<Spanned<i64>>,
    #[serde(default)]
    pub cpu_secs: Option<Spanned<f64>>,
    /// Program-wide only.
    #[serde(default)]
    pub stack_kib: Option<Spanned<i64>>,
}

/// `{ cpus = 0.5, memory_mib = 4096, gpus = 1, host = "gpu-box" }`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    #[serde(default)]
    pub cpus: Option<Spanned<f64>>,
    #[serde(default)]
    pub memory_mib: Option<Spanned<i64>>,
    #[serde(default)]
    pub gpus: Option<Spanned<i64>>,
    /// A label an agent advertises; the node runs only on such an agent.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
}

/// A value and where it was written (in the file or by `--set`).
pub(super) struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Located<T> {
    pub fn new(value: T, origin: &Origin) -> Self {
        Located {
            value,
            origin: origin.clone(),
        }
    }
}

impl<T> From<Spanned<T>> for Located<T> {
    fn from(s: Spanned<T>) -> Self {
        let origin = Origin::File(s.span());
        Located {
            value: s.into_inner(),
            origin,
        }
    }
}

/// A node entry after overrides, before expansion.
pub(super) struct Entry {
    pub name: Located<String>,
    /// Where the entry's table starts (for errors about the whole entry).
    pub origin: super::Origin,
    pub component: Option<Located<String>>,
    pub kind: Option<Located<String>>,
    pub tables: Option<Spanned<Vec<Spanned<super::replay::RawTable>>>>,
    pub checkpoint: Option<Spanned<super::replay::RawCheckpoint>>,
    pub world: Option<Located<String>>,
    pub wit: Option<Located<String>>,
    pub group: Option<Located<String>>,
    pub replicas: Option<Located<i64>>,
    pub colocate: Option<Located<String>>,
    pub restarts: Option<Located<i64>>,
    pub ports: Option<Located<toml::Value>>,
    /// `--set <node>.ports.<name>=N`: a declared port's number.
    pub port_overrides: Vec<(String, Located<toml::Value>)>,
    pub args: BTreeMap<String, Located<toml::Value>>,
    pub grants: Option<Spanned<RawGrants>>,
    pub limits: Option<Spanned<RawLimits>>,
    /// `--set <node>.limits.<key>=value`, applied over `limits`.
    pub limit_overrides: Vec<(String, Located<toml::Value>)>,
    pub resources: Option<Spanned<RawResources>>,
    /// `--set <node>.resources.<key>=value`, applied over `resources`.
    pub resource_overrides: Vec<(String, Located<toml::Value>)>,
}

impl From<RawNode> for Entry {
    fn from(raw: RawNode) -> Self {
        Entry {
            origin: Origin::File(raw.name.span()),
            name: raw.name.into(),
            component: raw.component.map(Into::into),
            kind: raw.kind.map(Into::into),
            tables: raw.tables,
            checkpoint: raw.checkpoint,
            world: raw.world.map(Into::into),
            wit: raw.wit.map(Into::into),
            group: raw.group.map(Into::into),
            replicas: raw.replicas.map(Into::into),
            colocate: raw.colocate.map(Into::into),
            restarts: raw.restarts.map(Into::into),
            ports: raw.ports.map(Into::into),
            port_overrides: Vec::new(),
            args: raw.args.into_iter().map(|(k, v)| (k, v.into())).collect(),
            grants: raw.grants,
            limits: raw.limits,
            limit_overrides: Vec::new(),
            resources: raw.resources,
            resource_overrides: Vec::new(),
        }
    }
}

/// A TOML number, integer or float, as f64 (`None`: not a number).
pub(super) fn number(value: &toml::Value) -> Option<f64> {
    match value {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Names of programs, nodes, groups and ports: letters, digits, `_` and `-`.
pub(super) fn check_name(
    cx: &Context,
    name: &Located<String>,
    what: &str,
) -> Result<(), Diagnostic> {
    let ok = !name.value.is_empty()
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(cx
            .error(&name.origin, format!("invalid {what} name {:?}", name.value))
            .help("use letters, digits, '_' and '-' only (a node's replicas are named name/0, name/1, ...)"))
    }
}

/// The file being loaded, for building diagnostics.
pub(super) struct Context<'a> {
    pub file: &'a Path,
    pub source: &'a str,
}

impl Context<'_> {
    pub fn error(&self, origin: &Origin, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, self.source, origin, message)
    }

    pub fn dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}
