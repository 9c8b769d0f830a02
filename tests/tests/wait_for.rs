//! The test API's wait for chosen nodes' runs (Launchpad's `wait_for`),
//! in this process and in worker processes. Apart from test_api.rs, whose
//! test of worker processes counts this process's children.

use lp_host::testing::{TestLaunch, TestProgram};
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
