//! Before launch, every edge is type-checked: for a handle from caller to
//! target, each client interface the caller imports for a service the target
//! exports must match that service function by function (names and types).

use wasmtime::component::types::Type;

use crate::sandbox::{ClientImport, Function, NodeInterface, ServiceExport};

/// A client interface's shape: handle first, `result<T, call-error>` back.
pub fn check_client_shape(client: &ClientImport) -> Result<(), String> {
    for f in &client.functions {
        let params = f.params();
        let first_is_handle = params.first().is_some_and(|(_, ty)| is_handle(ty));
        if !first_is_handle {
            return Err(format!(
                "client function {}.{} must take the target `handle` (from lp:node/types) as its first parameter",
                client.name, f.name
            ));
        }
        let ok = matches!(f.results().as_slice(), [Type::Result(r)] if r.err().as_ref().is_some_and(is_call_error));
        if !ok {
            return Err(format!(
                "client function {}.{} must return result<T, call-error>, where T is what {} returns",
                client.name, f.name, client.service
            ));
        }
    }
    Ok(())
}

/// Check one edge; the error names both nodes and the function.
pub fn check_edge(
    caller: &str,
    caller_ty: &NodeInterface,
    target: &str,
    target_ty: &NodeInterface,
    arg: &str,
) -> Result<(), String> {
    if caller_ty.clients.is_empty() {
        // A node may hold handles only to pass them on.
        return Ok(());
    }
    let mut matched = false;
    for client in &caller_ty.clients {
        let Some(service) = target_ty.service(&client.service) else {
            continue;
        };
        matched = true;
        for f in &client.functions {
            check_function(caller, target, client, f, service)?;
        }
    }
    if matched {
        return Ok(());
    }
    let wanted: Vec<&str> = caller_ty
        .clients
        .iter()
        .map(|c| c.service.as_str())
        .collect();
    let offered: Vec<&str> = target_ty.services.iter().map(|s| s.name.as_str()).collect();
    Err(format!(
        "node {caller} was given a handle to node {target} (arg `{arg}`), but {target} exports none of the services {caller} has clients for: {caller} calls [{}], {target} exports [{}]",
        wanted.join(", "),
        offered.join(", ")
    ))
}

fn check_function(
    caller: &str,
    target: &str,
    client: &ClientImport,
    f: &Function,
    service: &ServiceExport,
) -> Result<(), String> {
    let at = format!("{}.{}", service.name, f.name);
    let Some(served) = service.functions.iter().find(|s| s.name == f.name) else {
        return Err(format!(
            "node {caller} calls {at}, but node {target} does not export function `{}`",
            f.name
        ));
    };
    let mismatch = |what: String| {
        Err(format!(
            "type mismatch on {at} between caller {caller} and target {target}: {what}"
        ))
    };
    let client_params = f.params();
    let served_params = served.params();
    let client_params = &client_params[1..];
    if client_params.len() != served_params.len() {
        return mismatch(format!(
            "{caller} passes {} argument(s), {target} takes {}",
            client_params.len(),
            served_params.len()
        ));
    }
    for ((cn, ct), (sn, st)) in client_params.iter().zip(&served_params) {
        if cn != sn || ct != st {
            return mismatch(format!(
                "parameter {cn}: {} in {caller}'s client, {sn}: {} in {target}'s export",
                describe(ct),
                describe(st)
            ));
        }
    }
    let Some(Type::Result(wrapped)) = f.results().into_iter().next() else {
        return mismatch(format!(
            "{}'s client does not return result<_, call-error>",
            client.name
        ));
    };
    let expected = wrapped.ok();
    let served_result = served.results().into_iter().next();
    if expected != served_result {
        let show = |t: &Option<Type>| t.as_ref().map_or("nothing".to_string(), describe);
        return mismatch(format!(
            "{caller} expects {} back, {target} returns {}",
            show(&expected),
            show(&served_result)
        ));
    }
    Ok(())
}

/// `record handle { node: u32, timeout-ms: option<u64> }` from lp:node/types.
fn is_handle(ty: &Type) -> bool {
    match ty {
        Type::Record(r) => {
            let fields: Vec<_> = r.fields().collect();
            let deadline = |ty: &Type| matches!(ty, Type::Option(o) if o.ty() == Type::U64);
            fields.len() == 2
                && fields[0].name == "node"
                && fields[0].ty == Type::U32
                && fields[1].name == "timeout-ms"
                && deadline(&fields[1].ty)
        }
        _ => false,
    }
}

/// The `call-error` variant from lp:node/types.
fn is_call_error(ty: &Type) -> bool {
    match ty {
        Type::Variant(v) => {
            let names: Vec<&str> = v.cases().map(|c| c.name).collect();
            names == ["unreachable", "timeout", "remote-trap", "stopping"]
        }
        _ => false,
    }
}

/// A WIT-like rendering of a type, for error messages.
pub fn describe(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", describe(&l.ty())),
        Type::Map(m) => format!("map<{}, {}>", describe(&m.key()), describe(&m.value())),
        Type::Record(r) => {
            let fields: Vec<String> = r
                .fields()
                .map(|f| format!("{}: {}", f.name, describe(&f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types()
                .map(|t| describe(&t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(v) => {
            let cases: Vec<String> = v
                .cases()
                .map(|c| match c.ty {
                    Some(t) => format!("{}({})", c.name, describe(&t)),
                    None => c.name.to_string(),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Option(o) => format!("option<{}>", describe(&o.ty())),
        Type::Result(r) => {
            let show = |t: Option<Type>| t.map_or("_".to_string(), |t| describe(&t));
            format!("result<{}, {}>", show(r.ok()), show(r.err()))
        }
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
        Type::FixedLengthList(l) => format!("list<{}, N>", describe(&l.ty())),
    }
}
