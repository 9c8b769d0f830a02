//! wasmtime's own limits (the wasm stack, the handles a node may hold, the
//! bytes one call may carry), under every launch type: the node that goes
//! past one fails alone with a message naming the limit and what to do, a
//! caller of a node that failed so gets the same in its `remote-trap`, and
//! the host carries on and ends the program.

use std::path::Path;

use lp_host::testing::{TestLaunch, TestProgram};
use lp_tests::path;

#[derive(Clone, Copy, Debug)]
enum Launch {
    Mt,
    Mp,
    Seeded,
}

const LAUNCHES: [Launch; 3] = [Launch::Mt, Launch::Mp, Launch::Seeded];

/// A caller (the overreach fixture, in `mode` with `count`) and the node
/// it calls, with `limits` under [program], written to `dir`.
fn program(dir: &Path, limits: &str, mode: &str, count: u64) -> TestProgram {
    let toml = format!(
        "[program]\nname = \"overreach\"\n{limits}\n\n[[node]]\nname = \"callee\"\ncomponent = {overreach:?}\n\n[[node]]\nname = \"caller\"\ncomponent = {overreach:?}\nargs = {{ target = {{ handle = \"callee\" }}, mode = \"{mode}\", count = {count} }}\n",
        overreach = path("tests/nodes/overreach"),
    );
    let file = dir.join("program.toml");
    std::fs::write(&file, toml).unwrap();
    TestProgram::new(file).cache_dir(path("target/lp-test-cache"))
}

/// Run to its end: every failure (`node X failed: ...`; "" if none) and
/// what the caller logged as its outcome.
fn run(program: TestProgram, launch: Launch) -> (String, String) {
    let (failures, output) = match launch {
        Launch::Mt | Launch::Mp => {
            let how = match launch {
                Launch::Mt => TestLaunch::Mt,
                _ => TestLaunch::Mp,
            };
            let mut run = program.launch(how).unwrap();
            let failures = run.end().err().map(|e| format!("{e:#}"));
            (failures.unwrap_or_default(), run.output("caller"))
        }
        Launch::Seeded => {
            let run = program.run_seeded(1, 0).unwrap();
            let failures: Vec<String> = run
                .outcome
                .failures
                .iter()
                .map(|f| format!("node {} failed: {}", f.node, f.error))
                .collect();
            let caller = run
                .output
                .iter()
                .filter_map(|l| l.strip_prefix("[caller] ").map(str::to_string))
                .collect();
            (failures.join("\n"), caller)
        }
    };
    let line = output
        .into_iter()
        .find_map(|l| l.strip_prefix("outcome: ").map(str::to_string))
        .unwrap_or_default();
    (failures, line)
}

#[test]
fn a_stack_overflow_names_stack_kib_to_the_node_and_its_caller() {
    let dir = tempfile::tempdir().unwrap();
    for launch in LAUNCHES {
        for (limits, named) in [
            ("limits = { stack_kib = 256 }", "limits.stack_kib = 256"),
            ("", "default limit of 512 KiB (limits.stack_kib)"),
        ] {
            let (failures, line) = run(program(dir.path(), limits, "remote-stack", 0), launch);
            assert!(
                failures.starts_with("node callee failed: ") && !failures.contains("caller"),
                "{launch:?}: the callee alone failed: {failures}"
            );
            for text in [&failures, &line] {
                assert!(
                    text.contains("call stack exhausted") && text.contains(named),
                    "{launch:?} {limits:?}: names the limit: {text}"
                );
                assert!(
                    text.contains("help: "),
                    "{launch:?}: says what to do: {text}"
                );
            }
            assert!(
                line.starts_with("Err(CallError::RemoteTrap("),
                "{launch:?}: {line}"
            );
        }
    }
}

#[test]
fn too_many_calls_in_flight_fail_the_caller_naming_the_handle_limit() {
    let dir = tempfile::tempdir().unwrap();
    for launch in LAUNCHES {
        let (failures, _) = run(program(dir.path(), "", "fan-out", 120_000), launch);
        assert!(
            failures.starts_with("node caller failed: ") && !failures.contains("node callee"),
            "{launch:?}: the caller alone failed: {failures}"
        );
        assert!(
            failures.contains("store handle limit exceeded")
                && failures.contains("100000 handles at once")
                && failures.contains("help: keep fewer calls in flight"),
            "{launch:?}: names the limit and what to do: {failures}"
        );
    }
    // Under the limit, every call is answered.
    for launch in [Launch::Mt, Launch::Mp] {
        let (failures, line) = run(program(dir.path(), "", "fan-out", 20_000), launch);
        assert_eq!(
            (failures.as_str(), line.as_str()),
            ("", "20000 of 20000 replies right"),
            "{launch:?}"
        );
    }
}

#[test]
fn a_payload_over_the_hostcall_limit_fails_the_caller_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    for launch in LAUNCHES {
        let (failures, line) = run(program(dir.path(), "", "big", (128 << 20) + 1), launch);
        assert!(
            failures.starts_with("node caller failed: ") && !failures.contains("node callee"),
            "{launch:?}: the caller alone failed: {failures} (logged {line:?})"
        );
        assert!(
            failures.contains("more than 128 MiB")
                && failures.contains("help: send the data in parts"),
            "{launch:?}: names the limit and what to do: {failures}"
        );
    }
    // At the limit's side, the call goes through.
    let (failures, line) = run(program(dir.path(), "", "big", 64 << 20), Launch::Mp);
    assert_eq!((failures.as_str(), line.as_str()), ("", "Ok(67108864)"));
}
