//! Rate limiters block and release: MinSize, SampleToInsertRatio (both
//! ways), Queue (FIFO) and Stack (LIFO); deletes and resets release
//! waiters too; a dropped blocked call changes nothing; batches that could
//! never be admitted are refused.

use lp_replay::{RateLimiter, Replay, ReplayError, Selector};

use crate::{fill, finish, item, simple, still_pending, table};

fn invalid<T: std::fmt::Debug>(r: Result<T, ReplayError>, says: &str) {
    match r {
        Err(ReplayError::Invalid(m)) => assert!(m.contains(says), "{says:?} not in {m:?}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn info(replay: &Replay, name: &str) -> lp_replay::TableInfo {
    replay.info().into_iter().find(|t| t.name == name).unwrap()
}

#[tokio::test]
async fn min_size_blocks_samples_until_the_table_holds_enough() {
    let replay = Replay::new(
        vec![table(
            "t",
            10,
            Selector::Uniform,
            Selector::Fifo,
            0,
            RateLimiter::MinSize { min_size: 3 },
        )],
        10,
    )
    .unwrap();
    fill(&replay, "t", &[1.0, 1.0]).await;
    assert!(!info(&replay, "t").can_sample);
    let wait = replay.sample("t", 2);
    tokio::pin!(wait);
    assert!(still_pending(wait.as_mut()).await);
    assert_eq!(info(&replay, "t").waiting_samples, 1);
    fill(&replay, "t", &[1.0]).await;
    assert_eq!(finish(wait).await.unwrap().len(), 2);
    let t = info(&replay, "t");
    assert!(t.can_sample && t.can_insert);
    assert_eq!(t.waiting_samples, 0);
    // Inserts never wait: the remover makes room.
    fill(&replay, "t", &[1.0; 25]).await;
    assert_eq!(info(&replay, "t").size, 10);
}

#[tokio::test]
async fn sample_to_insert_ratio_blocks_and_releases_both_ways() {
    // spi 2, min 1, error 2: min_diff 0, max_diff 4.
    let replay = Replay::new(
        vec![table(
            "t",
            100,
            Selector::Uniform,
            Selector::Fifo,
            0,
            RateLimiter::SampleToInsertRatio {
                samples_per_insert: 2.0,
                min_size_to_sample: 1,
                error_buffer: 2.0,
            },
        )],
        11,
    )
    .unwrap();
    assert_eq!(
        info(&replay, "t").rate_limiter,
        "sample_to_insert_ratio(spi=2, min_size=1, error_buffer=2)"
    );
    fill(&replay, "t", &[1.0, 1.0]).await;
    // A third insert would put inserts * 2 - samples at 6 > 4.
    let third = replay.insert(vec![item(3, &[("t", 1.0)])]);
    tokio::pin!(third);
    assert!(still_pending(third.as_mut()).await);
    assert!(!info(&replay, "t").can_insert);
    assert_eq!(info(&replay, "t").waiting_inserts, 1);
    // One sample is not enough (6 - 1 > 4), two are.
    replay.sample("t", 1).await.unwrap();
    assert!(still_pending(third.as_mut()).await);
    replay.sample("t", 1).await.unwrap();
    assert_eq!(finish(third).await.unwrap(), vec![3]);
    assert_eq!(info(&replay, "t").waiting_inserts, 0);

    // 3 inserts allow 6 samples; 2 were drawn: 4 more, then samples wait.
    replay.sample("t", 4).await.unwrap();
    let next = replay.sample("t", 1);
    tokio::pin!(next);
    assert!(still_pending(next.as_mut()).await);
    assert!(!info(&replay, "t").can_sample);
    assert_eq!(info(&replay, "t").waiting_samples, 1);
    fill(&replay, "t", &[1.0]).await;
    assert_eq!(finish(next).await.unwrap().len(), 1);
    let t = info(&replay, "t");
    assert_eq!((t.inserts, t.samples, t.waiting_samples), (4, 7, 0));
}

fn queue_or_stack(limiter: RateLimiter, order: Selector) -> Replay {
    Replay::new(vec![table("q", 3, order.clone(), order, 1, limiter)], 12).unwrap()
}

/// A queue or stack of 3: samples wait while it is empty, inserts while
/// it is full; items come out in `order(keys)`.
async fn queue_like(replay: Replay, lifo: bool) {
    // Empty: a sample waits for an insert.
    let wait = replay.sample("q", 1);
    tokio::pin!(wait);
    assert!(still_pending(wait.as_mut()).await);
    let first = fill(&replay, "q", &[1.0]).await;
    assert_eq!(finish(wait).await.unwrap()[0].key, first[0]);

    // Full: an insert waits for a sample.
    let keys = fill(&replay, "q", &[1.0, 1.0, 1.0]).await;
    let fourth = replay.insert(vec![item(4, &[("q", 1.0)])]);
    tokio::pin!(fourth);
    assert!(still_pending(fourth.as_mut()).await);
    assert_eq!(info(&replay, "q").waiting_inserts, 1);
    let out = replay.sample("q", 1).await.unwrap()[0].key;
    let fourth = finish(fourth).await.unwrap()[0];
    let rest: Vec<u64> = replay
        .sample("q", 3)
        .await
        .unwrap()
        .iter()
        .map(|s| s.key)
        .collect();
    if lifo {
        assert_eq!(out, keys[2]);
        assert_eq!(rest, vec![fourth, keys[1], keys[0]]);
    } else {
        assert_eq!(out, keys[0]);
        assert_eq!(rest, vec![keys[1], keys[2], fourth]);
    }
    let t = info(&replay, "q");
    assert_eq!((t.size, t.inserts, t.samples, t.deletes), (0, 5, 5, 5));
    let again = replay.sample("q", 1);
    tokio::pin!(again);
    assert!(still_pending(again.as_mut()).await);
}

#[tokio::test]
async fn queue_is_fifo_and_blocks_both_ways() {
    queue_like(
        queue_or_stack(RateLimiter::Queue { size: 3 }, Selector::Fifo),
        false,
    )
    .await;
}

#[tokio::test]
async fn stack_is_lifo_and_blocks_both_ways() {
    queue_like(
        queue_or_stack(RateLimiter::Stack { size: 3 }, Selector::Lifo),
        true,
    )
    .await;
}

#[tokio::test]
async fn dropped_blocked_calls_change_nothing() {
    // The full queue first and last among the tables: a batch goes in only
    // when every table it names admits it.
    for queue_first in [true, false] {
        let queue = table(
            "q",
            2,
            Selector::Fifo,
            Selector::Fifo,
            1,
            RateLimiter::Queue { size: 2 },
        );
        let log = simple("log", 10, Selector::Uniform);
        let tables = if queue_first {
            vec![queue, log]
        } else {
            vec![log, queue]
        };
        let replay = Replay::new(tables, 13).unwrap();
        fill(&replay, "q", &[1.0, 1.0]).await;
        let before = replay.info();
        for names in [[("log", 1.0), ("q", 1.0)], [("q", 1.0), ("log", 1.0)]] {
            // "log" would admit it, "q" is full.
            let blocked = replay.insert(vec![item(9, &names)]);
            tokio::pin!(blocked);
            assert!(still_pending(blocked.as_mut()).await);
            assert_eq!(info(&replay, "q").waiting_inserts, 1);
            assert_eq!(info(&replay, "log").waiting_inserts, 0);
        }
        {
            let blocked = replay.sample("log", 1);
            tokio::pin!(blocked);
            assert!(still_pending(blocked.as_mut()).await);
            assert_eq!(info(&replay, "log").waiting_samples, 1);
        }
        // Dropped: nothing inserted anywhere, no key used, no call counted.
        assert_eq!(replay.info(), before);
        assert_eq!(info(&replay, "log").size, 0);
        assert_eq!(
            fill(&replay, "log", &[1.0]).await,
            vec![3],
            "the dropped insert used no key"
        );
    }
}

#[tokio::test]
async fn delete_and_reset_release_waiters() {
    // spi 1, min 3, error 1: inserts are free while the table holds at
    // most 3 after them, then limited by inserts - samples <= 4.
    let replay = Replay::new(
        vec![table(
            "t",
            100,
            Selector::Uniform,
            Selector::Fifo,
            0,
            RateLimiter::SampleToInsertRatio {
                samples_per_insert: 1.0,
                min_size_to_sample: 3,
                error_buffer: 1.0,
            },
        )],
        14,
    )
    .unwrap();
    // One at a time: a batch of 4 is more than error_buffer allows.
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.extend(fill(&replay, "t", &[1.0]).await);
    }
    let fifth = replay.insert(vec![item(5, &[("t", 1.0)])]);
    tokio::pin!(fifth);
    assert!(still_pending(fifth.as_mut()).await);
    // Two deletes bring the table to 2: the insert is free again.
    assert_eq!(replay.delete("t", &keys[..2]).unwrap(), 2);
    finish(fifth).await.unwrap();
    let t = info(&replay, "t");
    assert_eq!((t.size, t.inserts, t.deletes), (3, 5, 2));

    // A queue: full, an insert waits; reset empties it and lets it in.
    let replay = queue_or_stack(RateLimiter::Queue { size: 3 }, Selector::Fifo);
    fill(&replay, "q", &[1.0; 3]).await;
    let blocked = replay.insert(vec![item(4, &[("q", 1.0)])]);
    tokio::pin!(blocked);
    assert!(still_pending(blocked.as_mut()).await);
    replay.reset("q").unwrap();
    assert_eq!(
        finish(blocked).await.unwrap(),
        vec![4],
        "keys are not reused"
    );
    let t = info(&replay, "q");
    assert_eq!((t.size, t.inserts, t.samples, t.deletes), (1, 1, 0, 0));
}

#[tokio::test]
async fn batches_that_can_never_be_admitted_are_refused() {
    let replay = Replay::new(
        vec![
            table(
                "q",
                3,
                Selector::Fifo,
                Selector::Fifo,
                1,
                RateLimiter::Queue { size: 3 },
            ),
            table(
                "ratio",
                100,
                Selector::Uniform,
                Selector::Fifo,
                0,
                RateLimiter::SampleToInsertRatio {
                    samples_per_insert: 1.0,
                    min_size_to_sample: 10,
                    error_buffer: 2.0,
                },
            ),
            table(
                "few",
                2,
                Selector::Uniform,
                Selector::Fifo,
                3,
                RateLimiter::MinSize { min_size: 1 },
            ),
        ],
        15,
    )
    .unwrap();
    let four: Vec<_> = (0..4).map(|i| item(i, &[("q", 1.0)])).collect();
    invalid(replay.insert(four).await, "insert at most 3 at once");
    invalid(replay.sample("q", 4).await, "sample at most 3 at once");
    // max_diff - min_diff = 2 * error_buffer = 4.
    let five: Vec<_> = (0..5).map(|i| item(i, &[("ratio", 1.0)])).collect();
    invalid(replay.insert(five).await, "insert at most 4 at once");
    invalid(replay.sample("ratio", 5).await, "sample at most 4 at once");
    // 2 items sampled at most 3 times each.
    invalid(replay.sample("few", 7).await, "sample at most 6 at once");
    // No call takes more than MAX_SAMPLE_BATCH, whatever the table allows.
    invalid(
        replay.sample("few", lp_replay::MAX_SAMPLE_BATCH + 1).await,
        "sample in several calls",
    );
    // Nothing was inserted, no key used.
    assert!(replay.info().iter().all(|t| t.inserts == 0));
    assert_eq!(fill(&replay, "q", &[1.0, 1.0, 1.0]).await, vec![1, 2, 3]);
    // n == 0 answers at once, even from an empty-for-the-limiter table.
    assert!(replay.sample("ratio", 0).await.unwrap().is_empty());
}
