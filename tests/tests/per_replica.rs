//! Per-replica args and handles: `{ per_replica = "EXPR" }` and
//! `{ handle = "entry", index = "EXPR" }`, resolved for each replica before
//! launch, with errors that name the replica and the place.

use lp_host::program::{Diagnostic, load_str};
use lp_tests::{lines_of, overrides, path, run};

fn load(source: &str) -> Result<lp_host::Program, Diagnostic> {
    load_str(
        &path("examples/consumer_producers/ring.toml"),
        source,
        &overrides(&[]),
    )
}

/// Each node's targets, by name.
fn targets(program: &lp_host::Program, node: &str) -> Vec<String> {
    let node = program.node(node).unwrap();
    node.edges
        .iter()
        .map(|e| program.nodes[e.target as usize].name.clone())
        .collect()
}

#[test]
fn a_ring_gives_each_replica_the_next_one() {
    let program = load(
        r#"
[program]
name = "ring"

[[node]]
name = "ring"
component = "producer"
replicas = 4
args = { next = { handle = "ring", index = "(index + 1) % target_replicas" }, seed = { per_replica = "1000 + 7 * index" } }
"#,
    )
    .unwrap();
    for (i, next) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        let name = format!("ring/{i}");
        assert_eq!(targets(&program, &name), [format!("ring/{next}")]);
        let node = program.node(&name).unwrap();
        let target = program.node(&format!("ring/{next}")).unwrap().id;
        assert_eq!(
            node.args["next"],
            serde_json::json!({ "$lp-handle": target })
        );
        assert_eq!(node.args["seed"], 1000 + 7 * i);
    }
}

#[test]
fn a_tree_and_a_pipeline_with_optional_handles() {
    let program = load(
        r#"
[program]
name = "tree"

[[node]]
name = "tree"
component = "producer"
replicas = 7
args = { parent = { handle = "tree", index = "floor((index - 1) / 2)", optional = true } }

[[node]]
name = "actor"
component = "producer"
replicas = 6
args = { learner = { handle = "learner", index = "index % target_replicas" }, share = { per_replica = "index / replicas" } }

[[node]]
name = "learner"
component = "producer"
replicas = 2
"#,
    )
    .unwrap();
    // The root has no parent: null, and no edge.
    assert_eq!(
        program.node("tree/0").unwrap().args["parent"],
        serde_json::Value::Null
    );
    assert!(targets(&program, "tree/0").is_empty());
    for i in 1..7 {
        let parent = format!("tree/{}", (i - 1) / 2);
        assert_eq!(targets(&program, &format!("tree/{i}")), [parent]);
    }
    for i in 0..6 {
        let learner = format!("learner/{}", i % 2);
        assert_eq!(targets(&program, &format!("actor/{i}")), [learner]);
    }
    // Not a whole number: a float.
    assert_eq!(program.node("actor/3").unwrap().args["share"], 0.5);
}

#[test]
fn out_of_range_and_bad_expressions_name_the_replica_and_the_line() {
    let source = r#"
[program]
name = "bad"

[[node]]
name = "stage"
component = "producer"
replicas = 3
args = { next = { handle = "stage", index = "index + 1" } }
"#;
    let e = load(source).unwrap_err().to_string();
    assert!(
        e.contains("ring.toml:9:")
            && e.contains("node stage/2")
            && e.contains("gives 3, but stage has replicas 0 to 2")
            && e.contains("optional = true"),
        "{e}"
    );

    let e = load(&source.replace("index + 1", "idx + 1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`idx`") && e.contains("target_replicas"), "{e}");

    let e = load(&source.replace("\"index + 1\"", "1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expression in quotes"), "{e}");

    let e = load(&source.replace("handle = \"stage\"", "handle = \"stages\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no entry is named \"stages\""), "{e}");

    let e = load(&source.replace(
        r#"{ handle = "stage", index = "index + 1" }"#,
        r#"{ per_replica = "index", x = 1 }"#,
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("per_replica takes one expression"), "{e}");

    let e = load(&source.replace(r#"index = "index + 1""#, "optional = true"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`optional` goes with `index`"), "{e}");
}

#[test]
fn args_that_do_not_use_the_replica_are_shared() {
    let program = load(
        r#"
[program]
name = "same"

[[node]]
name = "p"
component = "producer"
replicas = 3
args = { steps = 2, all = { group = "p" } }
"#,
    )
    .unwrap();
    let first = &program.node("p/0").unwrap().args;
    assert!(program.nodes.iter().all(|n| &n.args == first));
}

#[test]
fn each_consumer_replica_calls_its_own_producer() {
    // consumer/i fans out to the one producer (i + 1) % 3 gives it.
    let (outcome, lines) = run(
        "examples/consumer_producers/program.toml",
        &[
            "producer.replicas=3",
            "consumer.replicas=3",
            "consumer.args.steps=2",
            r#"consumer.args.producers=[{ handle = "producer", index = "(index + 1) % target_replicas" }]"#,
        ],
    )
    .unwrap();
    assert!(outcome.success(), "{outcome:?}");
    // Some consumer finished both steps (and stopped the program), with
    // one producer's reply per step.
    let finished = (0..3).any(|i| {
        lines_of(&lines, &format!("consumer/{i}"))
            .iter()
            .any(|l| l == "step 1: [1]")
    });
    assert!(finished, "{lines:?}");
}
