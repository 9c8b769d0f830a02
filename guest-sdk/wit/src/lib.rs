//! A node's WIT as lp reads it: the lp:node package built in, the node's
//! own packages from its WIT paths (a directory with an optional `deps/`,
//! or a file), and for every service interface `X` of those packages the
//! client interfaces `X-client` and `X-blocking-client` (`clients`), which
//! worlds may import without writing them. `lp_guest::generate!` turns the
//! result into Rust bindings; lp-host writes it out as a WIT directory for
//! componentize-py to build a Python node against.

mod clients;

use std::path::{Path, PathBuf};

pub use wit_parser;
use wit_parser::{PackageId, Resolve, SourceMap, WorldId};

/// The lp:node package every node's world includes.
pub const NODE_WIT: &str = include_str!("../../../wit/node.wit");
/// Where the built-in lp:node WIT came from, for error messages.
const NODE_WIT_NAME: &str = "lp:node (built in)";
/// The lp:replay package: the built-in replay node's service and clients.
pub const REPLAY_WIT: &str = include_str!("../../../wit/replay/replay.wit");
const REPLAY_WIT_NAME: &str = "lp:replay (built in)";

/// A node's WIT, resolved.
pub struct NodeWit {
    pub resolve: Resolve,
    /// The node's own packages (lp:node when it names none).
    pub packages: Vec<PackageId>,
    /// Every file read (a build is to be redone when one changes).
    pub read: Vec<PathBuf>,
    /// The node's own packages as read, with their generated clients.
    pub own: Vec<OwnPackage>,
}

/// One of a node's own packages, as read from its WIT path.
pub struct OwnPackage {
    /// Its files, and their text.
    pub sources: Vec<(PathBuf, String)>,
    /// The WIT text of the client interfaces generated for it (a file of
    /// the package without a `package` line), if it needs any.
    pub clients: Option<String>,
    /// The entries of its `deps/` directory (files or directories).
    pub deps: Vec<PathBuf>,
}

/// Read the WIT at `paths` (relative to `root`): each a directory (its
/// `.wit` files one package, its `deps/` the packages it uses) or a file.
/// A path holding the lp:node package itself is skipped (the built-in one
/// is used).
pub fn load(root: &Path, paths: &[String]) -> Result<NodeWit, String> {
    let (mut resolve, lp_node, _) = builtin()?;
    let mut packages = Vec::new();
    let mut read = Vec::new();
    let mut own = Vec::new();
    for written in paths {
        let path = root.join(written);
        let path = path.canonicalize().map_err(|e| {
            format!(
                "WIT path {written:?} ({}): {e}\n  help: the path is relative to {}",
                path.display(),
                root.display()
            )
        })?;
        let mut deps = Vec::new();
        let deps_dir = path.join("deps");
        if deps_dir.is_dir() {
            for dep in sorted_entries(&deps_dir)? {
                let (_, sources) = resolve.push_path(&dep).map_err(|e| format!("{e:#}"))?;
                read.extend(sources.paths().map(Path::to_path_buf));
                deps.push(dep);
            }
        }
        let files = wit_files(&path)?;
        let sources = files
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .map(|text| (f.clone(), text))
                    .map_err(|e| format!("cannot read {}: {e}", f.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        read.extend(files);
        if is_lp_node(&sources) {
            continue;
        }
        let (package, clients) = clients::push_with_clients(&mut resolve, &sources)?;
        packages.push(package);
        own.push(OwnPackage {
            sources,
            clients,
            deps,
        });
    }
    if packages.is_empty() {
        packages.push(lp_node);
    }
    Ok(NodeWit {
        resolve,
        packages,
        read,
        own,
    })
}

/// The built-in packages resolved: lp:node and lp:replay (which a node's
/// world may import, e.g. `import lp:replay/replay-client@0.1.0;`).
pub fn builtin() -> Result<(Resolve, PackageId, PackageId), String> {
    let mut resolve = Resolve::default();
    let lp_node = resolve
        .push_str(NODE_WIT_NAME, NODE_WIT)
        .map_err(|e| format!("the built-in lp:node WIT does not parse: {e:#}"))?;
    let lp_replay = resolve
        .push_str(REPLAY_WIT_NAME, REPLAY_WIT)
        .map_err(|e| format!("the built-in lp:replay WIT does not parse: {e:#}"))?;
    Ok((resolve, lp_node, lp_replay))
}

impl NodeWit {
    /// The world `world` ("pkg:name/world") of the node's packages.
    pub fn world(&self, world: &str) -> Result<WorldId, String> {
        self.resolve
            .select_world(&self.packages, Some(world))
            .map_err(|e| format!("{e:#}\n  help: name a world of the node's WIT, e.g. \"my:app/my-node\", that includes lp:node/node@0.1.0"))
    }
}

/// The `.wit` files of a directory (sorted), or the file itself.
fn wit_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files: Vec<PathBuf> = sorted_entries(path)?
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wit"))
        .collect();
    if files.is_empty() {
        return Err(format!("{} holds no .wit file", path.display()));
    }
    Ok(files)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect::<Vec<_>>();
    entries.sort();
    Ok(entries)
}

/// Whether these files are the lp:node package (a copy of it, or the
/// repository's `wit/`): the built-in one is used instead.
fn is_lp_node(sources: &[(PathBuf, String)]) -> bool {
    let mut map = SourceMap::new();
    for (path, text) in sources {
        map.push(path, text.as_str());
    }
    map.parse()
        .is_ok_and(|group| group.main.name.namespace == "lp" && group.main.name.name == "node")
}
