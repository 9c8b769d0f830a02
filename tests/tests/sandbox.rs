//! Deny by default: a node sees only what program.toml grants it (files,
//! environment, network), and a node that hits one of its limits (memory,
//! stack, CPU) fails with a message naming the limit and its value, while
//! the host stays healthy and stops the program cleanly.

use std::path::Path;

use lp_host::testing::{TestLaunch, TestProgram};
use lp_tests::path;

/// Run a program of a `probe` node (the sandboxed fixture, with `node`
/// TOML keys) and a bystander, written to `dir`, to its end: the probe's
/// output, and the failure ("" if none).
fn run(dir: &Path, program: &str, node: &str) -> (Vec<String>, String) {
    let toml = format!(
        "[program]\nname = \"sandbox\"\n{program}\n\n[[node]]\nname = \"probe\"\ncomponent = {:?}\n{node}\n\n[[node]]\nname = \"bystander\"\ncomponent = {:?}\n",
        path("tests/nodes/sandboxed"),
        path("tests/nodes/faulty"),
    );
    let file = dir.join("program.toml");
    std::fs::write(&file, toml).unwrap();
    let mut run = TestProgram::new(file)
        .cache_dir(path("target/lp-test-cache"))
        .launch(TestLaunch::Mt)
        .unwrap();
    let failure = run
        .end()
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    (run.output("probe"), failure)
}

#[test]
fn files_are_only_those_granted_and_as_granted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/hello.txt"), "hello from the host").unwrap();
    std::fs::create_dir(dir.path().join("scratch")).unwrap();
    let node = r#"args = { mode = "fs" }
grants = { dirs = [
    { host = "data", guest = "/data" },
    { host = "scratch", guest = "/scratch", write = true },
] }"#;
    let (output, failure) = run(dir.path(), "", node);
    assert_eq!(failure, "");
    assert_eq!(
        output,
        [
            "read granted: ok \"hello from the host\"",
            "write read-only: denied (PermissionDenied)",
            "write granted: ok ()",
            "read ungranted: denied (NotFound)",
            "list root: denied (NotFound)",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("scratch/new.txt")).unwrap(),
        "written"
    );
    assert!(!dir.path().join("data/new.txt").exists());

    // Nothing granted: nothing visible.
    let (output, _) = run(dir.path(), "", r#"args = { mode = "fs" }"#);
    assert!(output[0].starts_with("read granted: denied"), "{output:?}");
}

#[test]
fn environment_is_only_what_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = run(dir.path(), "", r#"args = { mode = "env" }"#);
    assert_eq!(output, ["GREETING=None", "vars=0"]);
    let node = "args = { mode = \"env\" }\ngrants = { env = { GREETING = \"hi\" } }";
    let (output, _) = run(dir.path(), "", node);
    assert_eq!(output, ["GREETING=Some(\"hi\")", "vars=1"]);
}

#[test]
fn network_is_denied_unless_the_address_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let other = format!("127.0.0.1:{}", addr.port().wrapping_add(1));
    let probe = |grants: &str| {
        let node = format!("args = {{ mode = \"net\", addr = \"{addr}\" }}\n{grants}");
        run(dir.path(), "", &node).0
    };
    assert_eq!(probe(""), ["connect: denied (PermissionDenied)"]);
    assert_eq!(
        probe(&format!("grants = {{ network = [\"{addr}\"] }}")),
        ["connect: ok ()"]
    );
    assert_eq!(
        probe("grants = { network = [\"127.0.0.1:*\"] }"),
        ["connect: ok ()"]
    );
    // Another port of the same host is still denied.
    assert_eq!(
        probe(&format!("grants = {{ network = [\"{other}\"] }}")),
        ["connect: denied (PermissionDenied)"]
    );
}

#[test]
fn a_node_over_its_memory_limit_fails_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = "args = { mode = \"memory\", mib = 64 }\nlimits = { memory_mib = 32 }";
    let (output, failure) = run(dir.path(), "", node);
    assert!(output.is_empty(), "{output:?}");
    assert!(
        failure.contains("node probe failed: memory limit reached")
            && failure.contains("limits.memory_mib = 32"),
        "{failure}"
    );
    assert!(
        !failure.contains("bystander"),
        "only the probe failed: {failure}"
    );
    // Under the limit it is fine; the program-wide default applies to
    // nodes without their own.
    let (output, failure) = run(
        dir.path(),
        "",
        "args = { mode = \"memory\", mib = 64 }\nlimits = { memory_mib = 128 }",
    );
    assert_eq!(
        (output.as_slice(), failure.as_str()),
        (["allocated 64 MiB".to_string()].as_slice(), "")
    );
    let (_, failure) = run(
        dir.path(),
        "limits = { memory_mib = 16 }",
        "args = { mode = \"memory\", mib = 64 }",
    );
    assert!(failure.contains("limits.memory_mib = 16"), "{failure}");
}

#[test]
fn a_node_over_the_stack_limit_fails_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (_, failure) = run(
        dir.path(),
        "limits = { stack_kib = 256 }",
        "args = { mode = \"stack\" }",
    );
    assert!(
        failure.contains("node probe failed") && failure.contains("limits.stack_kib = 256"),
        "{failure}"
    );
}

#[test]
fn a_node_over_its_cpu_limit_fails_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (_, failure) = run(
        dir.path(),
        "",
        "args = { mode = \"cpu\" }\nlimits = { cpu_secs = 0.5 }",
    );
    assert!(
        failure.contains("CPU limit reached") && failure.contains("limits.cpu_secs = 0.5"),
        "{failure}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_component_over_its_instance_limit_fails_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (_, failure) = run(
        dir.path(),
        "",
        "args = { mode = \"env\" }\nlimits = { instances = 1 }",
    );
    assert!(
        failure.contains("node probe failed") && failure.contains("limits.instances = 1"),
        "{failure}"
    );
}
