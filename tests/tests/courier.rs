//! Courier semantics: typed errors for timeouts, remote traps and forged
//! handles; futures fan-out; type-checked edges; failing nodes.

use lp_host::EndReason;
use lp_tests::{lines_of, run};

fn outcome_of(mode: &str, extra: &[&str]) -> (lp_host::Outcome, String) {
    let mut set = vec![format!("prober.args.mode=\"{mode}\"")];
    set.extend(extra.iter().map(|s| s.to_string()));
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    let (outcome, lines) = run("tests/programs/echo.toml", &set).unwrap();
    let prober = lines_of(&lines, "prober");
    let line = prober
        .iter()
        .find(|l| l.starts_with("outcome: "))
        .cloned()
        .unwrap_or_default();
    (outcome, line)
}

#[test]
fn a_call_returns_its_value() {
    let (outcome, line) = outcome_of("echo", &[]);
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(line, "outcome: ok \"hi\"");
}

#[test]
fn byte_lists_cross_on_the_typed_path() {
    let (outcome, line) = outcome_of("bytes", &[]);
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(line, "outcome: ok [3, 2, 1]");
}

#[test]
fn records_and_several_arguments_cross_on_the_dynamic_path() {
    let (outcome, line) = outcome_of("dynamic", &[]);
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(line, "outcome: ok Labelled { label: \"sum\", total: 42 }");
}

#[test]
fn a_slow_call_times_out_with_a_typed_error() {
    let (outcome, line) = outcome_of("timeout", &["program.call_timeout_secs=0.2"]);
    assert_eq!(line, "outcome: timeout");
    assert!(outcome.success(), "{outcome:?}");
}

#[test]
fn a_remote_trap_reaches_the_caller_and_fails_the_target() {
    let (outcome, line) = outcome_of("remote-trap", &[]);
    assert!(line.starts_with("outcome: remote-trap"), "{line}");
    assert!(line.contains("unreachable"), "the trap's message: {line}");
    assert_eq!(outcome.reason, EndReason::Failed, "{outcome:?}");
    assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failures[0].node, "faulty");
    assert!(
        outcome.failures[0].error.contains("boom"),
        "backtrace names the function: {}",
        outcome.failures[0].error
    );
    assert_eq!(outcome.exit_code(), 1);
}

#[test]
fn a_forged_handle_is_unreachable() {
    let (outcome, line) = outcome_of("forged", &[]);
    assert!(line.starts_with("outcome: unreachable"), "{line}");
    assert!(line.contains("was not given a handle"), "{line}");
    assert!(outcome.success(), "{outcome:?}");
}

#[test]
fn futures_fan_out_runs_calls_concurrently() {
    let (outcome, line) = outcome_of("fan-out", &[]);
    assert!(outcome.success(), "{outcome:?}");
    // All four calls were in flight in the service at once.
    assert_eq!(line, "outcome: ok 50,ok 51,ok 52,ok 53 peak ok 4");
}

#[test]
fn a_trapping_run_stops_the_program_and_is_named() {
    let (outcome, lines) = run("tests/programs/trap_in_run.toml", &[]).unwrap();
    assert_eq!(outcome.reason, EndReason::Failed);
    assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
    let failure = &outcome.failures[0];
    assert_eq!(failure.node, "faulty");
    assert!(
        failure.error.contains("wasm trap") || failure.error.contains("unreachable"),
        "{}",
        failure.error
    );
    assert!(
        failure.error.contains("trap_here"),
        "wasm backtrace: {}",
        failure.error
    );
    assert_eq!(lines_of(&lines, "faulty"), ["about to trap"]);
    // The bystander was stopped, not left running.
    assert!(outcome.interrupted.is_empty(), "{outcome:?}");
}

#[test]
fn a_type_mismatched_edge_is_refused_before_launch() {
    let err = run("tests/programs/mismatch.toml", &[]).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("caller") && message.contains("faulty"),
        "{message}"
    );
    assert!(message.contains("lp:test/faulty@0.1.0.echo"), "{message}");
    // Where the handle that makes the edge was written.
    assert!(message.contains("mismatch.toml:14:10: "), "{message}");
    assert!(
        message.contains("u64") && message.contains("string"),
        "{message}"
    );
}

#[test]
fn a_blocking_call_from_synchronous_code_returns_its_value() {
    let (outcome, lines) = run("tests/programs/blocking.toml", &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(
        lines_of(&lines, "caller"),
        ["outcome: Ok(\"one\") Ok(\"two\") Ok(Labelled { label: \"sum\", total: 42 })"]
    );
}
