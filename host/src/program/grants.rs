//! The `grants` and `limits` tables of program.toml: what of the host a
//! node may use, and how much it may take. Checked here, with the place of
//! every error: directories must exist, addresses must parse, limits must
//! be positive.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::load::{Context, Located};
use super::{Diagnostic, DirGrant, Grants, Limits, NetGrant, Origin};

/// The deepest wasm stack a program may ask for, in KiB.
const MAX_STACK_KIB: u64 = 64 * 1024;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrants {
    /// `{ host = "data", guest = "/data", write = false }`
    #[serde(default)]
    dirs: Vec<Spanned<RawDir>>,
    /// Environment variables the node sees: `{ NAME = "value" }`.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Addresses it may connect to or bind: `"127.0.0.1:8080"`, `"10.0.0.2:*"`.
    #[serde(default)]
    network: Vec<Spanned<String>>,
    /// Whether it reads the host's stdin.
    #[serde(default)]
    stdin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: Spanned<String>,
    guest: Spanned<String>,
    #[serde(default)]
    write: bool,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default)]
    memory_mib: Option<Spanned<i64>>,
    #[serde(default)]
    table_elements: Option<Spanned<i64>>,
    #[serde(default)]
    instances: Option<Spanned<i64>>,
    #[serde(default)]
    cpu_secs: Option<Spanned<f64>>,
    /// Program-wide only.
    #[serde(default)]
    pub stack_kib: Option<Spanned<i64>>,
}

pub(super) fn grants(cx: &Context, raw: RawGrants) -> Result<Grants, Diagnostic> {
    let dir = cx.dir();
    let mut dirs = Vec::new();
    for grant in raw.dirs {
        let span = grant.span();
        let grant = grant.into_inner();
        let host = dir.join(grant.host.get_ref());
        if !host.is_dir() {
            return Err(cx
                .error(
                    &Origin::File(grant.host.span()),
                    format!("granted directory {} does not exist", host.display()),
                )
                .help("create it, or fix the path (relative to program.toml)"));
        }
        let guest = grant.guest.into_inner();
        if !guest.starts_with('/') {
            return Err(cx
                .error(
                    &Origin::File(span),
                    format!("the guest path {guest:?} must be absolute"),
                )
                .help("write where the node sees the directory, e.g. guest = \"/data\""));
        }
        dirs.push(DirGrant {
            host: host.canonicalize().unwrap_or(host),
            guest,
            writable: grant.write,
        });
    }
    let mut network = Vec::new();
    for address in raw.network {
        let origin = Origin::File(address.span());
        network.push(net_grant(address.get_ref()).ok_or_else(|| {
            cx.error(
                &origin,
                format!("{:?} is not an address a node can be granted", address.get_ref()),
            )
            .help("write an IP address and a port, or * for any port: \"127.0.0.1:8080\", \"[::1]:*\"")
        })?);
    }
    Ok(Grants {
        dirs,
        env: raw.env.into_iter().collect(),
        network,
        stdin: raw.stdin,
    })
}

fn net_grant(text: &str) -> Option<NetGrant> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(NetGrant {
            ip: addr.ip(),
            port: Some(addr.port()),
        });
    }
    let host = text.strip_suffix(":*")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(NetGrant {
        ip: host.parse().ok()?,
        port: None,
    })
}

/// A node's limits: its own where it sets them, else the program's.
pub(super) fn limits(
    cx: &Context,
    own: Option<Spanned<RawLimits>>,
    defaults: &Limits,
) -> Result<Limits, Diagnostic> {
    let Some(own) = own else {
        return Ok(*defaults);
    };
    let own = own.into_inner();
    if let Some(stack) = &own.stack_kib {
        return Err(cx
            .error(
                &Origin::File(stack.span()),
                "stack_kib is a limit of the whole program",
            )
            .help("set it under [program.limits]: one engine runs every node"));
    }
    let mut limits = program_limits(cx, &own)?;
    limits.memory_mib = limits.memory_mib.or(defaults.memory_mib);
    limits.table_elements = limits.table_elements.or(defaults.table_elements);
    limits.instances = limits.instances.or(defaults.instances);
    limits.cpu_secs = limits.cpu_secs.or(defaults.cpu_secs);
    limits.stack_kib = defaults.stack_kib;
    Ok(limits)
}

/// The limits of a `limits` table (the program's defaults, or a node's).
pub(super) fn program_limits(cx: &Context, raw: &RawLimits) -> Result<Limits, Diagnostic> {
    let count = |value: &Option<Spanned<i64>>, name: &str| -> Result<Option<u64>, Diagnostic> {
        match value {
            None => Ok(None),
            Some(v) if *v.get_ref() > 0 => Ok(Some(*v.get_ref() as u64)),
            Some(v) => Err(cx
                .error(
                    &Origin::File(v.span()),
                    format!("{name} must be a positive number, not {}", v.get_ref()),
                )
                .help(format!("leave {name} out for no limit"))),
        }
    };
    let cpu_secs = match &raw.cpu_secs {
        None => None,
        Some(v) if v.get_ref().is_finite() && *v.get_ref() > 0.0 => Some(*v.get_ref()),
        Some(v) => {
            return Err(cx
                .error(
                    &Origin::File(v.span()),
                    format!(
                        "cpu_secs must be a positive number of seconds, not {}",
                        v.get_ref()
                    ),
                )
                .help("leave cpu_secs out for no limit"));
        }
    };
    Ok(Limits {
        memory_mib: count(&raw.memory_mib, "memory_mib")?,
        table_elements: count(&raw.table_elements, "table_elements")?,
        instances: count(&raw.instances, "instances")?,
        cpu_secs,
        stack_kib: match count(&raw.stack_kib, "stack_kib")? {
            Some(kib) if kib > MAX_STACK_KIB => {
                let origin = Origin::File(raw.stack_kib.as_ref().expect("set").span());
                return Err(cx
                    .error(
                        &origin,
                        format!("stack_kib must be at most {MAX_STACK_KIB} (64 MiB), not {kib}"),
                    )
                    .help("deep recursion is better written as a loop; leave stack_kib out for 512 KiB"));
            }
            kib => kib,
        },
    })
}

/// Apply `--set <node>.limits.<key>=value` (or `program.limits.<key>`, with
/// `program`) to `limits`, checked as the file's limits are.
pub(super) fn set_limit(
    cx: &Context,
    limits: &mut Limits,
    key: &str,
    value: &Located<toml::Value>,
    program: bool,
) -> Result<(), Diagnostic> {
    let origin = &value.origin;
    let count = || match value.value {
        toml::Value::Integer(n) if n > 0 => Ok(n as u64),
        ref other => Err(cx
            .error(
                origin,
                format!("{key} must be a positive whole number, not {other}"),
            )
            .help(format!("e.g. {key}=64; leave it unset for no limit"))),
    };
    match key {
        "memory_mib" => limits.memory_mib = Some(count()?),
        "table_elements" => limits.table_elements = Some(count()?),
        "instances" => limits.instances = Some(count()?),
        "cpu_secs" => {
            let secs = match value.value {
                toml::Value::Integer(n) => n as f64,
                toml::Value::Float(f) => f,
                _ => f64::NAN,
            };
            if !(secs.is_finite() && secs > 0.0) {
                return Err(cx
                    .error(
                        origin,
                        format!(
                            "cpu_secs must be a positive number of seconds, not {}",
                            value.value
                        ),
                    )
                    .help("e.g. cpu_secs=60; leave it unset for no limit"));
            }
            limits.cpu_secs = Some(secs);
        }
        "stack_kib" if program => {
            let kib = count()?;
            if kib > MAX_STACK_KIB {
                return Err(cx
                    .error(
                        origin,
                        format!("stack_kib must be at most {MAX_STACK_KIB} (64 MiB), not {kib}"),
                    )
                    .help("deep recursion is better written as a loop; leave stack_kib out for 512 KiB"));
            }
            limits.stack_kib = Some(kib);
        }
        "stack_kib" => {
            return Err(cx
                .error(origin, "stack_kib is a limit of the whole program")
                .help("set program.limits.stack_kib: one engine runs every node"));
        }
        other => {
            return Err(cx
                .error(origin, format!("unknown limit `{other}`"))
                .help("limits are memory_mib, table_elements, instances and cpu_secs (and program.limits.stack_kib)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_granted_host_directory_may_be_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let source = format!(
            "[program]\nname = \"p\"\n[[node]]\nname = \"a\"\ncomponent = \"n.wasm\"\ngrants = {{ dirs = [{{ host = {:?}, guest = \"/data\" }}] }}\n",
            data.path().display().to_string()
        );
        let program =
            crate::program::load_str(&dir.path().join("program.toml"), &source, &[]).unwrap();
        let grant = &program.node("a").unwrap().grants.dirs[0];
        assert_eq!(grant.host, data.path().canonicalize().unwrap());
    }
}
