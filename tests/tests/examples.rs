//! The examples, run end to end through the library.

use lp_host::EndReason;
use lp_host::output::Stream;
use lp_tests::{lines_of, run};

#[test]
fn hello_world_prints_and_finishes() {
    let (outcome, lines) = run("examples/hello_world/program.toml", &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.reason, EndReason::Finished);
    let hello: Vec<_> = lines.iter().filter(|l| l.node == "hello").collect();
    assert_eq!(hello.len(), 1);
    assert_eq!(hello[0].text, "Hello World!!!");
    assert_eq!(hello[0].stream, Stream::Stdout);
}

#[test]
fn a_node_crate_reached_through_a_symlink_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("hello-link");
    std::os::unix::fs::symlink(lp_tests::path("examples/hello_world/hello"), &link).unwrap();
    let program = dir.path().join("program.toml");
    std::fs::write(
        &program,
        "[program]\nname = \"linked\"\n\n[[node]]\nname = \"hello\"\ncomponent = \"hello-link\"\n",
    )
    .unwrap();
    let (outcome, lines) = run(program.to_str().unwrap(), &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(lines_of(&lines, "hello"), ["Hello World!!!"]);
}

#[test]
fn a_program_in_a_workspace_reached_through_a_symlink_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("repo");
    std::os::unix::fs::symlink(lp_tests::repo(), &link).unwrap();
    let program = link.join("examples/hello_world/program.toml");
    let (outcome, lines) = run(program.to_str().unwrap(), &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(lines_of(&lines, "hello"), ["Hello World!!!"]);
}

#[test]
fn consumer_producers_fans_out_for_ten_steps_then_stops() {
    let (outcome, lines) = run("examples/consumer_producers/program.toml", &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.reason, EndReason::Stopped);
    let consumer = lines_of(&lines, "consumer");
    assert_eq!(consumer.len(), 10, "{consumer:?}");
    for (step, line) in consumer.iter().enumerate() {
        // Every producer returns its context: ten copies of the step.
        let expected = format!("step {step}: {:?}", vec![step as u64; 10]);
        assert_eq!(*line, expected);
    }
}

#[test]
fn overrides_change_replicas_and_args() {
    let (outcome, lines) = run(
        "examples/consumer_producers/program.toml",
        &["producer.replicas=3", "consumer.args.steps=2"],
    )
    .unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(
        lines_of(&lines, "consumer"),
        ["step 0: [0, 0, 0]", "step 1: [1, 1, 1]"]
    );
}

#[test]
fn a_node_runs_and_serves_at_once() {
    let (outcome, lines) = run("examples/run_and_serve/program.toml", &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    let actor = lines_of(&lines, "actor");
    assert_eq!(actor.len(), 1, "{actor:?}");
    assert!(actor[0].ends_with("grew: true"), "{}", actor[0]);
    // The learner's run saw the stop and returned on its own.
    assert!(
        lines_of(&lines, "learner")
            .iter()
            .any(|l| l.starts_with("stopped after"))
    );
    assert!(outcome.interrupted.is_empty());
}

/// `cargo component build` (0.21, installed by .ci/setup) builds the
/// hello_world node, and the result runs.
#[test]
fn cargo_component_builds_a_node_that_runs() {
    let repo = lp_tests::repo();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = std::process::Command::new(cargo)
        .args(["component", "build", "--release", "-p", "hello"])
        .current_dir(&repo)
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "cargo component build failed (run .ci/setup to install cargo-component 0.21.1):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = repo.join("target/wasm32-wasip1/release/hello.wasm");
    let set = format!("hello.component=\"{}\"", wasm.display());
    let (outcome, lines) = run("examples/hello_world/program.toml", &[&set]).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(lines_of(&lines, "hello"), ["Hello World!!!"]);
}
