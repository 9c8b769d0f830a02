//! Deterministic, seeded runs (test_mt): the same seed gives the same trace
//! byte for byte; a race that shows only under some interleavings is found
//! by trying seeds and replays exactly; faults are injected by the seed.

use lp_host::testing::TestProgram;
use lp_tests::path;

fn program(relative: &str) -> TestProgram {
    TestProgram::new(path(relative)).cache_dir(path("target/lp-test-cache"))
}

#[test]
fn the_same_seed_gives_the_same_trace_byte_for_byte() {
    let program = program("examples/consumer_producers/program.toml").set("producer.replicas=4");
    let first = program.run_seeded(11, 2).unwrap();
    let second = program.run_seeded(11, 2).unwrap();
    assert_eq!(first.trace.as_bytes(), second.trace.as_bytes());
    assert_eq!(first.output, second.output);
    // The trace has the steps, calls, returns and output.
    for event in [
        "step consumer",
        "call consumer -> producer/0 producer.work",
        "return consumer -> producer/",
        "log info [consumer] step",
    ] {
        assert!(
            first.trace.contains(event),
            "{event} missing from:\n{}",
            first.trace
        );
    }
    // Another seed interleaves differently.
    let other = program.run_seeded(12, 2).unwrap();
    assert_ne!(first.trace, other.trace);
}

#[test]
fn a_lost_update_is_found_by_some_seeds_and_replays_exactly() {
    let program = program("examples/counter_race/program.toml");
    let runs: Vec<_> = (1..=40)
        .map(|seed| program.run_seeded(seed, 0).unwrap())
        .collect();
    let failing: Vec<_> = runs.iter().filter(|r| !r.outcome.success()).collect();
    let passing = runs.len() - failing.len();
    assert!(
        !failing.is_empty() && passing > 0,
        "the race shows under some interleavings only: {} of {} seeds failed",
        failing.len(),
        runs.len()
    );
    let failed = failing[0];
    let error = failed.check().unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("node counter failed"), "{message}");
    assert!(
        message.contains(&format!("--launch test_mt --seed {}", failed.seed)),
        "the replay command: {message}"
    );
    assert!(
        failed.output.iter().any(|l| l.contains("lost update")),
        "{:?}",
        failed.output
    );
    // Replaying the seed gives the same run, byte for byte.
    let replay = program.run_seeded(failed.seed, 0).unwrap();
    assert_eq!(replay.trace.as_bytes(), failed.trace.as_bytes());
}

#[test]
fn faults_come_from_the_seed_within_the_budget() {
    let program = program("examples/consumer_producers/program.toml").set("producer.replicas=4");
    let mut injected = 0;
    for seed in 1..=20 {
        let run = program.run_seeded(seed, 1).unwrap();
        let faults = run.trace.matches("fault:").count();
        assert!(
            faults <= 1,
            "seed {seed}: {faults} faults for a budget of 1"
        );
        injected += faults;
        // None without a budget.
        assert_eq!(
            program
                .run_seeded(seed, 0)
                .unwrap()
                .trace
                .matches("fault:")
                .count(),
            0
        );
    }
    assert!(injected > 0, "no seed of 20 injected a fault");
}

#[test]
fn time_is_virtual() {
    // The faulty node's `slow` waits 5 s and the call times out after 3 s,
    // both in virtual time: two runs of one seed end at the same virtual
    // microsecond, at least 3 s in (a real clock would differ by far more
    // than a microsecond between two runs).
    let seeded = || {
        program("tests/programs/echo.toml")
            .set("prober.args.mode=\"timeout\"")
            .set("program.call_timeout_secs=3")
            .run_seeded(1, 0)
            .unwrap()
    };
    let run = seeded();
    assert!(
        run.output
            .contains(&"[prober] outcome: timeout".to_string()),
        "{:?}",
        run.output
    );
    assert_eq!(run.trace, seeded().trace, "one seed, two different traces");
    let end: u64 = run
        .trace
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        end >= 3_000_000,
        "the run ended at {end} µs of virtual time"
    );
}
