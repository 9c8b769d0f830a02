//! The replay's data types as callers see them: items, samples, table
//! state, errors, and the request/response pair the host routes (the WIT
//! `lp:replay` interface's types, in Rust).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A tensor's elements, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    Bytes(#[serde(with = "crate::bytes")] Vec<u8>),
    F32(Vec<f32>),
}

/// One named tensor of an item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<u32>,
    pub data: TensorData,
}

/// What an item holds: raw bytes, or named tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ItemData {
    Raw(#[serde(with = "crate::bytes")] Vec<u8>),
    Tensors(Vec<Tensor>),
}

/// An item's data as the replay holds it: its [`ItemData`] encoded in one
/// shared buffer, so an item costs one allocation whatever it holds (a
/// tensor item decoded is four or more), is stored once however many
/// tables hold it, and crosses a process as one run of bytes. Made from
/// [`ItemData`] (`Item::from`), read with [`Item::decode`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item(#[serde(with = "crate::bytes::shared")] Arc<[u8]>);

impl Item {
    /// The data back. Fails only on bytes that did not come from
    /// `Item::from` (a checkpoint or a peer that wrote garbage).
    pub fn decode(&self) -> Result<ItemData, ReplayError> {
        postcard::from_bytes(&self.0)
            .map_err(|e| ReplayError::Invalid(format!("an item's data does not decode: {e}")))
    }

    /// Its encoded size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for an item made from data).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `a` and `b` are the same stored item (not merely equal).
    pub fn ptr_eq(a: &Item, b: &Item) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// How many holders the stored item has (tables, samples, copies).
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl From<&ItemData> for Item {
    fn from(data: &ItemData) -> Item {
        let bytes = postcard::to_stdvec(data).expect("item data always encodes");
        Item(Arc::from(bytes))
    }
}

impl From<ItemData> for Item {
    fn from(data: ItemData) -> Item {
        Item::from(&data)
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode() {
            Ok(data) => data.fmt(f),
            Err(_) => write!(f, "Item(<{} undecodable bytes>)", self.0.len()),
        }
    }
}

/// An item's priority in one table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TablePriority {
    pub table: String,
    pub priority: f64,
}

/// An item to insert, into every table it has a priority for (stored once
/// however many tables hold it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    pub data: Item,
    pub priorities: Vec<TablePriority>,
}

/// One sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampled {
    pub key: u64,
    /// The probability the item had of being drawn.
    pub probability: f64,
    /// The table's size when it was drawn.
    pub table_size: u64,
    /// How often it has been sampled, this time included.
    pub times_sampled: u32,
    pub priority: f64,
    /// The stored item itself (no copy).
    pub data: Item,
}

/// A new priority for an item of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorityUpdate {
    pub key: u64,
    pub priority: f64,
}

/// A table's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub size: u64,
    pub max_size: u64,
    pub inserts: u64,
    pub samples: u64,
    /// Items removed: evicted, sampled out, deleted.
    pub deletes: u64,
    pub sampler: String,
    pub remover: String,
    pub max_times_sampled: u32,
    /// E.g. "sample_to_insert_ratio(spi=4, min_size=1000, error_buffer=100)".
    pub rate_limiter: String,
    /// Whether the rate limiter would let one insert, one sample through now.
    pub can_insert: bool,
    pub can_sample: bool,
    /// Calls blocked on this table's rate limiter now.
    pub waiting_inserts: u32,
    pub waiting_samples: u32,
}

/// Why an operation was refused; nothing was changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "no table named {0:?} in this replay node: use one of the tables configured for it in program.toml"
    )]
    NoSuchTable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Checkpoint(String),
}

/// What a checkpoint or restore covered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    pub path: PathBuf,
    /// Tables in the file.
    pub tables: u32,
    /// Items in the file, each counted once however many tables hold it.
    pub items: u64,
    /// The file's size.
    pub bytes: u64,
}

/// A call to the replay node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Insert(Vec<NewItem>),
    Sample {
        table: String,
        n: u32,
    },
    UpdatePriorities {
        table: String,
        updates: Vec<PriorityUpdate>,
    },
    Delete {
        table: String,
        keys: Vec<u64>,
    },
    Reset {
        table: String,
    },
    Info,
    Checkpoint,
}

/// The answer to a [`Request`], variant for variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Inserted(Result<Vec<u64>, ReplayError>),
    Sampled(Result<Vec<Sampled>, ReplayError>),
    Updated(Result<(), ReplayError>),
    Deleted(Result<u64, ReplayError>),
    Reset(Result<(), ReplayError>),
    Info(Vec<TableInfo>),
    /// The checkpoint's path.
    Checkpointed(Result<String, ReplayError>),
}
