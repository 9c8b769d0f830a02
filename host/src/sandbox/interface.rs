//! What a component offers and needs, read from its type: its `run`, the
//! service interfaces it exports, the courier client interfaces it imports,
//! and anything else it imports.

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, types::Type};

/// The lp:node interfaces, as components name them.
pub const RUNTIME_INTERFACE: &str = "lp:node/runtime@0.1.0";
pub const TYPES_INTERFACE: &str = "lp:node/types@0.1.0";
pub const WAITING_INTERFACE: &str = "lp:node/waiting@0.1.0";
/// Exports that give a node its `run` (async, or blocking).
pub const LIFECYCLE_INTERFACES: [&str; 2] = [
    "lp:node/lifecycle@0.1.0",
    "lp:node/blocking-lifecycle@0.1.0",
];
/// A client interface is named after its service with one of these
/// suffixes (`-blocking-client` by convention holds synchronous functions).
pub const CLIENT_SUFFIXES: [&str; 2] = ["-blocking-client", "-client"];

/// One function of an interface, with its type.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    pub ty: ComponentFunc,
}

impl Function {
    pub fn params(&self) -> Vec<(String, Type)> {
        self.ty.params().map(|(n, t)| (n.to_string(), t)).collect()
    }

    pub fn results(&self) -> Vec<Type> {
        self.ty.results().collect()
    }
}

/// An interface the component exports for other nodes to call.
#[derive(Clone, Debug)]
pub struct ServiceExport {
    /// e.g. `lp:consumer-producers/producer@0.1.0`.
    pub name: String,
    pub functions: Vec<Function>,
}

/// A courier client interface the component imports.
#[derive(Clone, Debug)]
pub struct ClientImport {
    /// e.g. `lp:consumer-producers/producer-client@0.1.0`.
    pub name: String,
    /// The service it calls, e.g. `lp:consumer-producers/producer@0.1.0`.
    pub service: String,
    pub functions: Vec<Function>,
}

/// A component's node-level shape.
#[derive(Clone, Debug, Default)]
pub struct NodeInterface {
    pub has_run: bool,
    pub services: Vec<ServiceExport>,
    pub clients: Vec<ClientImport>,
    /// Imported interfaces that hold only types (e.g. a service interface a
    /// client `use`s a record from); the host provides them empty.
    pub type_imports: Vec<String>,
    /// Imports that are neither lp:node, WASI, clients nor type-only.
    pub unknown_imports: Vec<String>,
}

impl NodeInterface {
    pub fn service(&self, name: &str) -> Option<&ServiceExport> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Read a component's node-level shape from its type.
pub fn inspect(engine: &Engine, component: &Component) -> NodeInterface {
    let ty = component.component_type();
    let mut node = NodeInterface::default();
    for (name, item) in ty.exports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let functions = functions(engine, &instance);
        if LIFECYCLE_INTERFACES.contains(&name) {
            node.has_run |= functions.iter().any(|f| f.name == "run");
        } else {
            node.services.push(ServiceExport {
                name: name.to_string(),
                functions,
            });
        }
    }
    for (name, item) in ty.imports(engine) {
        if [RUNTIME_INTERFACE, TYPES_INTERFACE, WAITING_INTERFACE].contains(&name)
            || name.starts_with("wasi:")
        {
            continue;
        }
        match (item.ty, service_of_client(name)) {
            (ComponentItem::ComponentInstance(instance), Some(service)) => {
                node.clients.push(ClientImport {
                    name: name.to_string(),
                    service,
                    functions: functions(engine, &instance),
                });
            }
            (ComponentItem::ComponentInstance(instance), None) if only_types(engine, &instance) => {
                node.type_imports.push(name.to_string());
            }
            _ => node.unknown_imports.push(name.to_string()),
        }
    }
    node
}

fn functions(
    engine: &Engine,
    instance: &wasmtime::component::types::ComponentInstance,
) -> Vec<Function> {
    instance
        .exports(engine)
        .filter_map(|(name, item)| match item.ty {
            ComponentItem::ComponentFunc(ty) => Some(Function {
                name: name.to_string(),
                ty,
            }),
            _ => None,
        })
        .collect()
}

/// Whether an instance exports nothing but (non-resource) types.
fn only_types(engine: &Engine, instance: &wasmtime::component::types::ComponentInstance) -> bool {
    instance
        .exports(engine)
        .all(|(_, item)| matches!(item.ty, ComponentItem::Type(_)))
}

/// `pkg/iface-client@v` → `pkg/iface@v`; `None` if not a client name.
pub fn service_of_client(import: &str) -> Option<String> {
    let (path, version) = match import.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (import, None),
    };
    let service = CLIENT_SUFFIXES
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix))?;
    if !service.contains('/') {
        return None;
    }
    Some(match version {
        Some(v) => format!("{service}@{v}"),
        None => service.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_map_to_services() {
        assert_eq!(
            service_of_client("a:b/producer-client@0.1.0").as_deref(),
            Some("a:b/producer@0.1.0")
        );
        assert_eq!(
            service_of_client("a:b/producer-client").as_deref(),
            Some("a:b/producer")
        );
        assert_eq!(service_of_client("a:b/producer@0.1.0"), None);
        assert_eq!(service_of_client("plain-client"), None);
    }
}
