//! The `grants` and `limits` tables of program.toml: what of the host a
//! node may use, and how much it may take. Checked here, with the place of
//! every error: directories must exist, each guest path is granted once,
//! the host's root or a home directory is writable only by explicit
//! opt-in (and any grant of one is warned of), addresses must parse,
//! limits must be positive.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::schema::{Context, Located, RawGrants, RawLimits};
use super::{Diagnostic, DirGrant, Grants, Limits, NetGrant, NetUse, Origin, line_col};

/// The deepest wasm stack a program may ask for, in KiB.
const MAX_STACK_KIB: u64 = 64 * 1024;

/// The grants of the node `node`; what it should be warned of goes to
/// `warnings`.
pub(super) fn grants(
    cx: &Context,
    node: &str,
    raw: RawGrants,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Grants, Diagnostic> {
    let dir = cx.dir();
    let homes = if raw.dirs.is_empty() {
        Vec::new()
    } else {
        home_directories()
    };
    let mut dirs = Vec::new();
    let mut guests: Vec<(PathBuf, std::ops::Range<usize>)> = Vec::new();
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
        let guest_span = grant.guest.span();
        let guest = grant.guest.into_inner();
        if !guest.starts_with('/') {
            return Err(cx
                .error(
                    &Origin::File(span),
                    format!("the guest path {guest:?} must be absolute"),
                )
                .help("write where the node sees the directory, e.g. guest = \"/data\""));
        }
        let seen_as: PathBuf = Path::new(&guest).components().collect();
        if let Some((_, first)) = guests.iter().find(|(path, _)| *path == seen_as) {
            let (line, column) = line_col(cx.source, first.start);
            return Err(cx
                .error(
                    &Origin::File(guest_span),
                    format!(
                        "the guest path {} is granted twice (first at line {line}, column {column})",
                        seen_as.display()
                    ),
                )
                .help("grant each guest path once: the node sees one directory there, read-only unless its grant says write = true"));
        }
        guests.push((seen_as, guest_span));
        let host = host.canonicalize().unwrap_or(host);
        if let Some(exposed) = exposed_home(&host, &homes) {
            if grant.write && !grant.allow_home_write {
                return Err(cx
                    .error(
                        &Origin::File(span),
                        format!("a writable grant of {exposed} would let node {node:?} change a user's files (shell start-up files, SSH keys) and so act as that user"),
                    )
                    .help("grant a directory of the program's own (e.g. { host = \"data\", guest = \"/data\", write = true }), or leave out write = true; if the node must write there, add allow_home_write = true to this grant"));
            }
            let warning = match grant.write {
                true => cx
                    .error(
                        &Origin::File(span),
                        format!("node {node} may write {exposed} (allow_home_write = true)"),
                    )
                    .help("grant a narrower directory if the node does not need all of it"),
                false => cx
                    .error(&Origin::File(span), format!("node {node} may read {exposed}"))
                    .help("grant only the directories the node needs: a user's files hold SSH keys and tokens"),
            };
            warnings.push(warning);
        }
        dirs.push(DirGrant {
            host,
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

/// The home directories of this host: `$HOME`'s, root's, and those of
/// people's accounts (uid 1000 and up, not nobody's) in /etc/passwd.
fn home_directories() -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            if let [_, _, uid, _, _, home, ..] = line.split(':').collect::<Vec<_>>()[..]
                && uid
                    .parse::<u32>()
                    .is_ok_and(|uid| uid == 0 || (1000..65534).contains(&uid))
            {
                homes.push(PathBuf::from(home));
            }
        }
    }
    homes
        .into_iter()
        .filter(|home| home.is_absolute() && home != Path::new("/"))
        .map(|home| home.canonicalize().unwrap_or(home))
        .collect()
}

/// What of the host's root or of a home directory a grant of `host` (a
/// canonical path) exposes, as the object of "a grant of ...".
fn exposed_home(host: &Path, homes: &[PathBuf]) -> Option<String> {
    if host == Path::new("/") {
        return Some("the host's root directory /".into());
    }
    if homes.iter().any(|home| home == host) {
        return Some(format!("the home directory {}", host.display()));
    }
    homes
        .iter()
        .find(|home| home.starts_with(host))
        .map(|home| {
            format!(
                "{}, which holds the home directory {}",
                host.display(),
                home.display()
            )
        })
}

fn net_grant(text: &str) -> Option<NetGrant> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(NetGrant {
            ip: addr.ip(),
            port: Some(addr.port()),
            usage: NetUse::Any,
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
        usage: NetUse::Any,
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
            let secs = super::schema::number(&value.value).unwrap_or(f64::NAN);
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
    use super::*;

    #[test]
    fn the_root_a_home_and_what_holds_one_are_exposed_homes() {
        let homes = [PathBuf::from("/home/alice"), PathBuf::from("/root")];
        let exposed = |host: &str| exposed_home(Path::new(host), &homes);
        assert_eq!(exposed("/").unwrap(), "the host's root directory /");
        assert_eq!(exposed("/root").unwrap(), "the home directory /root");
        assert_eq!(
            exposed("/home").unwrap(),
            "/home, which holds the home directory /home/alice"
        );
        assert_eq!(exposed("/home/alice/data"), None);
        assert_eq!(exposed("/home/bob"), None);
        assert_eq!(exposed("/srv"), None);
    }

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
