//! The ports nodes serve on, allocated at launch on each node's machine,
//! and what a node is given of them: its own ports (the right to bind them,
//! and `LP_PORT_<NAME>` / `LP_ADDRESS_<NAME>` in its environment) and its
//! address handles (the "IP:port" strings in its args, and the right to
//! connect to exactly those).
//!
//! A port is allocated by binding it (port 0: the system picks a free one)
//! and releasing it once every port of the launch is chosen: a wasm node
//! binds its own socket through wasi:sockets, and a listener cannot be
//! handed to it. Between the release and the node's bind another process
//! of the machine could take the port; the node's bind then fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::program::{
    ADDRESS_KEY, Diagnostic, Grants, NetGrant, NetUse, NodeSpec, PortRequest, Program,
};

/// The address the machine of `node` is reached at, by its peers and by the
/// node itself when it binds its ports, when the whole program runs on this
/// machine (local_mt, local_mp, test_mt): 127.0.0.1. Across machines each
/// agent allocates its nodes' ports at its own address ([`allocate_here`],
/// [`Ports::from_allocated`]).
pub fn machine_address(_node: &NodeSpec) -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Every node's allocated ports, by node id (the same in every process of a
/// launch: the launcher allocates them and tells its workers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ports {
    by_node: Vec<Vec<(String, SocketAddr)>>,
}

impl Ports {
    /// Allocate every port of `program` on this machine: a fixed port if it
    /// is free (an error naming the node, the port and its line if not),
    /// else one the system picks.
    pub fn allocate(program: &Program) -> Result<Ports> {
        let mut held: Vec<(TcpListener, u32, String)> = Vec::new();
        let mut by_node = Vec::with_capacity(program.nodes.len());
        for node in &program.nodes {
            let ip = machine_address(node);
            let mut ports = Vec::with_capacity(node.ports.len());
            for request in &node.ports {
                let listener = bind(program, node, request, ip, &held)?;
                let addr = listener.local_addr()?;
                ports.push((request.name.clone(), addr));
                held.push((listener, node.id, request.name.clone()));
            }
            by_node.push(ports);
        }
        // Released here, once no two ports of the launch can be the same.
        drop(held);
        Ok(Ports { by_node })
    }

    /// The ports of `program`'s nodes as allocated elsewhere (by the agents
    /// of a launch across machines, each on its own machine): node id,
    /// port name, address.
    pub fn from_allocated(
        program: &Program,
        allocated: impl IntoIterator<Item = (u32, String, SocketAddr)>,
    ) -> Ports {
        let mut by_node = vec![Vec::new(); program.nodes.len()];
        for (node, name, addr) in allocated {
            if let Some(ports) = by_node.get_mut(node as usize) {
                ports.push((name, addr));
            }
        }
        Ports { by_node }
    }

    /// The address allocated to port `port` of node `node`.
    pub fn address(&self, node: u32, port: &str) -> Option<SocketAddr> {
        self.by_node
            .get(node as usize)?
            .iter()
            .find(|(name, _)| name == port)
            .map(|(_, addr)| *addr)
    }

    /// The args of `node` as it sees them: every address handle replaced by
    /// its "IP:port".
    pub(super) fn args_of(&self, node: &NodeSpec) -> serde_json::Value {
        let mut args = node.args.clone();
        if !node.addresses.is_empty() {
            self.fill_addresses(node, &mut args);
        }
        args
    }

    fn fill_addresses(&self, node: &NodeSpec, value: &mut serde_json::Value) {
        use serde_json::Value as J;
        match value {
            J::Object(object) => {
                if object.len() == 1
                    && let Some(index) = object.get(ADDRESS_KEY).and_then(J::as_u64)
                {
                    let address = node
                        .addresses
                        .get(index as usize)
                        .and_then(|a| self.address(a.target, &a.port));
                    if let Some(address) = address {
                        *value = J::String(address.to_string());
                    }
                    return;
                }
                for item in object.values_mut() {
                    self.fill_addresses(node, item);
                }
            }
            J::Array(items) => {
                for item in items {
                    self.fill_addresses(node, item);
                }
            }
            _ => {}
        }
    }

    /// The grants of `node` with its ports: the right to serve on each of
    /// its own (and their variables in its environment) and to connect to
    /// each address it was given.
    pub(super) fn grants_of(&self, node: &NodeSpec) -> Grants {
        let mut grants = node.grants.clone();
        for request in &node.ports {
            let Some(addr) = self.address(node.id, &request.name) else {
                continue;
            };
            grants.network.push(NetGrant {
                ip: addr.ip(),
                port: Some(addr.port()),
                usage: NetUse::Serve,
            });
            grants
                .env
                .push((request.port_var(), addr.port().to_string()));
            grants.env.push((request.address_var(), addr.to_string()));
        }
        for address in &node.addresses {
            if let Some(addr) = self.address(address.target, &address.port) {
                grants.network.push(NetGrant {
                    ip: addr.ip(),
                    port: Some(addr.port()),
                    usage: NetUse::Connect,
                });
            }
        }
        grants
    }
}

/// Bind `request` of `node` at `ip`, or say why it cannot be had.
fn bind(
    program: &Program,
    node: &NodeSpec,
    request: &PortRequest,
    ip: IpAddr,
    held: &[(TcpListener, u32, String)],
) -> Result<TcpListener> {
    let refuse = |message: String, help: &str| {
        anyhow::Error::new(Diagnostic::at(&program.file, &request.place, message).help(help))
    };
    let wanted = SocketAddr::new(ip, request.fixed.unwrap_or(0));
    if let Some(fixed) = request.fixed {
        let taken = held
            .iter()
            .find(|(listener, _, _)| listener.local_addr().is_ok_and(|a| a == wanted));
        if let Some((_, other, name)) = taken {
            let other = &program.nodes[*other as usize].name;
            return Err(refuse(
                format!(
                    "port {} of node {} is {fixed} on {ip}, which port {name} of node {other} has too",
                    request.name, node.name
                ),
                "give each node on a machine its own fixed port (replicas share their entry's ports table), or 0 for any free port",
            ));
        }
    }
    TcpListener::bind(wanted).map_err(|e| match request.fixed {
        Some(fixed) => refuse(
            format!(
                "port {} of node {} is {fixed}, which cannot be had on {ip}: {e}",
                request.name, node.name
            ),
            "stop what uses the port, or give it another number (--set <node>.ports.<name>=N; 0 for any free port)",
        ),
        None => anyhow::anyhow!(
            "cannot allocate port {} of node {} on {ip}: {e}",
            request.name,
            node.name
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(source: &str) -> Program {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        crate::program::load_str(&dir.path().join("program.toml"), source, &[]).unwrap()
    }

    const WEB: &str = "[program]\nname = \"p\"\n[[node]]\nname = \"web\"\ncomponent = \"n.wasm\"\nreplicas = 2\nports = [\"http\", \"metrics\"]\n[[node]]\nname = \"client\"\ncomponent = \"n.wasm\"\nargs = { servers = [{ address = \"web/0.http\" }, { address = \"web/1.http\" }], other = { address = \"web/1.metrics\" }, n = 1 }\ngrants = { network = [\"10.0.0.1:80\"] }\n";

    #[test]
    fn every_replica_gets_ports_of_its_own_and_peers_their_addresses() {
        let program = program(WEB);
        let ports = Ports::allocate(&program).unwrap();
        let all: Vec<SocketAddr> = (0..2)
            .flat_map(|id| ["http", "metrics"].map(|p| ports.address(id, p).unwrap()))
            .collect();
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!all[..i].contains(a), "{a} allocated twice: {all:?}");
        }
        let client = program.node("client").unwrap();
        let args = ports.args_of(client);
        assert_eq!(
            args,
            serde_json::json!({
                "servers": [all[0].to_string(), all[2].to_string()],
                "other": all[3].to_string(),
                "n": 1,
            })
        );
        // The client may connect to exactly those three, besides its own grant.
        let grants = ports.grants_of(client);
        assert_eq!(grants.network.len(), 4);
        for addr in [all[0], all[2], all[3]] {
            assert!(grants.network.iter().any(|g| g.allows(addr, false)));
            assert!(!grants.network.iter().any(|g| g.allows(addr, true)));
        }
        assert!(!grants.network.iter().any(|g| g.allows(all[1], false)));
        assert!(grants.env.is_empty());

        // A server may serve on its own ports only, and is told them.
        let web1 = program.node("web/1").unwrap();
        let grants = ports.grants_of(web1);
        assert!(grants.network.iter().any(|g| g.allows(all[2], true)));
        assert!(!grants.network.iter().any(|g| g.allows(all[0], true)));
        assert!(!grants.network.iter().any(|g| g.allows(all[2], false)));
        assert!(
            grants
                .env
                .contains(&("LP_PORT_HTTP".into(), all[2].port().to_string()))
        );
        assert!(
            grants
                .env
                .contains(&("LP_ADDRESS_METRICS".into(), all[3].to_string()))
        );
    }

    #[test]
    fn a_fixed_port_that_is_taken_is_refused_at_its_line() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let program = program(&format!(
            "[program]\nname = \"p\"\n[[node]]\nname = \"web\"\ncomponent = \"n.wasm\"\nports = {{ http = {port} }}\n"
        ));
        let error = Ports::allocate(&program).unwrap_err();
        let diagnostic = error.downcast_ref::<Diagnostic>().expect("a diagnostic");
        assert_eq!(diagnostic.line_col, Some((6, 9)));
        assert!(
            diagnostic.message.contains(&format!(
                "port http of node web is {port}, which cannot be had"
            )),
            "{diagnostic}"
        );
        drop(taken);
        // Free again: it is the node's.
        let ports = Ports::allocate(&program).unwrap();
        assert_eq!(ports.address(0, "http").unwrap().port(), port);
    }

    #[test]
    fn replicas_cannot_share_a_fixed_port_on_one_machine() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let program = program(&format!(
            "[program]\nname = \"p\"\n[[node]]\nname = \"web\"\ncomponent = \"n.wasm\"\nreplicas = 2\nports = {{ http = {port} }}\n"
        ));
        let error = format!("{:#}", Ports::allocate(&program).unwrap_err());
        assert!(
            error.contains("port http of node web/1 is") && error.contains("node web/0 has too"),
            "{error}"
        );
    }
}

/// A port to allocate on another machine: node id, port name, and its
/// fixed number (0: any free one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAsk {
    pub node: u32,
    pub name: String,
    pub port: u16,
}

/// Why a port asked for on another machine could not be had: which ask
/// (its index) and the system's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRefused {
    pub ask: usize,
    pub error: String,
}

/// Allocate `asks` on this machine at `ip` (what an agent does for the
/// nodes placed on it): each bound (a fixed number, else one the system
/// picks), all held until every one is chosen, then released.
pub fn allocate_here(ip: IpAddr, asks: &[PortAsk]) -> Result<Vec<SocketAddr>, PortRefused> {
    let mut held = Vec::with_capacity(asks.len());
    for (k, ask) in asks.iter().enumerate() {
        let listener =
            TcpListener::bind(SocketAddr::new(ip, ask.port)).map_err(|e| PortRefused {
                ask: k,
                error: e.to_string(),
            })?;
        held.push(listener);
    }
    held.iter()
        .enumerate()
        .map(|(k, listener)| {
            listener.local_addr().map_err(|e| PortRefused {
                ask: k,
                error: e.to_string(),
            })
        })
        .collect()
}
