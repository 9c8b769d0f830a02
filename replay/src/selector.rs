//! What a sampler or remover keeps to pick an item in O(log n) or O(1):
//! nothing for uniform (a random position), a sum tree over positions for
//! prioritized, an ordered set of keys for FIFO/LIFO, of (priority, key)
//! for the heaps.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng as _};

use crate::config::Selector;
use crate::sum_tree::SumTree;
use crate::table::{Entry, KeyMap};

/// The largest priority^exponent accepted: a sum of 2^32 of them stays finite.
pub(crate) const MAX_WEIGHT: f64 = f64::MAX / 8_589_934_592.0;

/// One selector's index over a table's items. Positions are the table's
/// (its items are a dense vector, removed by swap-remove).
pub(crate) enum Index {
    Uniform,
    Prioritized {
        exponent: f64,
        tree: SumTree,
    },
    /// FIFO: the smallest key.
    Oldest(BTreeSet<u64>),
    /// LIFO: the largest key.
    Newest(BTreeSet<u64>),
    /// Min-heap: the first (priority bits, key).
    Lowest(BTreeSet<(u64, u64)>),
    /// Max-heap: the first (!priority bits, key): highest, then oldest.
    Highest(BTreeSet<(u64, u64)>),
}

/// An item's weight for a prioritized selector: priority^exponent (0^0 = 1).
pub(crate) fn weight(priority: f64, exponent: f64) -> f64 {
    if exponent == 1.0 {
        priority
    } else if exponent == 0.0 {
        1.0
    } else {
        priority.powf(exponent)
    }
}

/// A priority's order key: for finite numbers >= 0 (and +0.0), the bits
/// order as the values do.
fn order(priority: f64) -> u64 {
    (priority + 0.0).to_bits()
}

impl Index {
    pub fn new(selector: &Selector) -> Index {
        match *selector {
            Selector::Uniform => Index::Uniform,
            Selector::Prioritized { exponent } => Index::Prioritized {
                exponent,
                tree: SumTree::new(),
            },
            Selector::Fifo => Index::Oldest(BTreeSet::new()),
            Selector::Lifo => Index::Newest(BTreeSet::new()),
            Selector::MinHeap => Index::Lowest(BTreeSet::new()),
            Selector::MaxHeap => Index::Highest(BTreeSet::new()),
        }
    }

    /// An item appended at the table's last position.
    pub fn push(&mut self, key: u64, priority: f64) {
        match self {
            Index::Uniform => {}
            Index::Prioritized { exponent, tree } => tree.push(weight(priority, *exponent)),
            Index::Oldest(keys) | Index::Newest(keys) => {
                keys.insert(key);
            }
            Index::Lowest(set) => {
                set.insert((order(priority), key));
            }
            Index::Highest(set) => {
                set.insert((!order(priority), key));
            }
        }
    }

    /// The item at `pos` removed, the last one moved into its place.
    pub fn swap_remove(&mut self, pos: usize, key: u64, priority: f64) {
        match self {
            Index::Uniform => {}
            Index::Prioritized { tree, .. } => tree.swap_remove(pos),
            Index::Oldest(keys) | Index::Newest(keys) => {
                keys.remove(&key);
            }
            Index::Lowest(set) => {
                set.remove(&(order(priority), key));
            }
            Index::Highest(set) => {
                set.remove(&(!order(priority), key));
            }
        }
    }

    /// The item at `pos` has a new priority.
    pub fn update(&mut self, pos: usize, key: u64, old: f64, new: f64) {
        match self {
            Index::Uniform | Index::Oldest(_) | Index::Newest(_) => {}
            Index::Prioritized { exponent, tree } => tree.set(pos, weight(new, *exponent)),
            Index::Lowest(set) => {
                set.remove(&(order(old), key));
                set.insert((order(new), key));
            }
            Index::Highest(set) => {
                set.remove(&(!order(old), key));
                set.insert((!order(new), key));
            }
        }
    }

    pub fn clear(&mut self) {
        match self {
            Index::Uniform => {}
            Index::Prioritized { tree, .. } => tree.clear(),
            Index::Oldest(keys) | Index::Newest(keys) => keys.clear(),
            Index::Lowest(set) | Index::Highest(set) => set.clear(),
        }
    }

    /// Pick an item of a non-empty table: its position and the
    /// probability it had of being picked.
    pub fn select(&self, entries: &[Entry], index: &KeyMap, rng: &mut StdRng) -> (usize, f64) {
        debug_assert!(!entries.is_empty());
        let uniform = |rng: &mut StdRng| {
            (
                rng.random_range(0..entries.len()),
                1.0 / entries.len() as f64,
            )
        };
        let key = match self {
            Index::Uniform => return uniform(rng),
            Index::Prioritized { tree, .. } => {
                let total = tree.total();
                if total > 0.0 {
                    let pos = tree.find(rng.random::<f64>() * total);
                    return (pos, tree.get(pos) / total);
                }
                // Every priority 0: uniform, as Reverb.
                return uniform(rng);
            }
            Index::Oldest(keys) => keys.first(),
            Index::Newest(keys) => keys.last(),
            Index::Lowest(set) | Index::Highest(set) => set.first().map(|(_, key)| key),
        };
        let key = key.expect("a selector of a non-empty table has an item");
        (index[key], 1.0)
    }
}

/// The replay's one random generator.
pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
