//! The `lp-host` binary, end to end: the examples, exit codes, error text.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn lp_host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lp-host"))
        .args(args)
        .current_dir(repo())
        .env("LP_CACHE_DIR", repo().join("target/lp-test-cache"))
        .env("NO_COLOR", "1")
        .output()
        .expect("lp-host runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn hello_world_runs_from_the_command_line() {
    let out = lp_host(&["run", "examples/hello_world/program.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[hello] Hello World!!!\n");
}

#[test]
fn consumer_producers_runs_with_a_replica_override() {
    let out = lp_host(&[
        "run",
        "examples/consumer_producers/program.toml",
        "--set",
        "producer.replicas=4",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let steps: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("[consumer] step"))
        .collect();
    assert_eq!(steps.len(), 10, "{stdout}");
    assert_eq!(steps[9], "[consumer] step 9: [9, 9, 9, 9]");
}

#[test]
fn a_failing_node_gives_a_nonzero_exit_naming_it() {
    let out = lp_host(&["run", "tests/programs/trap_in_run.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: node faulty failed"), "{stderr}");
    assert!(text(&out.stdout).is_empty() || !text(&out.stdout).contains("[faulty] faulty serving"));
}

#[test]
fn a_bad_program_file_is_reported_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("program.toml");
    std::fs::write(&file, "[program]\nname = \"x\"\nbogus = 1\n").unwrap();
    let out = lp_host(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("program.toml:3:1: unknown field `bogus`"),
        "{stderr}"
    );
    assert!(stderr.contains("help:"), "{stderr}");
}

#[test]
fn a_missing_program_file_says_so() {
    let out = lp_host(&["run", "no/such/program.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read the program file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_lists_the_commands() {
    let out = lp_host(&["--help"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("run") && stdout.contains("bench"),
        "{stdout}"
    );
    let out = lp_host(&["run", "--help"]);
    assert!(text(&out.stdout).contains("--termination-notice-secs"));
}

/// `lp-host new` in a directory outside the repository: the crate it writes
/// depends on this checkout's SDK by path, is a workspace of its own, and
/// builds and runs with `lp-host run`.
#[test]
fn a_new_node_crate_builds_and_runs_outside_the_repository() {
    let outside = tempfile::tempdir().unwrap();
    assert!(!outside.path().starts_with(repo()));
    let out = lp_host(&[
        "new",
        "hello-node",
        "--dir",
        outside.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = outside.path().join("hello-node");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = repo().join("guest-sdk").canonicalize().unwrap();
    assert!(
        manifest.contains(&format!("lp-guest = {{ path = \"{}\" }}", sdk.display())),
        "{manifest}"
    );
    for file in [
        "wit/hello-node.wit",
        "src/lib.rs",
        "program.toml",
        "tests/hello-node.rs",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }
    // The versions this checkout is tested with (and no resolution online).
    std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();

    let program = dir.join("program.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_lp-host"))
        .args(["run", program.to_str().unwrap()])
        .current_dir(outside.path())
        .env("CARGO_TARGET_DIR", repo().join("target/new-node-test"))
        .env("LP_CACHE_DIR", repo().join("target/lp-test-cache"))
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_exit(child, 900);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[hello-node] Hello, world!\n");

    // A second crate in the same place is refused, naming what to do.
    let again = lp_host(&[
        "new",
        "hello-node",
        "--dir",
        outside.path().to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
}

/// Start `lp-host run` on the stubborn program, wait for its first line.
fn start_stubborn(notice: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lp-host"))
        .args([
            "run",
            "tests/programs/stubborn.toml",
            "--termination-notice-secs",
            notice,
        ])
        .current_dir(repo())
        .env("LP_CACHE_DIR", repo().join("target/lp-test-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "[stubborn] spinning\n");
    child
}

fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Wait for the child to exit, for at most `secs` (then kill it and fail).
fn wait_exit(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("lp-host did not exit within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn ctrl_c_stops_and_the_notice_interrupts_a_node_that_ignores_it() {
    let child = start_stubborn("0.5");
    interrupt(&child);
    let out = wait_exit(child, 30);
    assert_eq!(out.status.code(), Some(130));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("node stubborn was still running when the termination notice expired"),
        "{stderr}"
    );
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    // A notice far longer than the test's bound: only the second Ctrl-C can end it in time.
    let child = start_stubborn("600");
    interrupt(&child);
    std::thread::sleep(std::time::Duration::from_millis(200));
    interrupt(&child);
    let out = wait_exit(child, 30);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
}

#[test]
fn a_seeded_run_is_the_same_in_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let traces: Vec<(Vec<u8>, String)> = (0..2)
        .map(|i| {
            let trace = dir.path().join(format!("{i}.trace"));
            let out = lp_host(&[
                "run",
                "examples/counter_race/program.toml",
                "--launch",
                "test_mt",
                "--seed",
                "4",
                "--faults",
                "1",
                "--trace",
                trace.to_str().unwrap(),
            ]);
            (std::fs::read(&trace).unwrap(), text(&out.stdout))
        })
        .collect();
    assert!(!traces[0].0.is_empty());
    assert_eq!(
        traces[0], traces[1],
        "two processes, one seed: one trace and output"
    );
}

#[test]
fn lp_host_test_lists_failing_seeds_with_their_replay_commands() {
    let out = lp_host(&[
        "test",
        "examples/counter_race/program.toml",
        "--seeds",
        "1..30",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "some seeds fail: {stdout}");
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.ends_with(" s)") && summary.contains(" of 30 seeds failed"),
        "{summary}"
    );
    // Each failing seed is listed with a command that replays it, and the
    // replay fails the same way, naming the seed.
    let seed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("seed ")?.split(':').next()?.parse().ok())
        .expect("a failing seed");
    assert!(stdout.contains(&format!(
        "replay: lp-host run examples/counter_race/program.toml --launch test_mt --seed {seed}\n"
    )));
    let replay = lp_host(&[
        "run",
        "examples/counter_race/program.toml",
        "--launch",
        "test_mt",
        "--seed",
        &seed.to_string(),
    ]);
    assert_eq!(replay.status.code(), Some(1));
    let stderr = text(&replay.stderr);
    assert!(
        stderr.contains("lost update") && stderr.contains(&format!("seed {seed} failed")),
        "{stderr}"
    );

    let out = lp_host(&[
        "test",
        "examples/counter_race/program.toml",
        "--seeds",
        "9..2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the range 9..2 is empty"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_validates_without_running_and_speaks_json() {
    let out = lp_host(&["check", "examples/consumer_producers/program.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: examples/consumer_producers/program.toml: program consumer_producers, 11 nodes, 2 components, 10 edges type-checked\n"
    );

    // A type mismatch between two nodes: found, nothing run, pointing at
    // the handle that makes the edge (line 14, column 10).
    let out = lp_host(&["check", "tests/programs/mismatch.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: tests/programs/mismatch.toml:14:10: type mismatch on lp:test/faulty@0.1.0.echo"
        ) && stderr.contains("\n  help: "),
        "{stderr}"
    );
    let out = lp_host(&["check", "tests/programs/mismatch.toml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&json["errors"][0]["line"], &json["errors"][0]["column"]),
        (&14.into(), &10.into())
    );
    assert!(json["errors"][0]["help"].is_string());
    // `run` says the same, with the same status.
    let out = lp_host(&["run", "tests/programs/mismatch.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("mismatch.toml:14:10: type mismatch on"),
        "{}",
        text(&out.stderr)
    );
    // From `--set`, the override is named instead.
    let out = lp_host(&[
        "check",
        "tests/programs/mismatch.toml",
        "--set",
        "caller.args.target={ handle = \"faulty\" }",
    ]);
    assert!(
        text(&out.stderr).contains("--set caller.args.target="),
        "{}",
        text(&out.stderr)
    );

    // A bad key, as JSON: where and what to do, for tools.
    let out = lp_host(&[
        "check",
        "tests/corpus/programs/unknown-key.toml",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["errors"][0]["line"], 7);
    assert_eq!(json["errors"][0]["column"], 1);
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `nam`")
    );
    assert!(json["errors"][0]["help"].is_string());

    // `run` refuses the same program the same way (exit 2: a bad program).
    let out = lp_host(&["run", "tests/corpus/programs/unknown-key.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown-key.toml:7:1: unknown field `nam`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn lp_host_test_says_why_a_seed_failed_with_the_panic_message() {
    let out = lp_host(&["test", "tests/programs/panicky.toml", "--seeds", "1..2"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("seed 1: node service failed: panicked: the answer was 41, not 42"),
        "{stdout}"
    );
}

#[test]
fn one_bad_value_on_many_replicas_is_reported_once() {
    let out = lp_host(&[
        "run",
        "examples/consumer_producers/program.toml",
        "--set",
        "consumer.replicas=100",
        "--set",
        "producer.replicas=50",
        "--set",
        "consumer.args.steps=\"lots\"",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    assert!(
        reports[0].contains(" nodes failed the same way (consumer/")
            && reports[0].contains("do not fit its args type"),
        "{}",
        reports[0]
    );
    // Each replica's own panic line quotes its args (50 handles), shortened.
    assert!(
        stderr.contains("... (") && stderr.contains(" bytes)"),
        "{stderr}"
    );
    assert!(stderr.len() < 100_000, "{} bytes of stderr", stderr.len());
}

#[test]
fn a_cache_directory_others_can_write_is_refused_once_and_the_program_runs() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // Two components, compiled in memory by the launcher and by each of
    // local_mp's workers: one warning.
    for launch in ["local_mt", "local_mp"] {
        let out = Command::new(env!("CARGO_BIN_EXE_lp-host"))
            .args(["run", "examples/consumer_producers/program.toml"])
            .args(["--launch", launch, "--set", "producer.replicas=2"])
            .current_dir(repo())
            .env("LP_CACHE_DIR", dir.path())
            .output()
            .expect("lp-host runs");
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{launch}: {stderr}");
        assert!(
            text(&out.stdout).contains("[consumer] step 9"),
            "{launch}: {stderr}"
        );
        let said = "can be written by other users (mode 0777)";
        assert_eq!(stderr.matches(said).count(), 1, "{launch}: {stderr}");
        let help = format!("help: `chmod 700 {}`", dir.path().display());
        assert!(stderr.contains(&help), "{launch}: {stderr}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{launch}"
        );
    }
}

#[test]
fn a_grant_of_the_host_root_is_warned_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("program.toml");
    std::fs::write(
        &program,
        format!(
            "[program]\nname = \"p\"\n\n[[node]]\nname = \"hello\"\ncomponent = {:?}\ngrants = {{ dirs = [{{ host = \"/\", guest = \"/host\" }}] }}\n",
            repo().join("examples/hello_world/hello")
        ),
    )
    .unwrap();
    let program = program.to_str().unwrap();
    let warning =
        format!("warning: {program}:7:20: node hello may read the host's root directory /");
    let out = lp_host(&["check", program]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&warning),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("\n  help: "),
        "{}",
        text(&out.stderr)
    );
    let out = lp_host(&["run", program]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).matches(&warning).count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "[hello] Hello World!!!\n");
}

#[test]
fn check_lists_what_each_process_asks_of_its_machine() {
    let out = lp_host(&[
        "check",
        "examples/consumer_producers/program.toml",
        "--set",
        "producer.replicas=2",
        "--set",
        "producer.colocate=producers",
        "--set",
        "producer.resources.cpus=0.5",
        "--set",
        "consumer.resources.gpus=1",
        "--set",
        "consumer.resources.host=gpu-box",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: examples/consumer_producers/program.toml: program consumer_producers, 3 nodes, 2 components, 2 edges type-checked\n\
         resources: colocation group \"producers\" (2 nodes): cpus = 1\n\
         resources: consumer: gpus = 1, host = \"gpu-box\"\n"
    );
    let out = lp_host(&[
        "check",
        "examples/consumer_producers/program.toml",
        "--set",
        "consumer.resources.memory_mib=512",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["resources"],
        serde_json::json!([{
            "process": "consumer",
            "nodes": ["consumer"],
            "cpus": 0.0,
            "memory_mib": 512,
            "gpus": 0,
        }])
    );
    // Without resources, nothing is said of them.
    let out = lp_host(&[
        "check",
        "examples/consumer_producers/program.toml",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json.get("resources").is_none(), "{json}");
}

#[test]
fn an_agent_refuses_an_offer_of_nothing_before_it_joins_anything() {
    for (flag, value, said) in [
        ("--cpus", "0", "--cpus 0: give a number of cpus above 0"),
        ("--cpus", "NaN", "--cpus NaN: give a number of cpus above 0"),
        ("--memory-mib", "0", "--memory-mib 0: give the MiB"),
    ] {
        // A token file that does not exist: the offer is checked first.
        let out = lp_host(&["agent", flag, value, "--token", "/nonexistent/token"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(said), "{flag} {value}: {stderr}");
    }
}
