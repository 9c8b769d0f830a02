//! The Rust test API (`lp_host::testing`): programs launched in this
//! process (test_mt) and in worker processes (test_mp), nodes called
//! directly with their `run` disabled, failures surfaced with the node's
//! name, and nothing left running once a run is dropped.

use lp_host::testing::{TestLaunch, TestProgram};
use lp_tests::path;

const LAUNCHES: [TestLaunch; 2] = [TestLaunch::Mt, TestLaunch::Mp];

/// Tests that start worker processes take turns, so that counting this
/// process's worker children counts one run's workers only.
static WORKERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_run_of_workers_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    WORKERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn program(relative: &str) -> TestProgram {
    TestProgram::new(path(relative)).cache_dir(path("target/lp-test-cache"))
}

/// Launchpad's consumer_producers test: the consumer's run disabled, its
/// `step` called 10 times, each step's replies checked.
#[test]
fn consumer_steps_driven_by_the_test() {
    let _turn = one_run_of_workers_at_a_time();
    for launch in LAUNCHES {
        let run = program("examples/consumer_producers/program.toml")
            .set("producer.replicas=3")
            .disable_run("consumer")
            .launch(launch)
            .unwrap();
        let consumer = run.node("consumer").unwrap();
        for step in 0..10u64 {
            let replies: Result<Vec<u64>, String> = consumer.call("step", (step,)).unwrap();
            assert_eq!(replies, Ok(vec![step; 3]), "{launch:?} step {step}");
        }
        // A producer can be called directly too.
        let work: u64 = run
            .node("producer/1")
            .unwrap()
            .call("work", (7u64,))
            .unwrap();
        assert_eq!(work, 7, "{launch:?}");
        // The consumer's run never ran: it logged nothing.
        assert!(run.output("consumer").is_empty(), "{launch:?}");
        run.stop();
        let outcome = run.wait().unwrap();
        assert_eq!(outcome.reason, lp_host::EndReason::Stopped, "{launch:?}");
    }
}

#[test]
fn output_and_errors_name_the_node() {
    let _turn = one_run_of_workers_at_a_time();
    for launch in LAUNCHES {
        let run = program("tests/programs/echo.toml")
            .disable_run("prober")
            .launch(launch)
            .unwrap();
        let faulty = run.node("faulty").unwrap();
        let echoed: String = faulty.call("echo", ("hi",)).unwrap();
        assert_eq!(echoed, "hi");
        // A function nobody exports, a node nobody has: clear errors.
        let e = faulty.call::<u32>("nope", ()).unwrap_err().to_string();
        assert!(e.contains("node faulty exports no function `nope`"), "{e}");
        assert!(
            e.contains("lp:test/faulty@0.1.0.echo"),
            "lists what it exports: {e}"
        );
        let e = run.node("ghost").err().unwrap().to_string();
        assert!(
            e.contains("no node `ghost`") && e.contains("faulty, prober"),
            "{e}"
        );
        // The faulty node's run printed a line (output is per node).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while run.output("faulty").is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(run.output("faulty"), vec!["faulty serving"], "{launch:?}");

        // A trap in the node: the call fails naming it, and so does wait().
        let e = faulty.call::<u32>("boom", ()).unwrap_err().to_string();
        assert!(
            e.starts_with("calling faulty.boom: target trapped"),
            "{launch:?}: {e}"
        );
        let e = run.wait().unwrap_err().to_string();
        assert!(e.contains("node faulty failed"), "{launch:?}: {e}");
    }
}

#[test]
fn a_failure_nobody_checked_fails_the_test_when_the_run_is_dropped() {
    let dropped = std::panic::catch_unwind(|| {
        let run = program("tests/programs/trap_in_run.toml")
            .launch(TestLaunch::Mt)
            .unwrap();
        // Give the trap time to happen; the test never looks at it.
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(run);
    });
    let message = *dropped.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("node faulty failed"), "{message}");
}

/// Worker processes (`lp-host worker`) that are children of this process.
fn worker_children() -> Vec<u32> {
    let me = std::process::id();
    let children =
        std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
    let mut all: Vec<u32> = children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    // Children of any of this process's threads.
    for task in std::fs::read_dir(format!("/proc/{me}/task"))
        .unwrap()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    all.sort();
    all.dedup();
    all.into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("worker"))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn dropping_a_run_ends_every_worker_process() {
    let _turn = one_run_of_workers_at_a_time();
    let run = program("examples/consumer_producers/program.toml")
        .set("producer.replicas=2")
        .disable_run("consumer")
        .launch(TestLaunch::Mp)
        .unwrap();
    // Make sure the workers are up.
    let replies: Result<Vec<u64>, String> =
        run.node("consumer").unwrap().call("step", (1u64,)).unwrap();
    assert_eq!(replies, Ok(vec![1, 1]));
    assert!(worker_children().len() >= 3, "{:?}", worker_children());
    drop(run);
    assert_eq!(worker_children(), Vec::<u32>::new());
}
