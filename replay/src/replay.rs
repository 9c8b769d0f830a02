//! `Replay`: named tables behind one lock, their operations, and waiting on
//! the rate limiters. An insert or sample that its limiter refuses waits
//! on its tables' `Notify` (every change to a table wakes them) and is
//! cancel-safe: dropped while waiting, it has changed nothing.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use rand::rngs::StdRng;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::config::{ConfigError, TableConfig};
use crate::selector;
use crate::table::{Table, check_priority};
use crate::types::{
    Item, NewItem, PriorityUpdate, ReplayError, Request, Response, Sampled, TableInfo,
};

/// The most items one `sample` call may ask for: a bound on what one
/// call holds the lock for and allocates (64 Ki items of 1 KiB: 64 MiB).
pub const MAX_SAMPLE_BATCH: u32 = 1 << 16;

/// A replay node's tables. Share it (`Arc<Replay>`) between the calls.
pub struct Replay {
    pub(crate) state: Mutex<State>,
    pub(crate) configs: Vec<TableConfig>,
    names: HashMap<String, usize>,
    /// One per table: woken on every change to it.
    notify: Vec<Notify>,
    pub(crate) checkpoint_path: Option<PathBuf>,
    /// One checkpoint written at a time (they share `<path>.tmp`).
    pub(crate) checkpoint_lock: Arc<Mutex<()>>,
}

pub(crate) struct State {
    pub tables: Vec<Table>,
    /// The key the next inserted item gets.
    pub next_key: u64,
    pub rng: StdRng,
}

/// An insert, checked and ready to go in.
struct Batch {
    /// Each item's data and how many of `priorities` are its.
    items: Vec<(Item, usize)>,
    /// (table, priority), item after item.
    priorities: Vec<(usize, f64)>,
    /// The tables concerned and how many items each gets.
    tables: Vec<usize>,
    counts: Vec<u64>,
}

#[derive(Clone, Copy)]
enum Op {
    Insert,
    Sample,
}

/// Counts a blocked call in its tables' `waiting_*` while it waits, and
/// uncounts it however the wait ends (also when the future is dropped).
struct Waiting<'a> {
    replay: &'a Replay,
    op: Op,
    counted: Vec<usize>,
}

impl Waiting<'_> {
    fn adjust(&self, state: &mut State, delta: i32) {
        for &t in &self.counted {
            let table = &mut state.tables[t];
            let n = match self.op {
                Op::Insert => &mut table.waiting_inserts,
                Op::Sample => &mut table.waiting_samples,
            };
            *n = n.saturating_add_signed(delta);
        }
    }

    fn count(&mut self, state: &mut State, blocked: Vec<usize>) {
        self.adjust(state, -1);
        self.counted = blocked;
        self.adjust(state, 1);
    }

    fn uncount(&mut self, state: &mut State) {
        self.adjust(state, -1);
        self.counted.clear();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.counted.is_empty() {
            let mut state = self.replay.lock();
            self.uncount(&mut state);
        }
    }
}

impl Replay {
    /// A replay of `tables` (each validated, names distinct), its sampling
    /// and removal drawn from one generator seeded with `seed`.
    pub fn new(tables: Vec<TableConfig>, seed: u64) -> Result<Replay, ConfigError> {
        let mut names = HashMap::new();
        for (i, config) in tables.iter().enumerate() {
            config.validate()?;
            if names.insert(config.name.clone(), i).is_some() {
                return Err(ConfigError {
                    table: config.name.clone(),
                    field: "name",
                    message: format!(
                        "two tables are named {:?}: give every table its own name",
                        config.name
                    ),
                });
            }
        }
        Ok(Replay {
            state: Mutex::new(State {
                tables: tables.iter().cloned().map(Table::new).collect(),
                next_key: 1,
                rng: selector::rng(seed),
            }),
            notify: tables.iter().map(|_| Notify::new()).collect(),
            configs: tables,
            names,
            checkpoint_path: None,
            checkpoint_lock: Arc::new(Mutex::new(())),
        })
    }

    /// Where `Request::Checkpoint` writes.
    pub fn with_checkpoint_path(mut self, path: PathBuf) -> Replay {
        self.checkpoint_path = Some(path);
        self
    }

    pub fn checkpoint_path(&self) -> Option<&std::path::Path> {
        self.checkpoint_path.as_deref()
    }

    /// The tables' configurations, in order.
    pub fn tables(&self) -> &[TableConfig] {
        &self.configs
    }

    /// Serve one request.
    pub async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Insert(items) => Response::Inserted(self.insert(items).await),
            Request::Sample { table, n } => Response::Sampled(self.sample(&table, n).await),
            Request::UpdatePriorities { table, updates } => {
                Response::Updated(self.update_priorities(&table, &updates))
            }
            Request::Delete { table, keys } => Response::Deleted(self.delete(&table, &keys)),
            Request::Reset { table } => Response::Reset(self.reset(&table)),
            Request::Info => Response::Info(self.info()),
            Request::Checkpoint => Response::Checkpointed(match &self.checkpoint_path {
                Some(path) => self
                    .checkpoint(path)
                    .map(|summary| summary.path.display().to_string()),
                None => Err(ReplayError::Invalid(
                    "this replay node has no checkpoint directory: set checkpoint = { dir = \"...\" } on it in program.toml".into(),
                )),
            }),
        }
    }

    /// Insert a batch of items, all at once: waits until every table
    /// concerned admits its share at the same moment. Their keys, in order.
    pub async fn insert(&self, items: Vec<NewItem>) -> Result<Vec<u64>, ReplayError> {
        let batch = self.prepare(items)?;
        if batch.items.is_empty() {
            return Ok(Vec::new());
        }
        let tables = batch.tables.clone();
        let mut batch = Some(batch);
        let keys = self
            .wait_until(Op::Insert, &tables, |state| {
                let b = batch.as_ref().expect("inserted once");
                let admitted = b
                    .tables
                    .iter()
                    .zip(&b.counts)
                    .all(|(&t, &c)| state.tables[t].can_insert(c));
                if !admitted {
                    return Err(b
                        .tables
                        .iter()
                        .zip(&b.counts)
                        .filter(|&(&t, &c)| !state.tables[t].can_insert(c))
                        .map(|(&t, _)| t)
                        .collect());
                }
                Ok(state.insert(batch.take().expect("inserted once")))
            })
            .await;
        Ok(keys)
    }

    /// Draw `n` samples from `table` at once (with replacement, one after
    /// another), waiting until its rate limiter allows all `n`.
    pub async fn sample(&self, table: &str, n: u32) -> Result<Vec<Sampled>, ReplayError> {
        let t = self.table(table)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > MAX_SAMPLE_BATCH {
            return Err(ReplayError::Invalid(format!(
                "sampling {n} items at once is more than one call may take ({MAX_SAMPLE_BATCH}): sample in several calls"
            )));
        }
        let config = &self.configs[t];
        let limits = config.rate_limiter.limits();
        if f64::from(n) > limits.max_diff - limits.min_diff {
            return Err(ReplayError::Invalid(format!(
                "sampling {n} items from table {table:?} at once can never be allowed by its rate limiter {}: sample at most {} at once",
                config.rate_limiter,
                limits.sample_batch_limit()
            )));
        }
        let m = u128::from(config.max_times_sampled);
        if m > 0 && u128::from(n) > u128::from(config.max_size) * m {
            return Err(ReplayError::Invalid(format!(
                "sampling {n} items from table {table:?} at once can never be served: it holds at most {} items, each sampled at most {m} times; sample at most {} at once",
                config.max_size,
                u128::from(config.max_size) * m
            )));
        }
        let n = u64::from(n);
        let samples = self
            .wait_until(Op::Sample, &[t], |state| {
                let State { tables, rng, .. } = state;
                let table = &mut tables[t];
                if !table.can_sample(n) {
                    return Err(vec![t]);
                }
                Ok((0..n).map(|_| table.sample(rng)).collect())
            })
            .await;
        Ok(samples)
    }

    /// Set priorities of items of `table`; keys it does not hold are
    /// ignored. A bad priority refuses the whole call.
    pub fn update_priorities(
        &self,
        table: &str,
        updates: &[PriorityUpdate],
    ) -> Result<(), ReplayError> {
        let t = self.table(table)?;
        for u in updates {
            check_priority(&self.configs[t], u.priority)
                .map_err(|m| ReplayError::Invalid(format!("key {}: {m}", u.key)))?;
        }
        if updates.is_empty() {
            return Ok(());
        }
        {
            let mut state = self.lock();
            let table = &mut state.tables[t];
            for u in updates {
                table.update(u.key, u.priority);
            }
        }
        self.wake(&[t]);
        Ok(())
    }

    /// Remove `keys` from `table`; how many it held. An item's data is
    /// freed when no table holds it.
    pub fn delete(&self, table: &str, keys: &[u64]) -> Result<u64, ReplayError> {
        let t = self.table(table)?;
        let mut removed = Vec::new();
        {
            let mut state = self.lock();
            let table = &mut state.tables[t];
            removed.extend(keys.iter().filter_map(|&k| table.delete(k)));
        }
        // The items are freed here, outside the lock.
        let n = removed.len() as u64;
        drop(removed);
        if n > 0 {
            self.wake(&[t]);
        }
        Ok(n)
    }

    /// Empty `table` and zero its rate limiter's counters.
    pub fn reset(&self, table: &str) -> Result<(), ReplayError> {
        let t = self.table(table)?;
        let old = self.lock().tables[t].reset();
        drop(old);
        self.wake(&[t]);
        Ok(())
    }

    /// Every table's state, in configuration order.
    pub fn info(&self) -> Vec<TableInfo> {
        self.lock().tables.iter().map(Table::info).collect()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock panics on purpose; if something did, the
        // tables are still whole (each change is made before the next).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wake(&self, tables: &[usize]) {
        for &t in tables {
            self.notify[t].notify_waiters();
        }
    }

    pub(crate) fn wake_all(&self) {
        for n in &self.notify {
            n.notify_waiters();
        }
    }

    fn table(&self, name: &str) -> Result<usize, ReplayError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| ReplayError::NoSuchTable(name.to_string()))
    }

    /// Check a batch without the lock: tables, priorities, and that each
    /// table's share can ever be admitted.
    fn prepare(&self, items: Vec<NewItem>) -> Result<Batch, ReplayError> {
        let mut per_table = vec![0u64; self.configs.len()];
        let mut priorities = Vec::with_capacity(items.len());
        let mut prepared = Vec::with_capacity(items.len());
        let mut last = 0;
        for (i, item) in items.into_iter().enumerate() {
            if item.priorities.is_empty() {
                return Err(ReplayError::Invalid(format!(
                    "item {i} has no priorities: give each item a priority in at least one table"
                )));
            }
            let start = priorities.len();
            for p in &item.priorities {
                // Batches mostly go to one table: compare before hashing.
                let t = match self.configs.get(last) {
                    Some(c) if c.name == p.table => last,
                    _ => self.table(&p.table)?,
                };
                last = t;
                if priorities[start..].iter().any(|&(u, _)| u == t) {
                    return Err(ReplayError::Invalid(format!(
                        "item {i} names table {:?} twice: give it one priority per table",
                        p.table
                    )));
                }
                check_priority(&self.configs[t], p.priority)
                    .map_err(|m| ReplayError::Invalid(format!("item {i}: {m}")))?;
                priorities.push((t, p.priority));
                per_table[t] += 1;
            }
            prepared.push((item.data, item.priorities.len()));
        }
        let mut tables = Vec::new();
        let mut counts = Vec::new();
        for (t, &c) in per_table.iter().enumerate().filter(|&(_, &c)| c > 0) {
            let config = &self.configs[t];
            let limits = config.rate_limiter.limits();
            if c as f64 * limits.samples_per_insert > limits.max_diff - limits.min_diff {
                return Err(ReplayError::Invalid(format!(
                    "inserting {c} items into table {:?} at once can never be admitted by its rate limiter {}: insert at most {} at once",
                    config.name,
                    config.rate_limiter,
                    limits.insert_batch_limit()
                )));
            }
            tables.push(t);
            counts.push(c);
        }
        Ok(Batch {
            items: prepared,
            priorities,
            tables,
            counts,
        })
    }

    /// Run `attempt` under the lock until it succeeds, waiting for a change
    /// to `tables` after each refusal (it answers the tables that refused).
    async fn wait_until<R>(
        &self,
        op: Op,
        tables: &[usize],
        mut attempt: impl FnMut(&mut State) -> Result<R, Vec<usize>>,
    ) -> R {
        let mut waiting = Waiting {
            replay: self,
            op,
            counted: Vec::new(),
        };
        // Registered before the check under the lock, so no change between
        // the check and the wait is missed.
        let mut armed: Option<Vec<Pin<Box<Notified<'_>>>>> = None;
        loop {
            {
                let mut state = self.lock();
                match attempt(&mut state) {
                    Ok(done) => {
                        waiting.uncount(&mut state);
                        drop(state);
                        self.wake(tables);
                        return done;
                    }
                    Err(blocked) => {
                        if armed.is_some() {
                            waiting.count(&mut state, blocked);
                        }
                    }
                }
            }
            match armed.take() {
                Some(mut notified) => wait_any(&mut notified).await,
                None => {
                    let mut notified: Vec<_> = tables
                        .iter()
                        .map(|&t| Box::pin(self.notify[t].notified()))
                        .collect();
                    for n in &mut notified {
                        n.as_mut().enable();
                    }
                    armed = Some(notified);
                }
            }
        }
    }
}

impl State {
    /// Insert a batch admitted by every table concerned.
    fn insert(&mut self, batch: Batch) -> Vec<u64> {
        let mut keys = Vec::with_capacity(batch.items.len());
        let mut priorities = batch.priorities.iter();
        for (data, n) in batch.items {
            let key = self.next_key;
            self.next_key += 1;
            // Every table but the last gets a clone of the Arc, the last
            // the Arc itself.
            for _ in 1..n {
                let &(t, p) = priorities.next().expect("counted");
                self.tables[t].insert(key, p, data.clone(), &mut self.rng);
            }
            let &(t, p) = priorities.next().expect("counted");
            self.tables[t].insert(key, p, data, &mut self.rng);
            keys.push(key);
        }
        keys
    }
}

/// Wait until any of `notified` fires.
async fn wait_any(notified: &mut [Pin<Box<Notified<'_>>>]) {
    std::future::poll_fn(|cx| {
        for n in notified.iter_mut() {
            if n.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}
