//! A sum tree (segment tree) over a table's positions, for prioritized
//! selection in O(log n): leaf i holds item i's weight (priority^exponent),
//! each inner node the sum of its two children, recomputed from them on
//! every change so no float error accumulates however long the table runs.

/// Leaves at `cap..2 * cap` (`cap` a power of two), the root at 1.
pub(crate) struct SumTree {
    nodes: Vec<f64>,
    cap: usize,
    len: usize,
}

impl SumTree {
    pub fn new() -> SumTree {
        SumTree {
            nodes: vec![0.0; 2],
            cap: 1,
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The sum of all weights.
    pub fn total(&self) -> f64 {
        self.nodes[1]
    }

    pub fn get(&self, i: usize) -> f64 {
        self.nodes[self.cap + i]
    }

    /// Append a weight at position `len`.
    pub fn push(&mut self, weight: f64) {
        if self.len == self.cap {
            self.grow();
        }
        self.len += 1;
        self.set(self.len - 1, weight);
    }

    /// Set position `i`'s weight.
    pub fn set(&mut self, i: usize, weight: f64) {
        debug_assert!(i < self.len);
        let mut n = self.cap + i;
        self.nodes[n] = weight;
        while n > 1 {
            n /= 2;
            self.nodes[n] = self.nodes[2 * n] + self.nodes[2 * n + 1];
        }
    }

    /// Remove position `i`; the last position moves into it (as
    /// `Vec::swap_remove`).
    pub fn swap_remove(&mut self, i: usize) {
        let last = self.len - 1;
        if i != last {
            self.set(i, self.get(last));
        }
        self.set(last, 0.0);
        self.len -= 1;
    }

    /// The position where the running sum passes `u`, for `u` in
    /// `[0, total)`; never one of weight 0 while the total is positive.
    pub fn find(&self, mut u: f64) -> usize {
        let mut n = 1;
        while n < self.cap {
            let left = self.nodes[2 * n];
            // Going right needs weight there: rounding may leave u at or
            // past the total, and then the last positive leaf is the one.
            if u < left || self.nodes[2 * n + 1] <= 0.0 {
                n *= 2;
            } else {
                u -= left;
                n = 2 * n + 1;
            }
        }
        n - self.cap
    }

    pub fn clear(&mut self) {
        *self = SumTree::new();
    }

    fn grow(&mut self) {
        let cap = self.cap * 2;
        let mut nodes = vec![0.0; 2 * cap];
        nodes[cap..cap + self.len].copy_from_slice(&self.nodes[self.cap..self.cap + self.len]);
        for n in (1..cap).rev() {
            nodes[n] = nodes[2 * n] + nodes[2 * n + 1];
        }
        self.nodes = nodes;
        self.cap = cap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Random pushes, sets and removals against a plain Vec: the same
    /// weights, a total equal to their sum, and `find` landing on the leaf
    /// whose prefix-sum interval holds u.
    #[test]
    fn matches_a_plain_vector() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut tree = SumTree::new();
        let mut model: Vec<f64> = Vec::new();
        for step in 0..20_000 {
            match rng.random_range(0..4) {
                0 | 1 => {
                    let w = if rng.random_range(0..5) == 0 {
                        0.0
                    } else {
                        rng.random::<f64>() * 10.0
                    };
                    tree.push(w);
                    model.push(w);
                }
                2 if !model.is_empty() => {
                    let i = rng.random_range(0..model.len());
                    let w = rng.random::<f64>();
                    tree.set(i, w);
                    model[i] = w;
                }
                _ if !model.is_empty() => {
                    let i = rng.random_range(0..model.len());
                    tree.swap_remove(i);
                    model.swap_remove(i);
                }
                _ => {}
            }
            assert_eq!(tree.len(), model.len());
            if step % 97 == 0 {
                for (i, w) in model.iter().enumerate() {
                    assert_eq!(tree.get(i), *w);
                }
                let sum: f64 = model.iter().sum();
                assert!((tree.total() - sum).abs() <= 1e-9 * sum.max(1.0));
                if tree.total() > 0.0 {
                    let u = rng.random::<f64>() * tree.total();
                    let i = tree.find(u);
                    assert!(model[i] > 0.0, "found a leaf of weight 0");
                    let before: f64 = model[..i].iter().sum();
                    let tol = 1e-9 * sum;
                    assert!(before <= u + tol && u < before + model[i] + tol);
                }
            }
        }
    }

    #[test]
    fn rounding_never_selects_a_zero_leaf() {
        let mut tree = SumTree::new();
        for w in [0.1, 0.2, 0.0, 0.3, 0.0] {
            tree.push(w);
        }
        // u at and past the total lands on the last positive leaf.
        assert_eq!(tree.find(tree.total()), 3);
        assert_eq!(tree.find(tree.total() * 2.0), 3);
        assert_eq!(tree.find(0.0), 0);
        tree.set(0, 0.0);
        assert_eq!(tree.find(0.0), 1);
    }
}
