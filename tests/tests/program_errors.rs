//! Bad program.toml files: each error names file:line:column (or the
//! override) and says what to do.

use lp_host::program::{Diagnostic, load_str};
use lp_tests::{fifo_in, overrides, path};

/// Load `source` as if it were examples/consumer_producers/bad.toml, so
/// relative component paths resolve to the example crates.
fn load(source: &str, set: &[&str]) -> Result<lp_host::Program, Diagnostic> {
    load_str(
        &path("examples/consumer_producers/bad.toml"),
        source,
        &overrides(set),
    )
}

fn error(source: &str, set: &[&str]) -> Diagnostic {
    match load(source, set) {
        Ok(_) => panic!("expected an error for:\n{source}"),
        Err(d) => d,
    }
}

const GOOD: &str = r#"
[program]
name = "cp"

[[node]]
name = "producer"
component = "producer"
replicas = 3

[[node]]
name = "consumer"
component = "consumer"
args = { producers = { group = "producer" }, steps = 2 }
"#;

#[test]
fn the_good_program_expands_replicas_and_handles() {
    let program = load(GOOD, &[]).unwrap();
    let names: Vec<&str> = program.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["producer/0", "producer/1", "producer/2", "consumer"]
    );
    assert!(program.nodes[..3].iter().all(|n| n.group == "producer"));
    let consumer = program.node("consumer").unwrap();
    assert_eq!(
        consumer.args,
        serde_json_value(
            r#"{"producers":[{"$lp-handle":0},{"$lp-handle":1},{"$lp-handle":2}],"steps":2}"#
        )
    );
    assert_eq!(consumer.edges.len(), 3);
    assert_eq!(program.components.len(), 2);
}

fn serde_json_value(s: &str) -> lp_host::program::JsonValue {
    s.parse().unwrap()
}

#[test]
fn a_syntax_error_points_at_its_line() {
    let d = error("[program]\nname = \"x\"\n[[node]\n", &[]);
    assert_eq!(d.line_col.map(|(l, _)| l), Some(3), "{d}");
    assert!(d.to_string().contains("bad.toml:3:"), "{d}");
}

#[test]
fn an_unknown_key_is_rejected_with_its_position() {
    let d = error(&GOOD.replace("replicas = 3", "replica = 3"), &[]);
    assert_eq!(d.line_col, Some((8, 1)), "{d}");
    assert!(d.message.contains("unknown field `replica`"), "{d}");
    assert!(d.help.is_some());
}

#[test]
fn a_missing_component_is_named() {
    let d = error(
        &GOOD.replace("component = \"consumer\"", "component = \"consumr\""),
        &[],
    );
    assert_eq!(d.line_col, Some((12, 13)), "{d}");
    assert!(d.message.contains("consumr"), "{d}");
    assert!(
        d.help
            .as_deref()
            .unwrap()
            .contains("relative to program.toml"),
        "{d}"
    );
    let d = error(
        &GOOD.replace("component = \"consumer\"", "component = \"gone.wasm\""),
        &[],
    );
    assert!(d.message.contains("gone.wasm does not exist"), "{d}");
}

#[test]
fn a_handle_to_an_unknown_node_lists_the_nodes() {
    let d = error(
        &GOOD.replace("{ group = \"producer\" }", "{ handle = \"producr\" }"),
        &[],
    );
    assert_eq!(d.line_col.map(|(l, _)| l), Some(13), "{d}");
    assert!(d.message.contains("no node is named \"producr\""), "{d}");
    assert!(
        d.help.as_deref().unwrap().contains("consumer, producer/0"),
        "{d}"
    );
}

#[test]
fn a_single_handle_to_a_replicated_node_is_ambiguous() {
    let d = error(
        &GOOD.replace("{ group = \"producer\" }", "{ handle = \"producer\" }"),
        &[],
    );
    assert!(d.message.contains("has 3 replicas"), "{d}");
    assert!(d.help.as_deref().unwrap().contains("producer/0"), "{d}");
}

#[test]
fn a_handle_may_carry_its_own_deadline() {
    let program = load(
        &GOOD.replace(
            "{ group = \"producer\" }",
            "{ group = \"producer\", timeout_secs = 1.5 }",
        ),
        &[],
    )
    .unwrap();
    let edges = &program.node("consumer").unwrap().edges;
    assert!(
        edges
            .iter()
            .all(|e| e.timeout == Some(std::time::Duration::from_millis(1500))),
        "{edges:?}"
    );
    let d = error(
        &GOOD.replace(
            "{ group = \"producer\" }",
            "{ group = \"producer\", timeout_secs = 0 }",
        ),
        &[],
    );
    assert!(
        d.message.contains("timeout_secs must be a positive number"),
        "{d}"
    );
    let d = error(
        &GOOD.replace(
            "{ group = \"producer\" }",
            "{ group = \"producer\", retries = 2 }",
        ),
        &[],
    );
    assert!(d.message.contains("not `retries`"), "{d}");
}

#[test]
fn an_unknown_group_is_refused() {
    let d = error(
        &GOOD.replace("{ group = \"producer\" }", "{ group = \"actors\" }"),
        &[],
    );
    assert!(d.message.contains("no group is named \"actors\""), "{d}");
}

#[test]
fn duplicate_names_and_bad_replicas_are_refused() {
    let d = error(
        &GOOD.replace("name = \"consumer\"", "name = \"producer\""),
        &[],
    );
    assert!(
        d.message.contains("used twice (first defined at line 6"),
        "{d}"
    );
    let d = error(&GOOD.replace("replicas = 3", "replicas = 0"), &[]);
    assert_eq!(d.line_col, Some((8, 12)), "{d}");
    assert!(
        d.message.contains("replicas must be between 1 and 100000"),
        "{d}"
    );
    let d = error(
        &GOOD.replace("name = \"consumer\"", "name = \"con sumer\""),
        &[],
    );
    assert!(d.message.contains("invalid node name"), "{d}");
}

#[test]
fn a_program_without_nodes_is_refused() {
    let d = error("[program]\nname = \"empty\"\n", &[]);
    assert!(d.message.contains("no nodes"), "{d}");
    let d = error("[[node]]\nname = \"a\"\ncomponent = \"producer\"\n", &[]);
    assert!(d.message.contains("missing field `program`"), "{d}");
}

#[test]
fn overrides_apply_and_bad_ones_are_named() {
    let program = load(GOOD, &["producer.replicas=5", "consumer.args.steps=9"]).unwrap();
    assert_eq!(program.nodes.len(), 6);
    assert_eq!(program.node("consumer").unwrap().args["steps"], 9);

    let d = error(GOOD, &["producr.replicas=2"]);
    assert_eq!(d.override_text.as_deref(), Some("producr.replicas=2"));
    assert!(d.message.contains("no node is named \"producr\""), "{d}");
    assert!(
        d.to_string().starts_with("--set producr.replicas=2: "),
        "{d}"
    );
    let d = error(GOOD, &["producer.replicas=many"]);
    assert!(d.message.contains("whole number"), "{d}");
    let d = error(GOOD, &["producer.colour=red"]);
    assert!(d.message.contains("cannot set producer.colour"), "{d}");
    let d = error(GOOD, &["program.call_timeout_secs=-1"]);
    assert!(d.message.contains("positive number of seconds"), "{d}");
}

#[test]
fn bad_grants_and_limits_name_the_line_and_what_to_do() {
    let with = |extra: &str| GOOD.replace("replicas = 3\n", &format!("replicas = 3\n{extra}\n"));

    let e = error(
        &with(r#"grants = { dirs = [{ host = "no-such-dir", guest = "/d" }] }"#),
        &[],
    );
    assert_eq!(e.line_col, Some((9, 29)), "{e}");
    assert!(
        e.message.contains("granted directory") && e.message.contains("does not exist"),
        "{e}"
    );
    assert!(
        e.help
            .as_deref()
            .unwrap()
            .contains("relative to program.toml")
    );

    let e = error(
        &with(r#"grants = { dirs = [{ host = ".", guest = "d" }] }"#),
        &[],
    );
    assert!(e.message.contains("must be absolute"), "{e}");

    let e = error(&with(r#"grants = { network = ["example.com:80"] }"#), &[]);
    assert!(
        e.message.contains("\"example.com:80\" is not an address"),
        "{e}"
    );
    assert!(e.help.as_deref().unwrap().contains("127.0.0.1:8080"));

    let e = error(&with(r#"grants = { files = ["/etc"] }"#), &[]);
    assert!(e.message.contains("unknown field `files`"), "{e}");

    let e = error(&with("limits = { memory_mib = -1 }"), &[]);
    assert!(
        e.message
            .contains("memory_mib must be a positive number, not -1"),
        "{e}"
    );

    let e = error(&with("limits = { stack_kib = 128 }"), &[]);
    assert!(
        e.message
            .contains("stack_kib is a limit of the whole program"),
        "{e}"
    );
    assert!(e.help.as_deref().unwrap().contains("[program.limits]"));

    // Good ones load, with the program's defaults under each node's own.
    let source = GOOD.replace(
        "name = \"cp\"\n",
        "name = \"cp\"\nlimits = { memory_mib = 64, stack_kib = 1024 }\n",
    );
    let source = source.replace(
        "replicas = 3\n",
        "replicas = 3\nlimits = { cpu_secs = 2.5 }\ngrants = { env = { A = \"1\" }, network = [\"127.0.0.1:*\"], stdin = true }\n",
    );
    let program = load(&source, &[]).unwrap();
    let producer = program.node("producer/1").unwrap();
    assert_eq!(producer.limits.memory_mib, Some(64));
    assert_eq!(producer.limits.cpu_secs, Some(2.5));
    assert_eq!(producer.limits.stack_kib, Some(1024));
    assert_eq!(producer.grants.env, [("A".to_string(), "1".to_string())]);
    assert!(producer.grants.stdin && producer.grants.network[0].port.is_none());
    assert_eq!(program.node("consumer").unwrap().grants, Default::default());
    assert_eq!(program.stack_kib, Some(1024));
}

#[test]
fn a_guest_path_granted_twice_is_refused_whatever_the_flags() {
    let with = |extra: &str| GOOD.replace("replicas = 3\n", &format!("replicas = 3\n{extra}\n"));
    for grants in [
        r#"grants = { dirs = [{ host = ".", guest = "/d" }, { host = "..", guest = "/d", write = true }] }"#,
        r#"grants = { dirs = [{ host = ".", guest = "/d" }, { host = ".", guest = "//d/" }] }"#,
    ] {
        let e = error(&with(grants), &[]);
        assert!(
            e.message
                .contains("the guest path /d is granted twice (first at line 9, column 42)"),
            "{e}"
        );
        assert!(
            e.help
                .as_deref()
                .unwrap()
                .contains("grant each guest path once"),
            "{e}"
        );
    }
    // Nested guest paths are distinct grants.
    load(
        &with(r#"grants = { dirs = [{ host = ".", guest = "/d" }, { host = "..", guest = "/d/e" }] }"#),
        &[],
    )
    .unwrap();
}

#[test]
fn the_host_root_or_a_home_is_writable_only_when_the_grant_says_so_and_always_warned() {
    let with = |extra: &str| GOOD.replace("replicas = 3\n", &format!("replicas = 3\n{extra}\n"));
    let home = std::env::var("HOME").expect("HOME is set");
    for host in ["/", home.as_str()] {
        let e = error(
            &with(&format!(
                r#"grants = {{ dirs = [{{ host = "{host}", guest = "/h", write = true }}] }}"#
            )),
            &[],
        );
        assert_eq!(e.line_col, Some((9, 20)), "{e}");
        assert!(e.message.contains("a writable grant of"), "{e}");
        assert!(
            e.help
                .as_deref()
                .unwrap()
                .contains("allow_home_write = true"),
            "{e}"
        );

        let program = load(
            &with(&format!(r#"grants = {{ dirs = [{{ host = "{host}", guest = "/h", write = true, allow_home_write = true }}] }}"#)),
            &[],
        )
        .unwrap();
        assert!(program.node("producer/0").unwrap().grants.dirs[0].writable);
        assert_eq!(program.warnings.len(), 1, "{:?}", program.warnings);
        assert!(
            program.warnings[0].message.contains("may write"),
            "{}",
            program.warnings[0]
        );

        let program = load(
            &with(&format!(
                r#"grants = {{ dirs = [{{ host = "{host}", guest = "/h" }}] }}"#
            )),
            &[],
        )
        .unwrap();
        let warning = &program.warnings[..];
        assert_eq!(warning.len(), 1, "{warning:?}");
        assert_eq!(warning[0].line_col, Some((9, 20)));
        assert!(warning[0].message.contains("may read"), "{}", warning[0]);
        assert!(warning[0].help.is_some());
    }
    // A directory of the program's own: no word.
    let program = load(
        &with(r#"grants = { dirs = [{ host = ".", guest = "/h", write = true }] }"#),
        &[],
    )
    .unwrap();
    assert!(program.warnings.is_empty(), "{:?}", program.warnings);
}

#[test]
fn a_component_that_is_not_a_regular_file_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path(), "fifo.wasm");
    let zero = dir.path().join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let source = |component: &std::path::Path| {
        format!(
            "[program]\nname = \"p\"\n\n[[node]]\nname = \"a\"\ncomponent = {:?}\n",
            component
        )
    };
    let program = dir.path().join("program.toml");
    let e = load_str(&program, &source(&fifo), &[]).unwrap_err();
    assert!(
        e.message
            .contains("fifo.wasm is a FIFO (named pipe), not a regular file"),
        "{e}"
    );
    assert_eq!(e.line_col, Some((6, 13)));
    assert!(e.help.is_some());
    let e = load_str(&program, &source(&zero), &[]).unwrap_err();
    assert!(
        e.message.contains(
            "zero.wasm is a character device, not a regular file (a symlink to /dev/zero)"
        ),
        "{e}"
    );
}

#[test]
fn resources_are_read_per_node_and_bad_ones_name_the_line() {
    let with = |extra: &str| GOOD.replace("replicas = 3\n", &format!("replicas = 3\n{extra}\n"));

    let program = load(
        &with(r#"resources = { cpus = 0.5, memory_mib = 256, gpus = 1, host = "gpu-box" }"#),
        &[],
    )
    .unwrap();
    let every_replica = program.nodes[..3].iter().map(|n| &n.resources);
    for r in every_replica {
        assert_eq!(
            (r.cpus, r.memory_mib, r.gpus, r.host.as_deref()),
            (0.5, 256, 1, Some("gpu-box"))
        );
        assert_eq!(r.place.line_col, Some((9, 13)));
    }
    assert!(program.node("consumer").unwrap().resources.is_empty());
    let program = load(&with("resources = { cpus = 2 }"), &[]).unwrap();
    assert_eq!(program.node("producer/0").unwrap().resources.cpus, 2.0);

    let e = error(&with("resources = { cpu = 2 }"), &[]);
    assert_eq!(e.line_col.map(|(l, _)| l), Some(9), "{e}");
    assert!(e.message.contains("unknown field `cpu`"), "{e}");
    assert!(e.help.is_some());

    let e = error(&with("resources = { cpus = -1 }"), &[]);
    assert_eq!(e.line_col, Some((9, 22)), "{e}");
    assert!(
        e.message
            .contains("resources.cpus must be a number of CPUs, 0 or more"),
        "{e}"
    );
    assert!(e.help.as_deref().unwrap().contains("cpus = 0.5"), "{e}");
    let e = error(&with("resources = { cpus = nan }"), &[]);
    assert!(e.message.contains("not nan"), "{e}");
    let e = error(&with("resources = { gpus = -2 }"), &[]);
    assert!(
        e.message
            .contains("resources.gpus must be a whole number, 0 or more, not -2"),
        "{e}"
    );
    assert!(e.to_string().contains("bad.toml:9:22: "), "{e}");
    let e = error(&with("resources = { memory_mib = 1.5 }"), &[]);
    assert_eq!(e.line_col.map(|(l, _)| l), Some(9), "{e}");
    let e = error(&with(r#"resources = { host = "" }"#), &[]);
    assert!(e.message.contains("host label"), "{e}");
}

#[test]
fn the_nodes_of_a_colocation_group_agree_on_their_host() {
    let source = GOOD
        .replace(
            "replicas = 3\n",
            "replicas = 3\ncolocate = \"g\"\nresources = { cpus = 1, host = \"a\" }\n",
        )
        .replace(
            "component = \"consumer\"\n",
            "component = \"consumer\"\ncolocate = \"g\"\nresources = { host = \"b\" }\n",
        );
    let e = error(&source, &[]);
    assert_eq!(e.line_col, Some((16, 22)), "{e}");
    assert!(
        e.message.contains(
            "node consumer asks for host \"b\", but producer (line 10, column 32) asks for host \"a\""
        ),
        "{e}"
    );
    assert!(e.message.contains("colocation group \"g\""), "{e}");
    assert!(e.help.is_some());

    // One label, or a label on one node only, is fine.
    load(&source.replace("host = \"b\"", "host = \"a\""), &[]).unwrap();
    load(&source.replace("resources = { host = \"b\" }", ""), &[]).unwrap();
    // Different groups may run on different hosts.
    load(
        &source.replacen("colocate = \"g\"", "colocate = \"h\"", 1),
        &[],
    )
    .unwrap();
    // An override that puts them together is refused as well.
    let apart = source.replacen("colocate = \"g\"\n", "", 1);
    load(&apart, &[]).unwrap();
    let e = error(&apart, &["producer.colocate=g"]);
    assert!(e.message.contains("colocation group \"g\""), "{e}");
}

#[test]
fn resources_can_be_set_from_the_command_line() {
    let program = load(
        GOOD,
        &[
            "producer.resources.cpus=0.25",
            "producer.resources.host=gpu-box",
            "consumer.resources.memory_mib=512",
        ],
    )
    .unwrap();
    let producer = &program.node("producer/1").unwrap().resources;
    assert_eq!(producer.cpus, 0.25);
    assert_eq!(producer.host.as_deref(), Some("gpu-box"));
    assert_eq!(
        producer.place.override_text.as_deref(),
        Some("producer.resources.host=gpu-box")
    );
    assert_eq!(program.node("consumer").unwrap().resources.memory_mib, 512);

    let e = error(GOOD, &["producer.resources.gpus=-1"]);
    assert_eq!(
        e.override_text.as_deref(),
        Some("producer.resources.gpus=-1")
    );
    assert!(e.message.contains("0 or more"), "{e}");
    let e = error(GOOD, &["producer.resources.disk=1"]);
    assert!(e.message.contains("unknown resource `disk`"), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap()
            .contains("cpus, memory_mib, gpus and host")
    );
}
