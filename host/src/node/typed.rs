//! Typed calls for common shapes. Through wasmtime's dynamic API a
//! `list<u8>` is one `Val` per byte, converted, checked and copied element by
//! element on both sides of a call. When a courier function takes at most
//! one argument and returns at most one value, each of a common type
//! (u32, u64, f64, string, list<u8>, list<f32>), the host links the client
//! import and calls the export with wasmtime's typed API instead, and the
//! value crosses as the Rust value itself (`Payload::Typed`): lists are
//! copied in bulk. Every other shape takes the dynamic path.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use wasmtime::component::types::Type;
use wasmtime::component::{
    Accessor, ComponentNamedList, ComponentType, Func, Lift, LinkerInstance, Lower, TypedFunc,
};

use super::{NodeContext, NodeState};
use crate::courier::codec::{CodecError, get_len, get_unsigned, put_unsigned, take};
use crate::courier::{CallError, FuncKey, Payload, Reply, TypedWire};

/// `lp:node/types.handle`, as the typed path lifts it.
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
pub(super) struct Handle {
    pub node: u32,
    #[component(name = "timeout-ms")]
    pub timeout_ms: Option<u64>,
}

/// `lp:node/types.call-error`, as the typed path lowers it.
#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
pub(super) enum WitCallError {
    #[component(name = "unreachable")]
    Unreachable(String),
    #[component(name = "timeout")]
    Timeout,
    #[component(name = "remote-trap")]
    RemoteTrap(String),
    #[component(name = "stopping")]
    Stopping,
}

impl From<CallError> for WitCallError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(why) => WitCallError::Unreachable(why),
            CallError::Timeout => WitCallError::Timeout,
            CallError::RemoteTrap(msg) => WitCallError::RemoteTrap(msg),
            CallError::Stopping => WitCallError::Stopping,
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A node's export bound to its typed signature.
pub type Bound = Box<dyn Any + Send + Sync>;

/// One typed call shape.
pub trait Shape: TypedWire {
    /// Define client function `name` (calling `key`) in `instance`.
    fn link(
        &self,
        instance: &mut LinkerInstance<'_, NodeState>,
        name: &str,
        key: FuncKey,
        blocking: bool,
    ) -> Result<()>;
    /// Bind the export `func` to this shape, if its type fits.
    fn bind_func(&self, store: wasmtime::StoreContext<'_, NodeState>, func: Func) -> Option<Bound>;
    /// Serve one typed call on a bound export.
    fn serve<'a>(
        &self,
        accessor: &'a Accessor<NodeState>,
        bound: &'a Bound,
        args: Box<dyn Any + Send>,
    ) -> BoxFuture<'a, Result<Payload>>;
}

/// What a function may return on the typed path: nothing, or one value.
pub trait Output: Send + Sync + 'static + Sized {
    /// The export's results tuple.
    type Results: ComponentNamedList + Lift + Lower + Send + Sync + 'static;
    /// The client's `result<T, call-error>` ok type.
    type Ok: ComponentType + Lift + Lower + Wire + Send + Sync + 'static;
    fn from_results(results: Self::Results) -> Self::Ok;
}

/// How a typed-shape value is written between processes.
pub trait Wire: Sized + Send + 'static {
    fn put(&self, out: &mut Vec<u8>);
    fn get(input: &mut &[u8]) -> Result<Self, CodecError>;
}

impl Wire for () {
    fn put(&self, _: &mut Vec<u8>) {}
    fn get(_: &mut &[u8]) -> Result<(), CodecError> {
        Ok(())
    }
}

impl Wire for u32 {
    fn put(&self, out: &mut Vec<u8>) {
        put_unsigned(out, *self as u64);
    }
    fn get(input: &mut &[u8]) -> Result<u32, CodecError> {
        u32::try_from(get_unsigned(input)?).map_err(|_| CodecError("u32 out of range".into()))
    }
}

impl Wire for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        put_unsigned(out, *self);
    }
    fn get(input: &mut &[u8]) -> Result<u64, CodecError> {
        get_unsigned(input)
    }
}

impl Wire for f64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(input: &mut &[u8]) -> Result<f64, CodecError> {
        Ok(f64::from_le_bytes(
            take(input, 8)?.try_into().expect("8 bytes"),
        ))
    }
}

impl Wire for Vec<u8> {
    fn put(&self, out: &mut Vec<u8>) {
        put_unsigned(out, self.len() as u64);
        out.extend_from_slice(self);
    }
    fn get(input: &mut &[u8]) -> Result<Vec<u8>, CodecError> {
        let len = get_len(input)?;
        Ok(take(input, len)?.to_vec())
    }
}

impl Wire for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_unsigned(out, self.len() as u64);
        out.extend_from_slice(self.as_bytes());
    }
    fn get(input: &mut &[u8]) -> Result<String, CodecError> {
        String::from_utf8(Vec::<u8>::get(input)?)
            .map_err(|_| CodecError("string is not UTF-8".into()))
    }
}

impl Wire for Vec<f32> {
    fn put(&self, out: &mut Vec<u8>) {
        put_unsigned(out, self.len() as u64);
        for v in self {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn get(input: &mut &[u8]) -> Result<Vec<f32>, CodecError> {
        let len = get_len(input)?;
        let bytes = take(
            input,
            len.checked_mul(4)
                .ok_or_else(|| CodecError("list too long".into()))?,
        )?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

fn put_any<T: Wire>(value: &(dyn Any + Send), out: &mut Vec<u8>) -> Result<(), CodecError> {
    value
        .downcast_ref::<T>()
        .ok_or_else(|| CodecError("value of an unexpected type".into()))?
        .put(out);
    Ok(())
}

fn get_any<T: Wire>(input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError> {
    Ok(Box::new(T::get(input)?))
}

impl<P: Wire, R: Output> TypedWire for One<P, R> {
    fn encode_args(&self, args: &(dyn Any + Send), out: &mut Vec<u8>) -> Result<(), CodecError> {
        put_any::<P>(args, out)
    }
    fn decode_args(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError> {
        get_any::<P>(input)
    }
    fn encode_result(
        &self,
        result: &(dyn Any + Send),
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        put_any::<R::Ok>(result, out)
    }
    fn decode_result(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError> {
        get_any::<R::Ok>(input)
    }
}

impl<R: Output> TypedWire for Zero<R> {
    fn encode_args(&self, args: &(dyn Any + Send), out: &mut Vec<u8>) -> Result<(), CodecError> {
        put_any::<()>(args, out)
    }
    fn decode_args(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError> {
        get_any::<()>(input)
    }
    fn encode_result(
        &self,
        result: &(dyn Any + Send),
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        put_any::<R::Ok>(result, out)
    }
    fn decode_result(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError> {
        get_any::<R::Ok>(input)
    }
}

impl Output for () {
    type Results = ();
    type Ok = ();
    fn from_results(_: ()) {}
}

macro_rules! output {
    ($($t:ty),*) => {$(
        impl Output for $t {
            type Results = ($t,);
            type Ok = $t;
            fn from_results(results: ($t,)) -> $t {
                results.0
            }
        }
    )*};
}
output!(u32, u64, f64, String, Vec<u8>, Vec<f32>);

/// Turn a reply into what the client function returns.
fn client_result<R: Output>(reply: Reply) -> (Result<R::Ok, WitCallError>,) {
    (match reply {
        Ok(Payload::Typed(value)) => match value.downcast::<R::Ok>() {
            Ok(v) => Ok(*v),
            Err(_) => Err(WitCallError::Unreachable(
                "reply of an unexpected type".into(),
            )),
        },
        Ok(Payload::Vals(_)) => Err(WitCallError::Unreachable(
            "reply of an unexpected type".into(),
        )),
        Err(e) => Err(e.into()),
    },)
}

async fn call(
    node: Arc<NodeContext>,
    handle: Handle,
    key: FuncKey,
    args: Box<dyn Any + Send>,
) -> Reply {
    let deadline = handle.timeout_ms.map(Duration::from_millis);
    node.call_node(handle.node, deadline, key, Payload::Typed(args))
        .await
}

/// `f(arg: P) -> R`.
pub struct One<P, R>(PhantomData<fn(P) -> R>);

impl<P, R> Shape for One<P, R>
where
    P: ComponentType + Lift + Lower + Wire + Send + Sync + 'static,
    R: Output,
{
    fn link(
        &self,
        instance: &mut LinkerInstance<'_, NodeState>,
        name: &str,
        key: FuncKey,
        blocking: bool,
    ) -> Result<()> {
        if blocking {
            instance.func_wrap_async(name, move |store, (handle, arg): (Handle, P)| {
                let node = store.data().node.clone();
                Box::new(async move {
                    Ok(client_result::<R>(
                        call(node, handle, key, Box::new(arg)).await,
                    ))
                })
            })?;
        } else {
            instance.func_wrap_concurrent(name, move |accessor, (handle, arg): (Handle, P)| {
                let node = accessor.with(|mut access| access.data_mut().node.clone());
                Box::pin(async move {
                    Ok(client_result::<R>(
                        call(node, handle, key, Box::new(arg)).await,
                    ))
                })
            })?;
        }
        Ok(())
    }

    fn bind_func(&self, store: wasmtime::StoreContext<'_, NodeState>, func: Func) -> Option<Bound> {
        let typed: TypedFunc<(P,), R::Results> = func.typed(store).ok()?;
        Some(Box::new(typed))
    }

    fn serve<'a>(
        &self,
        accessor: &'a Accessor<NodeState>,
        bound: &'a Bound,
        args: Box<dyn Any + Send>,
    ) -> BoxFuture<'a, Result<Payload>> {
        Box::pin(async move {
            let func = *bound
                .downcast_ref::<TypedFunc<(P,), R::Results>>()
                .ok_or_else(|| anyhow::anyhow!("typed call on a mismatched export"))?;
            let arg = *args
                .downcast::<P>()
                .map_err(|_| anyhow::anyhow!("typed call with a mismatched argument"))?;
            let results = func.call_concurrent(accessor, (arg,)).await?;
            Ok(Payload::Typed(Box::new(R::from_results(results))))
        })
    }
}

/// `f() -> R`.
pub struct Zero<R>(PhantomData<fn() -> R>);

impl<R: Output> Shape for Zero<R> {
    fn link(
        &self,
        instance: &mut LinkerInstance<'_, NodeState>,
        name: &str,
        key: FuncKey,
        blocking: bool,
    ) -> Result<()> {
        if blocking {
            instance.func_wrap_async(name, move |store, (handle,): (Handle,)| {
                let node = store.data().node.clone();
                Box::new(async move {
                    Ok(client_result::<R>(
                        call(node, handle, key, Box::new(())).await,
                    ))
                })
            })?;
        } else {
            instance.func_wrap_concurrent(name, move |accessor, (handle,): (Handle,)| {
                let node = accessor.with(|mut access| access.data_mut().node.clone());
                Box::pin(async move {
                    Ok(client_result::<R>(
                        call(node, handle, key, Box::new(())).await,
                    ))
                })
            })?;
        }
        Ok(())
    }

    fn bind_func(&self, store: wasmtime::StoreContext<'_, NodeState>, func: Func) -> Option<Bound> {
        let typed: TypedFunc<(), R::Results> = func.typed(store).ok()?;
        Some(Box::new(typed))
    }

    fn serve<'a>(
        &self,
        accessor: &'a Accessor<NodeState>,
        bound: &'a Bound,
        _args: Box<dyn Any + Send>,
    ) -> BoxFuture<'a, Result<Payload>> {
        Box::pin(async move {
            let func = *bound
                .downcast_ref::<TypedFunc<(), R::Results>>()
                .ok_or_else(|| anyhow::anyhow!("typed call on a mismatched export"))?;
            let results = func.call_concurrent(accessor, ()).await?;
            Ok(Payload::Typed(Box::new(R::from_results(results))))
        })
    }
}

/// The value kinds the typed path carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    U32,
    U64,
    F64,
    Str,
    Bytes,
    F32s,
}

fn kind(ty: &Type) -> Option<Kind> {
    Some(match ty {
        Type::U32 => Kind::U32,
        Type::U64 => Kind::U64,
        Type::Float64 => Kind::F64,
        Type::String => Kind::Str,
        Type::List(l) => match l.ty() {
            Type::U8 => Kind::Bytes,
            Type::Float32 => Kind::F32s,
            _ => return None,
        },
        _ => return None,
    })
}

/// The typed shape for a function with these argument types (after the
/// handle) and result type, if there is one.
pub fn shape_for(args: &[Type], result: Option<&Type>) -> Option<Arc<dyn Shape>> {
    let result = match result {
        None => None,
        Some(t) => Some(kind(t)?),
    };
    macro_rules! by_result {
        ($make:ident) => {
            match result {
                None => $make!(()),
                Some(Kind::U32) => $make!(u32),
                Some(Kind::U64) => $make!(u64),
                Some(Kind::F64) => $make!(f64),
                Some(Kind::Str) => $make!(String),
                Some(Kind::Bytes) => $make!(Vec<u8>),
                Some(Kind::F32s) => $make!(Vec<f32>),
            }
        };
    }
    match args {
        [] => {
            macro_rules! zero {
                ($r:ty) => {
                    Some(Arc::new(Zero::<$r>(PhantomData)) as Arc<dyn Shape>)
                };
            }
            by_result!(zero)
        }
        [arg] => {
            macro_rules! one {
                ($p:ty) => {{
                    macro_rules! with_arg {
                        ($r:ty) => {
                            Some(Arc::new(One::<$p, $r>(PhantomData)) as Arc<dyn Shape>)
                        };
                    }
                    by_result!(with_arg)
                }};
            }
            match kind(arg)? {
                Kind::U32 => one!(u32),
                Kind::U64 => one!(u64),
                Kind::F64 => one!(f64),
                Kind::Str => one!(String),
                Kind::Bytes => one!(Vec<u8>),
                Kind::F32s => one!(Vec<f32>),
            }
        }
        _ => None,
    }
}
