//! The replay node (`kind = "replay"`) end to end, with real components
//! through lp-host: examples/replay learns under local_mt, local_mp,
//! test_mt and hosts (and with its Python actor, and its Python actor and
//! learner), and a seeded run replays exactly, the replay's sampling
//! included; many writers and readers on one queue lose and duplicate
//! nothing; rate limiters block within the call's deadline and a timed-out
//! call changes nothing (also under load, retried, in a loop of runs), and
//! calls waiting without one hear `stopping` when the program stops; a
//! checkpoint carries the tables from one run to the next, and a truncated
//! one is refused; a replay edge is type-checked before launch; refused
//! calls reach the caller as typed errors. The nodes are examples/replay's
//! and tests/nodes/replay_peer (one mode per role), in
//! tests/programs/replay_*.toml.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use lp_host::testing::TestProgram;
use lp_tests::{lp_host, path, text};

const EXAMPLE: &str = "examples/replay/program.toml";
const QUEUE: &str = "tests/programs/replay_queue.toml";
const CALLS: &str = "tests/programs/replay_calls.toml";
const STOP: &str = "tests/programs/replay_stop.toml";

/// How a program is launched.
#[derive(Clone, Copy, Debug)]
enum Launch {
    LocalMt,
    LocalMp,
    /// `--launch hosts` with two agents on this machine.
    Hosts,
    /// `--launch test_mt` with this seed.
    TestMt(u64),
}

/// A program's end: whether it succeeded, what its nodes printed or
/// logged (`[node] text`, in order) and what went wrong.
struct Ran {
    ok: bool,
    lines: Vec<String>,
    errors: String,
}

impl Ran {
    /// The text of `node`'s lines.
    fn of(&self, node: &str) -> Vec<&str> {
        let prefix = format!("[{node}] ");
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect()
    }
}

/// Run `program` to its end, with `set` overrides (`node.args.key=value`).
/// test_mt goes through the test API (its trace is the test's to compare);
/// the others through the `lp-host run` command.
fn launch(program: &str, how: Launch, set: &[&str]) -> Ran {
    if let Launch::TestMt(seed) = how {
        let mut seeded = TestProgram::new(path(program)).cache_dir(path("target/lp-test-cache"));
        for s in set {
            seeded = seeded.set(s);
        }
        let run = seeded.run_seeded(seed, 0).unwrap();
        return Ran {
            ok: run.outcome.success(),
            errors: run
                .check()
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default(),
            lines: run.output,
        };
    }
    let mut args = vec!["run", program, "--launch"];
    args.extend(match how {
        Launch::LocalMt => &["local_mt"][..],
        Launch::LocalMp => &["local_mp"],
        Launch::Hosts => &["hosts", "--local-agents", "--agents", "2"],
        Launch::TestMt(_) => unreachable!(),
    });
    for s in set {
        args.extend(["--set", s]);
    }
    let out = lp_host(&args);
    Ran {
        ok: out.status.success(),
        lines: text(&out.stdout).lines().map(str::to_string).collect(),
        errors: text(&out.stderr),
    }
}

/// Run and check it ended well.
fn launch_ok(program: &str, how: Launch, set: &[&str]) -> Ran {
    let ran = launch(program, how, set);
    assert!(
        ran.ok,
        "{program} {set:?} under {how:?} failed:\n{}\n{}",
        ran.errors,
        ran.lines.join("\n")
    );
    ran
}

// 1. The example.

/// The example's learner reached the goal and its replay served the
/// samples it asked for; both actors reported.
fn assert_learned(ran: &Ran, how: &str) {
    let learner = ran.of("learner");
    let all = ran.lines.join("\n");
    assert!(
        learner
            .iter()
            .any(|l| l.starts_with("learner: 2000 updates, greedy policy reaches the goal in ")),
        "{how}: the greedy policy does not reach the goal:\n{all}"
    );
    // 2000 updates of 32 samples; the ratio limiter held the inserts to
    // about 8 samples each, none evicted (10000 fit).
    let table = learner
        .iter()
        .find(|l| l.starts_with("learner: replay table experience: "))
        .unwrap_or_else(|| panic!("{how}: no table line:\n{all}"));
    assert!(
        table.contains(", 64000 samples, 0 deletes"),
        "{how}: {table}"
    );
    for actor in ["actor/0", "actor/1"] {
        assert!(
            ran.of(actor).iter().any(|l| l.contains(" episodes (")),
            "{how}: {actor} did not report:\n{all}"
        );
    }
}

#[test]
fn the_example_learns_under_local_mt_local_mp_and_hosts() {
    for how in [Launch::LocalMt, Launch::LocalMp, Launch::Hosts] {
        let ran = launch_ok(EXAMPLE, how, &[]);
        assert_learned(&ran, &format!("{how:?}"));
    }
}

#[test]
fn a_seeded_run_of_the_example_learns_and_replays_exactly() {
    let program = TestProgram::new(path(EXAMPLE)).cache_dir(path("target/lp-test-cache"));
    let first = program.run_seeded(7, 0).unwrap();
    first.check().unwrap();
    let ran = Ran {
        ok: true,
        lines: first.output.clone(),
        errors: String::new(),
    };
    assert_learned(&ran, "test_mt seed 7");
    let again = program.run_seeded(7, 0).unwrap();
    assert_eq!(first.trace.as_bytes(), again.trace.as_bytes());
    assert_eq!(first.output, again.output);
    assert!(
        first.trace.contains("call learner -> replay "),
        "{}",
        first.trace
    );
    let other = program.run_seeded(8, 0).unwrap();
    other.check().unwrap();
    assert_ne!(first.trace, other.trace, "seeds 7 and 8 ran alike");
}

/// The replay's own sampling follows the seed: one node inserts 100 items
/// into a uniform table and logs the keys of 20 samples.
#[test]
fn the_replays_samples_come_from_the_seed() {
    let sampled = |how: Launch| {
        let ran = launch_ok(CALLS, how, &[r#"probe.args.mode="sampler""#]);
        let line = ran.of("probe").join("\n");
        assert!(line.starts_with("sampled "), "{how:?}: {line}");
        line
    };
    let one = sampled(Launch::TestMt(1));
    assert_eq!(one, sampled(Launch::TestMt(1)), "one seed, other samples");
    assert_ne!(
        one,
        sampled(Launch::TestMt(2)),
        "two seeds, the same samples"
    );
    // Unseeded runs draw afresh (20 draws of 100 alike by chance: 1e-40).
    assert_ne!(sampled(Launch::LocalMt), sampled(Launch::LocalMt));
}

/// The `--set`s that run the example's actors in Python (actor_py/app.py).
const PYTHON_ACTOR: [&str; 2] = [
    r#"actor.component="actor_py/app.py""#,
    r#"actor.world="lp:replay-example/actor-py-node""#,
];

/// The `--set`s that run the example's learner in Python (learner_py/app.py).
const PYTHON_LEARNER: [&str; 2] = [
    r#"learner.component="learner_py/app.py""#,
    r#"learner.world="lp:replay-example/learner-py-node""#,
];

#[test]
fn the_example_learns_with_its_python_actor_under_local_mt_and_local_mp() {
    if !lp_tests::tool_installed("componentize-py", "pip install componentize-py==0.25.1") {
        return;
    }
    for how in [Launch::LocalMt, Launch::LocalMp] {
        let ran = launch_ok(EXAMPLE, how, &PYTHON_ACTOR);
        assert_learned(&ran, &format!("{how:?}, Python actor"));
    }
}

#[test]
fn the_example_learns_with_its_python_actor_and_learner_under_local_mt_and_local_mp() {
    if !lp_tests::tool_installed("componentize-py", "pip install componentize-py==0.25.1") {
        return;
    }
    let python = [PYTHON_ACTOR, PYTHON_LEARNER].concat();
    for how in [Launch::LocalMt, Launch::LocalMp] {
        let ran = launch_ok(EXAMPLE, how, &python);
        assert_learned(&ran, &format!("{how:?}, Python actor and learner"));
    }
}

// 2. Many writers and readers on one queue.

/// What the readers of one run of replay_queue.toml got, checked: every
/// writer's every item exactly once; each reader's items in queue (key)
/// order, so each writer's in sequence order; each reader's count as it
/// says; every writer done. The most inserts and samples any reader saw
/// waiting at once, and how many calls timed out.
fn check_queue(ran: &Ran, writers: u32, count: u32, how: &str) -> Waits {
    let all = || ran.lines.join("\n");
    let mut got: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    let mut waits = Waits::default();
    let mut reached = false;
    let mut per_reader = Vec::new();
    for r in 0..3 {
        let reader = format!("reader/{r}");
        let lines = ran.of(&reader);
        let (last, batches) = lines.split_last().unwrap_or_else(|| {
            panic!("{how}: {reader} logged nothing:\n{}\n{}", all(), ran.errors)
        });
        let mut keys = Vec::new();
        for batch in batches {
            let tags = batch
                .strip_prefix("got ")
                .unwrap_or_else(|| panic!("{how}: {reader}: {batch}"));
            for tag in tags.split(' ') {
                let n: Vec<u32> = tag.split(':').map(|n| n.parse().unwrap()).collect();
                let &[key, w, seq] = n.as_slice() else {
                    panic!("{how}: {reader}: tag {tag}")
                };
                keys.push((key, w, seq));
                *got.entry((w, seq)).or_default() += 1;
            }
        }
        // "reader: N items, then (total reached|stopping); saw up to I
        // inserts and S samples waiting; T timeouts"
        let parts: Vec<&str> = last.split("; ").collect();
        let [ended, saw, timeouts] = parts[..] else {
            panic!("{how}: {reader} ended with {last}\n{}", ran.errors)
        };
        assert!(
            ended == format!("reader: {} items, then total reached", keys.len())
                || ended == format!("reader: {} items, then stopping", keys.len()),
            "{how}: {reader} got {} items but ended with {last}",
            keys.len()
        );
        reached |= ended.ends_with("total reached");
        let saw: Vec<&str> = saw.split(' ').collect();
        waits.inserts = waits.inserts.max(saw[3].parse().unwrap());
        waits.samples = waits.samples.max(saw[6].parse().unwrap());
        waits.timeouts += timeouts
            .strip_suffix(" timeouts")
            .unwrap()
            .parse::<u32>()
            .unwrap();
        per_reader.push((reader, keys));
    }
    let twice: Vec<_> = got.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "{how}: {} items got more than once (writer, seq): {:?} ...",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    let expected: BTreeSet<(u32, u32)> = (0..writers)
        .flat_map(|w| (0..count).map(move |s| (w, s)))
        .collect();
    let lost: Vec<_> = expected.iter().filter(|t| !got.contains_key(t)).collect();
    assert!(
        lost.is_empty(),
        "{how}: {} items lost (writer, seq): {:?} ...",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(got.len(), expected.len(), "{how}");
    assert!(reached, "{how}: no reader saw the total:\n{}", all());
    for w in 0..writers {
        let said = ran.of(&format!("writer/{w}"));
        assert!(
            said.len() == 1 && said[0].starts_with(&format!("wrote {count}")),
            "{how}: writer {w}: {said:?}"
        );
        if let Some(t) = said[0].strip_prefix(&format!("wrote {count} (")) {
            waits.timeouts += t
                .strip_suffix(" timeouts)")
                .unwrap()
                .parse::<u32>()
                .unwrap();
        }
    }
    for (reader, keys) in per_reader {
        assert!(
            keys.windows(2).all(|p| p[0].0 < p[1].0),
            "{how}: {reader} got items out of queue order: {keys:?}"
        );
        for w in 0..writers {
            let seqs: Vec<u32> = keys.iter().filter(|k| k.1 == w).map(|k| k.2).collect();
            assert!(
                seqs.windows(2).all(|p| p[0] < p[1]),
                "{how}: {reader} got writer {w}'s items out of order: {seqs:?}"
            );
        }
    }
    waits
}

/// What the readers saw of the queue's rate limiter over one run.
#[derive(Default)]
struct Waits {
    /// The most inserts, samples waiting on it at once.
    inserts: u32,
    samples: u32,
    /// Calls that timed out (and were tried again).
    timeouts: u32,
}

#[test]
fn many_writers_and_readers_on_one_queue_lose_and_duplicate_nothing() {
    // Readers' batch sizes that divide the 2000 items, so the last batch
    // can be drawn whole.
    let batches = ["8", "5", "16", "1"];
    let mut runs: Vec<(Launch, &str)> = Vec::new();
    for i in 0..16 {
        runs.push((Launch::LocalMt, batches[i % 4]));
    }
    for i in 0..10 {
        runs.push((Launch::LocalMp, batches[i % 4]));
    }
    for seed in 1..=6 {
        runs.push((Launch::TestMt(seed), batches[seed as usize % 4]));
    }
    runs.push((Launch::Hosts, "8"));
    let (mut inserts_waiting, mut samples_waiting) = (0, 0);
    for (how, batch) in runs {
        let set = format!("reader.args.batch={batch}");
        let ran = launch_ok(QUEUE, how, &[&set]);
        let waits = check_queue(&ran, 4, 500, &format!("{how:?}, reader batch {batch}"));
        inserts_waiting = inserts_waiting.max(waits.inserts);
        samples_waiting = samples_waiting.max(waits.samples);
    }
    // The queue (64) was full and empty along the way: both sides waited.
    assert!(
        inserts_waiting > 0 && samples_waiting > 0,
        "no run had calls waiting on the rate limiter: inserts {inserts_waiting}, samples {samples_waiting}"
    );
}

// 3. Rate limiters block within the call's deadline.

#[test]
fn a_call_held_by_the_rate_limiter_times_out_and_changes_nothing() {
    let expected = [
        "queue full: true",
        "full insert: timeout",
        "insert withdrawn: true",
        "queue: size 4 inserts 4 samples 0 deletes 0 -> size 4 inserts 4 samples 0 deletes 0",
        "empty sample: timeout",
        "sample withdrawn: true",
        "empty: size 0 inserts 0 samples 0 deletes 0 -> size 0 inserts 0 samples 0 deletes 0",
        "drained the items filled: true",
        // The withdrawn insert did not go in once there was room, nor did
        // the withdrawn sample take the item that came.
        "later queue: size 0 inserts 4 samples 4 deletes 4",
        "later empty: size 1 inserts 1 samples 0 deletes 0",
    ];
    for how in [Launch::LocalMt, Launch::LocalMp, Launch::TestMt(3)] {
        let ran = launch_ok(CALLS, how, &[]);
        assert_eq!(ran.of("probe"), expected, "{how:?}");
    }
}

/// docs/replay.md: a call the rate limiter holds is withdrawn at its
/// deadline having changed nothing, so retrying a timed-out insert never
/// duplicates items (and a timed-out sample takes none). Under load:
/// writers insert through a handle with a 10 ms deadline while slow readers
/// keep the queue full; then readers sample through one while slow writers
/// keep it empty; each tries again what timed out. Several runs of each,
/// to catch a call that is carried out just as its caller gives up.
#[test]
fn calls_that_time_out_under_load_and_are_retried_lose_and_duplicate_nothing() {
    let hasty =
        |who: &str| format!(r#"{who}.args.hasty={{ handle = "replay", timeout_secs = 0.01 }}"#);
    let scenarios = [
        (
            "inserts time out",
            [hasty("writer"), "reader.args.pause_ms=5".to_string()],
        ),
        (
            "samples time out",
            [hasty("reader"), "writer.args.pause_ms=40".to_string()],
        ),
    ];
    let launches = [
        Launch::LocalMt,
        Launch::LocalMt,
        Launch::LocalMt,
        Launch::TestMt(1),
        Launch::TestMt(2),
        Launch::LocalMp,
        Launch::LocalMp,
        Launch::LocalMp,
        Launch::Hosts,
    ];
    for (what, set) in &scenarios {
        let set: Vec<&str> = set.iter().map(String::as_str).collect();
        let mut timeouts = 0;
        for how in launches {
            let ran = launch(QUEUE, how, &set);
            let how = format!("{what}, {how:?}");
            let waits = check_queue(&ran, 4, 500, &how);
            assert!(ran.ok, "{how}: {}", ran.errors);
            timeouts += waits.timeouts;
        }
        assert!(timeouts > 0, "{what}: no call timed out");
    }
}

#[test]
fn calls_waiting_without_a_deadline_hear_stopping_when_the_program_stops() {
    let check = |ran: &Ran, how: &str| {
        assert_eq!(
            ran.of("stopper"),
            ["both wait: stopping the program"],
            "{how}"
        );
        assert_eq!(ran.of("inserter"), ["blocked insert: stopping"], "{how}");
        assert_eq!(ran.of("sampler"), ["blocked sample: stopping"], "{how}");
    };
    // A termination notice of 30 s: had the waiting calls not been
    // answered, the nodes would have been interrupted 30 s after the stop.
    for launch in ["local_mt", "local_mp"] {
        let started = Instant::now();
        let out = lp_host(&[
            "run",
            STOP,
            "--launch",
            launch,
            "--termination-notice-secs",
            "30",
        ]);
        let took = started.elapsed();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{launch}: {stderr}");
        assert!(!stderr.contains("interrupted"), "{launch}: {stderr}");
        assert!(
            took < Duration::from_secs(20),
            "{launch}: the program took {took:?} to end"
        );
        let ran = Ran {
            ok: true,
            lines: stdout.lines().map(str::to_string).collect(),
            errors: stderr,
        };
        check(&ran, launch);
    }
    for seed in 1..=3 {
        let program = TestProgram::new(path(STOP)).cache_dir(path("target/lp-test-cache"));
        let run = program.run_seeded(seed, 0).unwrap();
        run.check().unwrap();
        assert!(run.outcome.interrupted.is_empty(), "{:?}", run.outcome);
        let ran = Ran {
            ok: true,
            lines: run.output,
            errors: String::new(),
        };
        check(&ran, &format!("test_mt seed {seed}"));
    }
}

// 4. Checkpoints across runs.

#[test]
fn a_checkpoint_carries_the_tables_to_the_next_run_and_a_truncated_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let (program, file) = checkpoint_program(dir.path(), r#"checkpoint = { dir = "ckpt/replay" }"#);
    let program = program.as_str();
    let ckpt_dir = dir.path().join("ckpt/replay");

    // Run 1 (local_mp: the replay in a process of its own) fills the
    // tables and asks for a checkpoint.
    let first = launch_ok(program, Launch::LocalMp, &[]);
    let tables = [
        "table items: size 10 inserts 10 samples 3 deletes 0",
        "table prio: size 5 inserts 5 samples 2 deletes 0",
    ];
    let expected: Vec<String> = [
        "keys [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]".to_string(),
        "sampled items [1, 1, 1]".to_string(),
        format!("checkpoint {}", file.display()),
    ]
    .into_iter()
    .chain(tables.iter().map(|t| t.to_string()))
    .collect();
    assert_eq!(first.of("peer"), expected);
    // The directory (made by the replay) and the file are private; no
    // temporary file is left.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ckpt_dir), 0o700, "{}", ckpt_dir.display());
    assert_eq!(mode(&dir.path().join("ckpt")), 0o700);
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    let files: Vec<_> = std::fs::read_dir(&ckpt_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["replay.lpreplay"]);

    // Run 2 (local_mt), restored: the same tables, counters, priorities,
    // times sampled and data.
    let second = launch_ok(program, Launch::LocalMt, &[r#"peer.args.mode="check""#]);
    assert!(
        second
            .of("replay")
            .contains(&format!("restored 10 items of 2 tables from {}", file.display()).as_str()),
        "{:?}",
        second.of("replay")
    );
    let peer = second.of("peer");
    assert_eq!(peer[..2], tables);
    // prio holds items 0, 2, 4, 6, 8 (keys 1, 3, 5, 7, 9) with priority
    // 10 - i, sampled with probability priority / 30; run 1's 2 samples and
    // these 200 between them.
    let mut times = 0;
    for (n, line) in peer[2..7].iter().enumerate() {
        let (i, key) = (2 * n as u32, 2 * n as u32 + 1);
        let priority = 10 - i;
        let head = format!(
            "prio {key} priority {priority} probability {:.4} times ",
            f64::from(priority) / 30.0
        );
        let rest = line
            .strip_prefix(&head)
            .unwrap_or_else(|| panic!("{line:?} is not {head:?}..."));
        times += rest.parse::<u32>().unwrap();
    }
    assert_eq!(times, 202, "{peer:?}");
    // items in FIFO order: item i is key i + 1, priority i + 0.5 but for
    // run 1's updates; key 1 sampled 3 times in run 1.
    let items: Vec<String> = (0..10u32)
        .map(|i| {
            let key = i + 1;
            let priority = match key {
                2 => "7.25".to_string(),
                3 => "0".to_string(),
                _ => format!("{}", f64::from(i) + 0.5),
            };
            let times = if key == 1 { 4 } else { 1 };
            let data = if i.is_multiple_of(2) {
                let bytes: Vec<u8> = (0..=i).map(|b| (b * 3) as u8).collect();
                format!("raw{bytes:?}")
            } else {
                let obs = vec![i as f32 * 0.5, -(i as f32)];
                let frame = vec![i as u8, 255 - i as u8];
                format!("obs[2]=f32{obs:?};frame[1, 2]=u8{frame:?}")
            };
            format!("item {key} priority {priority} times {times} {data}")
        })
        .collect();
    assert_eq!(peer[7..], items);

    // A truncated checkpoint: the replay refuses to start, naming the file.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let third = launch(program, Launch::LocalMt, &[r#"peer.args.mode="check""#]);
    assert!(!third.ok, "{}", third.lines.join("\n"));
    let errors = &third.errors;
    assert!(
        errors.contains(&format!(
            "node replay failed: checkpoint {}",
            file.display()
        )),
        "{errors}"
    );
    assert!(errors.contains("truncated or corrupt"), "{errors}");
    // The refused file is left as it was (no checkpoint at stop over it).
    assert_eq!(std::fs::read(&file).unwrap(), bytes[..bytes.len() / 2]);
    // Nothing was loaded, and no node failed but the replay.
    assert_eq!(errors.matches("failed").count(), 1, "{errors}");
    assert!(
        !third.of("peer").iter().any(|l| l.starts_with("table ")),
        "{:?}",
        third.lines
    );
}

// 5. Type-checked edges.

/// The line and column where `needle` starts in `file`, as `file:L:C: `.
fn place(file: &str, needle: &str) -> String {
    let source = std::fs::read_to_string(path(file)).unwrap();
    let offset = source.find(needle).unwrap();
    let line = source[..offset].matches('\n').count() + 1;
    let column = offset - source[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{file}:{line}:{column}: ")
}

/// The checkpoint program in a temporary directory, with its checkpoint
/// settings `checkpoint` (program.toml's inline table); the program's
/// path and the checkpoint file's.
fn checkpoint_program(dir: &std::path::Path, checkpoint: &str) -> (String, std::path::PathBuf) {
    let program = dir.join("program.toml");
    let source = std::fs::read_to_string(path("tests/programs/replay_checkpoint.toml")).unwrap();
    let peer = path("tests/nodes/replay_peer");
    let source = source
        .replace("../nodes/replay_peer", peer.to_str().unwrap())
        .replace(r#"checkpoint = { dir = "ckpt/replay" }"#, checkpoint);
    std::fs::write(&program, source).unwrap();
    let file = dir.join("ckpt/replay/replay.lpreplay");
    (program.to_str().unwrap().to_string(), file)
}

#[test]
fn checkpoints_are_written_at_stop_and_periodically_as_program_toml_says() {
    let no_ask = ["peer.args.ask_checkpoint=false"];
    // Written off the replay's task, or (seeded) on it.
    for how in [Launch::LocalMt, Launch::LocalMp, Launch::TestMt(3)] {
        // Neither at stop nor periodically: no checkpoint at all.
        let dir = tempfile::tempdir().unwrap();
        let (program, file) = checkpoint_program(
            dir.path(),
            r#"checkpoint = { dir = "ckpt/replay", at_stop = false }"#,
        );
        launch_ok(&program, how, &no_ask);
        assert!(!file.exists(), "{how:?}: a checkpoint nobody asked for");

        // At stop (the default): the tables as the program left them.
        let dir = tempfile::tempdir().unwrap();
        let (program, file) =
            checkpoint_program(dir.path(), r#"checkpoint = { dir = "ckpt/replay" }"#);
        let ran = launch_ok(&program, how, &no_ask);
        assert!(file.exists(), "{how:?}: no checkpoint at stop");
        assert!(
            ran.of("replay")
                .iter()
                .any(|l| l.starts_with("checkpoint (at stop): 10 items of 2 tables")),
            "{how:?}: {:?}",
            ran.of("replay")
        );
        let restored = launch_ok(&program, Launch::LocalMt, &[r#"peer.args.mode="check""#]);
        assert_eq!(
            restored.of("peer")[..2],
            [
                "table items: size 10 inserts 10 samples 3 deletes 0",
                "table prio: size 5 inserts 5 samples 2 deletes 0",
            ],
            "{how:?}"
        );

        // Periodically, not at stop: written while the program runs (the
        // peer lingers 600 ms before it stops; every 100 ms).
        let dir = tempfile::tempdir().unwrap();
        let (program, file) = checkpoint_program(
            dir.path(),
            r#"checkpoint = { dir = "ckpt/replay", every_secs = 0.1, at_stop = false }"#,
        );
        let ran = launch_ok(
            &program,
            how,
            &["peer.args.ask_checkpoint=false", "peer.args.pause_ms=600"],
        );
        assert!(file.exists(), "{how:?}: no periodic checkpoint");
        let periodic = ran
            .of("replay")
            .iter()
            .filter(|l| l.starts_with("checkpoint (periodic):"))
            .count();
        assert!(periodic >= 2, "{how:?}: {:?}", ran.of("replay"));
        assert!(
            !ran.of("replay").iter().any(|l| l.contains("at stop")),
            "{how:?}: {:?}",
            ran.of("replay")
        );
    }
}

#[test]
fn a_replay_handle_given_to_a_client_of_another_service_is_refused_before_launch() {
    // consumer_producers' consumer, its `producers` a replay.
    let program = "tests/programs/replay_mismatch.toml";
    let err = lp_tests::run(program, &[]).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(&place(program, r#"[{ handle = "replay" }]"#)),
        "{message}"
    );
    for says in [
        "node consumer was given a handle to node replay",
        "lp:consumer-producers/producer@0.1.0",
        "replay exports [lp:replay/replay@0.1.0]",
    ] {
        assert!(message.contains(says), "{says:?} missing: {message}");
    }

    // A replay client given a producer.
    let program = "tests/programs/replay_wrong_target.toml";
    let err = lp_tests::run(program, &[]).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(&place(program, r#"{ handle = "producer" }"#)),
        "{message}"
    );
    for says in [
        "node peer was given a handle to node producer",
        "peer calls [lp:replay/replay@0.1.0]",
        "lp:consumer-producers/producer@0.1.0",
    ] {
        assert!(message.contains(says), "{says:?} missing: {message}");
    }
}

// 6. Typed errors.

#[test]
fn refused_calls_reach_the_caller_as_typed_errors_and_change_nothing() {
    for how in [Launch::LocalMt, Launch::LocalMp] {
        let ran = launch_ok(CALLS, how, &[r#"probe.args.mode="errors""#]);
        let probe = ran.of("probe");
        let said = |what: &str| -> &str {
            let head = format!("{what}: ");
            probe
                .iter()
                .find_map(|l| l.strip_prefix(&head))
                .unwrap_or_else(|| panic!("{how:?}: no {what:?} in {probe:?}"))
        };
        for what in [
            "sample nope",
            "insert into nope",
            "update nope",
            "delete nope",
            "reset nope",
        ] {
            assert_eq!(said(what), "no-such-table nope", "{how:?}: {what}");
        }
        for (what, says) in [
            ("insert nan", "priority NaN"),
            ("insert negative", "priority -1"),
            ("insert good then nan", "item 1: priority NaN"),
            ("insert without priorities", "no priorities"),
            ("insert into queue twice", "twice"),
            (
                "insert more than the queue holds",
                "insert at most 4 at once",
            ),
            (
                "sample more than the queue holds",
                "sample at most 4 at once",
            ),
            ("update nan", "priority NaN"),
            ("checkpoint", "no checkpoint directory"),
        ] {
            let error = said(what);
            assert!(
                error.starts_with("invalid: ") && error.contains(says),
                "{how:?}: {what}: {error}"
            );
        }
        assert_eq!(said("unchanged"), "true", "{how:?}");
        assert_eq!(
            said("then insert"),
            "ok size 1 inserts 1 samples 0 deletes 0",
            "{how:?}"
        );
    }
}
