//! `lp_guest::replay` (feature `replay`): the typed client of lp's built-in
//! replay node (`kind = "replay"` in program.toml; Launchpad's ReverbNode,
//! with dm-reverb's semantics), over the `lp:replay/replay-client` interface.
//!
//! A node that holds a replay node's handle takes it in its args as a
//! [`Replay`] and calls it; the component then imports
//! `lp:replay/replay-client@0.1.0`, and nothing in the node's own WIT names
//! the replay (its world need not import it). Items go in through
//! [`Replay::insert`] or, batched, a [`Writer`]; a learner draws them with
//! [`Replay::sample`] and feeds back priorities with
//! [`Replay::update_priorities`].
//!
//! ```ignore
//! use lp_guest::replay::{ItemData, NewItem, Replay, Tensor};
//!
//! #[derive(serde::Deserialize)]
//! struct Args { replay: Replay }          // `replay = { handle = "replay" }`
//!
//! // An actor: one item of two tensors per step, 32 items a call.
//! let args: Args = lp_guest::args()?;
//! let mut writer = args.replay.writer(32);
//! let data = ItemData::Tensors(vec![
//!     Tensor::f32("obs", &[4], vec![0.1, 0.2, 0.3, 0.4]),
//!     Tensor::f32("reward", &[1], vec![1.0]),
//! ]);
//! writer.append(NewItem::new(data, &[("experience", 1.0)])).await?;
//! writer.flush().await?;                  // what is pending goes now
//!
//! // A learner: sample, learn, feed the TD errors back as priorities.
//! for s in args.replay.sample("experience", 32).await? {
//!     let reward = s.data.f32("reward").unwrap()[0];
//!     // ...
//! }
//! args.replay.update_priorities("experience", &[(1, 0.5), (2, 0.1)]).await?;
//! ```
//!
//! Every method returns [`Error`]: the call failed ([`Error::Call`], a
//! [`CallError`]: the program is stopping, a deadline passed, ...) or the
//! replay refused it ([`Error::Replay`], a [`ReplayError`]; nothing was
//! changed). Inserts and samples wait for the table's rate limiter, within
//! the call's deadline (the handle's `timeout_secs`, else the program's
//! `call_timeout_secs`, else none).

use std::future::Future;

use crate::{CallError, Handle};

mod bindings {
    wit_bindgen::generate!({
        world: "lp:replay/replay-user",
        // lp:node first: lp:replay uses its types.
        path: ["../wit", "../wit/replay"],
        // `Handle` and `CallError` are this crate's own.
        with: { "lp:node/types@0.1.0": crate::types },
        additional_derives: [PartialEq],
    });
}

use bindings::lp::replay::replay_client as client;

pub use bindings::lp::replay::replay_types::{
    ItemData, NewItem, PriorityUpdate, ReplayError, Sampled, TableInfo, TablePriority, Tensor,
    TensorData,
};

/// A replay node, as a node that holds its handle calls it.
///
/// It deserializes from a handle in the node's args
/// (`replay = { handle = "replay" }` in program.toml), as the clients that
/// [`client!`](crate::client!) declares do. It is `Copy`, and its methods'
/// futures borrow neither it nor their arguments: start several calls and
/// [`join_all`](crate::join_all) them, or keep one in flight while computing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replay {
    handle: Handle,
}

impl<'de> serde::Deserialize<'de> for Replay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::__deserialize_handle(d).map(Replay::new)
    }
}

impl Replay {
    /// The replay node `handle` refers to.
    pub fn new(handle: Handle) -> Replay {
        Replay { handle }
    }

    /// The handle this client calls.
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// Insert a batch of items in one call, each into every table it has a
    /// priority for: all of them at once, once every table's rate limiter
    /// admits them (the call waits until then). Their keys, in order.
    pub fn insert(
        &self,
        items: Vec<NewItem>,
    ) -> impl Future<Output = Result<Vec<u64>, Error>> + 'static {
        flatten(client::insert(self.handle, items))
    }

    /// Insert one item with its priorities, e.g. `&[("experience", 1.0)]`;
    /// its key. (To insert many, [`insert`](Self::insert) them at once or
    /// use a [`Writer`]: one call per item is slow.)
    pub fn insert_one(
        &self,
        data: ItemData,
        priorities: &[(&str, f64)],
    ) -> impl Future<Output = Result<u64, Error>> + 'static {
        let keys = self.insert(vec![NewItem::new(data, priorities)]);
        async move {
            keys.await?.first().copied().ok_or_else(|| {
                Error::Replay(ReplayError::Invalid(
                    "the replay answered an insert of one item with no key".to_string(),
                ))
            })
        }
    }

    /// Draw `n` samples from `table` in one call (with replacement, as
    /// Reverb does), once its rate limiter allows them (the call waits
    /// until then).
    pub fn sample(
        &self,
        table: &str,
        n: u32,
    ) -> impl Future<Output = Result<Vec<Sampled>, Error>> + 'static {
        flatten(client::sample(self.handle, table.to_string(), n))
    }

    /// Set the priorities of items of `table`, as `(key, priority)` pairs;
    /// keys no longer in the table are ignored.
    pub fn update_priorities(
        &self,
        table: &str,
        updates: &[(u64, f64)],
    ) -> impl Future<Output = Result<(), Error>> + 'static {
        let updates = updates
            .iter()
            .map(|&(key, priority)| PriorityUpdate { key, priority })
            .collect();
        flatten(client::update_priorities(
            self.handle,
            table.to_string(),
            updates,
        ))
    }

    /// Remove the items `keys` from `table`; how many of them were there.
    pub fn delete(
        &self,
        table: &str,
        keys: &[u64],
    ) -> impl Future<Output = Result<u64, Error>> + 'static {
        flatten(client::delete(
            self.handle,
            table.to_string(),
            keys.to_vec(),
        ))
    }

    /// Empty `table`, and reset its rate limiter's counts.
    pub fn reset(&self, table: &str) -> impl Future<Output = Result<(), Error>> + 'static {
        flatten(client::reset(self.handle, table.to_string()))
    }

    /// Every table's state: size, counts of inserts, samples and deletes,
    /// its sampler, remover and rate limiter, and who is waiting on it.
    pub fn info(&self) -> impl Future<Output = Result<Vec<TableInfo>, Error>> + 'static {
        let call = client::info(self.handle);
        async move { Ok(call.await?) }
    }

    /// Write a checkpoint of every table to the replay node's checkpoint
    /// directory; the checkpoint's path (on the replay node's machine).
    pub fn checkpoint(&self) -> impl Future<Output = Result<String, Error>> + 'static {
        flatten(client::checkpoint(self.handle))
    }

    /// A [`Writer`] that inserts items `batch` at a time (a `batch` of 0
    /// is taken as 1).
    pub fn writer(&self, batch: usize) -> Writer {
        Writer {
            replay: *self,
            batch: batch.max(1),
            pending: Vec::new(),
        }
    }
}

/// A call's two layers of error into one.
async fn flatten<T>(
    call: impl Future<Output = Result<Result<T, ReplayError>, CallError>>,
) -> Result<T, Error> {
    Ok(call.await??)
}

/// Inserts items in batches: [`append`](Self::append) collects them and
/// sends one [`insert`](Replay::insert) call each time `batch` are pending;
/// [`flush`](Self::flush) sends what is pending now.
///
/// **Dropping a writer with pending items loses them** (a drop cannot wait
/// for a call): flush it before it goes, e.g. when the run ends. An insert
/// that fails loses its batch too: the items are not kept for a retry (the
/// call owns them). A batch is inserted whole or not at all, and a
/// [`CallError::Timeout`] from the replay means it was not inserted (only a
/// replay that stopped answering at all leaves that unknown).
#[derive(Debug)]
pub struct Writer {
    replay: Replay,
    batch: usize,
    pending: Vec<NewItem>,
}

impl Writer {
    /// Add `item`; when `batch` items are pending, insert them (one call,
    /// which waits for the tables' rate limiters). An error is that
    /// insert's: its batch is lost.
    pub async fn append(&mut self, item: NewItem) -> Result<(), Error> {
        self.pending.push(item);
        if self.pending.len() >= self.batch {
            self.flush().await?;
        }
        Ok(())
    }

    /// Insert the pending items now (one call; none when nothing is
    /// pending). The keys of the items this flush sent, in order: only
    /// those, not the keys of the batches [`append`](Self::append) sent
    /// before. On an error the items are lost.
    pub async fn flush(&mut self) -> Result<Vec<u64>, Error> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let items = std::mem::take(&mut self.pending);
        self.pending.reserve(self.batch);
        self.replay.insert(items).await
    }

    /// How many items are waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many items an insert call carries.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The replay this writer inserts into.
    pub fn replay(&self) -> Replay {
        self.replay
    }
}

/// Why a call to the replay node did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The call did not reach the replay or did not return (e.g. the
    /// program is stopping, or the call's deadline passed).
    Call(CallError),
    /// The replay refused the request; nothing was changed.
    Replay(ReplayError),
}

impl Error {
    /// Whether the call failed because the program is stopping (the error
    /// a node on its way out expects, and may ignore).
    pub fn is_stopping(&self) -> bool {
        matches!(self, Error::Call(CallError::Stopping))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Call(e) => write!(f, "replay call failed: {e}"),
            Error::Replay(ReplayError::NoSuchTable(table)) => {
                write!(f, "replay refused: no such table: {table}")
            }
            Error::Replay(ReplayError::Invalid(why)) => {
                write!(f, "replay refused: invalid request: {why}")
            }
            Error::Replay(ReplayError::Checkpoint(why)) => {
                write!(f, "replay checkpoint failed: {why}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Call(e) => Some(e),
            Error::Replay(e) => Some(e),
        }
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        Error::Call(e)
    }
}

impl From<ReplayError> for Error {
    fn from(e: ReplayError) -> Error {
        Error::Replay(e)
    }
}

impl NewItem {
    /// An item with its priority in each table it goes into, e.g.
    /// `NewItem::new(data, &[("experience", 1.0)])`.
    pub fn new(data: ItemData, priorities: &[(&str, f64)]) -> NewItem {
        NewItem {
            data,
            priorities: priorities
                .iter()
                .map(|&(table, priority)| TablePriority {
                    table: table.to_string(),
                    priority,
                })
                .collect(),
        }
    }
}

impl ItemData {
    /// The tensor named `name`, if the item is made of tensors and has one.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        match self {
            ItemData::Tensors(tensors) => tensors.iter().find(|t| t.name == name),
            ItemData::Raw(_) => None,
        }
    }

    /// The elements of the f32 tensor named `name`, if there is one.
    pub fn f32(&self, name: &str) -> Option<&[f32]> {
        self.tensor(name)?.as_f32()
    }
}

impl Tensor {
    /// An f32 tensor of `shape`, its elements row-major.
    ///
    /// # Panics
    /// If `data` does not have as many elements as `shape` says (a bug).
    pub fn f32(name: impl Into<String>, shape: &[u32], data: Vec<f32>) -> Tensor {
        Tensor::new(name.into(), shape, data.len(), TensorData::F32(data))
    }

    /// A tensor of bytes (u8 elements) of `shape`, row-major.
    ///
    /// # Panics
    /// If `data` does not have as many elements as `shape` says (a bug).
    pub fn bytes(name: impl Into<String>, shape: &[u32], data: Vec<u8>) -> Tensor {
        Tensor::new(name.into(), shape, data.len(), TensorData::Bytes(data))
    }

    fn new(name: String, shape: &[u32], len: usize, data: TensorData) -> Tensor {
        let elements = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(u64::from(d)));
        assert!(
            elements == Some(len as u64),
            "tensor {name:?}: shape {shape:?} does not fit its {len} elements"
        );
        Tensor {
            name,
            shape: shape.to_vec(),
            data,
        }
    }

    /// The elements, if this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::Bytes(_) => None,
        }
    }

    /// The elements, if this is a tensor of bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.data {
            TensorData::Bytes(v) => Some(v),
            TensorData::F32(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_from_a_handle_as_clients_do() {
        let replay: Replay =
            serde_json::from_str(r#"{"$lp-handle": 3, "$lp-timeout-ms": 500}"#).unwrap();
        assert_eq!(
            replay.handle(),
            Handle {
                node: 3,
                timeout_ms: Some(500)
            }
        );
        let err = serde_json::from_str::<Replay>(r#""replay""#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("expected a handle"), "{err}");
    }

    #[test]
    fn builds_items_and_reads_their_tensors_back() {
        let data = ItemData::Tensors(vec![
            Tensor::f32("obs", &[2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            Tensor::bytes("frame", &[3], vec![7, 8, 9]),
        ]);
        assert_eq!(data.f32("obs"), Some(&[1.0, 2.0, 3.0, 4.0][..]));
        assert_eq!(data.f32("frame"), None);
        assert_eq!(
            data.tensor("frame").and_then(Tensor::as_bytes),
            Some(&[7, 8, 9][..])
        );
        assert_eq!(data.tensor("missing"), None);
        assert_eq!(ItemData::Raw(vec![1]).tensor("obs"), None);

        let item = NewItem::new(data, &[("a", 1.0), ("b", 0.5)]);
        assert_eq!(
            item.priorities,
            vec![
                TablePriority {
                    table: "a".into(),
                    priority: 1.0
                },
                TablePriority {
                    table: "b".into(),
                    priority: 0.5
                },
            ]
        );
        // A scalar: no dimensions, one element.
        assert_eq!(Tensor::f32("r", &[], vec![1.0]).shape, Vec::<u32>::new());
    }

    #[test]
    #[should_panic(expected = "shape [2, 3] does not fit its 5 elements")]
    fn refuses_a_shape_that_does_not_fit() {
        Tensor::f32("obs", &[2, 3], vec![0.0; 5]);
    }

    #[test]
    fn errors_say_which() {
        let cases = [
            (
                Error::Call(CallError::Stopping),
                "replay call failed: program is stopping",
            ),
            (
                ReplayError::NoSuchTable("exp".into()).into(),
                "replay refused: no such table: exp",
            ),
            (
                ReplayError::Invalid("n too large".into()).into(),
                "replay refused: invalid request: n too large",
            ),
            (
                ReplayError::Checkpoint("disk full".into()).into(),
                "replay checkpoint failed: disk full",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        assert!(Error::Call(CallError::Stopping).is_stopping());
        assert!(!Error::Call(CallError::Timeout).is_stopping());
    }

    #[test]
    fn a_writer_starts_empty_and_batches_at_least_one() {
        let replay = Replay::new(Handle {
            node: 1,
            timeout_ms: None,
        });
        let writer = replay.writer(0);
        assert_eq!((writer.pending(), writer.batch()), (0, 1));
        assert_eq!(replay.writer(32).batch(), 32);
    }
}
