//! The guest SDK as a node author uses it: client interfaces generated
//! from a service interface, `client!` methods declared in their natural
//! forms (no `-> ()`, owned or borrowed arguments for async and blocking
//! clients alike) called at run time, and the sleep and randomness helpers.

use lp_host::testing::{TestLaunch, TestProgram};
use lp_tests::{lines_of, path, run};

#[test]
fn generated_clients_declared_in_natural_forms_make_every_call() {
    let (outcome, lines) = run("tests/programs/tally.toml", &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}\n{lines:?}");
    assert_eq!(
        lines_of(&lines, "caller"),
        ["total 36 36; labels a,b,c,d,e,f,g a,b,c,d,e,f,g"],
        "{lines:?}"
    );
}

#[test]
fn sleep_runs_on_the_virtual_clock_and_random_numbers_follow_the_seed() {
    let program = TestProgram::new(path("tests/programs/dice.toml"));
    let first = program.run_seeded(7, 0).unwrap();
    first.check().unwrap();
    // Ten minutes of virtual time, slept in full (not cut short by a stop).
    assert_eq!(first.output[0], "[dice] slept 600 s, stopped: false");
    assert!(
        first.output[1].starts_with("[dice] rolled ["),
        "{:?}",
        first.output
    );
    let again = program.run_seeded(7, 0).unwrap();
    assert_eq!(first.output, again.output, "the same seed rolls the same");
    let other = program.run_seeded(8, 0).unwrap();
    assert_ne!(
        first.output[1], other.output[1],
        "another seed rolls others"
    );
}

#[test]
fn a_stop_cuts_a_sleep_short() {
    let mut run = TestProgram::new(path("tests/programs/dice.toml"))
        .launch(TestLaunch::Mt)
        .unwrap();
    run.stop();
    run.end().unwrap();
    let output = run.output("dice");
    assert_eq!(
        output.first().map(String::as_str),
        Some("slept 0 s, stopped: true"),
        "{output:?}"
    );
}
