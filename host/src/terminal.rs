//! Node output in tmux (`--terminal tmux`): one window per node, each
//! following that node's log file, in a detached session the user attaches
//! to. The session stays after the program ends, so its output can be read.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Open session `session` with a window per node showing its log file.
pub fn open_tmux(session: &str, nodes: &[String], files: &[PathBuf]) -> Result<()> {
    let version = Command::new("tmux").arg("-V").output();
    if !version.is_ok_and(|v| v.status.success()) {
        bail!("--terminal tmux needs tmux (e.g. `apt-get install tmux`)");
    }
    let exists = Command::new("tmux")
        .args(["has-session", "-t", session])
        .output()?;
    if exists.status.success() {
        bail!(
            "a tmux session named {session:?} exists already; pick another with --tmux-session, or `tmux kill-session -t {session}`"
        );
    }
    for (i, (node, file)) in nodes.iter().zip(files).enumerate() {
        let follow = format!("tail -n +1 -F {}", shell_quote(&file.display().to_string()));
        let mut command = Command::new("tmux");
        if i == 0 {
            command.args(["new-session", "-d", "-s", session, "-n", node, &follow]);
        } else {
            command.args([
                "new-window",
                "-d",
                "-t",
                &format!("{session}:"),
                "-n",
                node,
                &follow,
            ]);
        }
        let out = command.output().context("cannot run tmux")?;
        if !out.status.success() {
            bail!(
                "tmux failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
