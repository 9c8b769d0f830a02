//! program.toml → [`Program`]: schema (unknown keys rejected), overrides,
//! replica expansion, handle resolution. Every error is a [`Diagnostic`].

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::end::{self, RawEnd};
use super::grants;
use super::overrides::{Override, OverrideTarget};
use super::ports;
use super::replica::{Replica, whole};
use super::resources::{self, ColocatedHosts};
use super::schema::{Context, Entry, Located, RawFile, check_name};
use super::{
    ADDRESS_KEY, AddressRef, ComponentSource, Diagnostic, Edge, HANDLE_KEY, HANDLE_TIMEOUT_KEY,
    NodeKind, NodeSpec, Origin, Place, Program,
};

const REFERENCE: &str = "see \"program.toml reference\" in README.md";

/// Read, validate and expand the program at `path`, applying `overrides`.
pub fn load(path: &Path, overrides: &[Override]) -> Result<Program, Diagnostic> {
    let source = std::fs::read_to_string(path).map_err(|e| Diagnostic {
        file: path.to_path_buf(),
        line_col: None,
        override_text: None,
        message: format!("cannot read the program file: {e}"),
        help: Some(
            "give the path of a program.toml, e.g. examples/hello_world/program.toml".into(),
        ),
    })?;
    load_str(path, &source, overrides)
}

/// Like [`load`], with the file's text already read (`path` names it in
/// errors and anchors relative component paths).
pub fn load_str(path: &Path, source: &str, overrides: &[Override]) -> Result<Program, Diagnostic> {
    let cx = Context { file: path, source };
    let raw: RawFile = toml::from_str(source).map_err(|e| {
        let origin = e.span().map_or(Origin::Program, Origin::File);
        cx.error(&origin, e.message().trim_end().to_string())
            .help(REFERENCE)
    })?;

    let program_origin = Origin::File(raw.program.span());
    let header = raw.program.into_inner();
    let mut call_timeout = header.call_timeout_secs.map(Located::from);
    let mut entries: Vec<Entry> = raw.nodes.into_iter().map(Entry::from).collect();
    let mut program_limit_overrides = Vec::new();
    let mut slurm_overrides = Vec::new();
    let mut end = RawEnd {
        wait_for: header.wait_for.map(|list| {
            let origin = Origin::File(list.span());
            Located {
                value: list.into_inner().into_iter().map(Located::from).collect(),
                origin,
            }
        }),
        end_on: header.end_on.map(Located::from),
    };
    for ov in overrides {
        match ov.target(&cx, &mut entries)? {
            OverrideTarget::CallTimeout(value) => call_timeout = Some(value),
            OverrideTarget::WaitFor(value, origin) => end.set_wait_for(value, &origin),
            OverrideTarget::EndOn(value) => end.end_on = Some(value),
            OverrideTarget::ProgramLimit(key, value) => program_limit_overrides.push((key, value)),
            OverrideTarget::Slurm(path, value) => slurm_overrides.push((path, value)),
            OverrideTarget::Applied => {}
        }
    }

    let name = header.name.into_inner();
    check_name(
        &cx,
        &Located {
            value: name.clone(),
            origin: program_origin.clone(),
        },
        "program",
    )?;
    if entries.is_empty() {
        return Err(cx
            .error(&program_origin, "the program has no nodes")
            .help("add a [[node]] table with a name and a component"));
    }
    let call_timeout = match call_timeout {
        None => None,
        Some(t) if t.value.is_finite() && t.value > 0.0 => Some(Duration::from_secs_f64(t.value)),
        Some(t) => {
            return Err(cx
                .error(
                    &t.origin,
                    format!(
                        "call_timeout_secs must be a positive number of seconds, not {}",
                        t.value
                    ),
                )
                .help("leave it out to wait without limit"));
        }
    };

    let program_limits = header.limits.map(Spanned::into_inner).unwrap_or_default();
    let mut default_limits = grants::program_limits(&cx, &program_limits)?;
    for (key, value) in &program_limit_overrides {
        grants::set_limit(&cx, &mut default_limits, key, value, true)?;
    }
    let slurm = super::slurm::slurm(&cx, header.slurm, &slurm_overrides)?;
    let (components, kind_of_entry) = resolve_components(&cx, &mut entries)?;
    let mut warnings = Vec::new();
    let mut nodes = expand(
        &cx,
        &mut entries,
        &kind_of_entry,
        &default_limits,
        &mut warnings,
    )?;
    resolve_args(&cx, &entries, &mut nodes)?;
    let end = end::resolve(&cx, end, &nodes)?;
    let overrides = overrides.iter().map(|o| o.text.clone()).collect();
    Ok(Program {
        name,
        file: path.to_path_buf(),
        call_timeout,
        components,
        nodes,
        overrides,
        stack_kib: default_limits.stack_kib,
        warnings,
        end,
        slurm,
    })
}

/// What each entry runs: its `component` mapped to a source (one per
/// distinct path), or a built-in kind with its configuration.
fn resolve_components(
    cx: &Context,
    entries: &mut [Entry],
) -> Result<(Vec<ComponentSource>, Vec<NodeKind>), Diagnostic> {
    let dir = cx.dir();
    let mut sources: Vec<ComponentSource> = Vec::new();
    let mut of_entry = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(kind) = built_in_kind(cx, entry)? {
            of_entry.push(kind);
            continue;
        }
        let Some(component) = &entry.component else {
            return Err(cx
                .error(
                    &entry.origin,
                    format!("node {} names no component", entry.name.value),
                )
                .help("add component = \"...\": a .wasm file, a node crate directory, or a Python (.py) or JavaScript (.js) app file, relative to program.toml; or kind = \"replay\" for a replay node"));
        };
        let written = &component.value;
        let path = dir.join(written);
        let source = if written.ends_with(".wasm") {
            if let Some((problem, help)) = not_a_component_file(&path) {
                return Err(cx
                    .error(
                        &component.origin,
                        format!("component file {} {problem}", path.display()),
                    )
                    .help(help));
            }
            ComponentSource::Wasm(path)
        } else if let Some(language) = crate::script_nodes::Language::of(written) {
            script_source(cx, entry, &component.origin, path, language)?
        } else if path.join("Cargo.toml").is_file() {
            ComponentSource::Crate(path)
        } else {
            return Err(cx
                .error(
                    &component.origin,
                    format!("component {written:?} is neither a .wasm file nor a crate directory ({} has no Cargo.toml)", path.display()),
                )
                .help("give a path, relative to program.toml, of a .wasm component, a node crate, or a Python (.py) or JavaScript (.js) node's app file"));
        };
        let index = match sources.iter().position(|s| *s == source) {
            Some(i) => i,
            None => {
                sources.push(source);
                sources.len() - 1
            }
        };
        of_entry.push(NodeKind::Component(index));
    }
    Ok((sources, of_entry))
}

/// A built-in node kind (`kind = "replay"`), if the entry names one; the
/// keys that only a component has, or only a replay node, are refused
/// where they do not belong.
fn built_in_kind(cx: &Context, entry: &mut Entry) -> Result<Option<NodeKind>, Diagnostic> {
    let Some(kind) = &entry.kind else {
        let replay_key = entry
            .tables
            .as_ref()
            .map(|t| t.span())
            .or(entry.checkpoint.as_ref().map(|c| c.span()));
        if let Some(span) = replay_key {
            return Err(cx
                .error(
                    &Origin::File(span),
                    format!(
                        "node {} has replay tables or a checkpoint but is not a replay node",
                        entry.name.value
                    ),
                )
                .help(
                    "add kind = \"replay\" (and no component), or remove tables and checkpoint",
                ));
        }
        return Ok(None);
    };
    if kind.value != "replay" {
        return Err(cx
            .error(&kind.origin, format!("unknown node kind {:?}", kind.value))
            .help(
                "the built-in kind is \"replay\"; a node of your own names its component instead",
            ));
    }
    let component_only = [
        ("component", entry.component.as_ref().map(|c| &c.origin)),
        ("world", entry.world.as_ref().map(|w| &w.origin)),
        ("wit", entry.wit.as_ref().map(|w| &w.origin)),
        ("ports", entry.ports.as_ref().map(|p| &p.origin)),
        ("args", entry.args.values().next().map(|a| &a.origin)),
    ];
    let spanned = [
        ("grants", entry.grants.as_ref().map(|g| g.span())),
        ("limits", entry.limits.as_ref().map(|l| l.span())),
    ];
    let refused = component_only
        .into_iter()
        .find_map(|(key, origin)| Some((key, origin?.clone())))
        .or_else(|| {
            spanned
                .into_iter()
                .find_map(|(key, span)| Some((key, Origin::File(span?))))
        });
    if let Some((key, origin)) = refused {
        return Err(cx
            .error(
                &origin,
                format!(
                    "replay node {} cannot have {key}: it runs in the host, not as a component",
                    entry.name.value
                ),
            )
            .help("a replay node has tables, and optionally checkpoint, group, replicas, colocate, restarts and resources; nodes reach it through a handle"));
    }
    let config = super::replay::replay_config(
        cx,
        &entry.name,
        entry.tables.take(),
        entry.checkpoint.take(),
    )?;
    Ok(Some(NodeKind::Replay(config)))
}

/// A Python or JavaScript node's source: its app file (which must be a
/// file), its world (which it must name) and its WIT (`wit`, default the
/// `wit` directory beside program.toml).
fn script_source(
    cx: &Context,
    entry: &Entry,
    component: &Origin,
    app: std::path::PathBuf,
    language: crate::script_nodes::Language,
) -> Result<ComponentSource, Diagnostic> {
    let lang = language.name();
    if !app.is_file() {
        return Err(cx
            .error(
                component,
                format!("{lang} node file {} does not exist (or is not a file)", app.display()),
            )
            .help("give the path, relative to program.toml, of the node's app module, e.g. component = \"producer_py/app.py\""));
    }
    let Some(world) = &entry.world else {
        return Err(cx
            .error(
                component,
                format!("{lang} node {} names no WIT world to build it for", entry.name.value),
            )
            .help("add the world its app implements, e.g. world = \"my:app/producer-node\" (and wit = \"wit\" if its WIT is not in the wit directory beside program.toml)"));
    };
    let wit = cx
        .dir()
        .join(entry.wit.as_ref().map_or("wit", |w| w.value.as_str()));
    // A node of lp:node's own worlds needs no WIT of its own.
    if entry.wit.is_none() && !wit.exists() && world.value.starts_with("lp:node/") {
        return Ok(ComponentSource::Script {
            language,
            app,
            world: world.value.clone(),
            wit: None,
        });
    }
    if !wit.exists() {
        let origin = entry.wit.as_ref().map_or(component, |w| &w.origin);
        return Err(cx
            .error(
                origin,
                format!(
                    "the WIT of {lang} node {} ({}) does not exist",
                    entry.name.value,
                    wit.display()
                ),
            )
            .help("set wit to the node's WIT directory or file, relative to program.toml"));
    }
    Ok(ComponentSource::Script {
        language,
        app,
        world: world.value.clone(),
        wit: Some(wit),
    })
}

/// Why `path` cannot be a component file, and what to do, if it cannot:
/// it does not exist, or is not a regular file (a FIFO, a device: said,
/// never opened).
fn not_a_component_file(path: &Path) -> Option<(String, &'static str)> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let problem = crate::files::not_regular(&meta)?;
            let link = std::fs::read_link(path)
                .map(|target| format!(" (a symlink to {})", target.display()))
                .unwrap_or_default();
            Some((
                format!("{problem}{link}"),
                "name a .wasm component file (built with `cargo build --target wasm32-wasip2`), or a node crate directory",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some((
            "does not exist".into(),
            "build the component first, or name a node crate directory instead",
        )),
        Err(e) => Some((
            format!("cannot be read: {e}"),
            "make it readable by this user, or name another component",
        )),
    }
}

/// One [`NodeSpec`] per replica of every entry (args still empty).
fn expand(
    cx: &Context,
    entries: &mut [Entry],
    kind_of_entry: &[NodeKind],
    default_limits: &crate::program::Limits,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Vec<NodeSpec>, Diagnostic> {
    let mut seen: HashMap<String, Origin> = HashMap::new();
    let mut colocated_hosts = ColocatedHosts::default();
    let mut nodes = Vec::new();
    for (entry, kind) in entries.iter_mut().zip(kind_of_entry) {
        let granted = grants::grants(
            cx,
            &entry.name.value,
            entry
                .grants
                .take()
                .map(Spanned::into_inner)
                .unwrap_or_default(),
            warnings,
        )?;
        let mut limits = grants::limits(cx, entry.limits.take(), default_limits)?;
        for (key, value) in &entry.limit_overrides {
            grants::set_limit(cx, &mut limits, key, value, false)?;
        }
        let (needs, host_origin) =
            resources::resources(cx, entry.resources.take(), &entry.resource_overrides)?;
        check_name(cx, &entry.name, "node")?;
        let ports = ports::ports(
            cx,
            &entry.name.value,
            entry.ports.as_ref(),
            &entry.port_overrides,
            &granted.env,
        )?;
        if let Some(first) = seen.insert(entry.name.value.clone(), entry.name.origin.clone()) {
            let first = match first {
                Origin::File(span) => {
                    let (l, c) = super::line_col(cx.source, span.start);
                    format!(" (first defined at line {l}, column {c})")
                }
                _ => String::new(),
            };
            return Err(cx
                .error(
                    &entry.name.origin,
                    format!("node name {:?} is used twice{first}", entry.name.value),
                )
                .help("give every [[node]] its own name; use `replicas` for copies of one node"));
        }
        if let Some(group) = &entry.group {
            check_name(cx, group, "group")?;
        }
        if let Some(colocate) = &entry.colocate {
            check_name(cx, colocate, "colocation group")?;
            if let (Some(label), Some(origin)) = (&needs.host, &host_origin) {
                colocated_hosts.add(cx, &colocate.value, &entry.name.value, label, origin)?;
            }
        }
        let replicas = match &entry.replicas {
            None => 1,
            Some(r) if (1..=100_000).contains(&r.value) => r.value as u32,
            Some(r) => {
                return Err(cx
                    .error(
                        &r.origin,
                        format!("replicas must be between 1 and 100000, not {}", r.value),
                    )
                    .help("remove the node, or set replicas = 1 or more"));
            }
        };
        let restarts = match &entry.restarts {
            None => 0,
            Some(r) if (0..=1000).contains(&r.value) => r.value as u32,
            Some(r) => {
                return Err(cx
                    .error(
                        &r.origin,
                        format!("restarts must be between 0 and 1000, not {}", r.value),
                    )
                    .help("the number of times a failed node is started again"));
            }
        };
        let group = entry.group.as_ref().map_or(&entry.name.value, |g| &g.value);
        for index in 0..replicas {
            let name = if entry.replicas.is_none() {
                entry.name.value.clone()
            } else {
                format!("{}/{index}", entry.name.value)
            };
            nodes.push(NodeSpec {
                id: nodes.len() as u32,
                name,
                entry: entry.name.value.clone(),
                group: group.clone(),
                index,
                kind: kind.clone(),
                args: serde_json::Value::Null,
                edges: Vec::new(),
                run_enabled: true,
                colocate: entry.colocate.as_ref().map(|c| c.value.clone()),
                restarts,
                grants: granted.clone(),
                limits,
                resources: needs.clone(),
                ports: ports.clone(),
                addresses: Vec::new(),
            });
        }
    }
    Ok(nodes)
}

/// Turn each entry's args into JSON, resolving handles to node ids. Args
/// that use the replica (`per_replica`, a handle's `index`) are resolved for
/// each replica; the others once for the whole entry.
fn resolve_args(cx: &Context, entries: &[Entry], nodes: &mut [NodeSpec]) -> Result<(), Diagnostic> {
    let names: HashMap<String, u32> = nodes.iter().map(|n| (n.name.clone(), n.id)).collect();
    let mut groups: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut entry_nodes: HashMap<&str, Vec<u32>> = HashMap::new();
    for n in nodes.iter() {
        groups.entry(n.group.as_str()).or_default().push(n.id);
        entry_nodes.entry(n.entry.as_str()).or_default().push(n.id);
    }
    let ports: Vec<Vec<&str>> = nodes
        .iter()
        .map(|n| n.ports.iter().map(|p| p.name.as_str()).collect())
        .collect();
    let resolver = HandleResolver {
        cx,
        names: &names,
        groups: &groups,
        entry_nodes: &entry_nodes,
        ports: &ports,
    };

    let mut resolved: Vec<(serde_json::Value, Refs)> = Vec::with_capacity(nodes.len());
    for entry in entries {
        let ids = &entry_nodes[entry.name.value.as_str()];
        let mut shared = None;
        for (index, &id) in ids.iter().enumerate() {
            if let Some(args) = &shared {
                resolved.push(Clone::clone(args));
                continue;
            }
            let depends = Cell::new(false);
            let replica = Replica {
                name: &nodes[id as usize].name,
                index: index as u32,
                replicas: ids.len() as u32,
                depends: &depends,
            };
            let mut object = serde_json::Map::new();
            let mut refs = Refs::default();
            for (key, arg) in &entry.args {
                let value = resolver.convert(&arg.value, &arg.origin, key, &mut refs, &replica)?;
                object.insert(key.clone(), value);
            }
            let args = (serde_json::Value::Object(object), refs);
            if !depends.get() {
                shared = Some(args.clone());
            }
            resolved.push(args);
        }
    }
    // Nodes are numbered entry by entry, replica by replica, as above.
    for (node, (args, refs)) in nodes.iter_mut().zip(resolved) {
        node.args = args;
        node.edges = refs.edges;
        node.addresses = refs.addresses;
    }
    Ok(())
}

/// What a node's args refer to: the nodes it has handles to, and the
/// ports it has addresses of.
#[derive(Clone, Default)]
struct Refs {
    edges: Vec<Edge>,
    addresses: Vec<AddressRef>,
}

struct HandleResolver<'a> {
    cx: &'a Context<'a>,
    names: &'a HashMap<String, u32>,
    groups: &'a HashMap<&'a str, Vec<u32>>,
    /// Every entry's nodes, in replica order.
    entry_nodes: &'a HashMap<&'a str, Vec<u32>>,
    /// Every node's port names, by id.
    ports: &'a [Vec<&'a str>],
}

impl HandleResolver<'_> {
    /// TOML → JSON; `{ handle = "n" }` and `{ group = "g" }` become handles,
    /// `{ address = "n.port" }` an address handle, `{ per_replica = "EXPR" }`
    /// this replica's value of EXPR.
    fn convert(
        &self,
        value: &toml::Value,
        origin: &Origin,
        arg: &str,
        refs: &mut Refs,
        replica: &Replica,
    ) -> Result<serde_json::Value, Diagnostic> {
        use serde_json::Value as J;
        Ok(match value {
            toml::Value::String(s) => J::String(s.clone()),
            toml::Value::Integer(i) => J::from(*i),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            toml::Value::Boolean(b) => J::Bool(*b),
            toml::Value::Datetime(d) => J::String(d.to_string()),
            toml::Value::Array(items) => J::Array(
                items
                    .iter()
                    .map(|v| self.convert(v, origin, arg, refs, replica))
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(table) => {
                if let Some(address) = table.get("address") {
                    return self.address_ref(table, address, origin, arg, refs, replica);
                }
                if let Some(handle) =
                    self.handle_ref(table, origin, arg, &mut refs.edges, replica)?
                {
                    return Ok(handle);
                }
                if let Some(expr) = table.get("per_replica") {
                    return self.per_replica(table, expr, origin, arg, replica);
                }
                let mut object = serde_json::Map::new();
                for (k, v) in table {
                    object.insert(k.clone(), self.convert(v, origin, arg, refs, replica)?);
                }
                J::Object(object)
            }
        })
    }

    /// `{ per_replica = "EXPR" }`: EXPR's value for this replica (a whole
    /// number as an integer).
    fn per_replica(
        &self,
        table: &toml::Table,
        expr: &toml::Value,
        origin: &Origin,
        arg: &str,
        replica: &Replica,
    ) -> Result<serde_json::Value, Diagnostic> {
        let help = "e.g. seed = { per_replica = \"1000 + index\" }: arithmetic over `index` (0-based) and `replicas`";
        let (Some(expr), 1) = (expr.as_str(), table.len()) else {
            return Err(self
                .cx
                .error(
                    origin,
                    format!(
                        "arg `{arg}`: per_replica takes one expression in quotes, and no other keys"
                    ),
                )
                .help(help));
        };
        let value = replica.eval(expr, None).map_err(|e| {
            self.cx
                .error(origin, format!("arg `{arg}` of node {}: {e}", replica.name))
                .help(help)
        })?;
        Ok(match whole(value) {
            Some(i) => serde_json::Value::from(i),
            None => serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into),
        })
    }

    /// The replica of entry `target` that `{ handle = target, index = EXPR }`
    /// names for this replica; `None` when EXPR falls outside the entry and
    /// the handle is `optional`.
    fn replica_of(
        &self,
        table: &toml::Table,
        target: &str,
        origin: &Origin,
        arg: &str,
        replica: &Replica,
    ) -> Result<Option<u32>, Diagnostic> {
        let help = "e.g. next = { handle = \"ring\", index = \"(index + 1) % target_replicas\" }, over `index`, `replicas` and `target_replicas`";
        let Some(ids) = self.entry_nodes.get(target) else {
            return Err(self
                .cx
                .error(origin, format!("arg `{arg}`: a handle with `index` names a [[node]] entry, and no entry is named {target:?}"))
                .help(format!("entries are: {}", sorted(self.entry_nodes.keys().copied()))));
        };
        let Some(expr) = table.get("index").and_then(toml::Value::as_str) else {
            return Err(self
                .cx
                .error(
                    origin,
                    format!("arg `{arg}`: a handle's `index` is an expression in quotes"),
                )
                .help(help));
        };
        let optional = match table.get("optional") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(v) => {
                return Err(self
                    .cx
                    .error(
                        origin,
                        format!("arg `{arg}`: `optional` is true or false, not {v}"),
                    )
                    .help("optional = true passes null where the index falls outside the entry"));
            }
        };
        let count = ids.len() as u32;
        let value = replica.eval(expr, Some(count)).map_err(|e| {
            self.cx
                .error(origin, format!("arg `{arg}` of node {}: {e}", replica.name))
                .help(help)
        })?;
        match whole(value) {
            Some(k) if (0..i64::from(count)).contains(&k) => Ok(Some(ids[k as usize])),
            Some(_) if optional => Ok(None),
            _ => Err(self
                .cx
                .error(origin, format!(
                    "arg `{arg}` of node {}: index {expr:?} gives {value}, but {target} has replicas 0 to {}",
                    replica.name,
                    count - 1
                ))
                .help("wrap it with `% target_replicas`, or add `optional = true` to pass null where there is no such replica")),
        }
    }

    /// `{ address = "node.port" }` (or `{ address = "entry.port", index =
    /// EXPR }`, optionally `optional`): an address handle, `{"$lp-address":
    /// k}` until launch gives it its "IP:port".
    fn address_ref(
        &self,
        table: &toml::Table,
        address: &toml::Value,
        origin: &Origin,
        arg: &str,
        refs: &mut Refs,
        replica: &Replica,
    ) -> Result<serde_json::Value, Diagnostic> {
        let help = "write { address = \"node.port\" }: a node (\"web/0\" names one replica) and one of the ports it declares";
        if let Some(key) = table
            .keys()
            .find(|k| !["address", "index", "optional"].contains(&k.as_str()))
        {
            return Err(self
                .cx
                .error(origin, format!("arg `{arg}`: an address table takes `address` and optionally `index`, `optional`, not `{key}`"))
                .help("put other settings in args of their own"));
        }
        let Some((target, port)) = address.as_str().and_then(|a| a.rsplit_once('.')) else {
            return Err(self
                .cx
                .error(
                    origin,
                    format!("arg `{arg}`: an address is \"node.port\" in quotes, not {address}"),
                )
                .help(help));
        };
        let id = if table.contains_key("index") {
            match self.replica_of(table, target, origin, arg, replica)? {
                Some(id) => id,
                None => return Ok(serde_json::Value::Null),
            }
        } else if table.contains_key("optional") {
            return Err(self
                .cx
                .error(origin, format!("arg `{arg}`: `optional` goes with `index`"))
                .help("an address of a named node is always there"));
        } else if let Some(&id) = self.names.get(target) {
            id
        } else if let Some(ids) = self.entry_nodes.get(target) {
            return Err(self
                .cx
                .error(origin, format!("arg `{arg}`: node {target:?} has {} replicas, so one address is ambiguous", ids.len()))
                .help(format!("write {{ address = \"{target}/0.{port}\" }} for one, or {{ address = \"{target}.{port}\", index = \"index % target_replicas\" }} for one per replica")));
        } else {
            return Err(self
                .cx
                .error(origin, format!("arg `{arg}`: no node is named {target:?}"))
                .help(format!(
                    "nodes are: {}",
                    sorted(self.names.keys().map(String::as_str))
                )));
        };
        let declared = &self.ports[id as usize];
        if !declared.contains(&port) {
            let name = self
                .names
                .iter()
                .find(|(_, n)| **n == id)
                .map_or(target, |(name, _)| name);
            let help = match declared.is_empty() {
                true => format!("declare it on node {name}: ports = [\"{port}\"]"),
                false => format!("its ports are: {}", declared.join(", ")),
            };
            return Err(self
                .cx
                .error(
                    origin,
                    format!("arg `{arg}`: node {name} has no port {port:?}"),
                )
                .help(help));
        }
        let index = refs.addresses.len();
        refs.addresses.push(AddressRef {
            target: id,
            port: port.to_string(),
            arg: arg.to_string(),
            place: Place::of(self.cx.source, origin),
        });
        Ok(serde_json::json!({ ADDRESS_KEY: index }))
    }

    /// `Some` if `table` is a handle reference (`handle` or `group` key).
    fn handle_ref(
        &self,
        table: &toml::Table,
        origin: &Origin,
        arg: &str,
        edges: &mut Vec<Edge>,
        replica: &Replica,
    ) -> Result<Option<serde_json::Value>, Diagnostic> {
        let kind = match (table.get("handle"), table.get("group")) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(self.cx.error(origin, format!("arg `{arg}`: a handle table takes `handle` or `group`, not both")).help(
                    "write { handle = \"node\" } for one node, or { group = \"group\" } for all nodes of a group",
                ));
            }
            (Some(v), None) => ("handle", v),
            (None, Some(v)) => ("group", v),
        };
        let allowed: &[&str] = match kind.0 {
            "handle" => &["handle", "timeout_secs", "index", "optional"],
            _ => &["group", "timeout_secs"],
        };
        if let Some(key) = table.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(self
                .cx
                .error(
                    origin,
                    format!(
                        "arg `{arg}`: a handle table takes `{}` and optionally {}, not `{key}`",
                        kind.0,
                        allowed[1..]
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .help("put other settings in args of their own"));
        }
        let timeout = match table.get("timeout_secs") {
            None => None,
            Some(v) => match super::schema::number(v) {
                Some(secs) if secs.is_finite() && secs > 0.0 => {
                    Some(std::time::Duration::from_secs_f64(secs))
                }
                _ => {
                    return Err(self
                        .cx
                        .error(origin, format!("arg `{arg}`: timeout_secs must be a positive number of seconds, not {v}"))
                        .help("the deadline of every call through this handle, e.g. timeout_secs = 2.5"));
                }
            },
        };
        let Some(target) = kind.1.as_str() else {
            return Err(self.cx.error(
                origin,
                format!(
                    "arg `{arg}`: `{}` must be a node or group name in quotes",
                    kind.0
                ),
            ));
        };
        let place = Place::of(self.cx.source, origin);
        let mut add = |id: u32| {
            edges.push(Edge {
                target: id,
                arg: arg.to_string(),
                timeout,
                place: place.clone(),
            });
            handle_json(id, timeout)
        };
        if table.contains_key("index") {
            return Ok(Some(
                match self.replica_of(table, target, origin, arg, replica)? {
                    Some(id) => add(id),
                    None => serde_json::Value::Null,
                },
            ));
        }
        if table.contains_key("optional") {
            return Err(self
                .cx
                .error(origin, format!("arg `{arg}`: `optional` goes with `index`"))
                .help("a handle to a named node is always there"));
        }
        if kind.0 == "group" {
            let Some(ids) = self.groups.get(target) else {
                return Err(self
                    .cx
                    .error(origin, format!("arg `{arg}`: no group is named {target:?}"))
                    .help(format!(
                        "groups are: {}",
                        sorted(self.groups.keys().copied())
                    )));
            };
            return Ok(Some(serde_json::Value::Array(
                ids.iter().map(|&id| add(id)).collect(),
            )));
        }
        if let Some(&id) = self.names.get(target) {
            return Ok(Some(add(id)));
        }
        if let Some(ids) = self.entry_nodes.get(target) {
            return Err(self
                .cx
                .error(origin, format!("arg `{arg}`: node {target:?} has {} replicas, so a single handle is ambiguous", ids.len()))
                .help(format!("use {{ group = \"<its group>\" }} for all of them, {{ handle = \"{target}/0\" }} for one, or {{ handle = \"{target}\", index = \"index % target_replicas\" }} for one per replica")));
        }
        Err(self
            .cx
            .error(origin, format!("arg `{arg}`: no node is named {target:?}"))
            .help(format!(
                "nodes are: {}",
                sorted(self.names.keys().map(String::as_str))
            )))
    }
}

/// A handle as the node sees it in its args: the target and the handle's
/// own deadline.
fn handle_json(id: u32, timeout: Option<Duration>) -> serde_json::Value {
    match timeout {
        None => serde_json::json!({ HANDLE_KEY: id }),
        Some(t) => {
            let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1);
            serde_json::json!({ HANDLE_KEY: id, HANDLE_TIMEOUT_KEY: ms })
        }
    }
}

fn sorted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = names.collect();
    v.sort();
    if v.len() > 12 {
        let more = v.len() - 12;
        v.truncate(12);
        return format!("{}, ... ({more} more)", v.join(", "));
    }
    v.join(", ")
}
