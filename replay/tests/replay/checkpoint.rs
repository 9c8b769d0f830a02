//! Checkpoints: a round trip keeps tables, priorities, times_sampled,
//! counters, the next key and shared items; truncated, corrupt, foreign
//! and empty files are refused with a message naming the file and the
//! replay left as it was; the file is 0600; a file whose tables do not
//! match the configured ones is refused, saying which.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lp_replay::{
    CHECKPOINT_MAGIC, ItemData, NewItem, PriorityUpdate, RateLimiter, Replay, ReplayError,
    Selector, TableConfig, TablePriority, Tensor, TensorData,
};
use sha2::{Digest, Sha256};

use crate::{item, simple, table};

fn configs() -> Vec<TableConfig> {
    vec![
        simple("prio", 100, Selector::Prioritized { exponent: 0.8 }),
        table(
            "fifo",
            5,
            Selector::Fifo,
            Selector::Fifo,
            3,
            RateLimiter::MinSize { min_size: 1 },
        ),
        table(
            "heap",
            50,
            Selector::MaxHeap,
            Selector::MinHeap,
            0,
            RateLimiter::SampleToInsertRatio {
                samples_per_insert: 2.0,
                min_size_to_sample: 2,
                error_buffer: 40.0,
            },
        ),
    ]
}

fn tensors(i: u64) -> NewItem {
    NewItem {
        data: ItemData::Tensors(vec![
            Tensor {
                name: "obs".into(),
                shape: vec![2, 2],
                data: TensorData::F32(vec![i as f32, 0.5, -1.0, f32::MAX]),
            },
            Tensor {
                name: "raw".into(),
                shape: vec![3],
                data: TensorData::Bytes(vec![i as u8, 1, 2]),
            },
        ])
        .into(),
        priorities: vec![
            TablePriority {
                table: "prio".into(),
                priority: 1.5,
            },
            TablePriority {
                table: "heap".into(),
                priority: i as f64,
            },
        ],
    }
}

/// A replay whose tables hold shared items, sampled items, evictions,
/// deletes and updated priorities.
async fn populated(seed: u64, salt: u64) -> Replay {
    let replay = Replay::new(configs(), seed).unwrap();
    let mut items = Vec::new();
    for i in 0..12 {
        let p = (i * 7 + salt) as f64 % 5.0;
        items.push(match i % 3 {
            0 => item(i, &[("prio", p), ("heap", p + 1.0)]),
            1 => item(i, &[("fifo", 1.0), ("prio", p), ("heap", 2.0)]),
            _ => tensors(i),
        });
    }
    let keys = replay.insert(items).await.unwrap();
    let fifo_only: Vec<_> = (0..4).map(|i| item(100 + i, &[("fifo", 1.0)])).collect();
    replay.insert(fifo_only).await.unwrap();
    replay.sample("prio", 7).await.unwrap();
    replay.sample("fifo", 4).await.unwrap();
    replay.sample("heap", 3).await.unwrap();
    replay
        .update_priorities(
            "prio",
            &[PriorityUpdate {
                key: keys[3],
                priority: 9.25,
            }],
        )
        .unwrap();
    replay.delete("heap", &[keys[4], keys[5]]).unwrap();
    replay
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn round_trip_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.ckpt");
    let original = populated(1, 0).await;
    let info = original.info();
    assert!(info.iter().all(|t| t.inserts > 0 && t.samples > 0));
    assert!(info[1].deletes > 0, "fifo evicted or sampled out");

    let written = original.checkpoint(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(!dir.path().join("replay.ckpt.tmp").exists());
    assert_eq!(written.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(written.tables, 3);
    // The 12 items of prio (heap and fifo hold some of them too; the two
    // deleted from heap are still in prio) and the 4 fifo-only ones.
    assert_eq!(written.items, 16);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"lp-replay checkpoint 1\n"));

    // Into a replay that has other contents: replaced.
    let restored = populated(2, 3).await;
    let other = dir.path().join("other.ckpt");
    restored.checkpoint(&other).unwrap();
    assert_ne!(std::fs::read(&other).unwrap(), bytes);
    let read = restored.restore(&path).unwrap();
    assert_eq!(read, written);
    assert_eq!(restored.info(), info);
    // Written again: the same bytes (items, priorities, times_sampled,
    // counters, next key, positions).
    let again = dir.path().join("again.ckpt");
    restored.checkpoint(&again).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), bytes);

    // The next key goes on where the original's does (no reuse).
    let next = original
        .insert(vec![item(1, &[("prio", 1.0)])])
        .await
        .unwrap();
    let next_restored = restored
        .insert(vec![item(1, &[("prio", 1.0)])])
        .await
        .unwrap();
    assert_eq!(next, next_restored);
    // A fresh replay restored from the file continues its keys.
    let fresh = Replay::new(configs(), 6).unwrap();
    fresh.restore(&path).unwrap();
    let key = fresh.insert(vec![item(1, &[("prio", 1.0)])]).await.unwrap();
    assert_eq!(key, next);
    // A replay that had issued more keys than the file's keeps counting
    // from its own: keys are never reused.
    let ahead = Replay::new(configs(), 4).unwrap();
    let items: Vec<_> = (0..30).map(|i| item(i, &[("prio", 1.0)])).collect();
    ahead.insert(items).await.unwrap();
    ahead.restore(&path).unwrap();
    assert_eq!(ahead.info(), info);
    let after = ahead.insert(vec![item(1, &[("prio", 1.0)])]).await.unwrap();
    assert_eq!(after, vec![31]);
    // FIFO order and times_sampled carried over.
    let a = original.sample("fifo", 3).await.unwrap();
    let b = restored.sample("fifo", 3).await.unwrap();
    let view = |s: &[lp_replay::Sampled]| {
        s.iter()
            .map(|s| (s.key, s.times_sampled, s.priority, s.data.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&a), view(&b));
    // Shared items are still shared: the heap's top item, found in prio.
    let top = restored.sample("heap", 1).await.unwrap().remove(0);
    let from_prio = restored.sample("prio", 5000).await.unwrap();
    let same = from_prio
        .iter()
        .find(|s| s.key == top.key)
        .expect("the heap's top item is in prio too");
    assert!(lp_replay::Item::ptr_eq(&same.data, &top.data));
}

/// What a replay holds, as bytes of its checkpoint, and its info.
fn state(replay: &Replay, dir: &Path) -> (Vec<u8>, Vec<lp_replay::TableInfo>) {
    let path = dir.join("state.ckpt");
    replay.checkpoint(&path).unwrap();
    (std::fs::read(&path).unwrap(), replay.info())
}

fn refused(replay: &Replay, path: &Path, says: &[&str]) {
    match replay.restore(path) {
        Err(ReplayError::Checkpoint(m)) => {
            assert!(m.contains(&path.display().to_string()), "no path in: {m}");
            for s in says {
                assert!(m.contains(s), "{s:?} not in: {m}");
            }
        }
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

/// A file with a good magic, length and hash around `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut file = CHECKPOINT_MAGIC.to_vec();
    file.extend_from_slice(body);
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(&Sha256::digest(body));
    file
}

#[tokio::test]
async fn bad_files_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.ckpt");
    populated(1, 0).await.checkpoint(&good_path).unwrap();
    let good = std::fs::read(&good_path).unwrap();
    let magic = CHECKPOINT_MAGIC.len();

    let target = populated(5, 2).await;
    let before = state(&target, dir.path());

    let mut flipped_body = good.clone();
    flipped_body[magic + (good.len() - magic) / 2] ^= 0x40;
    let mut flipped_hash = good.clone();
    *flipped_hash.last_mut().unwrap() ^= 1;
    let mut flipped_len = good.clone();
    flipped_len[good.len() - 40] ^= 1;
    let mut longer = good.clone();
    longer.push(0);
    let mut other_version = b"lp-replay checkpoint 2\n".to_vec();
    other_version.extend_from_slice(&good[magic..]);
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty", Vec::new(), &["truncated"]),
        ("magic only", CHECKPOINT_MAGIC.to_vec(), &["truncated"]),
        (
            "first half",
            good[..good.len() / 2].to_vec(),
            &["truncated"],
        ),
        (
            "no trailer",
            good[..good.len() - 40].to_vec(),
            &["truncated"],
        ),
        (
            "last byte cut",
            good[..good.len() - 1].to_vec(),
            &["truncated"],
        ),
        ("flipped body byte", flipped_body, &["corrupt", "SHA-256"]),
        ("flipped hash byte", flipped_hash, &["corrupt"]),
        ("flipped length byte", flipped_len, &["corrupt"]),
        ("a byte appended", longer, &["corrupt"]),
        (
            "wrong magic",
            b"PK\x03\x04 some zip file, long enough to have a trailer...........".to_vec(),
            &["not an lp-replay checkpoint"],
        ),
        ("other version", other_version, &["another format"]),
        (
            "undecodable body",
            framed(&[0xff; 64]),
            &["corrupt", "does not decode"],
        ),
    ];
    for (name, bytes, says) in cases {
        let path = dir.path().join(format!("{}.ckpt", name.replace(' ', "_")));
        std::fs::write(&path, &bytes).unwrap();
        refused(&target, &path, says);
        assert_eq!(
            state(&target, dir.path()),
            before,
            "{name} changed the replay"
        );
    }
    let missing = dir.path().join("missing.ckpt");
    refused(&target, &missing, &["could not read"]);
    // After all that, the good file still restores.
    target.restore(&good_path).unwrap();
    assert_ne!(state(&target, dir.path()), before);
}

#[tokio::test]
async fn mismatched_tables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.ckpt");
    let original = populated(1, 0).await;
    original.checkpoint(&path).unwrap();

    let with = |change: &dyn Fn(&mut Vec<TableConfig>)| {
        let mut configs = configs();
        change(&mut configs);
        Replay::new(configs, 9).unwrap()
    };
    let check = |replay: Replay, says: &[&str]| {
        let before = replay.info();
        refused(&replay, &path, says);
        assert_eq!(replay.info(), before);
    };
    check(
        with(&|c| c[0].sampler = Selector::Uniform),
        &["\"prio\"", "sampler prioritized", "sampler is now uniform"],
    );
    check(
        with(&|c| c[2].remover = Selector::Fifo),
        &["\"heap\"", "remover min_heap", "remover is now fifo"],
    );
    check(
        with(&|c| {
            c.remove(1);
        }),
        &["\"fifo\"", "does not have"],
    );
    check(
        with(&|c| c[0].max_size = 3),
        &["\"prio\"", "more than its max_size 3"],
    );
    check(
        with(&|c| c[1].max_times_sampled = 1),
        &["\"fifo\"", "max_times_sampled is now 1"],
    );

    // Other exponents and a larger max_size are fine; a configured table
    // the file lacks starts empty.
    let grown = with(&|c| {
        c[0].sampler = Selector::Prioritized { exponent: 0.3 };
        c[1].max_size = 500;
        c.push(simple("new", 10, Selector::Uniform));
    });
    grown.insert(vec![item(1, &[("new", 1.0)])]).await.unwrap();
    let summary = grown.restore(&path).unwrap();
    assert_eq!(summary.tables, 3);
    let info = grown.info();
    let want = original.info();
    assert_eq!(info[0].size, want[0].size);
    assert_eq!(info[1].size, want[1].size);
    assert_eq!(info[0].sampler, "prioritized(exponent=0.3)");
    assert_eq!(
        (info[3].name.as_str(), info[3].size, info[3].inserts),
        ("new", 0, 0)
    );
}

#[tokio::test]
async fn checkpoint_replaces_the_file_and_a_stale_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.ckpt");
    let tmp = dir.path().join("replay.ckpt.tmp");
    std::fs::write(&tmp, b"left over").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    let replay = populated(1, 0).await;
    replay.checkpoint(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(!tmp.exists());
    replay.reset("prio").unwrap();
    let second = replay.checkpoint(&path).unwrap();
    assert_eq!(second.bytes, std::fs::metadata(&path).unwrap().len());
    let fresh = Replay::new(configs(), 3).unwrap();
    fresh.restore(&path).unwrap();
    assert_eq!(fresh.info()[0].size, 0);
    assert_eq!(fresh.info(), replay.info());
    // A directory that does not exist: a checkpoint error naming the path.
    let nowhere = dir.path().join("no/such/dir/replay.ckpt");
    match replay.checkpoint(&nowhere) {
        Err(ReplayError::Checkpoint(m)) => {
            assert!(m.contains(&nowhere.display().to_string()), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_snapshot_is_written_as_it_was_taken_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.lpreplay");
    let replay = Replay::new(vec![simple("t", 100, Selector::Fifo)], 3).unwrap();
    let items: Vec<_> = (0..3).map(|i| item(i, &[("t", 1.0)])).collect();
    replay.insert(items).await.unwrap();
    let snapshot = replay.snapshot();
    // Changes after the snapshot are not in it.
    replay.insert(vec![item(9, &[("t", 1.0)])]).await.unwrap();
    let to = path.clone();
    let summary = std::thread::spawn(move || snapshot.write(&to))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!((summary.tables, summary.items), (1, 3));
    let restored = Replay::new(vec![simple("t", 100, Selector::Fifo)], 3).unwrap();
    restored.restore(&path).unwrap();
    let info = &restored.info()[0];
    assert_eq!((info.size, info.inserts), (3, 3));
    // Keys issued after the snapshot are not reused by the replay that
    // went on, and the restored one continues after the snapshot's.
    assert_eq!(
        restored.insert(vec![item(5, &[("t", 1.0)])]).await.unwrap(),
        vec![4]
    );
}

#[tokio::test]
async fn the_checkpoint_waiter_returns_once_a_write_in_progress_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.lpreplay");
    let replay = Replay::new(vec![simple("t", 100_000, Selector::Fifo)], 3).unwrap();
    let items: Vec<_> = (0..20_000).map(|i| item(i, &[("t", 1.0)])).collect();
    replay.insert(items).await.unwrap();
    let snapshot = replay.snapshot();
    let to = path.clone();
    let writer = std::thread::spawn(move || snapshot.write(&to));
    // Wait until the write has begun (its temporary file exists) or ended.
    let tmp = dir.path().join("big.lpreplay.tmp");
    while !tmp.exists() && !path.exists() {
        std::thread::yield_now();
    }
    replay.checkpoint_waiter()();
    // Once the waiter returns, the file is whole and nothing is half-written.
    assert!(path.exists(), "the checkpoint is not there yet");
    assert!(!tmp.exists(), "a partial file is left");
    writer.join().unwrap().unwrap();
    let restored = Replay::new(vec![simple("t", 100_000, Selector::Fifo)], 3).unwrap();
    assert_eq!(restored.restore(&path).unwrap().items, 20_000);
}
