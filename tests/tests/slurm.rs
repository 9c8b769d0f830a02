//! `lp-host run --launch slurm` against a real Slurm cluster: slurmctld and
//! three slurmd, each slurmd in a network namespace of its own
//! (`lp_tests::slurm`). consumer_producers runs with its producers on two
//! Slurm nodes (and the same program.toml under every other launch type,
//! only the flag changed); a node that crashes on one Slurm node ends the
//! job and is named; Ctrl-C cancels the job; a job Slurm cannot place is
//! refused with Slurm's reason, at submission or while pending; the replay
//! example's built-in replay node is placed and reached like any node. After
//! each, Slurm lists no job and no lp-host process is left on any node.
//! Skipped (saying why) without root, iproute2 or Slurm.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use lp_tests::slurm::{Cluster, Options};

/// A launcher running from its own working directory (its private
/// directory goes there: a filesystem the nodes share), its output in
/// files (a pipe nobody reads would block it).
struct Launcher {
    child: Child,
    cwd: tempfile::TempDir,
    logs: tempfile::TempDir,
}

impl Launcher {
    /// `lp-host run PROGRAM --launch LAUNCH ARGS...`.
    fn start(cluster: &Cluster, program: &str, launch: &str, args: &[&str]) -> Launcher {
        let (cwd, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let file = |name: &str| std::fs::File::create(logs.path().join(name)).unwrap();
        let child = cluster
            .command(lp_tests::lp_host_exe())
            .current_dir(cwd.path())
            .args(["run", "--launch", launch])
            .arg(lp_tests::path(program))
            .args(args)
            .stdout(file("out"))
            .stderr(file("err"))
            .spawn()
            .unwrap();
        Launcher { child, cwd, logs }
    }

    /// Its exit code, stdout and stderr once it has ended (killed after
    /// `limit`: a hang fails the test), and nothing left in its directory.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "lp-host did not end within {limit:?}:\n{}",
                    self.read("err")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let leftovers: Vec<_> = std::fs::read_dir(self.cwd.path()).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "the launcher left files in its working directory: {leftovers:?}"
        );
        (status.code(), self.read("out"), self.read("err"))
    }

    /// Wait (at most a minute) until the launcher has written every one
    /// of `texts` to `file` ("out" or "err").
    fn wait_for_said(&self, file: &str, texts: &[&str]) {
        let started = Instant::now();
        while !texts.iter().all(|t| self.read(file).contains(t)) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the launcher never wrote {texts:?} to its {file}:\n{}",
                self.read("err")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default()
    }
}

/// A launch run to its end (at most 120 s).
fn run(
    cluster: &Cluster,
    program: &str,
    launch: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    Launcher::start(cluster, program, launch, args).finish(Duration::from_secs(120))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Slurm node each lp node ran on, from the launcher's
/// `slurm: agent 0 (10.x.x.x) [n1] runs a, b` lines.
fn slurm_node_of(err: &str, node: &str) -> String {
    err.lines()
        .filter_map(|l| l.strip_prefix("slurm: agent "))
        .find_map(|l| {
            let (_, rest) = l.split_once(") [")?;
            let (label, names) = rest.split_once("] runs ")?;
            names
                .split(", ")
                .any(|n| n == node)
                .then(|| label.to_string())
        })
        .unwrap_or_else(|| panic!("{node} was not placed:\n{err}"))
}

/// Nothing of a launch is left: Slurm lists no job, and no lp-host runs
/// in any node's namespace.
fn assert_nothing_left(cluster: &Cluster) {
    assert_eq!(cluster.squeue_jobs(), Vec::<String>::new(), "jobs left");
    // The agents' processes are reaped by slurmstepd a moment after the
    // job has gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = lp_host_processes(cluster);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lp-host processes left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// lp-host processes (agents, workers) in the cluster's namespaces.
fn lp_host_processes(cluster: &Cluster) -> Vec<String> {
    let mut found = Vec::new();
    for namespace in cluster.namespaces() {
        let out = Command::new("ip")
            .args(["netns", "pids", namespace])
            .output()
            .unwrap();
        for pid in text(&out.stdout).split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) state ...`; zombies are gone in all but name.
            let Some((comm, rest)) = stat.split_once(") ") else {
                continue;
            };
            if comm.ends_with("(lp-host") && !rest.starts_with('Z') {
                found.push(format!("{namespace}: {pid}"));
            }
        }
    }
    found
}

#[test]
fn consumer_producers_runs_with_its_producers_on_two_slurm_nodes() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    let program = "examples/consumer_producers/program.toml";
    let set = [
        "--set",
        "producer.replicas=10",
        "--set",
        "program.slurm.nodes=2",
    ];
    let (code, out, err) = run(&cluster, program, "slurm", &set);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("[consumer] step 9: [9, 9, 9, 9, 9, 9, 9, 9, 9, 9]"),
        "{out}"
    );
    assert!(err.contains("slurm: job "), "{err}");
    let mut nodes: Vec<String> = (0..10)
        .map(|r| slurm_node_of(&err, &format!("producer/{r}")))
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes.len(),
        2,
        "the producers ran on two Slurm nodes: {err}"
    );
    for node in &nodes {
        assert!(cluster.nodes().contains(node), "{node}: {err}");
    }
    assert_nothing_left(&cluster);

    // The same program.toml under every launch type, only the flag changed.
    for launch in [
        &["--launch", "local_mt"][..],
        &["--launch", "local_mp"],
        &["--launch", "hosts", "--local-agents", "--agents", "2"],
    ] {
        let mut command = cluster.command(lp_tests::lp_host_exe());
        let out = command
            .arg("run")
            .arg(lp_tests::path(program))
            .args(launch)
            .args(set)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{launch:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("[consumer] step 9: [9, 9, 9, 9, 9, 9, 9, 9, 9, 9]"),
            "{launch:?}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn the_replay_example_learns_with_its_replay_node_on_a_slurm_node() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    let program = "examples/replay/program.toml";
    let (code, out, err) = run(
        &cluster,
        program,
        "slurm",
        &["--set", "program.slurm.nodes=2"],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("greedy policy reaches the goal in 9 steps (optimal 9)"),
        "{out}"
    );
    assert!(out.contains("64000 samples, 0 deletes"), "{out}");
    // The built-in replay node was placed on a Slurm node like any other.
    let node = slurm_node_of(&err, "replay");
    assert!(cluster.nodes().contains(&node), "{node}: {err}");
    assert_nothing_left(&cluster);
}

/// The job id the launcher printed (`slurm: job N runs the agents ...`).
fn job_id_of(err: &str) -> String {
    err.lines()
        .find_map(|l| l.strip_prefix("slurm: job "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id printed:\n{err}"))
        .to_string()
}

#[test]
fn processes_that_need_different_machines_get_a_heterogeneous_job() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    // A consumer of 2 cpus and four producers of 0.5 over three nodes of
    // 2 cpus: the producers' component (their class comes first, as in
    // the program) two nodes of 1 cpu, two producers each; the
    // consumer's one node of 2 cpus.
    let set = [
        "--set",
        "producer.replicas=4",
        "--set",
        "consumer.resources.cpus=2",
        "--set",
        "producer.resources.cpus=0.5",
        "--set",
        "program.slurm.nodes=3",
    ];
    let program = "examples/consumer_producers/program.toml";
    // Node output to files (--logs-dir), the job's own output beside it.
    let logs = tempfile::tempdir().unwrap();
    let logs_arg = logs.path().to_str().unwrap();
    let with_logs: Vec<&str> = set
        .iter()
        .copied()
        .chain(["--logs-dir", logs_arg])
        .collect();
    let (code, out, err) = run(&cluster, program, "slurm", &with_logs);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let consumer_log = std::fs::read_to_string(logs.path().join("consumer.log")).unwrap();
    assert!(
        consumer_log.contains("step 9: [9, 9, 9, 9]"),
        "{consumer_log}"
    );
    assert!(
        !out.contains("step 9"),
        "node output went to the files: {out}"
    );
    let job = job_id_of(&err);
    assert!(
        logs.path().join(format!("slurm-{job}.out")).exists(),
        "the job's output is in --logs-dir"
    );
    assert!(
        err.contains("runs the agents (2 nodes of 1 cpu + 1 node of 2 cpus)"),
        "{err}"
    );
    // Slurm's own record: a heterogeneous job of two components, sized so.
    let shown = cluster.run(&format!("scontrol show job {job}"));
    let shown = text(&shown.stdout);
    let component = |offset: usize| -> (String, String) {
        let record = shown
            .split("\n\n")
            .find(|r| r.contains(&format!("HetJobOffset={offset} ")))
            .unwrap_or_else(|| panic!("no component {offset}:\n{shown}"));
        let field = |name: &str| {
            record
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {record}"))
                .to_string()
        };
        (field("NumNodes="), field("CPUs/Task="))
    };
    assert_eq!(component(0), ("2".into(), "1".into()), "{shown}");
    assert_eq!(component(1), ("1".into(), "2".into()), "{shown}");
    // Each agent offered its component's size: the consumer alone on its
    // node, the producers two by two on the other two.
    let consumer = slurm_node_of(&err, "consumer");
    let mut producers: Vec<String> = (0..4)
        .map(|r| slurm_node_of(&err, &format!("producer/{r}")))
        .collect();
    assert!(!producers.contains(&consumer), "{err}");
    producers.sort();
    producers.dedup();
    assert_eq!(producers.len(), 2, "{err}");
    assert_nothing_left(&cluster);
}

#[test]
fn a_node_that_crashes_on_one_slurm_node_ends_the_job_and_is_named() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    let (code, out, err) = run(&cluster, "tests/programs/trap_in_run.toml", "slurm", &[]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("error: node faulty failed: wasm trap"),
        "{err}"
    );
    let on = slurm_node_of(&err, "faulty");
    assert!(cluster.nodes().contains(&on), "{err}");
    assert_nothing_left(&cluster);
}

#[test]
fn ctrl_c_stops_the_program_and_cancels_the_job() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    // Runs until stopped: the consumer takes a very long time.
    let launcher = Launcher::start(
        &cluster,
        "examples/consumer_producers/program.toml",
        "slurm",
        &["--set", "consumer.args.steps=100000000"],
    );
    launcher.wait_for_said("out", &["[consumer] step 1:"]);
    // Running for a while: the consumer is making its calls.
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill sends a signal to a child of this process.
    unsafe { libc::kill(launcher.child.id() as i32, libc::SIGINT) };
    let (code, out, err) = launcher.finish(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(out.contains("[consumer] step 1:"), "{out}\n{err}");
    // A stop, not a node's failure.
    assert!(!err.contains("error: node"), "{err}");
    assert_nothing_left(&cluster);
}

#[test]
fn a_job_slurm_cannot_place_is_refused_with_slurms_reason() {
    // Refused at submission (the cluster enforces partition limits).
    {
        let Some(cluster) = Cluster::up(3) else {
            return;
        };
        let (code, out, err) = run(
            &cluster,
            "examples/consumer_producers/program.toml",
            "slurm",
            &["--set", "consumer.resources.cpus=64"],
        );
        assert_eq!(code, Some(2), "{out}\n{err}");
        assert!(err.contains("Slurm refused the job"), "{err}");
        assert!(
            err.contains("More processors requested than permitted"),
            "{err}"
        );
        assert_nothing_left(&cluster);
    }
    // Accepted, then pending for ever (Slurm's own default): refused with
    // the pending reason, not a hang.
    let Some(cluster) = Cluster::up_with(
        3,
        Options {
            enforce_part_limits: false,
        },
    ) else {
        return;
    };
    let (code, out, err) = run(
        &cluster,
        "examples/consumer_producers/program.toml",
        "slurm",
        &["--set", "program.slurm.nodes=5"],
    );
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("Slurm cannot start job"), "{err}");
    assert!(err.contains("pending with reason Partition"), "{err}");
    assert_nothing_left(&cluster);
}

#[test]
fn a_detached_launch_is_seen_and_stopped_by_its_job_id() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    let (cwd, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lp = |args: &[&str]| {
        let out = cluster
            .command(lp_tests::lp_host_exe())
            .current_dir(cwd.path())
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let program = lp_tests::path("examples/consumer_producers/program.toml");
    let logs_dir = logs.path().to_str().unwrap();
    let (code, job, err) = lp(&[
        "run",
        "--launch",
        "slurm",
        "--detach",
        program.to_str().unwrap(),
        "--set",
        "consumer.args.steps=100000000",
        "--termination-notice-secs",
        "1",
        "--logs-dir",
        logs_dir,
    ]);
    assert_eq!(code, Some(0), "{job}\n{err}");
    let job = job.trim().to_string();
    assert!(job.chars().all(|c| c.is_ascii_digit()), "{job:?}");
    assert!(err.contains(&format!("lp-host stop {job}")), "{err}");
    // It runs on its own: the consumer's lines reach its log file.
    let started = Instant::now();
    while !std::fs::read_to_string(logs.path().join("consumer.log"))
        .unwrap_or_default()
        .contains("step 1:")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the detached launch did not run: {}",
            lp(&["status", &job]).1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, status, _) = lp(&["status", &job]);
    assert_eq!(code, Some(0), "{status}");
    assert!(status.contains("RUNNING"), "{status}");
    assert!(
        status.contains("a step of job"),
        "the launcher's output: {status}"
    );

    let (code, said, err) = lp(&["stop", &job]);
    assert_eq!(code, Some(0), "{said}\n{err}");
    assert_nothing_left(&cluster);
    let (code, status, _) = lp(&["status", &job]);
    assert_eq!(code, Some(1), "{status}");
    let launcher =
        std::fs::read_to_string(logs.path().join(format!("launcher-{job}.out"))).unwrap();
    assert!(launcher.contains("runs producer/0"), "{launcher}");
    // Not an lp launch: left alone.
    let out = cluster.run("sbatch --parsable --wrap 'sleep 60'");
    let other = text(&out.stdout).trim().to_string();
    let (code, _, err) = lp(&["stop", &other]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a launch of lp-host"), "{err}");
    assert_eq!(cluster.squeue_jobs(), [other]);
}

/// Wait (at most `limit`) until Slurm lists no job of this cluster.
fn wait_for_empty_queue(cluster: &Cluster, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !cluster.squeue_jobs().is_empty() {
        assert!(
            Instant::now() < deadline,
            "jobs left: {:?}",
            cluster.squeue_jobs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_slurm_node_that_drops_off_the_network_is_a_lost_agent() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    let launcher = Launcher::start(
        &cluster,
        "examples/run_and_serve/program.toml",
        "slurm",
        &[
            "--set",
            "actor.args.polls=100000",
            "--set",
            "program.slurm.nodes=2",
        ],
    );
    launcher.wait_for_said("err", &["runs actor", "runs learner"]);
    // Running: the actor has read the learner's version a few times.
    std::thread::sleep(Duration::from_secs(2));
    let node = slurm_node_of(&launcher.read("err"), "learner");
    let k = cluster.nodes().iter().position(|n| *n == node).unwrap();
    let namespace = &cluster.namespaces()[k];
    let link = |state: &str| {
        let status = Command::new("ip")
            .args(["-n", namespace, "link", "set", "eth0", state])
            .status()
            .unwrap();
        assert!(status.success());
    };
    link("down");
    let (code, out, err) = launcher.finish(Duration::from_secs(60));
    // Slurm cleans up once it can reach the node again.
    link("up");
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("error: node learner failed"), "{err}");
    assert!(err.contains("lost with agent"), "{err}");
    assert!(out.contains("get-version failed"), "{out}\n{err}");
    wait_for_empty_queue(&cluster, Duration::from_secs(60));
    assert_nothing_left(&cluster);
}

#[test]
fn a_second_ctrl_c_ends_the_launch_at_once_and_the_job_with_it() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    let launcher = Launcher::start(
        &cluster,
        "tests/programs/sleeper.toml",
        "slurm",
        &["--termination-notice-secs", "60"],
    );
    launcher.wait_for_said("err", &["runs sleeper"]);
    std::thread::sleep(Duration::from_millis(500));
    let pid = launcher.child.id() as i32;
    // SAFETY: kill sends signals to a child of this process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(pid, libc::SIGINT) };
    // The sleeper ignores stop and its notice is a minute: only the second
    // Ctrl-C ends it this soon.
    let (code, out, err) = launcher.finish(Duration::from_secs(20));
    assert_eq!(code, Some(130), "{out}\n{err}");
    wait_for_empty_queue(&cluster, Duration::from_secs(10));
    assert_nothing_left(&cluster);
}
