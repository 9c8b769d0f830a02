//! Worker processes on this machine: `lp-host worker --spec FILE`, the
//! spec written owner-only into the run directory. A worker dies with its
//! parent (PR_SET_PDEATHSIG) and leaves terminal signals to it. Its exit
//! is waited for without reaping first, so a kill never reaches a process
//! that was given the pid again.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};

use super::{Exit, RunningWorker, Spawner};
use crate::launch::worker::WorkerSpec;
use crate::launch::{LaunchOptions, lock, run_dir};

/// Starts workers as child processes of this one.
pub struct LocalProcesses {
    exe: PathBuf,
    /// Where their specs are written (owner-only).
    dir: PathBuf,
}

impl LocalProcesses {
    pub fn new(exe: PathBuf, dir: PathBuf) -> LocalProcesses {
        LocalProcesses { exe, dir }
    }
}

/// Where the lp-host binary is, to start workers from: as the launch
/// options say, else `$LP_HOST_EXE`, else this executable.
pub fn worker_exe(options: &LaunchOptions) -> Result<PathBuf> {
    if let Some(exe) = &options.worker_exe {
        return Ok(exe.clone());
    }
    if let Some(exe) = std::env::var_os("LP_HOST_EXE") {
        return Ok(PathBuf::from(exe));
    }
    std::env::current_exe().context("cannot find the lp-host executable to start workers")
}

impl Spawner for LocalProcesses {
    fn start(&self, spec: &WorkerSpec) -> Result<Arc<dyn RunningWorker>> {
        let spec_file = self.dir.join(format!("w{}.json", spec.worker));
        run_dir::write_private(&spec_file, &serde_json::to_vec(spec)?)?;
        let mut command = Command::new(&self.exe);
        command.arg("worker").arg("--spec").arg(&spec_file);
        dies_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start a worker ({})", self.exe.display()))?;
        tracing::debug!(
            "worker {} (pid {}) hosts {:?}",
            spec.worker,
            child.id(),
            spec.nodes
        );
        Ok(Arc::new(LocalWorker {
            pid: Mutex::new(child.id()),
            started: child.id(),
            child: Mutex::new(Some(child)),
        }))
    }
}

/// Make `command`'s process hear of its parent's death (and clean up,
/// then exit), and leave Ctrl-C, SIGTERM, SIGHUP and SIGQUIT (which a
/// terminal sends the whole process group) to the parent, which stops the
/// program in order.
pub fn dies_with_parent(command: &mut Command) {
    // SAFETY: prctl and signal are async-signal-safe and only change the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, run_dir::LAUNCHER_GONE);
            for signal in crate::signals::STOPPING
                .into_iter()
                .chain([run_dir::LAUNCHER_GONE])
            {
                libc::signal(signal, libc::SIG_IGN);
            }
            Ok(())
        });
    }
}

/// A child process running a worker.
pub struct LocalWorker {
    /// The process's pid until it has exited (then 0: it may be reused).
    pid: Mutex<u32>,
    started: u32,
    child: Mutex<Option<Child>>,
}

impl RunningWorker for LocalWorker {
    fn describe(&self) -> String {
        format!("pid {}", self.started)
    }

    fn kill(&self) {
        let pid = lock(&self.pid);
        if *pid != 0 {
            // SAFETY: kill(2) on our own child, not yet reaped (see `wait`).
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }

    fn wait(&self) -> Exit {
        let Some(mut child) = lock(&self.child).take() else {
            return Exit {
                success: false,
                how: "was already waited for".into(),
            };
        };
        // Wait for the exit without reaping the process, and forget its
        // pid before reaping it: a kill under the lock can never reach
        // another process that was given the pid again.
        wait_for_exit(child.id());
        *lock(&self.pid) = 0;
        let status = child.wait();
        Exit {
            success: matches!(&status, Ok(s) if s.success()),
            how: describe_exit(&status),
        }
    }
}

/// Block until process `pid` (our child) has exited, leaving it to be reaped.
fn wait_for_exit(pid: u32) {
    loop {
        // SAFETY: waitid(2) with a zeroed siginfo_t to fill.
        let done = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if done == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// How a process ended, in words.
pub fn describe_exit(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!(
                "was killed by signal {signal}{}",
                if signal == 9 { " (SIGKILL)" } else { "" }
            ),
            _ => format!("ended: {s}"),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}
