//! A calling node's side of the replay node: its `lp:replay/replay-client`
//! functions linked with wasmtime's typed API (the lp:replay WIT types
//! below, lifted and lowered in bulk: an item's bytes are copied once, not
//! converted byte by byte). Each sends one [`ReplayCall`] (the request and
//! the call's deadline, which the replay judges) and lowers the answer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use wasmtime::component::{ComponentNamedList, ComponentType, Lift, LinkerInstance, Lower};

use crate::courier::{FuncKey, FuncTable, Payload};
use crate::node::typed::{Handle, WitCallError};
use crate::node::{NodeContext, NodeState};
use crate::replay::wire::{ReplayCall, ReplayReply, grace};
use crate::sandbox::ClientImport;
use lp_replay::Response;

#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum TensorData {
    #[component(name = "bytes")]
    Bytes(Vec<u8>),
    #[component(name = "f32")]
    F32(Vec<f32>),
}

#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct Tensor {
    name: String,
    shape: Vec<u32>,
    data: TensorData,
}

#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum ItemData {
    #[component(name = "raw")]
    Raw(Vec<u8>),
    #[component(name = "tensors")]
    Tensors(Vec<Tensor>),
}

#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct TablePriority {
    table: String,
    priority: f64,
}

#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct NewItem {
    data: ItemData,
    priorities: Vec<TablePriority>,
}

#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct Sampled {
    key: u64,
    probability: f64,
    #[component(name = "table-size")]
    table_size: u64,
    #[component(name = "times-sampled")]
    times_sampled: u32,
    priority: f64,
    data: ItemData,
}

#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct PriorityUpdate {
    key: u64,
    priority: f64,
}

#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct TableInfo {
    name: String,
    size: u64,
    #[component(name = "max-size")]
    max_size: u64,
    inserts: u64,
    samples: u64,
    deletes: u64,
    sampler: String,
    remover: String,
    #[component(name = "max-times-sampled")]
    max_times_sampled: u32,
    #[component(name = "rate-limiter")]
    rate_limiter: String,
    #[component(name = "can-insert")]
    can_insert: bool,
    #[component(name = "can-sample")]
    can_sample: bool,
    #[component(name = "waiting-inserts")]
    waiting_inserts: u32,
    #[component(name = "waiting-samples")]
    waiting_samples: u32,
}

#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum ReplayError {
    #[component(name = "no-such-table")]
    NoSuchTable(String),
    #[component(name = "invalid")]
    Invalid(String),
    #[component(name = "checkpoint")]
    Checkpoint(String),
}

impl From<ItemData> for lp_replay::ItemData {
    fn from(data: ItemData) -> Self {
        match data {
            ItemData::Raw(bytes) => lp_replay::ItemData::Raw(bytes),
            ItemData::Tensors(tensors) => lp_replay::ItemData::Tensors(
                tensors
                    .into_iter()
                    .map(|t| lp_replay::Tensor {
                        name: t.name,
                        shape: t.shape,
                        data: match t.data {
                            TensorData::Bytes(b) => lp_replay::TensorData::Bytes(b),
                            TensorData::F32(f) => lp_replay::TensorData::F32(f),
                        },
                    })
                    .collect(),
            ),
        }
    }
}

impl From<lp_replay::ItemData> for ItemData {
    fn from(data: lp_replay::ItemData) -> Self {
        match data {
            lp_replay::ItemData::Raw(bytes) => ItemData::Raw(bytes),
            lp_replay::ItemData::Tensors(tensors) => ItemData::Tensors(
                tensors
                    .into_iter()
                    .map(|t| Tensor {
                        name: t.name,
                        shape: t.shape,
                        data: match t.data {
                            lp_replay::TensorData::Bytes(b) => TensorData::Bytes(b),
                            lp_replay::TensorData::F32(f) => TensorData::F32(f),
                        },
                    })
                    .collect(),
            ),
        }
    }
}

impl From<lp_replay::ReplayError> for ReplayError {
    fn from(e: lp_replay::ReplayError) -> Self {
        match e {
            lp_replay::ReplayError::NoSuchTable(t) => ReplayError::NoSuchTable(t),
            lp_replay::ReplayError::Invalid(why) => ReplayError::Invalid(why),
            lp_replay::ReplayError::Checkpoint(why) => ReplayError::Checkpoint(why),
        }
    }
}

/// A sample as the guest gets it: its item decoded from the replay's
/// one-buffer form (the one copy of its data a sample costs here).
fn sampled(s: lp_replay::Sampled) -> Result<Sampled, lp_replay::ReplayError> {
    Ok(Sampled {
        key: s.key,
        probability: s.probability,
        table_size: s.table_size,
        times_sampled: s.times_sampled,
        priority: s.priority,
        data: s.data.decode()?.into(),
    })
}

fn table_info(t: lp_replay::TableInfo) -> TableInfo {
    TableInfo {
        name: t.name,
        size: t.size,
        max_size: t.max_size,
        inserts: t.inserts,
        samples: t.samples,
        deletes: t.deletes,
        sampler: t.sampler,
        remover: t.remover,
        max_times_sampled: t.max_times_sampled,
        rate_limiter: t.rate_limiter,
        can_insert: t.can_insert,
        can_sample: t.can_sample,
        waiting_inserts: t.waiting_inserts,
        waiting_samples: t.waiting_samples,
    }
}

type Replied<T> = Result<T, ReplayError>;

/// Link the replay client `client` imports: each function sends its
/// request to the node its handle names and lowers the answer.
pub(in crate::node) fn link_client(
    instance: &mut LinkerInstance<'_, NodeState>,
    client: &ClientImport,
    funcs: &FuncTable,
) -> Result<()> {
    for f in &client.functions {
        let key = funcs
            .get(&client.service, &f.name)
            .ok_or_else(|| anyhow!("{}.{} was not interned", client.service, f.name))?;
        let blocking = !f.ty.async_();
        let name = f.name.as_str();
        let link = Link {
            name,
            key,
            blocking,
        };
        match name {
            "insert" => link.op(
                instance,
                |(h, items): (Handle, Vec<NewItem>)| {
                    let items = items
                        .into_iter()
                        .map(|i| lp_replay::NewItem {
                            // Encoded here, in the caller's process: the
                            // replay stores (and the wire carries) the
                            // item as one buffer.
                            data: lp_replay::Item::from(lp_replay::ItemData::from(i.data)),
                            priorities: i
                                .priorities
                                .into_iter()
                                .map(|p| lp_replay::TablePriority {
                                    table: p.table,
                                    priority: p.priority,
                                })
                                .collect(),
                        })
                        .collect();
                    (h, lp_replay::Request::Insert(items))
                },
                |r| match r {
                    Response::Inserted(r) => Some::<Replied<Vec<u64>>>(r.map_err(Into::into)),
                    _ => None,
                },
            )?,
            "sample" => link.op(
                instance,
                |(h, table, n): (Handle, String, u32)| (h, lp_replay::Request::Sample { table, n }),
                |r| match r {
                    Response::Sampled(r) => Some::<Replied<Vec<Sampled>>>(
                        r.and_then(|s| s.into_iter().map(sampled).collect())
                            .map_err(Into::into),
                    ),
                    _ => None,
                },
            )?,
            "update-priorities" => link.op(
                instance,
                |(h, table, updates): (Handle, String, Vec<PriorityUpdate>)| {
                    let updates = updates
                        .into_iter()
                        .map(|u| lp_replay::PriorityUpdate {
                            key: u.key,
                            priority: u.priority,
                        })
                        .collect();
                    (h, lp_replay::Request::UpdatePriorities { table, updates })
                },
                |r| match r {
                    Response::Updated(r) => Some::<Replied<()>>(r.map_err(Into::into)),
                    _ => None,
                },
            )?,
            "delete" => link.op(
                instance,
                |(h, table, keys): (Handle, String, Vec<u64>)| {
                    (h, lp_replay::Request::Delete { table, keys })
                },
                |r| match r {
                    Response::Deleted(r) => Some::<Replied<u64>>(r.map_err(Into::into)),
                    _ => None,
                },
            )?,
            "reset" => link.op(
                instance,
                |(h, table): (Handle, String)| (h, lp_replay::Request::Reset { table }),
                |r| match r {
                    Response::Reset(r) => Some::<Replied<()>>(r.map_err(Into::into)),
                    _ => None,
                },
            )?,
            "info" => link.op(
                instance,
                |(h,): (Handle,)| (h, lp_replay::Request::Info),
                |r| match r {
                    Response::Info(tables) => {
                        Some::<Vec<TableInfo>>(tables.into_iter().map(table_info).collect())
                    }
                    _ => None,
                },
            )?,
            "checkpoint" => link.op(
                instance,
                |(h,): (Handle,)| (h, lp_replay::Request::Checkpoint),
                |r| match r {
                    Response::Checkpointed(r) => Some::<Replied<String>>(r.map_err(Into::into)),
                    _ => None,
                },
            )?,
            other => bail!(
                "{} has a function `{other}` that lp:replay/replay does not",
                client.name
            ),
        }
    }
    Ok(())
}

/// One client function to link.
struct Link<'a> {
    name: &'a str,
    key: FuncKey,
    blocking: bool,
}

impl Link<'_> {
    /// Link it: `request` makes the call's request from the guest's
    /// arguments, `answer` the guest's result from the replay node's
    /// response (`None`: a response of another operation).
    fn op<P, R>(
        &self,
        instance: &mut LinkerInstance<'_, NodeState>,
        request: fn(P) -> (Handle, lp_replay::Request),
        answer: fn(Response) -> Option<R>,
    ) -> Result<()>
    where
        P: ComponentNamedList + Lift + Send + Sync + 'static,
        R: ComponentType + Lower + Send + Sync + 'static,
    {
        let key = self.key;
        if self.blocking {
            instance.func_wrap_async(self.name, move |store, params: P| {
                let node = store.data().node.clone();
                Box::new(async move { Ok((call(node, key, request(params), answer).await,)) })
            })?;
        } else {
            instance.func_wrap_concurrent(self.name, move |accessor, params: P| {
                let node = accessor.with(|mut access| access.data_mut().node.clone());
                Box::pin(async move { Ok((call(node, key, request(params), answer).await,)) })
            })?;
        }
        Ok(())
    }
}

/// Send one request through `handle` and turn the reply into the guest's
/// `result<_, call-error>`. The call's deadline (the handle's, else the
/// program's) goes to the replay, which withdraws the call then and says
/// so; this side waits a grace period longer for that answer.
async fn call<R>(
    node: Arc<NodeContext>,
    key: FuncKey,
    (handle, request): (Handle, lp_replay::Request),
    answer: fn(Response) -> Option<R>,
) -> Result<R, WitCallError> {
    let within = handle
        .timeout_ms
        .map(Duration::from_millis)
        .or(node.router.call_timeout());
    let call = ReplayCall { request, within };
    let wait = within.map(|d| d + grace(d));
    let reply = node
        .call_node(handle.node, wait, key, Payload::Typed(Box::new(call)))
        .await;
    let unexpected = || WitCallError::Unreachable("a reply of an unexpected type".into());
    match reply {
        Ok(Payload::Typed(value)) => match value.downcast::<ReplayReply>() {
            Ok(reply) => match *reply {
                ReplayReply::Done(response) => answer(response).ok_or_else(unexpected),
                ReplayReply::TimedOut => Err(WitCallError::Timeout),
            },
            Err(_) => Err(unexpected()),
        },
        Ok(Payload::Vals(_)) => Err(unexpected()),
        Err(e) => Err(e.into()),
    }
}
