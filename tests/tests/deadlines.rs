//! A call deadline belongs to the handle that declared it: another handle
//! to the same node keeps the program's (here: none), whichever is declared
//! first, under every launch type.

use lp_host::testing::{TestLaunch, TestProgram};
use lp_tests::path;

/// The caller's line after running deadlines.toml with `set`.
fn outcome(launch: TestLaunch, set: &[&str]) -> String {
    let mut program = TestProgram::new(path("tests/programs/deadlines.toml"))
        .cache_dir(path("target/lp-test-cache"));
    for s in set {
        program = program.set(s);
    }
    let mut run = program.launch(launch).unwrap();
    run.end().unwrap();
    run.output("caller").join("\n")
}

#[test]
fn only_the_handle_with_a_deadline_times_out() {
    for launch in [TestLaunch::Mt, TestLaunch::Mp] {
        assert_eq!(
            outcome(launch, &[]),
            "hasty: call timed out; patient: ok 600",
            "{launch:?}"
        );
        // The other way round: the handle with the deadline comes second.
        assert_eq!(
            outcome(
                launch,
                &[
                    r#"caller.args.hasty={ handle = "napper" }"#,
                    r#"caller.args.patient={ handle = "napper", timeout_secs = 0.2 }"#,
                ]
            ),
            "hasty: ok 600; patient: call timed out",
            "{launch:?}"
        );
    }
}
