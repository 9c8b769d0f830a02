//! Node and host output through the `lp-host` binary, when its reader is
//! gone, its disk full or its reader slow, and when a node prints control
//! sequences: no panic, the program's status, the loss said once; a node
//! that outprints its reader waits; a node cannot rewrite the terminal.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LAUNCH_TYPES: [&str; 3] = ["local_mt", "local_mp", "test_mt"];

/// What lp-host says, once, when a stream it writes to fails.
const LOST: &str = "is lost from here on";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn lp_host(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lp-host"));
    command
        .args(args)
        .current_dir(repo())
        .env("LP_CACHE_DIR", repo().join("target/lp-test-cache"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// `lp-host run` of the printer program under `launch`, with `--set`s.
fn run_printer(launch: &str, set: &[&str]) -> Command {
    let mut command = lp_host(&["run", "tests/programs/printer.toml", "--launch", launch]);
    if launch == "test_mt" {
        command.args(["--seed", "1"]);
    }
    for s in set {
        command.args(["--set", s]);
    }
    command
}

/// A child killed if the test ends before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Its exit code; fails the test if it has not exited within `secs`.
    fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "lp-host did not exit within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Run `command` with stdout and stderr into one pipe that is closed after
/// its first line (at once if `read_first` is false); the exit code.
fn with_closed_pipe(mut command: Command, read_first: bool) -> Option<i32> {
    let (reader, writer) = std::io::pipe().unwrap();
    command.stdout(writer.try_clone().unwrap()).stderr(writer);
    let mut child = Running(command.spawn().unwrap());
    drop(command);
    if read_first {
        let mut first = String::new();
        BufReader::new(reader).read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "lp-host wrote nothing");
    } else {
        drop(reader);
    }
    child.exit_code(300)
}

/// Run `command` with stdout on /dev/full; its exit code and stderr.
fn with_full_stdout(mut command: Command) -> (Option<i32>, String) {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    command.stdout(full).stderr(Stdio::piped());
    let mut child = Running(command.spawn().unwrap());
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (child.exit_code(300), stderr)
}

fn assert_said_once(stderr: &str, what: &str) {
    assert_eq!(stderr.matches(LOST).count(), 1, "{stderr}");
    assert!(stderr.contains(what), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_closed_pipe_ends_a_run_with_the_programs_status() {
    for launch in LAUNCH_TYPES {
        let printer = run_printer(launch, &["printer.args.mb=1", "printer.args.trap=true"]);
        assert_eq!(with_closed_pipe(printer, true), Some(1), "{launch}");
        let printer = run_printer(launch, &["printer.args.mb=1", "printer.args.trap=true"]);
        assert_eq!(with_closed_pipe(printer, false), Some(1), "{launch}");
    }
}

#[test]
fn a_full_stdout_is_reported_once_and_the_run_keeps_its_status() {
    for launch in LAUNCH_TYPES {
        let printer = run_printer(launch, &["printer.args.mb=1", "printer.args.trap=true"]);
        let (code, stderr) = with_full_stdout(printer);
        assert_eq!(code, Some(1), "{launch}: {stderr}");
        assert_said_once(&stderr, "stdout");
        assert!(stderr.contains("error: node printer failed"), "{stderr}");
        let (code, stderr) = with_full_stdout(run_printer(launch, &["printer.args.mb=1"]));
        assert_eq!(code, Some(0), "{launch}: {stderr}");
        assert_said_once(&stderr, "stdout");
    }
}

#[test]
fn a_log_file_that_cannot_be_written_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("printer.log")).unwrap();
    let mut printer = run_printer("local_mt", &["printer.args.mb=1", "printer.args.trap=true"]);
    printer.args(["--logs-dir", dir.path().to_str().unwrap()]);
    let out = printer.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_said_once(&stderr, "node printer's log file");
}

#[test]
fn check_and_test_end_cleanly_on_a_closed_pipe_and_a_full_stdout() {
    let check = || lp_host(&["check", "tests/programs/printer.toml"]);
    let (code, stderr) = with_full_stdout(check());
    assert_eq!(code, Some(0), "{stderr}");
    assert_said_once(&stderr, "stdout");
    let bad = lp_host(&["check", "tests/programs/mismatch.toml"]);
    assert_eq!(with_closed_pipe(bad, false), Some(2));

    let test = || {
        lp_host(&[
            "test",
            "tests/programs/printer.toml",
            "--seeds",
            "1..3",
            "--set",
            "printer.args.trap=true",
        ])
    };
    assert_eq!(with_closed_pipe(test(), false), Some(1));
    let (code, stderr) = with_full_stdout(test());
    assert_eq!(code, Some(1), "{stderr}");
    assert_said_once(&stderr, "stdout");
}

#[test]
fn tmux_ends_cleanly_on_a_closed_pipe() {
    let session = format!("lp-output-test-{}", std::process::id());
    let mut printer = run_printer("local_mt", &["printer.args.mb=1"]);
    printer.args(["--terminal", "tmux", "--tmux-session", &session]);
    let code = with_closed_pipe(printer, false);
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    assert_eq!(code, Some(0));
}

/// The resident memory of process `pid`, in MiB (0 once it is gone).
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// The pids of `parent`'s child processes.
fn children_of(parent: u32) -> Vec<u32> {
    let list = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"));
    list.unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

#[test]
fn a_node_outprinting_a_slow_reader_waits_under_local_mp() {
    const MB: u64 = 200;
    const BOUND_MIB: u64 = 100;
    for courier in ["socket", "grpc"] {
        let mut printer = run_printer("local_mp", &[&format!("printer.args.mb={MB}")]);
        printer
            .args(["--courier", courier])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Running(printer.spawn().unwrap());
        let launcher = child.0.id();
        let stdout = BufReader::with_capacity(1 << 16, child.0.stdout.take().unwrap());
        let (mut expected, mut peak, mut worker_peak) = (0u64, 0, 0);
        for line in stdout.lines() {
            let line = line.unwrap();
            let n: u64 = line
                .strip_prefix("[printer] line ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a numbered line: {line:?}"));
            assert_eq!(n, expected, "a line was lost or reordered");
            expected += 1;
            // A slow reader: a pause every 64 KiB or so, and a look at memory.
            if n.is_multiple_of(640) {
                std::thread::sleep(Duration::from_millis(2));
                peak = peak.max(rss_mib(launcher));
                for worker in children_of(launcher) {
                    worker_peak = worker_peak.max(rss_mib(worker));
                }
            }
        }
        eprintln!("{courier}: worker peak {worker_peak} MiB, launcher peak {peak} MiB");
        assert_eq!(expected, MB * 10_000, "{courier}: every line arrives");
        assert_eq!(child.exit_code(60), Some(0), "{courier}");
        assert!(worker_peak > 0, "{courier}: the worker was seen");
        assert!(
            worker_peak < BOUND_MIB && peak < BOUND_MIB,
            "{courier}: the worker reached {worker_peak} MiB, the launcher {peak} MiB"
        );
    }
}

#[test]
fn node_output_cannot_take_over_the_terminal() {
    let expected = "[printer] \\x1b]0;title\\x07\n\
                    [printer] \\x1b[2J\n\
                    [printer] \\x0d[other] fake\n\
                    [printer] back\\x08space \\u{9b}1m c1\n\
                    [printer] \\x1b[31mred\n";
    for launch in LAUNCH_TYPES {
        let dir = tempfile::tempdir().unwrap();
        let mut command = lp_host(&["run", "tests/programs/printer_controls.toml"]);
        command.args(["--launch", launch]);
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{launch}");

        // Log files keep the bytes as the node wrote them.
        command.args(["--logs-dir", dir.path().to_str().unwrap()]);
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::read(dir.path().join("printer.log")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&log),
            "\x1b]0;title\x07\n\x1b[2J\n\r[other] fake\nback\x08space \u{9b}1m c1\n\x1b[31mred\n",
            "{launch}"
        );
    }
}
