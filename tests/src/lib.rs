//! Helpers for the end-to-end tests: paths of the examples and fixture
//! programs, and running a program through the lp-host library with its
//! output captured; several hosts in network namespaces ([`netns`]); a real
//! Slurm cluster, each node in a network namespace of its own ([`slurm`]).

pub mod netns;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lp_host::output::OutputLine;
use lp_host::{LaunchOptions, Outcome, Output, Override, Sandbox};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A file under the repository root.
pub fn path(relative: &str) -> PathBuf {
    repo().join(relative)
}

/// The lp-host binary (built beside the running test's executable), or
/// `$LP_HOST_EXE`: for the tests that run it as a command.
pub fn lp_host_exe() -> PathBuf {
    if let Some(exe) = std::env::var_os("LP_HOST_EXE") {
        return PathBuf::from(exe);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("lp-host"))
        .find(|c| c.is_file())
        .expect("the lp-host binary: run `cargo build -p lp-host` first")
}

/// `lp-host ARGS...` run from the repository root, to its end.
pub fn lp_host(args: &[&str]) -> std::process::Output {
    std::process::Command::new(lp_host_exe())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("lp-host runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether the build tool `tool` (answering `--version`) is installed;
/// where it is not, the test is skipped saying how to install it, except
/// in CI (`CI` set), whose setup installs it: there that fails the test.
pub fn tool_installed(tool: &str, install: &str) -> bool {
    let there = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !there {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed; .ci/setup-tests installs it"
        );
        eprintln!("skipped: {tool} is not installed ({install})");
    }
    there
}

/// One engine and component cache for every test in a test binary.
pub fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            Arc::new(Sandbox::new(Some(repo().join("target/lp-test-cache"))).expect("engine"))
        })
        .clone()
}

/// Parse `--set`-style overrides.
pub fn overrides(list: &[&str]) -> Vec<Override> {
    list.iter().map(|s| s.parse().expect("override")).collect()
}

/// Run a program to its end with output captured.
pub fn run(program: &str, set: &[&str]) -> anyhow::Result<(Outcome, Vec<OutputLine>)> {
    run_in(sandbox(), program, set)
}

/// Like [`run`], in an engine and component cache of the caller's.
pub fn run_in(
    sandbox: Arc<Sandbox>,
    program: &str,
    set: &[&str],
) -> anyhow::Result<(Outcome, Vec<OutputLine>)> {
    let output = Output::capture();
    let options = LaunchOptions {
        termination_notice: Some(Duration::from_secs(5)),
        output: output.clone(),
        ..LaunchOptions::default()
    };
    let outcome = lp_host::run(&path(program), &overrides(set), sandbox, options)?;
    Ok((outcome, output.lines()))
}

/// The text of every captured line of `node`.
pub fn lines_of(lines: &[OutputLine], node: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.node == node)
        .map(|l| l.text.clone())
        .collect()
}

/// A new FIFO (named pipe) at `dir/name`.
pub fn fifo_in(dir: &Path, name: &str) -> PathBuf {
    let fifo = dir.join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    fifo
}
