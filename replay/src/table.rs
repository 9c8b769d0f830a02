//! One table: its items (a dense vector and a key -> position map), its
//! sampler's and remover's indexes, and its rate limiter's counters. All
//! under the replay's lock; nothing here waits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rand::rngs::StdRng;

use crate::config::{Counters, Limits, Selector, TableConfig};
use crate::selector::{Index, MAX_WEIGHT, weight};
use crate::types::{Item, Sampled, TableInfo};

/// An item as a table holds it: 32 bytes besides the shared data.
pub(crate) struct Entry {
    pub key: u64,
    pub priority: f64,
    pub data: Item,
    pub times_sampled: u32,
}

/// Hashes the replay's own keys (no attacker chooses them): murmur3's
/// 64-bit finalizer, so keys with any stride spread over the buckets.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, key: u64) {
        let mut h = key;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        self.0 = h;
    }
}

/// Key -> position in `Table::entries`.
pub(crate) type KeyMap = HashMap<u64, usize, BuildHasherDefault<KeyHasher>>;

pub(crate) struct Table {
    pub config: TableConfig,
    limits: Limits,
    entries: Vec<Entry>,
    index: KeyMap,
    sampler: Index,
    remover: Index,
    pub counters: Counters,
    /// With max_times_sampled m > 0: the samples the items have left,
    /// sum of (m - times_sampled).
    remaining: u64,
    /// Calls blocked on this table's rate limiter now.
    pub waiting_inserts: u32,
    pub waiting_samples: u32,
}

/// Refuse a priority that is not a finite number >= 0, or whose weight
/// in one of the table's prioritized selectors would overflow a sum.
pub(crate) fn check_priority(config: &TableConfig, priority: f64) -> Result<(), String> {
    if !(priority.is_finite() && priority >= 0.0) {
        return Err(format!(
            "priority {priority} for table {:?} is not a finite number >= 0",
            config.name
        ));
    }
    for selector in [&config.sampler, &config.remover] {
        if let Selector::Prioritized { exponent } = *selector
            && weight(priority, exponent) > MAX_WEIGHT
        {
            return Err(format!(
                "priority {priority} for table {:?} is too large: raised to the exponent {exponent} it exceeds {MAX_WEIGHT:e}; scale the priorities down",
                config.name
            ));
        }
    }
    Ok(())
}

impl Table {
    pub fn new(config: TableConfig) -> Table {
        Table {
            limits: config.rate_limiter.limits(),
            entries: Vec::new(),
            index: KeyMap::default(),
            sampler: Index::new(&config.sampler),
            remover: Index::new(&config.remover),
            counters: Counters::default(),
            remaining: 0,
            waiting_inserts: 0,
            waiting_samples: 0,
            config,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The items, in position order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn contains(&self, key: u64) -> bool {
        self.index.contains_key(&key)
    }

    pub fn can_insert(&self, n: u64) -> bool {
        self.limits.can_insert(&self.counters, n)
    }

    /// Whether `n` samples can be drawn now: the rate limiter allows them,
    /// there is an item, and with max_times_sampled the items have `n`
    /// samples left between them.
    pub fn can_sample(&self, n: u64) -> bool {
        self.limits.can_sample(&self.counters, n)
            && !self.entries.is_empty()
            && (self.config.max_times_sampled == 0 || self.remaining >= n)
    }

    /// Insert an item (its key new to the table), evicting by the remover
    /// first if the table is full. The caller checked the rate limiter.
    pub fn insert(&mut self, key: u64, priority: f64, data: Item, rng: &mut StdRng) {
        while self.entries.len() as u64 >= self.config.max_size {
            let (pos, _) = self.remover.select(&self.entries, &self.index, rng);
            self.remove_at(pos);
        }
        self.push(key, priority, data, 0);
        self.counters.inserts += 1;
    }

    /// Append an item without touching the counters (insert and restore).
    pub fn push(&mut self, key: u64, priority: f64, data: Item, times_sampled: u32) {
        let priority = priority + 0.0; // -0.0 is 0
        self.index.insert(key, self.entries.len());
        self.sampler.push(key, priority);
        self.remover.push(key, priority);
        let m = self.config.max_times_sampled;
        if m > 0 {
            self.remaining += u64::from(m.saturating_sub(times_sampled));
        }
        self.entries.push(Entry {
            key,
            priority,
            data,
            times_sampled,
        });
    }

    /// Remove the item at `pos` (a delete for the rate limiter).
    fn remove_at(&mut self, pos: usize) -> Entry {
        let entry = self.entries.swap_remove(pos);
        self.index.remove(&entry.key);
        if let Some(moved) = self.entries.get(pos) {
            *self
                .index
                .get_mut(&moved.key)
                .expect("every item is in the key map") = pos;
        }
        self.sampler.swap_remove(pos, entry.key, entry.priority);
        self.remover.swap_remove(pos, entry.key, entry.priority);
        self.counters.deletes += 1;
        let m = self.config.max_times_sampled;
        if m > 0 {
            self.remaining -= u64::from(m.saturating_sub(entry.times_sampled));
        }
        entry
    }

    /// Draw one sample (the caller checked `can_sample`); the item goes
    /// once sampled max_times_sampled times.
    pub fn sample(&mut self, rng: &mut StdRng) -> Sampled {
        let (pos, probability) = self.sampler.select(&self.entries, &self.index, rng);
        let table_size = self.entries.len() as u64;
        let m = self.config.max_times_sampled;
        let entry = &mut self.entries[pos];
        entry.times_sampled = entry.times_sampled.saturating_add(1);
        let sampled = Sampled {
            key: entry.key,
            probability,
            table_size,
            times_sampled: entry.times_sampled,
            priority: entry.priority,
            data: entry.data.clone(),
        };
        self.counters.samples += 1;
        if m > 0 {
            self.remaining -= 1;
            if sampled.times_sampled >= m {
                self.remove_at(pos);
            }
        }
        sampled
    }

    /// Remove `key` if the table holds it.
    pub fn delete(&mut self, key: u64) -> Option<Entry> {
        let pos = *self.index.get(&key)?;
        Some(self.remove_at(pos))
    }

    /// Set `key`'s priority if the table holds it (checked by the caller).
    pub fn update(&mut self, key: u64, priority: f64) {
        let Some(&pos) = self.index.get(&key) else {
            return;
        };
        let priority = priority + 0.0;
        let entry = &mut self.entries[pos];
        let old = std::mem::replace(&mut entry.priority, priority);
        self.sampler.update(pos, key, old, priority);
        self.remover.update(pos, key, old, priority);
    }

    /// Empty the table and zero its counters; the old items are returned
    /// so they can be freed outside the lock.
    pub fn reset(&mut self) -> Vec<Entry> {
        let old = std::mem::take(&mut self.entries);
        self.index = KeyMap::default();
        self.sampler.clear();
        self.remover.clear();
        self.counters = Counters::default();
        self.remaining = 0;
        old
    }

    pub fn set_counters(&mut self, counters: Counters) {
        self.counters = counters;
    }

    pub fn info(&self) -> TableInfo {
        TableInfo {
            name: self.config.name.clone(),
            size: self.entries.len() as u64,
            max_size: self.config.max_size,
            inserts: self.counters.inserts,
            samples: self.counters.samples,
            deletes: self.counters.deletes,
            sampler: self.config.sampler.to_string(),
            remover: self.config.remover.to_string(),
            max_times_sampled: self.config.max_times_sampled,
            rate_limiter: self.config.rate_limiter.to_string(),
            can_insert: self.can_insert(1),
            can_sample: self.can_sample(1),
            waiting_inserts: self.waiting_inserts,
            waiting_samples: self.waiting_samples,
        }
    }

    /// Check the indexes against the items (tests).
    #[cfg(test)]
    pub fn check(&self) {
        assert_eq!(self.index.len(), self.entries.len());
        for (pos, e) in self.entries.iter().enumerate() {
            assert_eq!(self.index[&e.key], pos);
        }
        let m = self.config.max_times_sampled;
        if m > 0 {
            let left: u64 = self
                .entries
                .iter()
                .map(|e| u64::from(m - e.times_sampled))
                .sum();
            assert_eq!(left, self.remaining);
        }
        for index in [&self.sampler, &self.remover] {
            if let Index::Prioritized { tree, exponent } = index {
                assert_eq!(tree.len(), self.entries.len());
                for (pos, e) in self.entries.iter().enumerate() {
                    assert_eq!(tree.get(pos), weight(e.priority, *exponent));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimiter;
    use rand::{RngExt, SeedableRng};

    /// Random inserts, samples, updates and deletes through every
    /// selector kind keep the key map, sum trees and remaining samples
    /// consistent with the items.
    #[test]
    fn indexes_stay_consistent() {
        let kinds = [
            Selector::Uniform,
            Selector::Prioritized { exponent: 0.7 },
            Selector::Fifo,
            Selector::Lifo,
            Selector::MinHeap,
            Selector::MaxHeap,
        ];
        let mut rng = StdRng::seed_from_u64(3);
        let data = Item::from(crate::types::ItemData::Raw(vec![1]));
        for sampler in &kinds {
            for remover in &kinds {
                let mut table = Table::new(TableConfig {
                    name: "t".into(),
                    max_size: 50,
                    sampler: sampler.clone(),
                    remover: remover.clone(),
                    max_times_sampled: 3,
                    rate_limiter: RateLimiter::MinSize { min_size: 1 },
                });
                let mut key = 1;
                for _ in 0..2_000 {
                    match rng.random_range(0..6) {
                        0..=2 => {
                            let p = f64::from(rng.random_range(0..4u32));
                            table.insert(key, p, data.clone(), &mut rng);
                            key += 1;
                        }
                        3 if table.len() > 0 => {
                            table.sample(&mut rng);
                        }
                        4 => table.update(rng.random_range(1..key + 1), rng.random::<f64>()),
                        _ => {
                            table.delete(rng.random_range(1..key + 1));
                        }
                    }
                    table.check();
                    assert!(table.len() <= 50);
                    assert_eq!(
                        table.counters.inserts - table.counters.deletes,
                        table.len() as u64
                    );
                }
            }
        }
    }
}
