//! A test node of lp's replay node (tests/tests/replay.rs), through
//! `lp_guest::replay`. Its `mode` arg says what it does; each mode logs
//! what it saw, one line per fact, for the test to parse:
//!
//! - `writer`: inserts `count` raw items into `table` (default `queue`),
//!   `batch + index` at a time; item `seq` of writer `index` is the 8 bytes
//!   `index` (u32 LE) then `seq` (u32 LE); pauses `pause_ms` after each
//!   batch. Logs `wrote N`. Given `hasty` (a handle with a deadline),
//!   inserts through it, sends a batch that timed out again, and logs
//!   `wrote N (T timeouts)`, or `stopped at item S of N (...)` if the
//!   program stopped first.
//! - `reader`: samples `batch` items at a time from `table` (through
//!   `hasty` if given, trying again after a timeout) and logs each batch as
//!   `got KEY:WRITER:SEQ ...` (then pauses `pause_ms`); once the table has
//!   given `total` samples it stops the program; a call answered
//!   `stopping` ends it.
//! - `sampler`: inserts 100 items into `uniform`, samples 20 and logs their
//!   keys (`sampled K K ...`), and stops the program.
//! - `deadline`: through `hasty` (a handle with a short deadline) fills
//!   `queue`, then inserts into it full and samples the empty `empty`, each
//!   of which must time out having changed nothing, not even later.
//! - `blocker` (`op` = `insert` or `sample`): fills `queue` and inserts one
//!   more, or samples `empty`, through a handle without a deadline, and
//!   logs how that call ended (`blocked insert: stopping`).
//! - `stopper`: waits until both blockers wait on the rate limiters, then
//!   stops the program.
//! - `errors`: makes calls the replay must refuse and logs each error; the
//!   tables must be unchanged afterwards.
//! - `fill` / `check`: the checkpoint round trip: `fill` inserts known
//!   items into `items` and `prio`, samples and reprioritises some, asks
//!   for a checkpoint and stops; `check` (a later run, restored from it)
//!   logs the tables, what 200 samples of `prio` show of its items, and
//!   every item of `items`, and stops.

lp_guest::generate!({
    world: "lp:replay-peer/peer-node",
});

use std::time::Duration;

use lp_guest::CallError;
use lp_guest::replay::{Error, ItemData, NewItem, Replay, ReplayError, TableInfo, Tensor};

#[derive(serde::Deserialize)]
struct Args {
    mode: String,
    /// The replay, through a handle without a deadline of its own.
    replay: Replay,
    /// The replay, through a handle with a short deadline (`deadline`).
    hasty: Option<Replay>,
    #[serde(default = "default_table")]
    table: String,
    #[serde(default)]
    count: u32,
    #[serde(default = "default_batch")]
    batch: u32,
    #[serde(default)]
    total: u64,
    #[serde(default)]
    op: String,
    /// A writer's or reader's pause after each batch, in ms (slow readers
    /// keep the writers waiting, slow writers the readers).
    #[serde(default)]
    pause_ms: u64,
    /// Whether `fill` asks for a checkpoint (else it leaves checkpoints to
    /// the replay's own schedule, and pauses `pause_ms` before it stops).
    #[serde(default = "yes")]
    ask_checkpoint: bool,
}

fn yes() -> bool {
    true
}

fn default_table() -> String {
    "queue".to_string()
}

fn default_batch() -> u32 {
    8
}

struct Peer;

impl exports::lp::node::lifecycle::Guest for Peer {
    async fn run() {
        let args: Args = lp_guest::args().expect("replay_peer args");
        match args.mode.as_str() {
            "writer" => writer(&args).await,
            "reader" => reader(&args).await,
            "sampler" => sampler(&args).await,
            "deadline" => deadline(&args).await,
            "blocker" => blocker(&args).await,
            "stopper" => stopper(&args).await,
            "errors" => errors(&args).await,
            "fill" => fill(&args).await,
            "check" => check(&args).await,
            other => panic!("unknown mode {other:?}"),
        }
    }
}

/// How a call ended, in a word or two: `ok`, `timeout`, `stopping`,
/// `no-such-table NAME`, `invalid: WHY`, ...
fn outcome<T>(result: &Result<T, Error>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(Error::Call(CallError::Timeout)) => "timeout".to_string(),
        Err(Error::Call(CallError::Stopping)) => "stopping".to_string(),
        Err(Error::Call(e)) => format!("call error: {e}"),
        Err(Error::Replay(ReplayError::NoSuchTable(t))) => format!("no-such-table {t}"),
        Err(Error::Replay(ReplayError::Invalid(why))) => format!("invalid: {why}"),
        Err(Error::Replay(ReplayError::Checkpoint(why))) => format!("checkpoint: {why}"),
    }
}

fn raw(bytes: Vec<u8>, table: &str) -> NewItem {
    NewItem::new(ItemData::Raw(bytes), &[(table, 1.0)])
}

/// Writer `w`'s item `seq`: `w` then `seq`, u32 LE each.
fn tag(w: u32, seq: u32) -> Vec<u8> {
    let mut bytes = w.to_le_bytes().to_vec();
    bytes.extend(seq.to_le_bytes());
    bytes
}

async fn info(replay: &Replay) -> Vec<TableInfo> {
    replay.info().await.expect("info")
}

async fn table_info(replay: &Replay, name: &str) -> TableInfo {
    info(replay)
        .await
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no table {name} in info()"))
}

/// Pause `pause_ms` (after a writer's or reader's batch).
async fn pause(args: &Args) {
    if args.pause_ms > 0 {
        lp_guest::sleep(Duration::from_millis(args.pause_ms)).await;
    }
}

async fn writer(args: &Args) {
    let w = lp_guest::index();
    let batch = args.batch + w;
    let Some(hasty) = args.hasty else {
        let mut writer = args.replay.writer(batch as usize);
        for seq in 0..args.count {
            writer
                .append(raw(tag(w, seq), &args.table))
                .await
                .unwrap_or_else(|e| panic!("writer {w}: insert of item {seq}: {e}"));
            if writer.pending() == 0 {
                pause(args).await;
            }
        }
        writer
            .flush()
            .await
            .unwrap_or_else(|e| panic!("writer {w}: last insert: {e}"));
        return lp_guest::info!("wrote {}", args.count);
    };
    // Through a handle with a deadline: a batch that times out is sent
    // again, as docs/replay.md says is safe (a timed-out insert changed
    // nothing).
    let mut timeouts = 0;
    for start in (0..args.count).step_by(batch as usize) {
        let end = (start + batch).min(args.count);
        let items: Vec<NewItem> = (start..end)
            .map(|seq| raw(tag(w, seq), &args.table))
            .collect();
        loop {
            match hasty.insert(items.clone()).await {
                Ok(_) => break,
                Err(Error::Call(CallError::Timeout)) => timeouts += 1,
                // The readers stopped the program before this writer was
                // done: they got more than it has left to give.
                Err(e) if e.is_stopping() => {
                    return lp_guest::info!(
                        "stopped at item {start} of {} ({timeouts} timeouts)",
                        args.count
                    );
                }
                Err(e) => panic!("writer {w}: insert of items {start}..{end}: {e}"),
            }
        }
        pause(args).await;
    }
    lp_guest::info!("wrote {} ({timeouts} timeouts)", args.count);
}

async fn reader(args: &Args) {
    let mut got = 0u64;
    // The most calls seen waiting on the queue's rate limiter at once.
    let (mut inserts_waiting, mut samples_waiting) = (0, 0);
    // Through `hasty` (a deadline), a sample that times out is tried again.
    let sampling = args.hasty.unwrap_or(args.replay);
    let mut timeouts = 0;
    let ended = loop {
        let batch = match sampling.sample(&args.table, args.batch).await {
            Ok(batch) => batch,
            // Tried again, unless the table has given its total meanwhile
            // (to other readers, or to a sample that timed out).
            Err(Error::Call(CallError::Timeout)) if args.hasty.is_some() => {
                timeouts += 1;
                match args.replay.info().await {
                    Ok(tables) => {
                        let table = tables.iter().find(|t| t.name == args.table).expect("table");
                        if table.samples >= args.total {
                            lp_guest::stop();
                            break "total reached".to_string();
                        }
                        continue;
                    }
                    Err(e) => break outcome::<()>(&Err(e)),
                }
            }
            Err(e) => break outcome::<()>(&Err(e)),
        };
        let mut line = String::from("got");
        for s in &batch {
            let ItemData::Raw(bytes) = &s.data else {
                panic!("item {} is not raw bytes: {:?}", s.key, s.data);
            };
            let (w, seq) = match bytes.as_slice() {
                [a, b, c, d, e, f, g, h] => (
                    u32::from_le_bytes([*a, *b, *c, *d]),
                    u32::from_le_bytes([*e, *f, *g, *h]),
                ),
                _ => panic!("item {} is not a writer's tag: {bytes:?}", s.key),
            };
            // A queue gives each item once.
            assert_eq!(s.times_sampled, 1, "item {} sampled twice", s.key);
            line.push_str(&format!(" {}:{w}:{seq}", s.key));
        }
        lp_guest::info!("{line}");
        got += batch.len() as u64;
        pause(args).await;
        match args.replay.info().await {
            Ok(tables) => {
                let table = tables.iter().find(|t| t.name == args.table).expect("table");
                inserts_waiting = inserts_waiting.max(table.waiting_inserts);
                samples_waiting = samples_waiting.max(table.waiting_samples);
                if table.samples >= args.total {
                    lp_guest::stop();
                    break "total reached".to_string();
                }
            }
            Err(e) => break outcome::<()>(&Err(e)),
        }
    };
    lp_guest::info!(
        "reader: {got} items, then {ended}; saw up to {inserts_waiting} inserts and {samples_waiting} samples waiting; {timeouts} timeouts"
    );
}

async fn sampler(args: &Args) {
    let items = (0..100u8).map(|i| raw(vec![i], "uniform")).collect();
    args.replay.insert(items).await.expect("insert");
    let keys: Vec<String> = args
        .replay
        .sample("uniform", 20)
        .await
        .expect("sample")
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    lp_guest::info!("sampled {}", keys.join(" "));
    lp_guest::stop();
}

/// Poll `info` (up to 5 s) until `done` holds for `table`; whether it did.
async fn eventually(replay: &Replay, table: &str, done: impl Fn(&TableInfo) -> bool) -> bool {
    for _ in 0..500 {
        if done(&table_info(replay, table).await) {
            return true;
        }
        lp_guest::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The counts `info` gives of a table's contents.
fn counts(t: &TableInfo) -> String {
    format!(
        "size {} inserts {} samples {} deletes {}",
        t.size, t.inserts, t.samples, t.deletes
    )
}

async fn deadline(args: &Args) {
    let hasty = args.hasty.expect("deadline needs a `hasty` handle");
    let replay = &args.replay;
    let size = table_info(replay, "queue").await.max_size;
    let fill: Vec<NewItem> = (0..size as u8).map(|i| raw(vec![i], "queue")).collect();
    let keys = hasty.insert(fill).await.expect("filling the queue");

    let before = table_info(replay, "queue").await;
    lp_guest::info!("queue full: {}", !before.can_insert);
    let full = hasty.insert(vec![raw(vec![99], "queue")]).await;
    lp_guest::info!("full insert: {}", outcome(&full));
    let withdrawn = eventually(replay, "queue", |t| t.waiting_inserts == 0).await;
    lp_guest::info!("insert withdrawn: {withdrawn}");
    let after = table_info(replay, "queue").await;
    lp_guest::info!("queue: {} -> {}", counts(&before), counts(&after));

    let before = table_info(replay, "empty").await;
    let empty = hasty.sample("empty", 1).await;
    lp_guest::info!("empty sample: {}", outcome(&empty));
    let withdrawn = eventually(replay, "empty", |t| t.waiting_samples == 0).await;
    lp_guest::info!("sample withdrawn: {withdrawn}");
    let after = table_info(replay, "empty").await;
    lp_guest::info!("empty: {} -> {}", counts(&before), counts(&after));

    // Withdrawn means gone: once the queue has room and the empty table an
    // item, neither waiting call goes on after all.
    let drained: Vec<u64> = hasty
        .sample("queue", size as u32)
        .await
        .expect("draining the queue")
        .iter()
        .map(|s| s.key)
        .collect();
    lp_guest::info!("drained the items filled: {}", drained == keys);
    hasty
        .insert(vec![raw(vec![7], "empty")])
        .await
        .expect("an item for the empty table");
    lp_guest::sleep(Duration::from_millis(300)).await;
    for name in ["queue", "empty"] {
        lp_guest::info!("later {name}: {}", counts(&table_info(replay, name).await));
    }
    lp_guest::stop();
}

async fn blocker(args: &Args) {
    let replay = &args.replay;
    let result = match args.op.as_str() {
        "insert" => {
            let size = table_info(replay, "queue").await.max_size;
            let fill = (0..size as u8).map(|i| raw(vec![i], "queue")).collect();
            replay.insert(fill).await.expect("filling the queue");
            outcome(&replay.insert(vec![raw(vec![99], "queue")]).await)
        }
        "sample" => outcome(&replay.sample("empty", 1).await),
        other => panic!("unknown op {other:?}"),
    };
    lp_guest::info!("blocked {}: {result}", args.op);
}

async fn stopper(args: &Args) {
    loop {
        let tables = info(&args.replay).await;
        let waiting = |name: &str| {
            let t = tables.iter().find(|t| t.name == name).expect("table");
            t.waiting_inserts + t.waiting_samples
        };
        if waiting("queue") == 1 && waiting("empty") == 1 {
            break;
        }
        lp_guest::sleep(Duration::from_millis(10)).await;
    }
    lp_guest::info!("both wait: stopping the program");
    lp_guest::stop();
}

async fn errors(args: &Args) {
    let replay = &args.replay;
    let before = info(replay).await;
    let with = |priorities: &[(&str, f64)]| NewItem::new(ItemData::Raw(vec![1]), priorities);
    let nan = f64::NAN;
    let results = [
        ("sample nope", outcome(&replay.sample("nope", 1).await)),
        (
            "insert nan",
            outcome(&replay.insert(vec![with(&[("queue", nan)])]).await),
        ),
        (
            "insert negative",
            outcome(&replay.insert(vec![with(&[("queue", -1.0)])]).await),
        ),
        (
            "insert into nope",
            outcome(&replay.insert(vec![with(&[("nope", 1.0)])]).await),
        ),
        (
            "insert good then nan",
            outcome(
                &replay
                    .insert(vec![with(&[("queue", 1.0)]), with(&[("queue", nan)])])
                    .await,
            ),
        ),
        (
            "insert without priorities",
            outcome(&replay.insert(vec![with(&[])]).await),
        ),
        (
            "insert into queue twice",
            outcome(
                &replay
                    .insert(vec![with(&[("queue", 1.0), ("queue", 2.0)])])
                    .await,
            ),
        ),
        (
            "insert more than the queue holds",
            outcome(
                &replay
                    .insert((0..5).map(|_| with(&[("queue", 1.0)])).collect())
                    .await,
            ),
        ),
        (
            "sample more than the queue holds",
            outcome(&replay.sample("queue", 5).await),
        ),
        (
            "update nan",
            outcome(&replay.update_priorities("uniform", &[(1, nan)]).await),
        ),
        (
            "update nope",
            outcome(&replay.update_priorities("nope", &[(1, 1.0)]).await),
        ),
        ("delete nope", outcome(&replay.delete("nope", &[1]).await)),
        ("reset nope", outcome(&replay.reset("nope").await)),
        ("checkpoint", outcome(&replay.checkpoint().await)),
    ];
    for (what, result) in results {
        lp_guest::info!("{what}: {result}");
    }
    lp_guest::info!("unchanged: {}", info(replay).await == before);
    // And the replay still serves.
    let keys = replay.insert(vec![with(&[("queue", 1.0)])]).await;
    lp_guest::info!(
        "then insert: {} {}",
        outcome(&keys),
        counts(&table_info(replay, "queue").await)
    );
    lp_guest::stop();
}

/// Item `i` of the checkpoint test: raw bytes for even `i`, two tensors
/// for odd `i` (tests/tests/replay.rs describes the same).
fn known_item(i: u32) -> ItemData {
    if i.is_multiple_of(2) {
        ItemData::Raw((0..=i).map(|b| (b * 3) as u8).collect())
    } else {
        ItemData::Tensors(vec![
            Tensor::f32("obs", &[2], vec![i as f32 * 0.5, -(i as f32)]),
            Tensor::bytes("frame", &[1, 2], vec![i as u8, 255 - i as u8]),
        ])
    }
}

/// An item's data in one line: `raw[..]`, or `NAME[SHAPE]=[VALUES]`, ...
fn describe(data: &ItemData) -> String {
    match data {
        ItemData::Raw(bytes) => format!("raw{bytes:?}"),
        ItemData::Tensors(tensors) => tensors
            .iter()
            .map(|t| match (t.as_f32(), t.as_bytes()) {
                (Some(v), _) => format!("{}{:?}=f32{v:?}", t.name, t.shape),
                (_, Some(v)) => format!("{}{:?}=u8{v:?}", t.name, t.shape),
                _ => unreachable!("a tensor is f32 or bytes"),
            })
            .collect::<Vec<_>>()
            .join(";"),
    }
}

async fn log_tables(replay: &Replay) {
    for t in info(replay).await {
        lp_guest::info!("table {}: {}", t.name, counts(&t));
    }
}

async fn fill(args: &Args) {
    let replay = &args.replay;
    let items = (0..10)
        .map(|i| {
            let items = f64::from(i) + 0.5;
            let prio = f64::from(10 - i);
            match i % 2 {
                0 => NewItem::new(known_item(i), &[("items", items), ("prio", prio)]),
                _ => NewItem::new(known_item(i), &[("items", items)]),
            }
        })
        .collect();
    let keys = replay.insert(items).await.expect("insert");
    lp_guest::info!("keys {keys:?}");
    // A FIFO sampler that removes nothing gives the oldest item each time.
    let oldest: Vec<u64> = replay
        .sample("items", 3)
        .await
        .expect("sample items")
        .iter()
        .map(|s| s.key)
        .collect();
    lp_guest::info!("sampled items {oldest:?}");
    replay.sample("prio", 2).await.expect("sample prio");
    replay
        .update_priorities("items", &[(2, 7.25), (3, 0.0)])
        .await
        .expect("update");
    if args.ask_checkpoint {
        match replay.checkpoint().await {
            Ok(path) => lp_guest::info!("checkpoint {path}"),
            Err(e) => lp_guest::info!("checkpoint failed: {e}"),
        }
    }
    log_tables(replay).await;
    pause(args).await;
    lp_guest::stop();
}

async fn check(args: &Args) {
    let replay = &args.replay;
    // A replay that failed to restore stops the program: say so, quietly.
    let tables = match replay.info().await {
        Ok(tables) => tables,
        Err(e) => return lp_guest::info!("check: {}", outcome::<()>(&Err(e))),
    };
    for t in tables {
        lp_guest::info!("table {}: {}", t.name, counts(&t));
    }
    // The prioritized table: each item's priority, its probability (p / sum
    // p, exponent 1) and how often it has been sampled, over 200 samples.
    let mut seen = std::collections::BTreeMap::new();
    for s in replay.sample("prio", 200).await.expect("sample prio") {
        let (_, _, times) =
            seen.entry(s.key)
                .or_insert((s.priority, s.probability, s.times_sampled));
        *times = (*times).max(s.times_sampled);
    }
    for (key, (priority, probability, times)) in seen {
        lp_guest::info!(
            "prio {key} priority {priority} probability {probability:.4} times {times}"
        );
    }
    // FIFO: one sample is the oldest item; deleting it shows the next.
    let size = table_info(replay, "items").await.size;
    for _ in 0..size {
        let s = replay
            .sample("items", 1)
            .await
            .expect("sample items")
            .remove(0);
        lp_guest::info!(
            "item {} priority {} times {} {}",
            s.key,
            s.priority,
            s.times_sampled,
            describe(&s.data)
        );
        let deleted = replay.delete("items", &[s.key]).await.expect("delete");
        assert_eq!(deleted, 1, "item {} was not in `items`", s.key);
    }
    lp_guest::stop();
}

export!(Peer);
