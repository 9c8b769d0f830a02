//! A replay node's entry in program.toml: its tables as loaded (with
//! Reverb's queue and stack shapes as defaults), and every bad value
//! refused at its file:line:column with what to write instead.

use lp_host::program::{Diagnostic, NodeKind, load_str};
use lp_replay::{RateLimiter, Selector};
use lp_tests::{overrides, path};

fn load(source: &str) -> Result<lp_host::Program, Diagnostic> {
    load_str(
        &path("examples/consumer_producers/replay.toml"),
        source,
        &overrides(&[]),
    )
}

const HEADER: &str = "[program]\nname = \"r\"\n\n";

/// The program `HEADER` + `body`; the error it gives; that the error is
/// at the line and column where `at` first appears in `body`, and says
/// `says`.
fn refused(body: &str, at: &str, says: &str) -> Diagnostic {
    let source = format!("{HEADER}{body}");
    let d = match load(&source) {
        Ok(_) => panic!("expected an error for:\n{source}"),
        Err(d) => d,
    };
    let offset = source
        .find(at)
        .unwrap_or_else(|| panic!("{at:?} not in the source"));
    let line = source[..offset].matches('\n').count() + 1;
    let column = offset - source[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
    assert_eq!(
        d.line_col,
        Some((line, column)),
        "error {d} should point at {at:?} (line {line}, column {column})"
    );
    assert!(d.message.contains(says), "error {d} should say {says:?}");
    assert!(d.help.is_some(), "error {d} should say what to do");
    let shown = d.to_string();
    assert!(
        shown.starts_with(&format!("{}:{line}:{column}: ", d.file.display())),
        "{shown}"
    );
    d
}

const REPLAY: &str = r#"[[node]]
name = "replay"
kind = "replay"
checkpoint = { dir = "ckpt", every_secs = 60 }

[[node.tables]]
name = "experience"
max_size = 1000
sampler = "prioritized"
priority_exponent = 0.6
remover = "min_heap"
max_times_sampled = 4
rate_limiter = { kind = "sample_to_insert_ratio", samples_per_insert = 8, min_size_to_sample = 100, error_buffer = 500.5 }

[[node.tables]]
name = "queue"
rate_limiter = { kind = "queue", size = 64 }

[[node]]
name = "consumer"
component = "consumer"
args = { producers = [], replay = { handle = "replay" } }
"#;

#[test]
fn a_replay_entry_loads_its_tables_and_defaults() {
    let program = load(&format!("{HEADER}{REPLAY}")).unwrap();
    let replay = program.node("replay").unwrap();
    let NodeKind::Replay(config) = &replay.kind else {
        panic!("the replay node is {:?}", replay.kind);
    };
    assert_eq!(replay.component(), None);
    // Only the consumer is a component.
    assert_eq!(program.components.len(), 1);
    let [experience, queue] = config.tables.as_slice() else {
        panic!("{:?}", config.tables);
    };
    assert_eq!(experience.name, "experience");
    assert_eq!(experience.max_size, 1000);
    assert_eq!(experience.sampler, Selector::Prioritized { exponent: 0.6 });
    assert_eq!(experience.remover, Selector::MinHeap);
    assert_eq!(experience.max_times_sampled, 4);
    assert_eq!(
        experience.rate_limiter,
        RateLimiter::SampleToInsertRatio {
            samples_per_insert: 8.0,
            min_size_to_sample: 100,
            error_buffer: 500.5
        }
    );
    // A queue is Reverb's queue unless the table says otherwise.
    assert_eq!(queue.max_size, 64);
    assert_eq!(queue.sampler, Selector::Fifo);
    assert_eq!(queue.remover, Selector::Fifo);
    assert_eq!(queue.max_times_sampled, 1);
    let checkpoint = config.checkpoint.as_ref().unwrap();
    assert!(checkpoint.dir.ends_with("ckpt"));
    assert_eq!(checkpoint.every, Some(std::time::Duration::from_secs(60)));
    assert!(checkpoint.at_stop && checkpoint.restore);
    // The consumer holds a handle to it.
    let consumer = program.node("consumer").unwrap();
    assert_eq!(consumer.edges[0].target, replay.id);
}

fn table(lines: &str) -> String {
    format!("[[node]]\nname = \"replay\"\nkind = \"replay\"\n\n[[node.tables]]\n{lines}\n")
}

#[test]
fn bad_selectors_are_refused_where_written() {
    refused(
        &table("name = \"t\"\nmax_size = 10\nsampler = \"random\""),
        "\"random\"",
        "unknown selector",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\nremover = \"prioritized\""),
        "\"prioritized\"",
        "needs priority_exponent",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\npriority_exponent = 0.5"),
        "0.5",
        "neither the sampler nor the remover is prioritized",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\nsampler = \"prioritized\"\npriority_exponent = -1"),
        "-1",
        "exponent",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\nsampler = \"prioritized\"\npriority_exponent = \"x\""),
        "\"x\"",
        "must be a number",
    );
}

#[test]
fn bad_sizes_and_names_are_refused_where_written() {
    refused(
        &table("name = \"t\"\nmax_size = 0"),
        "0",
        "max_size must be 1 or more",
    );
    refused(&table("name = \"t\""), "[[node.tables]]", "has no max_size");
    refused(
        &table("name = \"a b\"\nmax_size = 1"),
        "\"a b\"",
        "invalid table name",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\nmax_times_sampled = -2"),
        "-2",
        "max_times_sampled must be",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\nsize = 3"),
        "size = 3",
        "unknown field",
    );
    let twice = format!(
        "{}[[node.tables]] # again\nname = \"t\"\nmax_size = 5\n",
        table("name = \"t\"\nmax_size = 10")
    );
    refused(&twice, "[[node.tables]] # again", "two tables named");
}

#[test]
fn bad_rate_limiters_are_refused_where_written() {
    refused(
        &table("name = \"t\"\nmax_size = 10\nrate_limiter = { kind = \"lottery\" }"),
        "\"lottery\"",
        "unknown rate limiter",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\nrate_limiter = { kind = \"min_size\" }"),
        "\"min_size\"",
        "needs min_size",
    );
    refused(
        &table(
            "name = \"t\"\nmax_size = 10\nrate_limiter = { kind = \"queue\", size = 5, min_size = 2 }",
        ),
        "\"queue\"",
        "takes no",
    );
    refused(
        &table(
            "name = \"t\"\nmax_size = 10\nrate_limiter = { kind = \"sample_to_insert_ratio\", samples_per_insert = 2.0, min_size_to_sample = 10 }",
        ),
        "\"sample_to_insert_ratio\"",
        "needs samples_per_insert, min_size_to_sample and error_buffer",
    );
    // Values the replay itself refuses are reported at the rate limiter.
    refused(
        &table(
            "name = \"t\"\nmax_size = 10\nrate_limiter = { kind = \"sample_to_insert_ratio\", samples_per_insert = 2.0, min_size_to_sample = 10, error_buffer = -5 }",
        ),
        "{ kind = \"sample_to_insert_ratio\"",
        "error_buffer",
    );
    refused(
        &table("name = \"t\"\nmax_size = 10\nrate_limiter = { kind = \"queue\", size = 20 }"),
        "{ kind = \"queue\"",
        "size",
    );
    refused(
        &table(
            "name = \"t\"\nsampler = \"uniform\"\nrate_limiter = { kind = \"queue\", size = 20 }",
        ),
        "\"uniform\"",
        "queue",
    );
    refused(
        &table(
            "name = \"t\"\nmax_times_sampled = 2\nrate_limiter = { kind = \"stack\", size = 20 }",
        ),
        "2\nrate",
        "stack",
    );
}

#[test]
fn a_replay_node_is_refused_what_only_components_have() {
    let with = |line: &str| {
        format!(
            "[[node]]\nname = \"replay\"\nkind = \"replay\"\n{line}\ntables = [{{ name = \"t\", max_size = 4 }}]\n"
        )
    };
    refused(
        &with("component = \"consumer\""),
        "\"consumer\"",
        "cannot have component",
    );
    refused(&with("args = { x = 1 }"), "1 }", "cannot have args");
    refused(
        &with("ports = [\"http\"]"),
        "[\"http\"]",
        "cannot have ports",
    );
    refused(
        &with("grants = { env = { A = \"b\" } }"),
        "{ env",
        "cannot have grants",
    );
    refused(
        "[[node]]\nname = \"replay\"\nkind = \"replay\"\n",
        "\"replay\"\nkind",
        "has no tables",
    );
    refused(
        "[[node]]\nname = \"replay\"\nkind = \"reverb\"\n",
        "\"reverb\"",
        "unknown node kind",
    );
    refused(
        "[[node]]\nname = \"c\"\ncomponent = \"consumer\"\ntables = []\n",
        "[]",
        "not a replay node",
    );
    refused("[[node]]\nname = \"c\"\n", "\"c\"", "names no component");
    refused(
        "[[node]]\nname = \"replay\"\nkind = \"replay\"\ncheckpoint = { dir = \"\" }\ntables = [{ name = \"t\", max_size = 4 }]\n",
        "\"\"",
        "checkpoint directory is empty",
    );
    refused(
        "[[node]]\nname = \"replay\"\nkind = \"replay\"\ncheckpoint = { dir = \"d\", every_secs = 0 }\ntables = [{ name = \"t\", max_size = 4 }]\n",
        "0 }",
        "every_secs must be a positive number",
    );
}
