//! Builds Python and JavaScript nodes into components before launch: the
//! node's WIT is read as `lp_guest::generate!` reads a Rust node's (lp:node
//! built in, client interfaces generated from service interfaces:
//! `lp-wit`), written out as a WIT directory, and the language's tool
//! builds the app against the node's world: componentize-py (with lp's
//! Python SDK, `import lp`, beside the app) or componentize-js. The result
//! is kept in the component cache's `python/` or `javascript/` directory
//! under a digest of everything that went in (the tool's version, the
//! world, the WIT, the app directory's sources), so an unchanged node is
//! not built again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

/// The componentize-py this project is tested with (what `.ci/setup-tests`
/// installs).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The componentize-js this project is tested with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// lp's Python SDK (`import lp`), put beside every Python node's app.
pub const SDK: &str = include_str!("../../guest-sdk/python/lp.py");

/// The language of a node that lp-host builds from its sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// A `.py` app module, built with componentize-py.
    Python,
    /// A `.js` module, built with componentize-js (synchronous worlds only).
    JavaScript,
}

impl Language {
    /// The language of a component path, by its ending.
    pub fn of(path: &str) -> Option<Language> {
        if path.ends_with(".py") {
            Some(Language::Python)
        } else if path.ends_with(".js") || path.ends_with(".mjs") {
            Some(Language::JavaScript)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        }
    }

    /// Its sources' endings (what goes into the build's digest).
    fn sources(self) -> &'static [&'static str] {
        match self {
            Language::Python => &[".py"],
            Language::JavaScript => &[".js", ".mjs"],
        }
    }

    /// The tool to run: `$LP_COMPONENTIZE_PY` or `$LP_COMPONENTIZE_JS`,
    /// else the one on PATH.
    fn tool(self) -> PathBuf {
        let (var, default) = match self {
            Language::Python => ("LP_COMPONENTIZE_PY", "componentize-py"),
            Language::JavaScript => ("LP_COMPONENTIZE_JS", "componentize-js"),
        };
        std::env::var_os(var).map_or_else(|| default.into(), PathBuf::from)
    }

    fn install_help(self) -> String {
        match self {
            Language::Python => format!(
                "install it with `pip install componentize-py=={COMPONENTIZE_PY_VERSION}`, or set LP_COMPONENTIZE_PY to its path"
            ),
            Language::JavaScript => format!(
                "install it with `npm install -g @bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION}`, or set LP_COMPONENTIZE_JS to its path"
            ),
        }
    }

    /// The cache's directory for its components.
    fn cache_dir(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
        }
    }
}

/// Build the `language` node whose app module is `app` for `world` of the
/// WIT at `wit` (none: lp:node's own worlds), keeping the component in
/// `cache` (a directory of the user's own, or `None`: a private directory
/// of its own each time); its file.
pub fn build_script_node(
    language: Language,
    app: &Path,
    world: &str,
    wit: Option<&Path>,
    cache: Option<&Path>,
) -> Result<PathBuf> {
    let tool = language.tool();
    let lang = language.name();
    let version = tool_version(&tool).map_err(|e| {
        anyhow::anyhow!(
            "cannot run {} to build {lang} node {}: {e}\n  help: {}",
            tool.display(),
            app.display(),
            language.install_help()
        )
    })?;
    let app = std::path::absolute(app)?;
    let app = app.as_path();
    let wit_paths = match wit {
        Some(wit) => vec![std::path::absolute(wit)?.to_string_lossy().into_owned()],
        None => Vec::new(),
    };
    let node_wit = lp_wit::load(Path::new("/"), &wit_paths)
        .map_err(|e| anyhow::anyhow!("the WIT of {lang} node {}: {e}", app.display()))?;
    node_wit
        .world(world)
        .map_err(|e| anyhow::anyhow!("{lang} node {}: {e}", app.display()))?;
    let app_dir = app.parent().context("the app file has no directory")?;
    let module = app
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the app file's name is not UTF-8")?;

    // Everything that goes into the component, digested.
    let mut digest = Sha256::new();
    let mut feed = |label: &str, bytes: &[u8]| {
        digest.update((label.len() as u64).to_le_bytes());
        digest.update(label.as_bytes());
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    };
    feed(lang, version.as_bytes());
    feed("world", world.as_bytes());
    feed("module", module.as_bytes());
    feed("lp:node", lp_wit::NODE_WIT.as_bytes());
    feed("lp:replay", lp_wit::REPLAY_WIT.as_bytes());
    if language == Language::Python {
        feed("lp.py", SDK.as_bytes());
    }
    for package in &node_wit.own {
        for (path, text) in &package.sources {
            feed(&file_name(path), text.as_bytes());
        }
        feed(
            "clients",
            package.clients.as_deref().unwrap_or("").as_bytes(),
        );
    }
    // The packages' dependencies, read once: digested here, written out
    // for the tool below.
    let deps: Vec<(String, Files)> = node_wit
        .own
        .iter()
        .flat_map(|package| &package.deps)
        .map(|dep| Ok((file_name(dep), files_under(dep, |_| true)?)))
        .collect::<Result<_>>()?;
    for (name, files) in &deps {
        for (relative, bytes) in files {
            feed(&format!("deps/{name}/{relative}"), bytes);
        }
    }
    // The app's sources, built from a copy: the tools write into the
    // directory they build from (componentize-py leaves __pycache__), and
    // the app's directory is the user's.
    let sources = files_under(app_dir, |relative| {
        language.sources().iter().any(|end| relative.ends_with(end))
    })?;
    for (relative, bytes) in &sources {
        feed(relative, bytes);
    }
    let key = hex::encode(digest.finalize());

    let out_dir = match cache {
        Some(dir) => {
            let dir = dir.join(language.cache_dir());
            crate::files::create_private_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("lp-build-")
            .tempdir()?
            .keep(),
    };
    let built = out_dir.join(format!("{key}.wasm"));
    if built.is_file() {
        return Ok(built);
    }

    let work = tempfile::Builder::new().prefix("lp-build-").tempdir()?;
    let wit_dir = work.path().join("wit");
    write_wit(&node_wit, &deps, &wit_dir)?;
    let app_copy = work.path().join("app");
    for (relative, bytes) in &sources {
        let to = app_copy.join(relative);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(to, bytes)?;
    }
    let app_file = app_copy.join(app.file_name().context("the app has no file name")?);
    crate::errln!(
        "building {lang} node {} for {world} with {} (a first build takes some seconds)",
        app.display(),
        tool.display()
    );
    let output = work.path().join("node.wasm");
    let mut command = Command::new(&tool);
    match language {
        Language::Python => {
            let sdk_dir = work.path().join("sdk");
            std::fs::create_dir(&sdk_dir)?;
            std::fs::write(sdk_dir.join("lp.py"), SDK)?;
            command
                .arg("-d")
                .arg(&wit_dir)
                .args(["-w", world, "componentize", "-p"])
                .arg(&app_copy)
                .arg("-p")
                .arg(&sdk_dir)
                .arg(module);
        }
        Language::JavaScript => {
            // No fetch: a node reaches out only through what it is granted.
            command.arg(&app_file).arg("--wit").arg(&wit_dir).args([
                "--world-name",
                world,
                "-d",
                "http",
                "-d",
                "fetch-event",
            ]);
        }
    }
    let ran = command
        .arg("-o")
        .arg(&output)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if !ran.status.success() {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&ran.stdout),
            String::from_utf8_lossy(&ran.stderr)
        );
        // The tool's own stack (componentize-py prints its Rust backtrace)
        // says nothing about the app.
        let said = said.split("\nStack backtrace:").next().unwrap_or_default();
        bail!(
            "building {lang} node {} failed:\n{}",
            app.display(),
            said.trim_end()
        );
    }
    // Into the cache in one step: a reader sees the whole file or none.
    let staged = out_dir.join(format!(".{key}.{}.tmp", std::process::id()));
    std::fs::copy(&output, &staged)
        .with_context(|| format!("cannot write {}", staged.display()))?;
    std::fs::rename(&staged, &built)
        .with_context(|| format!("cannot write {}", built.display()))?;
    Ok(built)
}

/// Write `wit` out as a directory the tools read: the node's package
/// (its files and the generated clients), lp:node, lp:replay and its other
/// dependencies (`deps`, as read) in `deps/`; or lp:node alone, for a
/// node of its worlds.
fn write_wit(wit: &lp_wit::NodeWit, deps: &[(String, Files)], dir: &Path) -> Result<()> {
    if wit.own.is_empty() {
        // A world of lp:node itself: that package is the WIT.
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("node.wit"), lp_wit::NODE_WIT)?;
        return Ok(());
    }
    let deps_dir = dir.join("deps");
    std::fs::create_dir_all(deps_dir.join("lp-node"))?;
    std::fs::write(deps_dir.join("lp-node").join("node.wit"), lp_wit::NODE_WIT)?;
    std::fs::create_dir_all(deps_dir.join("lp-replay"))?;
    std::fs::write(
        deps_dir.join("lp-replay").join("replay.wit"),
        lp_wit::REPLAY_WIT,
    )?;
    for package in &wit.own {
        for (path, text) in &package.sources {
            std::fs::write(dir.join(file_name(path)), text)?;
        }
        if let Some(clients) = &package.clients {
            std::fs::write(dir.join("lp-generated-clients.wit"), clients)?;
        }
    }
    for (name, files) in deps {
        for (relative, bytes) in files {
            // A dependency that is one file has the relative path "".
            let to = match relative.is_empty() {
                true => deps_dir.join(name),
                false => deps_dir.join(name).join(relative),
            };
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(to, bytes)?;
        }
    }
    Ok(())
}

/// The version `tool --version` prints, asked once per process and tool (a
/// program's Python nodes share it; asking costs a Python start).
fn tool_version(tool: &Path) -> std::io::Result<String> {
    static ASKED: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    if let Some((_, version)) = crate::lock(&ASKED).iter().find(|(t, _)| t == tool) {
        return Ok(version.clone());
    }
    let out = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "--version failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    crate::lock(&ASKED).push((tool.to_path_buf(), version.clone()));
    Ok(version)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Files as read: each one's path relative to where they were read, and
/// its bytes.
type Files = Vec<(String, Vec<u8>)>;

/// The regular files under `path` (itself, if a file: relative path "")
/// whose relative path `keep` takes, read and sorted by that path;
/// `__pycache__` and hidden entries left out.
fn files_under(path: &Path, keep: impl Fn(&str) -> bool) -> Result<Files> {
    let mut found = Vec::new();
    if path.is_file() {
        found.push((String::new(), std::fs::read(path)?));
        return Ok(found);
    }
    let mut stack = vec![(path.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push((entry.path(), format!("{relative}/")));
            } else if kind.is_file() && keep(&relative) {
                found.push((relative, std::fs::read(entry.path())?));
            }
        }
    }
    found.sort();
    Ok(found)
}
