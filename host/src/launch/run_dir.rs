//! local_mp's run directory: where the launch's sockets are, and the
//! worker specs that hold its secret. Only its owner can reach it (the
//! directory 0700, every file in it 0600, whatever the umask); a spec lives
//! until its worker has read it, and a worker whose launcher is gone
//! removes the directory.

use std::fs::Permissions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, Result};

/// The signal a worker gets when its launcher dies (`PR_SET_PDEATHSIG`):
/// ignored until the worker is ready to clean up, then handled.
pub const LAUNCHER_GONE: i32 = libc::SIGUSR1;

/// Create the run directory, 0700.
pub fn create() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("lp-")
        .permissions(Permissions::from_mode(0o700))
        .tempdir()
        .context("cannot create the run directory")?;
    // Exactly 0700, whatever the umask left of it.
    std::fs::set_permissions(dir.path(), Permissions::from_mode(0o700))
        .context("cannot restrict the run directory to its owner")?;
    Ok(dir)
}

/// Write `bytes` to `file`, readable and writable by its owner only.
pub fn write_private(file: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(file)?;
        out.set_permissions(Permissions::from_mode(0o600))?;
        out.write_all(bytes)
    };
    write().with_context(|| format!("cannot write {}", file.display()))
}

/// Read a worker's spec and remove it: the secret in it is then only in
/// the memory of this launch's processes.
pub fn take_spec(file: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(file).with_context(|| format!("cannot read the spec {}", file.display()))?;
    let _ = std::fs::remove_file(file);
    Ok(bytes)
}

/// In a worker: from now on, when the launcher (`launcher`, its pid) is
/// gone, remove the run directory `dir` and exit. Also checks at once, for
/// a launcher that died before the worker was ready.
pub fn clean_up_after(launcher: u32, dir: &Path) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([LAUNCHER_GONE])
        .context("cannot watch for the launcher's end")?;
    let dir = dir.to_path_buf();
    let gone = move || {
        // SAFETY: getppid(2) cannot fail.
        let parent = unsafe { libc::getppid() };
        parent as u32 != launcher
    };
    if gone() {
        remove_and_exit(&dir);
    }
    std::thread::Builder::new()
        .name("lp-launcher-gone".into())
        .spawn(move || {
            for _ in signals.forever() {
                if gone() {
                    remove_and_exit(&dir);
                }
            }
        })
        .context("cannot watch for the launcher's end")?;
    Ok(())
}

/// The launcher is gone: remove what it left, then end this worker.
pub fn remove_and_exit(dir: &Path) -> ! {
    let _ = std::fs::remove_dir_all(dir);
    std::process::exit(3)
}
