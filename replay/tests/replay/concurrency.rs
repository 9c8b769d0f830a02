//! Concurrency: 8 inserting and 8 sampling tasks on a multi-thread runtime
//! through one small queue; every key comes out exactly once, with its own
//! data, in FIFO order per sampler. Repeated to give races a chance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lp_replay::{RateLimiter, Replay, Selector};
use tokio::task::JoinSet;

use crate::{item, table, tag};

const TASKS: u64 = 8;
const PER_TASK: u64 = 1000;
const ROUNDS: u64 = 60;
/// Inserts come in batches of up to 3, samples of up to 4: a queue of 6
/// always lets one side go (with less, all could wait on each other).
const QUEUE: u64 = 6;

/// What a task brings back: (key, tag) pairs.
enum Done {
    Inserted(Vec<(u64, u64)>),
    Sampled(Vec<(u64, u64)>),
}

#[test]
fn a_queue_hands_every_item_to_exactly_one_sampler() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    for round in 0..ROUNDS {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), one_round(round))
                .await
                .expect("a round hung: an item or a wake-up was lost")
        });
    }
}

async fn one_round(round: u64) {
    let replay = Arc::new(
        Replay::new(
            vec![table(
                "q",
                QUEUE,
                Selector::Fifo,
                Selector::Fifo,
                1,
                RateLimiter::Queue { size: QUEUE },
            )],
            round,
        )
        .unwrap(),
    );
    // Both kinds in one set, collected as they finish: a task that fails
    // fails the test at once (the others may then wait forever).
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let replay = Arc::clone(&replay);
        tasks.spawn(async move {
            let mut inserted = Vec::new();
            let mut seq = 0;
            while seq < PER_TASK {
                let n = (1 + (seq + task) % 3).min(PER_TASK - seq);
                let items = (seq..seq + n)
                    .map(|s| item(task << 32 | s, &[("q", 1.0)]))
                    .collect();
                let keys = replay.insert(items).await.unwrap();
                inserted.extend(keys.into_iter().zip((seq..seq + n).map(|s| task << 32 | s)));
                seq += n;
            }
            Done::Inserted(inserted)
        });
    }
    for task in 0..TASKS {
        let replay = Arc::clone(&replay);
        tasks.spawn(async move {
            let mut got = Vec::new();
            let mut left = PER_TASK;
            let mut i = task;
            while left > 0 {
                let n = (1 + i % 4).min(left) as u32;
                i += 1;
                let samples = replay.sample("q", n).await.unwrap();
                assert_eq!(samples.len(), n as usize);
                got.extend(samples.iter().map(|s| (s.key, tag(&s.data))));
                left -= u64::from(n);
            }
            Done::Sampled(got)
        });
    }
    let mut tags: HashMap<u64, u64> = HashMap::new();
    let mut seen: HashMap<u64, u64> = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        match done.expect("a task failed") {
            Done::Inserted(inserted) => {
                assert!(inserted.windows(2).all(|w| w[0].0 < w[1].0));
                for (key, t) in inserted {
                    assert!(tags.insert(key, t).is_none(), "key {key} given twice");
                }
            }
            Done::Sampled(got) => {
                assert!(
                    got.windows(2).all(|w| w[0].0 < w[1].0),
                    "a sampler got keys out of FIFO order"
                );
                for (key, t) in got {
                    assert!(seen.insert(key, t).is_none(), "key {key} sampled twice");
                }
            }
        }
    }
    assert_eq!(tags.len() as u64, TASKS * PER_TASK);
    assert_eq!(seen, tags, "sampled items differ from the inserted ones");
    let info = &replay.info()[0];
    assert_eq!(
        (
            info.size,
            info.inserts,
            info.samples,
            info.deletes,
            info.waiting_inserts,
            info.waiting_samples
        ),
        (
            0,
            TASKS * PER_TASK,
            TASKS * PER_TASK,
            TASKS * PER_TASK,
            0,
            0
        )
    );
}
