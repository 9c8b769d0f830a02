//! Builds node crates into components before launch (like `spin build`):
//! `cargo build --release --target wasm32-wasip2` on each crate, which is a
//! quick no-op when nothing changed, and reads the .wasm path from cargo.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// The target node crates are built for.
pub const NODE_TARGET: &str = "wasm32-wasip2";

/// Build the node crate in `dir`; return its component file.
pub fn build_node_crate(dir: &Path) -> Result<PathBuf> {
    // Built at its real path: cargo finds a crate's workspace from there,
    // not from a symlink to it.
    let manifest = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .join("Cargo.toml");
    tracing::debug!("building node crate {}", dir.display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            NODE_TARGET,
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run cargo to build node crate {}", dir.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\n  help: run `rustup target add wasm32-wasip2`"
            } else {
                ""
            };
        bail!(
            "building node crate {} failed:\n{}{hint}",
            dir.display(),
            stderr.trim_end()
        );
    }
    wasm_artifact(&String::from_utf8_lossy(&output.stdout), &manifest).with_context(|| {
        format!(
            "node crate {} produced no .wasm (is its crate-type [\"cdylib\"]?)",
            dir.display()
        )
    })
}

/// The .wasm file cargo reported for the package at `manifest`.
fn wasm_artifact(messages: &str, manifest: &Path) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && Path::new(m["manifest_path"].as_str().unwrap_or("")) == manifest
        })
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}
