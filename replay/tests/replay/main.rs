//! lp-replay's behaviour through its public API: sampling distributions,
//! selector orders, removal, rate limiters blocking and releasing,
//! concurrency, shared items, checkpoints, validation. One test binary;
//! helpers here, the tests in the modules.

mod api;
mod checkpoint;
mod concurrency;
mod distribution;
mod limiter;
mod order;
mod sharing;
mod validation;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lp_replay::{ItemData, NewItem, RateLimiter, Replay, Selector, TableConfig, TablePriority};

/// A table config.
pub fn table(
    name: &str,
    max_size: u64,
    sampler: Selector,
    remover: Selector,
    max_times_sampled: u32,
    rate_limiter: RateLimiter,
) -> TableConfig {
    TableConfig {
        name: name.into(),
        max_size,
        sampler,
        remover,
        max_times_sampled,
        rate_limiter,
    }
}

/// A table of `sampler`, FIFO remover, no sampling limit, min size 1.
pub fn simple(name: &str, max_size: u64, sampler: Selector) -> TableConfig {
    table(
        name,
        max_size,
        sampler,
        Selector::Fifo,
        0,
        RateLimiter::MinSize { min_size: 1 },
    )
}

/// An item holding `tag` (8 bytes), with a priority in each of `tables`.
pub fn item(tag: u64, tables: &[(&str, f64)]) -> NewItem {
    NewItem {
        data: ItemData::Raw(tag.to_le_bytes().to_vec()).into(),
        priorities: tables
            .iter()
            .map(|&(table, priority)| TablePriority {
                table: table.into(),
                priority,
            })
            .collect(),
    }
}

/// The tag `item` put in.
pub fn tag(data: &lp_replay::Item) -> u64 {
    match data.decode().expect("an item decodes") {
        ItemData::Raw(b) => u64::from_le_bytes(b[..8].try_into().unwrap()),
        other => panic!("not a tagged item: {other:?}"),
    }
}

/// Insert one item per priority into `table`; their keys.
pub async fn fill(replay: &Replay, table: &str, priorities: &[f64]) -> Vec<u64> {
    let items = priorities
        .iter()
        .enumerate()
        .map(|(i, &p)| item(i as u64, &[(table, p)]))
        .collect();
    replay.insert(items).await.unwrap()
}

/// Whether `table` holds each key (finds out by deleting them).
pub fn take_present(replay: &Replay, table: &str, keys: &[u64]) -> Vec<bool> {
    keys.iter()
        .map(|&k| replay.delete(table, &[k]).unwrap() == 1)
        .collect()
}

/// How long a future must stay pending to count as blocked.
pub const BLOCKED: Duration = Duration::from_millis(50);
/// How long a released future may take.
pub const RELEASED: Duration = Duration::from_secs(5);

/// Poll `f` for `BLOCKED`; true if it is still pending.
pub async fn still_pending<F: Future>(f: Pin<&mut F>) -> bool {
    tokio::time::timeout(BLOCKED, f).await.is_err()
}

/// Finish `f` (already polled), failing the test if it does not soon.
pub async fn finish<F: Future>(f: Pin<&mut F>) -> F::Output {
    tokio::time::timeout(RELEASED, f)
        .await
        .expect("released, but still blocked")
}

/// Pearson's chi-square of `counts` against the probabilities `expected`.
pub fn chi_square(counts: &[u64], expected: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let total: f64 = expected.iter().sum();
    counts
        .iter()
        .zip(expected)
        .map(|(&o, &p)| {
            let e = n as f64 * p / total;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// The 0.999 quantile of chi-square with 19 degrees of freedom.
pub const CHI2_19_999: f64 = 43.82;
