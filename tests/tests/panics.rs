//! A guest's panic message reaches everyone who hears of the failure: the
//! failure report, the caller of the panicking method (as its remote-trap),
//! the test API's `wait()` and calls, and `lp-host test`'s list of seeds.

use lp_host::testing::{TestLaunch, TestProgram};
use lp_tests::{lines_of, path, run};

const WHY: &str = "the answer was 41, not 42";

#[test]
fn a_panicking_run_is_reported_with_its_message() {
    let (outcome, _) = run(
        "tests/programs/panicky.toml",
        &["caller.args.mode=\"panic\""],
    )
    .unwrap();
    assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
    let failure = &outcome.failures[0];
    assert_eq!(failure.node, "caller");
    // The message first, where the panic was, then the trap and backtrace.
    let first = failure.error.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("panicked: {WHY}")),
        "{}",
        failure.error
    );
    assert!(first.contains("src/lib.rs:"), "{}", failure.error);
    assert!(failure.error.contains("unreachable"), "{}", failure.error);
}

#[test]
fn the_caller_of_a_panicking_method_gets_the_message() {
    let (outcome, lines) = run("tests/programs/panicky.toml", &[]).unwrap();
    let caller = lines_of(&lines, "caller");
    let line = caller.iter().find(|l| l.starts_with("outcome: ")).unwrap();
    assert!(
        line.contains("target trapped") && line.contains(WHY),
        "{line}"
    );
    // The service failed, with the same message.
    let failure = outcome
        .failures
        .iter()
        .find(|f| f.node == "service")
        .unwrap();
    assert!(failure.error.contains(WHY), "{}", failure.error);
}

#[test]
fn the_test_api_carries_the_message() {
    for launch in [TestLaunch::Mt, TestLaunch::Mp] {
        let run = TestProgram::new(path("tests/programs/panicky.toml"))
            .cache_dir(path("target/lp-test-cache"))
            .disable_run("caller")
            .launch(launch)
            .unwrap();
        let err = run
            .node("service")
            .unwrap()
            .call::<u32>("explode", ("kaboom from the test".to_string(),))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("kaboom from the test"),
            "{launch:?}: {err:#}"
        );
        let err = run.wait().unwrap_err();
        assert!(
            format!("{err:#}").contains("kaboom from the test"),
            "{launch:?}: {err:#}"
        );
    }
}
