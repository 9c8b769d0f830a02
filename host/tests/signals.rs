//! How lp-host ends a program, through the binary: SIGINT, SIGTERM, SIGHUP
//! and SIGQUIT stop it gracefully, a second one at once; a wedged
//! (SIGSTOPped) worker or a node blocked in a host call cannot hold the
//! launcher past the termination notice; nothing panics while a node that
//! ignores stop is interrupted; local_mp's run directory (sockets, and
//! specs with the launch's secret) is its owner's only, and goes with the
//! launch even when the launcher is killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// What every test gives the launcher at most to end by itself.
const BOUND: Duration = Duration::from_secs(20);

/// The launch types and transports, as `lp-host run` flags.
const LAUNCHES: [&[&str]; 3] = [
    &["--launch", "local_mt"],
    &["--launch", "local_mp", "--courier", "socket"],
    &["--launch", "local_mp", "--courier", "grpc"],
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A running `lp-host run`, killed (with whatever it stopped) if the test
/// ends early.
struct Launcher {
    child: Option<Child>,
    stdout: BufReader<ChildStdout>,
    /// Processes the test sent SIGSTOP, continued when it ends.
    stopped: Vec<u32>,
}

impl Launcher {
    fn start(program: &str, notice: &str, flags: &[&str], sets: &[&str]) -> Launcher {
        Launcher::spawn(run_command(program, notice, flags, sets))
    }

    fn spawn(mut command: Command) -> Launcher {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Launcher {
            child: Some(child),
            stdout,
            stopped: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Read `n` lines of node output, each ending with one of `endings`.
    fn expect_lines(&mut self, n: usize, endings: &[&str]) {
        for _ in 0..n {
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            assert!(
                endings.iter().any(|e| line.ends_with(&format!("{e}\n"))),
                "{line:?}"
            );
        }
    }

    /// The worker processes (local_mp).
    fn workers(&self) -> Vec<u32> {
        let out = Command::new("pgrep")
            .args(["-P", &self.pid().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn signal(&self, signal: &str) {
        send(signal, self.pid());
    }

    fn stop_process(&mut self, pid: u32) {
        send("STOP", pid);
        self.stopped.push(pid);
    }

    /// Wait (at most [`BOUND`]) for the launcher to exit: its status and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > BOUND {
                let _ = child.kill();
                let _ = child.wait();
                panic!("lp-host did not exit within {BOUND:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// `lp-host run` with these arguments.
fn run_command(program: &str, notice: &str, flags: &[&str], sets: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lp-host"));
    command
        .current_dir(repo())
        .env("LP_CACHE_DIR", repo().join("target/lp-test-cache"))
        .env("NO_COLOR", "1")
        .args(["run", program, "--termination-notice-secs", notice])
        .args(flags)
        .args(sets.iter().flat_map(|s| ["--set", s]));
    command
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Those the launcher has not killed (it may have: not checked here).
        for &pid in &self.stopped {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}

fn send(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The stubborn program under local_mp, two workers spinning: the launcher
/// and the workers' pids.
fn two_spinning_workers(courier: &str, notice: &str) -> (Launcher, Vec<u32>) {
    let flags = ["--launch", "local_mp", "--courier", courier];
    let sets = ["stubborn.replicas=2"];
    let mut launcher = Launcher::start("tests/programs/stubborn.toml", notice, &flags, &sets);
    launcher.expect_lines(2, &["spinning"]);
    let workers = launcher.workers();
    assert_eq!(workers.len(), 2, "{courier}");
    (launcher, workers)
}

#[test]
fn a_stopped_worker_is_killed_when_the_notice_expires() {
    for courier in ["socket", "grpc"] {
        let (mut launcher, workers) = two_spinning_workers(courier, "1");
        launcher.stop_process(workers[0]);
        launcher.signal("INT");
        let (code, stderr) = launcher.finish();
        assert_eq!(code, Some(130), "{courier}: {stderr}");
        assert!(!stderr.contains("panicked"), "{courier}: {stderr}");
        assert!(
            !workers.iter().any(|&w| alive(w)),
            "{courier}: no worker outlives the program"
        );
    }
}

#[test]
fn a_second_signal_kills_at_once_with_a_stopped_worker() {
    for courier in ["socket", "grpc"] {
        // A notice far longer than the bound: only the second signal can end it.
        let (mut launcher, workers) = two_spinning_workers(courier, "600");
        launcher.stop_process(workers[0]);
        launcher.signal("INT");
        launcher.signal("TERM");
        let (code, stderr) = launcher.finish();
        assert_eq!(code, Some(130), "{courier}: {stderr}");
        assert!(!workers.iter().any(|&w| alive(w)), "{courier}");
    }
}

#[test]
fn sigterm_sighup_and_sigquit_stop_the_program_gracefully() {
    for flags in LAUNCHES {
        for (signal, number) in [("TERM", 15), ("HUP", 1), ("QUIT", 3)] {
            // The node waits for stop; a notice far longer than the bound.
            let sets = ["stubborn.replicas=2", "stubborn.args.spin_in_run=false"];
            let mut launcher = Launcher::start("tests/programs/stubborn.toml", "600", flags, &sets);
            launcher.expect_lines(2, &["faulty serving"]);
            launcher.signal(signal);
            let (code, stderr) = launcher.finish();
            assert_eq!(code, Some(128 + number), "{flags:?} SIG{signal}: {stderr}");
            assert!(
                !stderr.contains("interrupted") && !stderr.contains("error"),
                "{flags:?} SIG{signal}: every node stopped by itself: {stderr}"
            );
        }
    }
}

#[test]
fn a_node_blocked_in_a_host_call_is_interrupted_when_the_notice_expires() {
    for flags in LAUNCHES {
        // The node sleeps a minute, longer than the bound.
        let mut launcher = Launcher::start("tests/programs/sleeper.toml", "0.3", flags, &[]);
        launcher.expect_lines(1, &["sleeping"]);
        launcher.signal("INT");
        let (code, stderr) = launcher.finish();
        assert_eq!(code, Some(130), "{flags:?}: {stderr}");
        assert!(
            stderr.contains("node sleeper was still running when the termination notice expired"),
            "{flags:?}: {stderr}"
        );
    }
}

#[test]
fn interrupting_a_node_that_ignores_stop_never_panics() {
    for flags in LAUNCHES {
        for _ in 0..8 {
            let mut launcher = Launcher::start(
                "tests/programs/stubborn_and_serving.toml",
                "0.02",
                flags,
                &[],
            );
            launcher.expect_lines(2, &["spinning", "faulty serving"]);
            launcher.signal("INT");
            let (code, stderr) = launcher.finish();
            assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
            assert_eq!(code, Some(130), "{flags:?}: {stderr}");
        }
    }
}

/// The spec file a worker was started with (its `--spec` argument); none
/// for another child (a build).
fn spec_of(worker: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{worker}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let at = args.iter().position(|a| *a == b"--spec")?;
    Some(PathBuf::from(
        String::from_utf8_lossy(args.get(at + 1)?).into_owned(),
    ))
}

/// Wait (at most [`BOUND`]) until `ready` holds.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < BOUND, "{what} within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What `sh -c script path` says when run as user and group 65534.
fn as_nobody(script: &str, path: &Path) -> std::process::Output {
    use std::os::unix::process::CommandExt as _;
    Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(path)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

#[test]
fn the_run_directory_is_its_owners_only_whatever_the_umask() {
    // Workers that never read their specs, so that the specs stay to be looked at.
    let fake = tempfile::tempdir().unwrap();
    let worker = fake.path().join("worker");
    std::fs::write(&worker, "#!/bin/sh\nwhile :; do sleep 0.1; done\n").unwrap();
    std::fs::set_permissions(&worker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let flags = ["--launch", "local_mp"];
    let lp_host = run_command("tests/programs/stubborn.toml", "0.1", &flags, &[]);
    // The same command under umask 000.
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(lp_host.get_program())
        .args(lp_host.get_args())
        .current_dir(repo())
        .envs(lp_host.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("LP_HOST_EXE", &worker);
    let launcher = Launcher::spawn(command);
    let first_spec = || launcher.workers().into_iter().find_map(spec_of);
    wait_until("a worker starts", || first_spec().is_some());
    let spec = first_spec().unwrap();
    let dir = spec.parent().unwrap().to_path_buf();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.contains(&spec) && files.contains(&dir.join("control.sock")));
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // Another user can neither read the spec nor reach the socket.
    for file in [&spec, &dir.join("control.sock")] {
        let out = as_nobody("cat \"$1\"", file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("Permission denied"),
            "{}: {stderr}",
            file.display()
        );
    }
    launcher.signal("INT");
    let (code, stderr) = launcher.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(!dir.exists(), "the run directory goes with the launch");
}

#[test]
fn a_killed_launcher_leaves_no_secret_behind() {
    for courier in ["socket", "grpc"] {
        let (launcher, workers) = two_spinning_workers(courier, "1");
        let spec = spec_of(workers[0]).unwrap();
        assert!(
            !spec.exists(),
            "{courier}: a worker removes its spec once read"
        );
        launcher.signal("KILL");
        let dir = spec.parent().unwrap();
        wait_until("the workers remove the run directory", || !dir.exists());
        wait_until("the workers exit", || !workers.iter().any(|&w| alive(w)));
        let _ = launcher.finish();
    }
}

#[test]
fn signals_stop_a_seeded_run_too() {
    let flags: &[&str] = &["--launch", "test_mt", "--seed", "7"];
    // A node that spins, ignoring stop: the first signal stops the run,
    // the (virtual) notice interrupts the node.
    let mut launcher = Launcher::start("tests/programs/stubborn.toml", "0.5", flags, &[]);
    launcher.expect_lines(1, &["spinning"]);
    launcher.signal("TERM");
    let (code, stderr) = launcher.finish();
    assert_eq!(code, Some(143), "{stderr}");
    assert!(
        stderr.contains("node stubborn was still running when the termination notice expired"),
        "{stderr}"
    );
    // A second signal ends it at once, whatever the notice.
    let mut launcher = Launcher::start("tests/programs/stubborn.toml", "600", flags, &[]);
    launcher.expect_lines(1, &["spinning"]);
    // (Two of one signal can arrive as one: the second is another.)
    launcher.signal("INT");
    launcher.signal("TERM");
    let (code, stderr) = launcher.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("was interrupted"), "{stderr}");
}
