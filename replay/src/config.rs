//! A table's configuration (size, sampler, remover, max_times_sampled, rate
//! limiter), its validation, and the rate limiter's arithmetic (Reverb's
//! `RateLimiter`: can_insert / can_sample from the table's counters).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One table of a replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableConfig {
    pub name: String,
    /// The most items the table holds (>= 1); an insert into a full table
    /// first evicts an item chosen by `remover`.
    pub max_size: u64,
    /// Which item a sample returns.
    pub sampler: Selector,
    /// Which item is evicted when an insert finds the table full.
    pub remover: Selector,
    /// 0: unlimited; else an item is removed once sampled this often.
    pub max_times_sampled: u32,
    pub rate_limiter: RateLimiter,
}

/// How a sampler or remover picks an item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Selector {
    /// Every item equally likely.
    Uniform,
    /// Item i with probability p_i^exponent / sum_j p_j^exponent (uniform
    /// when every priority is 0).
    Prioritized { exponent: f64 },
    /// The oldest item.
    Fifo,
    /// The newest item.
    Lifo,
    /// The lowest priority, ties to the oldest.
    MinHeap,
    /// The highest priority, ties to the oldest.
    MaxHeap,
}

/// When inserts and samples may proceed (Reverb's rate limiters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RateLimiter {
    /// Samples wait until the table holds `min_size` items.
    MinSize { min_size: u64 },
    /// Keeps samples per insert near `samples_per_insert`, within
    /// `error_buffer`, once `min_size_to_sample` items were inserted.
    SampleToInsertRatio {
        samples_per_insert: f64,
        min_size_to_sample: u64,
        error_buffer: f64,
    },
    /// A FIFO queue of `size` items: inserts wait while it is full,
    /// samples while it is empty.
    Queue { size: u64 },
    /// A LIFO stack of `size` items.
    Stack { size: u64 },
}

/// A table configuration value that is refused: which field, and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("table {table:?}: {message}")]
pub struct ConfigError {
    /// The table the value belongs to.
    pub table: String,
    /// The field, e.g. "max_size", "sampler.exponent", "rate_limiter.error_buffer".
    pub field: &'static str,
    /// What is wrong and what to do; does not repeat the table's name.
    pub message: String,
}

impl Selector {
    /// The kind, without parameters: "uniform", "prioritized", "fifo",
    /// "lifo", "min_heap", "max_heap".
    pub fn kind(&self) -> &'static str {
        match self {
            Selector::Uniform => "uniform",
            Selector::Prioritized { .. } => "prioritized",
            Selector::Fifo => "fifo",
            Selector::Lifo => "lifo",
            Selector::MinHeap => "min_heap",
            Selector::MaxHeap => "max_heap",
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Prioritized { exponent } => write!(f, "prioritized(exponent={exponent})"),
            other => f.write_str(other.kind()),
        }
    }
}

impl fmt::Display for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimiter::MinSize { min_size } => write!(f, "min_size(min_size={min_size})"),
            RateLimiter::SampleToInsertRatio {
                samples_per_insert,
                min_size_to_sample,
                error_buffer,
            } => write!(
                f,
                "sample_to_insert_ratio(spi={samples_per_insert}, min_size={min_size_to_sample}, error_buffer={error_buffer})"
            ),
            RateLimiter::Queue { size } => write!(f, "queue(size={size})"),
            RateLimiter::Stack { size } => write!(f, "stack(size={size})"),
        }
    }
}

impl TableConfig {
    /// Refuse values Reverb refuses (and an empty name).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &'static str, message: String| {
            Err(ConfigError {
                table: self.name.clone(),
                field,
                message,
            })
        };
        if self.name.is_empty() {
            return fail("name", "a table needs a name".into());
        }
        if self.max_size == 0 {
            return fail(
                "max_size",
                "max_size must be at least 1 (the most items the table holds)".into(),
            );
        }
        for (field, selector) in [
            ("sampler.exponent", &self.sampler),
            ("remover.exponent", &self.remover),
        ] {
            if let Selector::Prioritized { exponent } = selector
                && !(exponent.is_finite() && *exponent >= 0.0)
            {
                return fail(
                    field,
                    format!(
                        "the priority exponent must be a finite number >= 0 (0: uniform, 1: proportional to priority), not {exponent}"
                    ),
                );
            }
        }
        match self.rate_limiter {
            RateLimiter::MinSize { min_size } => {
                if min_size == 0 {
                    return fail(
                        "rate_limiter.min_size",
                        "min_size must be at least 1 (samples wait until the table holds that many items)".into(),
                    );
                }
            }
            RateLimiter::SampleToInsertRatio {
                samples_per_insert: spi,
                min_size_to_sample,
                error_buffer,
            } => {
                if !(spi.is_finite() && spi > 0.0) {
                    return fail(
                        "rate_limiter.samples_per_insert",
                        format!("samples_per_insert must be a finite number > 0, not {spi}"),
                    );
                }
                if min_size_to_sample == 0 {
                    return fail(
                        "rate_limiter.min_size_to_sample",
                        "min_size_to_sample must be at least 1".into(),
                    );
                }
                if !(error_buffer.is_finite() && error_buffer >= 1.0 && error_buffer >= spi) {
                    return fail(
                        "rate_limiter.error_buffer",
                        format!(
                            "error_buffer must be a finite number >= 1 and >= samples_per_insert ({spi}), not {error_buffer}: with less, inserts and samples can block each other forever"
                        ),
                    );
                }
            }
            RateLimiter::Queue { size } | RateLimiter::Stack { size } => {
                let (kind, order) = match self.rate_limiter {
                    RateLimiter::Queue { .. } => ("queue", Selector::Fifo),
                    _ => ("stack", Selector::Lifo),
                };
                if size == 0 {
                    return fail(
                        "rate_limiter.size",
                        format!("a {kind}'s size must be at least 1"),
                    );
                }
                if size > self.max_size {
                    return fail(
                        "rate_limiter.size",
                        format!(
                            "a {kind} of size {size} does not fit in max_size {}: make max_size at least the {kind}'s size",
                            self.max_size
                        ),
                    );
                }
                if self.sampler != order {
                    return fail(
                        "sampler",
                        format!(
                            "a {kind} table samples {order} (Reverb's {kind}), not {}: set its sampler to {order}",
                            self.sampler
                        ),
                    );
                }
                if self.remover != order {
                    return fail(
                        "remover",
                        format!(
                            "a {kind} table removes {order} (Reverb's {kind}), not {}: set its remover to {order}",
                            self.remover
                        ),
                    );
                }
                if self.max_times_sampled != 1 {
                    return fail(
                        "max_times_sampled",
                        format!(
                            "a {kind} table hands out each item once (Reverb's {kind}): set max_times_sampled to 1, not {}",
                            self.max_times_sampled
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// A table's rate limiter counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Counters {
    pub inserts: u64,
    pub samples: u64,
    /// Every removal: eviction, max_times_sampled, delete.
    pub deletes: u64,
}

/// Reverb's rate limiter parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Limits {
    pub samples_per_insert: f64,
    pub min_size_to_sample: u64,
    pub min_diff: f64,
    pub max_diff: f64,
}

impl RateLimiter {
    pub(crate) fn limits(&self) -> Limits {
        match *self {
            RateLimiter::MinSize { min_size } => Limits {
                samples_per_insert: 1.0,
                min_size_to_sample: min_size,
                min_diff: f64::NEG_INFINITY,
                max_diff: f64::INFINITY,
            },
            RateLimiter::SampleToInsertRatio {
                samples_per_insert: spi,
                min_size_to_sample: m,
                error_buffer: e,
            } => Limits {
                samples_per_insert: spi,
                min_size_to_sample: m,
                min_diff: spi * m as f64 - e,
                max_diff: spi * m as f64 + e,
            },
            RateLimiter::Queue { size } | RateLimiter::Stack { size } => Limits {
                samples_per_insert: 1.0,
                min_size_to_sample: 1,
                min_diff: 0.0,
                max_diff: size as f64,
            },
        }
    }
}

impl Limits {
    /// Whether `n` more inserts may go in now.
    pub fn can_insert(&self, c: &Counters, n: u64) -> bool {
        let size_after = c.inserts as i128 + n as i128 - c.deletes as i128;
        if size_after <= self.min_size_to_sample as i128 {
            return true;
        }
        (c.inserts as u128 + n as u128) as f64 * self.samples_per_insert - c.samples as f64
            <= self.max_diff
    }

    /// Whether `n` more samples may be drawn now.
    pub fn can_sample(&self, c: &Counters, n: u64) -> bool {
        if (c.inserts as i128 - c.deletes as i128) < self.min_size_to_sample as i128 {
            return false;
        }
        c.inserts as f64 * self.samples_per_insert - c.samples as f64 - n as f64 >= self.min_diff
    }

    /// The most items one call may insert (or sample) so that it can ever
    /// be admitted in a steady state: (max_diff - min_diff) / spi for
    /// inserts, max_diff - min_diff for samples. Infinite for MinSize.
    pub fn insert_batch_limit(&self) -> f64 {
        ((self.max_diff - self.min_diff) / self.samples_per_insert).floor()
    }

    pub fn sample_batch_limit(&self) -> f64 {
        (self.max_diff - self.min_diff).floor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(inserts: u64, samples: u64, deletes: u64) -> Counters {
        Counters {
            inserts,
            samples,
            deletes,
        }
    }

    #[test]
    fn limits_follow_reverb() {
        let l = RateLimiter::SampleToInsertRatio {
            samples_per_insert: 4.0,
            min_size_to_sample: 10,
            error_buffer: 8.0,
        }
        .limits();
        assert_eq!((l.min_diff, l.max_diff), (32.0, 48.0));
        // Below min_size_to_sample inserts are free and samples wait.
        assert!(l.can_insert(&counters(9, 0, 0), 1));
        assert!(!l.can_sample(&counters(9, 0, 0), 1));
        // 12 inserts, no samples: 48 - 0 <= 48 admits the 12th, not the 13th.
        assert!(l.can_insert(&counters(11, 0, 0), 1));
        assert!(!l.can_insert(&counters(12, 0, 0), 1));
        // Samples may go while inserts * 4 - samples - n >= 32.
        assert!(l.can_sample(&counters(12, 15, 0), 1));
        assert!(!l.can_sample(&counters(12, 16, 0), 1));
        // Deletes bring the table under min size: inserts free again.
        assert!(l.can_insert(&counters(12, 0, 3), 1));
        // Nothing underflows on odd counters.
        assert!(!l.can_sample(&counters(0, 5, 0), 1));
        assert!(!l.can_insert(&counters(u64::MAX, 0, 0), u64::MAX));

        let q = RateLimiter::Queue { size: 2 }.limits();
        assert!(q.can_insert(&counters(0, 0, 0), 2));
        assert!(!q.can_insert(&counters(2, 0, 0), 1));
        assert!(q.can_insert(&counters(2, 1, 1), 1));
        assert!(!q.can_sample(&counters(0, 0, 0), 1));
        assert!(q.can_sample(&counters(2, 0, 0), 2));
        assert!(!q.can_sample(&counters(2, 0, 0), 3));
        assert_eq!(q.insert_batch_limit(), 2.0);

        let m = RateLimiter::MinSize { min_size: 3 }.limits();
        assert!(!m.can_sample(&counters(2, 0, 0), 1));
        assert!(m.can_sample(&counters(3, 1_000_000, 0), 1000));
        assert!(m.can_insert(&counters(u64::MAX - 1, 0, 0), 1));
        assert!(m.insert_batch_limit().is_infinite());
    }
}
