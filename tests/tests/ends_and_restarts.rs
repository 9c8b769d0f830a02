//! What ends a program and what brings a node back, through the test API,
//! in this process and in worker processes: waiting for chosen nodes' runs
//! (Launchpad's `wait_for`), and a node that fails with restarts left
//! coming back. Apart from test_api.rs, whose test of worker processes
//! counts this process's children.

use std::time::{Duration, Instant};

use lp_host::testing::{TestLaunch, TestProgram, TestRun};
use lp_tests::path;

fn program(relative: &str) -> TestProgram {
    TestProgram::new(path(relative)).cache_dir(path("target/lp-test-cache"))
}

/// Launchpad's `wait_for`: the test waits for chosen nodes' runs while the
/// others go on serving.
#[test]
fn a_test_waits_for_chosen_nodes_runs() {
    for launch in [TestLaunch::Mt, TestLaunch::Mp] {
        // The program itself waits for the server, which waits for stop.
        let run = program("tests/programs/wait_for.toml")
            .set("program.wait_for=[\"server\"]")
            .launch(launch)
            .unwrap();
        run.wait_for(&["main"]).unwrap();
        assert_eq!(run.output("main"), ["main done"], "{launch:?}");
        run.wait_for_first(&["server", "main"]).unwrap();
        // The server still serves: its run has not finished.
        let echoed: String = run.node("server").unwrap().call("echo", ("hi",)).unwrap();
        assert_eq!(echoed, "hi", "{launch:?}");
        let e = run.wait_for(&["nobody"]).unwrap_err().to_string();
        assert!(
            e.contains("no node, entry or group `nobody`"),
            "{launch:?}: {e}"
        );
        run.stop();
        run.wait_for(&["server"]).unwrap();
        run.wait().unwrap();
    }
}

#[test]
fn waiting_for_runs_returns_the_failure_of_a_node() {
    // The bystander's run returns as the failure stops the program, at
    // about the time the failure is reported: repeated to catch a wait that
    // takes that for a finished run.
    for (launch, times) in [(TestLaunch::Mt, 20), (TestLaunch::Mp, 3)] {
        for _ in 0..times {
            let mut run = program("tests/programs/trap_in_run.toml")
                .launch(launch)
                .unwrap();
            // The bystander waits for stop; the faulty node's trap ends the wait.
            let e = run.wait_for(&["bystander"]).unwrap_err().to_string();
            assert!(e.contains("node faulty failed"), "{launch:?}: {e}");
            assert!(run.end().is_err(), "{launch:?}");
        }
    }
}

/// What `node` printed, once it has printed `n` lines (or 10 s passed).
fn lines_once(run: &TestRun, node: &str, n: usize) -> Vec<String> {
    let start = Instant::now();
    while run.output(node).len() < n && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    run.output(node)
}

/// A node that traps serving a call, with a restart left, answers that
/// call with a typed error and is there again for the next one, which
/// waited in its mailbox; the program is not failed. (In process: under
/// local_mp a call sent while the failed worker is being killed can meet
/// the dying process.)
#[test]
fn a_failed_node_with_restarts_left_comes_back_for_the_next_call() {
    let run = program("tests/programs/echo.toml")
        .set("faulty.restarts=1")
        .disable_run("prober")
        .launch(TestLaunch::Mt)
        .unwrap();
    assert_eq!(lines_once(&run, "faulty", 1), ["faulty serving"]);
    let faulty = run.node("faulty").unwrap();
    let e = faulty.call::<u32>("boom", ()).unwrap_err().to_string();
    assert!(e.contains("target trapped"), "{e}");
    let echoed: String = faulty.call("echo", ("again",)).unwrap();
    assert_eq!(echoed, "again");
    assert_eq!(
        lines_once(&run, "faulty", 2),
        ["faulty serving", "faulty serving"],
        "its run ran again"
    );
    run.stop();
    run.wait().unwrap();
}
