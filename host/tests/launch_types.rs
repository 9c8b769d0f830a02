//! The end-to-end suite through the `lp-host` binary under both launch
//! types, and what only local_mp has: worker processes, their supervision
//! (a worker killed with SIGKILL, no orphans when the launcher dies),
//! colocation.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every launch type; `hosts` with its agents on this machine (the
/// multi-host tests in tests/tests/multi_host.rs put them on other hosts).
const LAUNCH_TYPES: [&str; 3] = ["local_mt", "local_mp", "hosts"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn lp_host() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lp-host"));
    command
        .current_dir(repo())
        .env("LP_CACHE_DIR", repo().join("target/lp-test-cache"))
        .env("NO_COLOR", "1");
    command
}

/// Run a program under `launch`: a launch type, or `local_mp+grpc` for
/// local_mp with the gRPC courier.
fn run(launch: &str, args: &[&str]) -> Output {
    let mut command = lp_host();
    command.arg("run").args(args);
    match launch.split_once('+') {
        Some((launch, courier)) => command.args(["--launch", launch, "--courier", courier]),
        None => command.args(["--launch", launch]),
    };
    if launch == "hosts" {
        command.args(["--local-agents", "--agents", "2"]);
    }
    command.output().expect("lp-host runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_examples_run_under_both_launch_types() {
    for launch in LAUNCH_TYPES {
        let out = run(launch, &["examples/hello_world/program.toml"]);
        assert!(out.status.success(), "{launch}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "[hello] Hello World!!!\n", "{launch}");

        let out = run(
            launch,
            &[
                "examples/consumer_producers/program.toml",
                "--set",
                "producer.replicas=4",
            ],
        );
        assert!(out.status.success(), "{launch}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let steps: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("[consumer] step"))
            .collect();
        assert_eq!(steps.len(), 10, "{launch}: {stdout}");
        assert_eq!(steps[3], "[consumer] step 3: [3, 3, 3, 3]", "{launch}");

        let out = run(launch, &["examples/run_and_serve/program.toml"]);
        assert!(out.status.success(), "{launch}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("grew: true"),
            "{launch}: {}",
            text(&out.stdout)
        );
    }
}

/// The prober's `outcome:` line for `mode`, and the exit code.
fn probe(launch: &str, mode: &str, extra: &[&str]) -> (String, Option<i32>, String) {
    let set = format!("prober.args.mode=\"{mode}\"");
    let mut args = vec!["tests/programs/echo.toml", "--set", &set];
    for e in extra {
        args.extend(["--set", e]);
    }
    let out = run(launch, &args);
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("[prober] outcome: "))
        .unwrap_or_default()
        .to_string();
    (line, out.status.code(), text(&out.stderr))
}

#[test]
fn courier_calls_behave_the_same_under_both_launch_types_and_transports() {
    for launch in ["local_mt", "local_mp", "local_mp+grpc", "hosts"] {
        assert_eq!(probe(launch, "echo", &[]).0, "ok \"hi\"", "{launch}");
        assert_eq!(probe(launch, "bytes", &[]).0, "ok [3, 2, 1]", "{launch}");
        assert_eq!(
            probe(launch, "big", &[]).0,
            "ok 67108865 bytes, last 1",
            "{launch}"
        );
        assert_eq!(
            probe(launch, "dynamic", &[]).0,
            "ok Labelled { label: \"sum\", total: 42 }",
            "{launch}"
        );
        assert_eq!(
            probe(launch, "timeout", &["program.call_timeout_secs=0.2"]).0,
            "timeout",
            "{launch}"
        );
        // A handle's own deadline, with no program-wide one.
        let per_handle = "prober.args.target={ handle = \"faulty\", timeout_secs = 0.2 }";
        assert_eq!(
            probe(launch, "timeout", &[per_handle]).0,
            "timeout",
            "{launch}"
        );
        assert_eq!(
            probe(launch, "fan-out", &[]).0,
            "ok 50,ok 51,ok 52,ok 53 peak ok 4",
            "{launch}"
        );
        let (line, code, _) = probe(launch, "forged", &[]);
        assert!(
            line.starts_with("unreachable") && line.contains("was not given a handle"),
            "{launch}: {line}"
        );
        assert_eq!(code, Some(0), "{launch}");
        let (line, code, stderr) = probe(launch, "remote-trap", &[]);
        assert!(
            line.starts_with("remote-trap") && line.contains("unreachable"),
            "{launch}: {line}"
        );
        assert_eq!(code, Some(1), "{launch}");
        assert!(
            stderr.contains("error: node faulty failed"),
            "{launch}: {stderr}"
        );
    }
}

#[test]
fn a_trapping_node_fails_the_program_under_both_launch_types() {
    for launch in LAUNCH_TYPES {
        let out = run(launch, &["tests/programs/trap_in_run.toml"]);
        assert_eq!(out.status.code(), Some(1), "{launch}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("error: node faulty failed: wasm trap"),
            "{launch}: {stderr}"
        );
        assert!(
            stderr.contains("trap_here"),
            "{launch}: the wasm backtrace: {stderr}"
        );
    }
}

/// Start the stubborn program under local_mp; its stdout, to read.
fn spawn_stubborn(extra: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = lp_host()
        .args([
            "run",
            "tests/programs/stubborn.toml",
            "--launch",
            "local_mp",
            "--termination-notice-secs",
            "0.5",
        ])
        .args(extra.iter().flat_map(|e| ["--set", e]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// Start the stubborn program under local_mp and wait for its nodes to run.
fn start_stubborn(extra: &[&str], nodes: usize) -> Child {
    let (child, mut stdout) = spawn_stubborn(extra);
    for _ in 0..nodes {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.ends_with("spinning\n"), "{line}");
    }
    child
}

/// The pids of `parent`'s child processes.
fn children_of(parent: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &parent.to_string()])
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn wait_exit(mut child: Child, secs: u64) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            panic!("lp-host did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out.stderr), start.elapsed())
}

#[test]
fn each_node_gets_a_process_unless_colocated() {
    let child = start_stubborn(&["stubborn.replicas=3"], 3);
    assert_eq!(children_of(child.id()).len(), 3);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert_eq!(wait_exit(child, 30).0, Some(130));

    let child = start_stubborn(&["stubborn.replicas=3", "stubborn.colocate=\"all\""], 3);
    assert_eq!(
        children_of(child.id()).len(),
        1,
        "one process for the colocation group"
    );
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert_eq!(wait_exit(child, 30).0, Some(130));
}

#[test]
fn a_worker_killed_with_sigkill_stops_the_program_and_is_named() {
    let child = start_stubborn(&["stubborn.replicas=2"], 2);
    let workers = children_of(child.id());
    assert_eq!(workers.len(), 2);
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status();
    let (code, stderr, _) = wait_exit(child, 30);
    let noticed = killed.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "worker process (pid {}) was killed by signal 9",
            workers[0]
        )),
        "{stderr}"
    );
    // Bounded for the test's sake; the benchmark, not this test, measures speed.
    assert!(noticed < Duration::from_secs(20), "{noticed:?}");
    assert!(
        !workers.iter().any(|&w| alive(w)),
        "no worker outlives the program"
    );
}

#[test]
fn workers_do_not_outlive_a_killed_launcher() {
    let child = start_stubborn(&["stubborn.replicas=3"], 3);
    let workers = children_of(child.id());
    assert_eq!(workers.len(), 3);
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while workers.iter().any(|&w| alive(w)) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !workers.iter().any(|&w| alive(w)),
        "orphaned workers: {workers:?}"
    );
    let _ = wait_exit(child, 5);
}

#[test]
fn logs_dir_writes_one_file_per_node_and_names_them() {
    for launch in LAUNCH_TYPES {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let logs_arg = logs.to_str().unwrap();
        let out = run(
            launch,
            &[
                "examples/consumer_producers/program.toml",
                "--set",
                "producer.replicas=2",
                "--logs-dir",
                logs_arg,
            ],
        );
        assert!(out.status.success(), "{launch}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "", "{launch}: nothing on the terminal");
        let stderr = text(&out.stderr);
        for name in ["producer_0", "producer_1", "consumer"] {
            assert!(
                stderr.contains(&format!("{logs_arg}/{name}.log")),
                "{launch}: {stderr}"
            );
        }
        let consumer = std::fs::read_to_string(logs.join("consumer.log")).unwrap();
        assert_eq!(consumer.lines().count(), 10, "{launch}: {consumer}");
        assert_eq!(consumer.lines().last(), Some("step 9: [9, 9]"), "{launch}");
        assert_eq!(
            std::fs::read_to_string(logs.join("producer_0.log")).unwrap(),
            "",
            "{launch}"
        );
    }
}

#[test]
fn tmux_gets_a_window_per_node() {
    let session = format!("lp-test-{}", std::process::id());
    let out = run(
        "local_mp",
        &[
            "examples/consumer_producers/program.toml",
            "--set",
            "producer.replicas=2",
            "--terminal",
            "tmux",
            "--tmux-session",
            &session,
        ],
    );
    let windows = Command::new("tmux")
        .args(["list-windows", "-t", &session, "-F", "#{window_name}"])
        .output()
        .unwrap();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("tmux attach -t {session}")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&windows.stdout), "producer/0\nproducer/1\nconsumer\n");
}

/// The pid of the worker hosting worker slot `k` (its spec file is wK.json).
fn worker_pid(launcher: u32, k: usize) -> u32 {
    children_of(launcher)
        .into_iter()
        .find(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&format!("w{k}.json")))
        })
        .expect("the worker is running")
}

#[test]
fn a_killed_worker_with_restarts_left_is_started_again() {
    let (child, mut stdout) = spawn_stubborn(&["stubborn.restarts=1"]);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "[stubborn] spinning\n");
    let first = worker_pid(child.id(), 0);
    let _ = Command::new("kill")
        .args(["-9", &first.to_string()])
        .status();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "[stubborn] spinning\n", "the node ran again");
    let second = worker_pid(child.id(), 0);
    assert_ne!(first, second);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let (code, stderr, _) = wait_exit(child, 30);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("stubborn failed") && stderr.contains("restarting its process (1 of 1)"),
        "{stderr}"
    );
}

#[test]
fn a_call_in_flight_to_a_restarted_node_gets_a_typed_error() {
    let mut child = lp_host()
        .args(["run", "tests/programs/echo.toml", "--launch", "local_mp"])
        .args([
            "--set",
            "prober.args.mode=\"timeout\"",
            "--set",
            "faulty.restarts=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "[faulty] faulty serving\n");
    // The prober's call (slow, 5 s) is in flight by now.
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-9", &worker_pid(child.id(), 0).to_string()])
        .status();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let (code, stderr, _) = wait_exit(child, 30);
    let outcome = rest
        .lines()
        .find_map(|l| l.strip_prefix("[prober] outcome: "))
        .unwrap_or_default();
    assert!(outcome.starts_with("unreachable"), "{rest}\n{stderr}");
    assert!(
        rest.contains("[faulty] faulty serving"),
        "faulty ran again: {rest}"
    );
    assert_eq!(
        code,
        Some(0),
        "the restart kept the program healthy: {stderr}"
    );
}

#[test]
fn a_limit_fails_only_its_node_under_both_launch_types() {
    for launch in LAUNCH_TYPES {
        let out = run(launch, &["tests/programs/over_memory.toml"]);
        assert_eq!(out.status.code(), Some(1), "{launch}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("error: node probe failed: memory limit reached")
                && stderr.contains("limits.memory_mib = 16"),
            "{launch}: {stderr}"
        );
        assert!(
            !stderr.contains("node bystander failed"),
            "{launch}: {stderr}"
        );
    }
}

const ALL_LAUNCH_TYPES: [&str; 4] = ["local_mt", "local_mp", "test_mt", "hosts"];

/// Run `args` under `launch` (a seeded one with seed 1), at most 60 s.
fn run_bounded(launch: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = lp_host();
    command
        .arg("run")
        .args(args)
        .args(["--launch", launch, "--termination-notice-secs", "5"]);
    if launch == "test_mt" {
        command.args(["--seed", "1"]);
    }
    if launch == "hosts" {
        command.args(["--local-agents", "--agents", "2"]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let (code, stderr, _) = wait_exit(child, 60);
    (code, reader.join().unwrap(), stderr)
}

#[test]
fn the_program_ends_when_the_nodes_it_waits_for_have_finished() {
    for launch in ALL_LAUNCH_TYPES {
        // The server's run waits for stop; only main's run ends the program.
        let (code, stdout, stderr) = run_bounded(launch, &["tests/programs/wait_for.toml"]);
        assert_eq!(code, Some(0), "{launch}: {stderr}");
        assert!(stdout.contains("[main] main done"), "{launch}: {stdout}");
        assert!(
            stdout.contains("[server] faulty serving"),
            "{launch}: {stdout}"
        );
        assert!(!stderr.contains("interrupted"), "{launch}: {stderr}");
    }
}

#[test]
fn end_on_first_ends_the_program_when_one_of_them_has_finished() {
    for launch in ALL_LAUNCH_TYPES {
        // Both are waited for, and the server never finishes by itself.
        let (code, stdout, stderr) = run_bounded(
            launch,
            &[
                "tests/programs/wait_for.toml",
                "--set",
                "program.wait_for=[\"main\", \"server\"]",
                "--set",
                "program.end_on=first",
            ],
        );
        assert_eq!(code, Some(0), "{launch}: {stderr}");
        assert!(stdout.contains("[main] main done"), "{launch}: {stdout}");
    }
}

#[test]
fn a_wait_for_naming_no_node_is_refused_with_its_place() {
    let (code, _, stderr) = run_bounded(
        "local_mt",
        &[
            "tests/programs/wait_for.toml",
            "--set",
            "program.wait_for=[\"mian\"]",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("program.wait_for=[\"mian\"]")
            && stderr.contains("no node, entry or group is named \"mian\"")
            && stderr.contains("help:"),
        "{stderr}"
    );
}

#[test]
fn a_node_that_keeps_failing_is_restarted_in_process_then_fails() {
    for launch in ["local_mt", "test_mt"] {
        let (code, stdout, stderr) = run_bounded(
            launch,
            &[
                "tests/programs/trap_in_run.toml",
                "--set",
                "faulty.restarts=2",
            ],
        );
        assert_eq!(code, Some(1), "{launch}: {stderr}");
        let lines = |s: &str| format!("{stdout}{stderr}").matches(s).count();
        assert_eq!(
            lines("[faulty] about to trap"),
            3,
            "{launch}: once and twice again\n{stderr}"
        );
        for k in 1..=2 {
            assert!(
                stderr.contains("faulty failed") && stderr.contains(&format!("restart {k} of 2")),
                "{launch}: {stderr}"
            );
        }
        assert!(!stderr.contains("restart 3 of"), "{launch}: {stderr}");
        assert!(
            stderr.contains("error: node faulty failed"),
            "{launch}: {stderr}"
        );
    }
}

#[test]
fn a_seeded_restart_is_in_the_trace_and_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let trace = |name: &str| {
        let file = dir.path().join(name);
        let (code, _, stderr) = run_bounded(
            "test_mt",
            &[
                "tests/programs/trap_in_run.toml",
                "--set",
                "faulty.restarts=1",
                "--trace",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(1), "{stderr}");
        std::fs::read_to_string(file).unwrap()
    };
    let first = trace("a.trace");
    assert!(first.contains("restart faulty (1 of 1)"), "{first}");
    assert_eq!(first, trace("b.trace"));
}

#[test]
fn hosts_refuses_a_program_its_agents_cannot_hold_before_it_starts() {
    let out = run(
        "hosts",
        &[
            "examples/consumer_producers/program.toml",
            "--set",
            "consumer.resources.gpus=4",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("consumer needs 4 gpus")
            && stderr.contains("--set consumer.resources.gpus=4"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("step"), "no node ran");
    // The agents were told the launch is over: none says it lost the launcher.
    assert!(!stderr.contains("lost the launcher"), "{stderr}");
}
