//! Deterministic selectors and removal: FIFO, LIFO, min- and max-heap
//! sampling order with ties; each remover evicting the right item when an
//! insert finds the table full; max_times_sampled removing items.

use lp_replay::{PriorityUpdate, RateLimiter, Replay, Selector};

use crate::{finish, item, simple, still_pending, table, take_present};

#[tokio::test]
async fn fifo_lifo_and_heap_samplers_pick_in_order() {
    let replay = Replay::new(
        vec![
            simple("fifo", 10, Selector::Fifo),
            simple("lifo", 10, Selector::Lifo),
            simple("min", 10, Selector::MinHeap),
            simple("max", 10, Selector::MaxHeap),
        ],
        5,
    )
    .unwrap();
    // Priorities in min and max: ties at the lowest (keys 2, 4) and the
    // highest (keys 3, 5).
    let priorities = [3.0, 1.0, 5.0, 1.0, 5.0];
    let items = priorities
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            item(
                i as u64,
                &[("fifo", p), ("lifo", p), ("min", p), ("max", p)],
            )
        })
        .collect();
    let keys = replay.insert(items).await.unwrap();
    assert_eq!(keys, vec![1, 2, 3, 4, 5]);

    let one = |table: &'static str| {
        let replay = &replay;
        async move {
            let s = replay.sample(table, 1).await.unwrap().remove(0);
            assert_eq!(s.probability, 1.0);
            assert_eq!(
                s.table_size,
                replay.info().iter().find(|t| t.name == table).unwrap().size
            );
            s.key
        }
    };
    // Sampling does not remove (max_times_sampled 0): the same item again.
    assert_eq!(one("fifo").await, 1);
    assert_eq!(one("fifo").await, 1);
    assert_eq!(one("lifo").await, 5);
    assert_eq!(one("min").await, 2, "lowest priority, ties to the oldest");
    assert_eq!(one("max").await, 3, "highest priority, ties to the oldest");

    replay.delete("fifo", &[1]).unwrap();
    assert_eq!(one("fifo").await, 2);
    replay.delete("lifo", &[5]).unwrap();
    assert_eq!(one("lifo").await, 4);
    // A new priority moves an item in the heaps.
    let raise = [PriorityUpdate {
        key: 2,
        priority: 9.0,
    }];
    replay.update_priorities("min", &raise).unwrap();
    assert_eq!(one("min").await, 4);
    replay.update_priorities("max", &raise).unwrap();
    assert_eq!(one("max").await, 2);
    let lower = [PriorityUpdate {
        key: 2,
        priority: 0.0,
    }];
    replay.update_priorities("max", &lower).unwrap();
    assert_eq!(one("max").await, 3);
    replay.update_priorities("min", &lower).unwrap();
    assert_eq!(one("min").await, 2);
    // A batch of samples from a heap: all the same item.
    let batch = replay.sample("min", 4).await.unwrap();
    assert!(batch.iter().all(|s| s.key == 2));
    assert_eq!(
        batch.iter().map(|s| s.times_sampled).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
}

/// Insert four items into a table of max_size 3 whose remover is
/// `remover`; which of the first three was evicted.
async fn evicted(remover: Selector, priorities: [f64; 3]) -> u64 {
    let replay = Replay::new(
        vec![table(
            "t",
            3,
            Selector::Uniform,
            remover,
            0,
            RateLimiter::MinSize { min_size: 1 },
        )],
        6,
    )
    .unwrap();
    let mut keys = crate::fill(&replay, "t", &priorities).await;
    keys.extend(crate::fill(&replay, "t", &[1.0]).await);
    let info = &replay.info()[0];
    assert_eq!((info.size, info.inserts, info.deletes), (3, 4, 1));
    let present = take_present(&replay, "t", &keys);
    assert!(present[3], "the new item is in");
    let gone: Vec<u64> = keys
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(gone.len(), 1);
    gone[0]
}

#[tokio::test]
async fn removers_evict_the_right_item() {
    assert_eq!(evicted(Selector::Fifo, [1.0, 1.0, 1.0]).await, 1);
    assert_eq!(evicted(Selector::Lifo, [1.0, 1.0, 1.0]).await, 3);
    assert_eq!(evicted(Selector::MinHeap, [2.0, 1.0, 1.0]).await, 2);
    assert_eq!(evicted(Selector::MinHeap, [0.5, 1.0, 1.0]).await, 1);
    assert_eq!(evicted(Selector::MaxHeap, [3.0, 1.0, 3.0]).await, 1);
    assert_eq!(evicted(Selector::MaxHeap, [3.0, 4.0, 3.0]).await, 2);
    // All the weight on one item: a prioritized remover must take it.
    let prioritized = Selector::Prioritized { exponent: 1.0 };
    assert_eq!(evicted(prioritized.clone(), [0.0, 5.0, 0.0]).await, 2);
    assert_eq!(evicted(prioritized, [0.0, 0.0, 2.0]).await, 3);
}

#[tokio::test]
async fn uniform_and_prioritized_removers_keep_max_size() {
    // Uniform: the table stays at max_size, and the survivors are not
    // simply the newest (which a FIFO eviction would leave).
    let replay = Replay::new(
        vec![table(
            "t",
            10,
            Selector::Uniform,
            Selector::Uniform,
            0,
            RateLimiter::MinSize { min_size: 1 },
        )],
        7,
    )
    .unwrap();
    let keys = crate::fill(&replay, "t", &[1.0; 1000]).await;
    let info = &replay.info()[0];
    assert_eq!((info.size, info.inserts, info.deletes), (10, 1000, 990));
    let present = take_present(&replay, "t", &keys);
    assert_eq!(present.iter().filter(|p| **p).count(), 10);
    assert!(
        present[990..].iter().any(|p| !p),
        "uniform removal looked FIFO"
    );

    // Prioritized (exponent 1): items of priority 0 are never evicted
    // while others have weight.
    let replay = Replay::new(
        vec![table(
            "t",
            10,
            Selector::Uniform,
            Selector::Prioritized { exponent: 1.0 },
            0,
            RateLimiter::MinSize { min_size: 1 },
        )],
        8,
    )
    .unwrap();
    let zeros = crate::fill(&replay, "t", &[0.0; 5]).await;
    crate::fill(&replay, "t", &[1.0; 200]).await;
    let info = &replay.info()[0];
    assert_eq!((info.size, info.inserts, info.deletes), (10, 205, 195));
    assert!(take_present(&replay, "t", &zeros).iter().all(|p| *p));
}

#[tokio::test]
async fn max_times_sampled_removes_the_item() {
    let replay = Replay::new(
        vec![table(
            "t",
            10,
            Selector::Fifo,
            Selector::Fifo,
            3,
            RateLimiter::MinSize { min_size: 1 },
        )],
        9,
    )
    .unwrap();
    let keys = crate::fill(&replay, "t", &[1.0, 1.0]).await;
    let s = replay.sample("t", 1).await.unwrap();
    assert_eq!((s[0].key, s[0].times_sampled), (keys[0], 1));
    // Two more in one call: the item's third sample removes it.
    let s = replay.sample("t", 2).await.unwrap();
    assert_eq!(
        s.iter()
            .map(|s| (s.key, s.times_sampled))
            .collect::<Vec<_>>(),
        vec![(keys[0], 2), (keys[0], 3)]
    );
    let info = &replay.info()[0];
    assert_eq!((info.size, info.samples, info.deletes), (1, 3, 1));
    assert_eq!(replay.delete("t", &[keys[0]]).unwrap(), 0, "already gone");
    // In one call the first item's samples run out and the next is drawn.
    let s = replay.sample("t", 3).await.unwrap();
    assert!(s.iter().all(|s| s.key == keys[1]));
    assert_eq!(replay.info()[0].size, 0);

    // More samples than the items have left waits for more items.
    crate::fill(&replay, "t", &[1.0]).await;
    let wait = replay.sample("t", 5);
    tokio::pin!(wait);
    assert!(still_pending(wait.as_mut()).await);
    assert_eq!(replay.info()[0].waiting_samples, 1);
    crate::fill(&replay, "t", &[1.0]).await;
    let s = finish(wait).await.unwrap();
    assert_eq!(s.len(), 5);
    let info = &replay.info()[0];
    assert_eq!((info.size, info.deletes, info.waiting_samples), (1, 3, 0));
}
