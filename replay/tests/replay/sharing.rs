//! Items in several tables: stored once (the same buffer from each table),
//! with a priority and times_sampled per table; deleting from one table
//! keeps the item in the other; freed when no table holds it.

use lp_replay::{Item, Replay, Selector};

use crate::{item, simple, tag};

#[tokio::test]
async fn an_item_in_two_tables_is_stored_once() {
    let replay = Replay::new(
        vec![
            simple("a", 10, Selector::Fifo),
            simple("b", 10, Selector::Fifo),
        ],
        16,
    )
    .unwrap();
    let keys = replay
        .insert(vec![
            item(7, &[("a", 1.0), ("b", 2.0)]),
            item(8, &[("b", 3.0)]),
        ])
        .await
        .unwrap();
    let a = replay.sample("a", 1).await.unwrap().remove(0);
    let b = replay.sample("b", 2).await.unwrap().remove(1);
    assert_eq!((a.key, b.key), (keys[0], keys[0]));
    assert!(Item::ptr_eq(&a.data, &b.data), "stored twice");
    assert_eq!(tag(&a.data), 7);
    // Per table: priority and times sampled.
    assert_eq!((a.priority, a.times_sampled), (1.0, 1));
    assert_eq!((b.priority, b.times_sampled), (2.0, 2));
    let info = replay.info();
    assert_eq!((info[0].size, info[1].size), (1, 2));

    let kept = a.data.clone();
    drop((a, b));
    assert_eq!(replay.delete("a", &[keys[0]]).unwrap(), 1);
    let b = replay.sample("b", 1).await.unwrap().remove(0);
    assert_eq!(b.key, keys[0]);
    assert!(Item::ptr_eq(&b.data, &kept));
    drop(b);
    assert_eq!(kept.holders(), 2, "held by table b and by `kept`");
    assert_eq!(replay.delete("b", &[keys[0]]).unwrap(), 1);
    assert_eq!(kept.holders(), 1, "the item outlived its tables");
    let info = replay.info();
    assert_eq!((info[0].size, info[1].size), (0, 1));
}
