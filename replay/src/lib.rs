//! lp-replay: the core of lp's built-in replay node (Launchpad's
//! ReverbNode), with dm-reverb's semantics: named tables of prioritized
//! items, samplers and removers (uniform, prioritized, FIFO, LIFO, min- and
//! max-heap), rate limiters that make inserts and samples wait (min size,
//! sample-to-insert ratio, queue, stack), and checkpoints.
//!
//! ```
//! use lp_replay::{NewItem, ItemData, RateLimiter, Replay, Selector, TableConfig, TablePriority};
//!
//! let replay = Replay::new(vec![TableConfig {
//!     name: "experience".into(),
//!     max_size: 1000,
//!     sampler: Selector::Prioritized { exponent: 0.6 },
//!     remover: Selector::Fifo,
//!     max_times_sampled: 0,
//!     rate_limiter: RateLimiter::MinSize { min_size: 1 },
//! }], 42).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let keys = rt.block_on(replay.insert(vec![NewItem {
//!     data: ItemData::Raw(vec![1, 2, 3]).into(),
//!     priorities: vec![TablePriority { table: "experience".into(), priority: 1.0 }],
//! }])).unwrap();
//! let samples = rt.block_on(replay.sample("experience", 2)).unwrap();
//! assert!(samples.iter().all(|s| s.key == keys[0] && s.probability == 1.0));
//! ```

mod bytes;
mod checkpoint;
mod config;
mod replay;
mod selector;
mod sum_tree;
mod table;
mod types;

pub use checkpoint::{MAGIC as CHECKPOINT_MAGIC, Snapshot};
pub use config::{ConfigError, RateLimiter, Selector, TableConfig};
pub use replay::{MAX_SAMPLE_BATCH, Replay};
pub use types::{
    CheckpointSummary, Item, ItemData, NewItem, PriorityUpdate, ReplayError, Request, Response,
    Sampled, TableInfo, TablePriority, Tensor, TensorData,
};
