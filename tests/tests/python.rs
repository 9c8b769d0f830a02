//! Python nodes (built with componentize-py by lp-host): hello_world in
//! Python (a node of lp:node's own world); run_and_serve's learner (whose
//! async run loops while it serves) and actor in Python; a Python consumer
//! with Rust producers and a Rust consumer with Python producers, from one
//! program.toml by `--set`, under local_mt, local_mp and hosts; the test
//! API calling a Python node's exports; a seeded run
//! replays byte for byte; a Python node built against a mismatched WIT is
//! refused naming both nodes and the function; a Python exception fails
//! its node with the traceback; without componentize-py the error says
//! how to install it. Skipped (saying why) where componentize-py is not
//! installed, except in CI (`CI` set), which installs it.

use std::process::Command;

use lp_tests::{lp_host, text};

use lp_host::testing::{TestLaunch, TestProgram};

const PROGRAM: &str = "examples/consumer_producers/program.toml";

/// The `--set`s that make the consumer a Python node.
const PYTHON_CONSUMER: [&str; 4] = [
    "--set",
    "consumer.component=\"consumer_py/app.py\"",
    "--set",
    "consumer.world=\"lp:consumer-producers/consumer-node\"",
];

/// The `--set`s that make the producers Python nodes.
const PYTHON_PRODUCERS: [&str; 4] = [
    "--set",
    "producer.component=\"producer_py/app.py\"",
    "--set",
    "producer.world=\"lp:consumer-producers/producer-node\"",
];

/// Whether componentize-py is there to build these nodes (in CI it must be).
fn installed() -> bool {
    lp_tests::tool_installed("componentize-py", "pip install componentize-py==0.25.1")
}

#[test]
fn python_and_rust_nodes_mix_in_one_program_under_local_mt_local_mp_and_hosts() {
    if !installed() {
        return;
    }
    let launches: [&[&str]; 3] = [
        &["--launch", "local_mt"],
        &["--launch", "local_mp"],
        &["--launch", "hosts", "--local-agents", "--agents", "2"],
    ];
    for launch in launches {
        for python in [&PYTHON_CONSUMER, &PYTHON_PRODUCERS] {
            let mut args = vec!["run", PROGRAM];
            args.extend(launch);
            args.extend(["--set", "producer.replicas=4"]);
            args.extend(python.iter().copied());
            let out = lp_host(&args);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert_eq!(
                out.status.code(),
                Some(0),
                "{launch:?} {python:?}: {stderr}"
            );
            for step in 0..10 {
                let line = format!("[consumer] step {step}: [{step}, {step}, {step}, {step}]\n");
                assert!(stdout.contains(&line), "{launch:?} {python:?}: {stdout}");
            }
        }
    }
}

#[test]
fn hello_world_in_python_prints_its_greeting_and_finishes() {
    if !installed() {
        return;
    }
    // A node of lp:node's own world: no WIT of its own. In a cache of its
    // own: the first run builds and compiles it, saying so; the second
    // takes both from the cache, silently.
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        lp_host(&[
            "run",
            "examples/hello_world/program.toml",
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--set",
            "hello.component=\"hello_py/app.py\"",
            "--set",
            "hello.world=\"lp:node/blocking-node-with-run\"",
        ])
    };
    for first in [true, false] {
        let out = run();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(text(&out.stdout), "[hello] Hello World!!!\n");
        let said = stderr.contains("building Python node") && stderr.contains("compiling ");
        assert_eq!(said, first, "first run: {first}: {stderr}");
    }
    // It was built from a copy: nothing written beside the app.
    let app_dir = lp_tests::path("examples/hello_world/hello_py");
    let left: Vec<_> = std::fs::read_dir(&app_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["app.py"], "{}", app_dir.display());
}

#[test]
fn run_and_serve_in_python_serves_while_its_run_loops() {
    if !installed() {
        return;
    }
    let learner = [
        "--set",
        "learner.component=\"learner_py/app.py\"",
        "--set",
        "learner.world=\"lp:run-and-serve/learner-node\"",
    ];
    let actor = [
        "--set",
        "actor.component=\"actor_py/app.py\"",
        "--set",
        "actor.world=\"lp:run-and-serve/actor-node\"",
    ];
    // A Python learner polled by the Rust actor, then both in Python.
    for python in [&learner[..], &[learner, actor].concat()] {
        let mut args = vec!["run", "examples/run_and_serve/program.toml"];
        args.extend(python.iter().copied());
        let out = lp_host(&args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{python:?}: {stderr}");
        assert!(stdout.contains("grew: true"), "{python:?}: {stdout}");
        assert!(
            stdout.contains("[learner] stopped after "),
            "{python:?}: {stdout}"
        );
    }
}

#[test]
fn the_test_api_drives_python_nodes() {
    if !installed() {
        return;
    }
    for launch in [TestLaunch::Mt, TestLaunch::Mp] {
        // The Python consumer's `step`, its run disabled, calling Rust
        // producers; a Python producer called directly.
        let run = TestProgram::new(lp_tests::path(PROGRAM))
            .set("producer.replicas=3")
            .set("consumer.component=\"consumer_py/app.py\"")
            .set("consumer.world=\"lp:consumer-producers/consumer-node\"")
            .disable_run("consumer")
            .launch(launch)
            .unwrap();
        let consumer = run.node("consumer").unwrap();
        for step in 0..3u64 {
            let replies: Result<Vec<u64>, String> = consumer.call("step", (step,)).unwrap();
            assert_eq!(replies, Ok(vec![step; 3]), "{launch:?} step {step}");
        }
        run.stop();
        assert_eq!(run.wait().unwrap().reason, lp_host::EndReason::Stopped);

        let run = TestProgram::new(lp_tests::path(PROGRAM))
            .set("producer.replicas=2")
            .set("producer.component=\"producer_py/app.py\"")
            .set("producer.world=\"lp:consumer-producers/producer-node\"")
            .disable_run("consumer")
            .launch(launch)
            .unwrap();
        let work: u64 = run
            .node("producer/1")
            .unwrap()
            .call("work", (7u64,))
            .unwrap();
        assert_eq!(work, 7, "{launch:?}");
        run.stop();
        run.wait().unwrap();
    }
}

#[test]
fn a_seeded_run_of_python_nodes_replays_byte_for_byte() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = |name: &str| {
        let file = dir.path().join(name);
        let mut args = vec!["run", PROGRAM, "--launch", "test_mt", "--seed", "7"];
        args.extend(["--set", "producer.replicas=3"]);
        args.extend(PYTHON_CONSUMER);
        args.extend(PYTHON_PRODUCERS);
        args.extend(["--trace", file.to_str().unwrap()]);
        let out = lp_host(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        (text(&out.stdout), std::fs::read(&file).unwrap())
    };
    let (first_out, first) = trace("a.trace");
    let (second_out, second) = trace("b.trace");
    assert!(
        first_out.contains("[consumer] step 9: [9, 9, 9]"),
        "{first_out}"
    );
    assert!(!first.is_empty());
    assert_eq!(first, second, "two runs of seed 7 traced differently");
    assert_eq!(first_out, second_out);
}

#[test]
fn a_python_node_built_against_a_mismatched_wit_is_refused_before_launch() {
    if !installed() {
        return;
    }
    let out = lp_host(&["run", "tests/python/mismatch/program.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("type mismatch on lp:consumer-producers/producer@0.1.0.work between caller consumer and target producer")
            && stderr.contains("context: string in producer's export"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("step"), "nothing ran");
}

#[test]
fn a_python_exception_fails_its_node_with_the_traceback() {
    if !installed() {
        return;
    }
    let out = lp_host(&["run", "tests/python/raising/program.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let said = "node producer failed: Python exception: ValueError: no work on step 2 (traceback: File \"/0/app.py\", line 10, in work)";
    assert!(stderr.contains(said), "{stderr}");
    // The caller saw the same in its call's error.
    assert!(
        text(&out.stdout).contains("[consumer] step 1: [1]"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_app_that_does_not_parse_is_refused_with_the_syntax_error() {
    if !installed() {
        return;
    }
    let out = lp_host(&["check", "tests/python/syntax/program.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("building Python node") && stderr.contains("SyntaxError: invalid syntax"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Stack backtrace"),
        "the tool's own stack is left out: {stderr}"
    );
}

#[test]
fn without_componentize_py_the_error_says_how_to_install_it() {
    let mut args = vec!["check", PROGRAM];
    args.extend(PYTHON_PRODUCERS);
    let out = Command::new(lp_tests::lp_host_exe())
        .args(&args)
        .current_dir(lp_tests::repo())
        .env("LP_COMPONENTIZE_PY", "/nonexistent/componentize-py")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot run /nonexistent/componentize-py to build Python node")
            && stderr.contains("pip install componentize-py==0.25.1"),
        "{stderr}"
    );
}
