//! A node's `ports` in program.toml: the named ports it serves on, each any
//! free port (`ports = ["http"]`, or `0`) or a fixed one (`ports = { http =
//! 8080 }`), and `--set <node>.ports.<name>=N`, which changes the number of
//! a declared port. Checked here (names, duplicates, numbers, the
//! environment variables the host sets for them); allocated at launch
//! (`launch/ports.rs`).

use super::schema::{Context, Located, check_name};
use super::{Diagnostic, Origin, Place, PortRequest};

const HELP: &str = "write the names of the ports the node serves on, ports = [\"http\", \"metrics\"], or give fixed numbers, ports = { http = 8080, metrics = 0 } (0: any free port)";

/// The ports of node `node`, as written (`written`) and set (`overrides`);
/// `env` is what its grants put in its environment, which must leave the
/// host's port variables alone.
pub(super) fn ports(
    cx: &Context,
    node: &str,
    written: Option<&Located<toml::Value>>,
    overrides: &[(String, Located<toml::Value>)],
    env: &[(String, String)],
) -> Result<Vec<PortRequest>, Diagnostic> {
    let mut requests: Vec<PortRequest> = Vec::new();
    if let Some(written) = written {
        let origin = &written.origin;
        let listed: Vec<(String, Option<u16>)> = match &written.value {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(name) => Ok((name.clone(), None)),
                    other => Err(cx
                        .error(
                            origin,
                            format!("node {node}: a port is named in quotes, not {other}"),
                        )
                        .help(HELP)),
                })
                .collect::<Result<_, _>>()?,
            toml::Value::Table(table) => table
                .iter()
                .map(|(name, number)| {
                    Ok((name.clone(), number_of(cx, node, name, number, origin)?))
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(cx
                    .error(
                        origin,
                        format!(
                            "node {node}: ports is a list of names or a table of numbers, not {other}"
                        ),
                    )
                    .help(HELP));
            }
        };
        for (name, fixed) in listed {
            check_name(cx, &Located::new(name.clone(), origin), "port")?;
            let request = PortRequest {
                name,
                fixed,
                place: Place::of(cx.source, origin),
            };
            if let Some(other) = requests.iter().find(|r| r.port_var() == request.port_var()) {
                let message = match other.name == request.name {
                    true => format!("node {node}: port {:?} is listed twice", request.name),
                    false => format!(
                        "node {node}: ports {:?} and {:?} would both be told in {}",
                        other.name,
                        request.name,
                        request.port_var()
                    ),
                };
                return Err(cx
                    .error(origin, message)
                    .help("list each port once; names that differ only in '-' and '_' or in case are the same port"));
            }
            requests.push(request);
        }
    }
    for (name, value) in overrides {
        let Some(request) = requests.iter_mut().find(|r| r.name == *name) else {
            let declared: Vec<&str> = requests.iter().map(|r| r.name.as_str()).collect();
            let declared = match declared.is_empty() {
                true => "it declares none".to_string(),
                false => format!("its ports are: {}", declared.join(", ")),
            };
            return Err(cx
                .error(
                    &value.origin,
                    format!("node {node} has no port {name:?} to set"),
                )
                .help(format!("--set changes the number of a port program.toml declares ({declared}); a new port is declared in program.toml, where the program is reviewed")));
        };
        request.fixed = number_of(cx, node, name, &value.value, &value.origin)?;
        request.place = Place::of(cx.source, &value.origin);
    }
    for request in &requests {
        for var in [request.port_var(), request.address_var()] {
            if env.iter().any(|(name, _)| *name == var) {
                let origin = written.map_or(Origin::Program, |w| w.origin.clone());
                return Err(cx
                    .error(
                        &origin,
                        format!(
                            "node {node}: grants.env sets {var}, which the host sets for port {:?}",
                            request.name
                        ),
                    )
                    .help(format!(
                        "leave {var} out of grants.env: the node reads its port there"
                    )));
            }
        }
    }
    Ok(requests)
}

/// A port's number: `Some` fixed port, `None` for 0 (any free port).
fn number_of(
    cx: &Context,
    node: &str,
    name: &str,
    value: &toml::Value,
    origin: &Origin,
) -> Result<Option<u16>, Diagnostic> {
    match value {
        toml::Value::Integer(0) => Ok(None),
        toml::Value::Integer(n) if (1..=65535).contains(n) => Ok(Some(*n as u16)),
        other => Err(cx
            .error(
                origin,
                format!("node {node}: port {name} must be a number from 1 to 65535, or 0 for any free port, not {other}"),
            )
            .help(HELP)),
    }
}

#[cfg(test)]
mod tests {
    use crate::program::{Diagnostic, Override, Program, load_str};

    fn load(node: &str, set: &[&str]) -> Result<Program, Diagnostic> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let source = format!(
            "[program]\nname = \"p\"\n\n[[node]]\nname = \"web\"\ncomponent = \"n.wasm\"\n{node}\n\n[[node]]\nname = \"client\"\ncomponent = \"n.wasm\"\nargs = {{ server = {{ address = \"web.http\" }} }}\n"
        );
        let overrides: Vec<Override> = set.iter().map(|s| s.parse().unwrap()).collect();
        load_str(&dir.path().join("program.toml"), &source, &overrides)
    }

    #[test]
    fn ports_are_listed_by_name_or_given_numbers() {
        let p = load("ports = [\"http\", \"metrics\"]", &[]).unwrap();
        let ports = &p.node("web").unwrap().ports;
        assert_eq!(ports.len(), 2);
        assert_eq!((ports[0].name.as_str(), ports[0].fixed), ("http", None));
        assert_eq!(ports[1].port_var(), "LP_PORT_METRICS");
        assert_eq!(ports[0].place.line_col, Some((7, 9)));

        let p = load("ports = { http = 8080, metrics = 0 }", &[]).unwrap();
        let ports = &p.node("web").unwrap().ports;
        assert_eq!(ports[0].fixed, Some(8080));
        assert_eq!(ports[1].fixed, None);
    }

    #[test]
    fn bad_ports_are_refused_at_their_line() {
        let e = load("ports = [\"http\", \"http\"]", &[]).unwrap_err();
        assert_eq!(e.line_col, Some((7, 9)));
        assert!(e.message.contains("port \"http\" is listed twice"), "{e}");
        let e = load("ports = [\"http\", \"my-db\", \"MY_DB\"]", &[]).unwrap_err();
        assert!(e.message.contains("LP_PORT_MY_DB"), "{e}");
        let e = load("ports = [\"ht tp\"]", &[]).unwrap_err();
        assert!(e.message.contains("invalid port name \"ht tp\""), "{e}");
        let e = load("ports = { http = 70000 }", &[]).unwrap_err();
        assert!(e.message.contains("from 1 to 65535"), "{e}");
        let e = load("ports = \"http\"", &[]).unwrap_err();
        assert!(e.message.contains("a list of names or a table"), "{e}");
        let e = load(
            "ports = [\"http\"]\ngrants = { env = { LP_PORT_HTTP = \"1\" } }",
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("grants.env sets LP_PORT_HTTP"), "{e}");
    }

    #[test]
    fn a_declared_port_can_be_given_a_number_with_set_and_no_more() {
        let p = load("ports = [\"http\"]", &["web.ports.http=8081"]).unwrap();
        assert_eq!(p.node("web").unwrap().ports[0].fixed, Some(8081));
        let e = load("ports = [\"http\"]", &["web.ports.admin=1"]).unwrap_err();
        assert_eq!(e.override_text.as_deref(), Some("web.ports.admin=1"));
        assert!(e.message.contains("no port \"admin\""), "{e}");
        let e = load("ports = [\"http\"]", &["web.ports=[\"admin\"]"]).unwrap_err();
        assert!(e.message.contains("cannot be declared with --set"), "{e}");
    }

    #[test]
    fn address_handles_name_a_node_and_one_of_its_ports() {
        let p = load("ports = [\"http\"]", &[]).unwrap();
        let client = p.node("client").unwrap();
        assert_eq!(
            client.args["server"],
            serde_json::json!({ "$lp-address": 0 })
        );
        assert_eq!(client.addresses.len(), 1);
        assert_eq!(client.addresses[0].target, p.node("web").unwrap().id);
        assert_eq!(client.addresses[0].port, "http");
        assert_eq!(client.addresses[0].place.line_col, Some((12, 19)));

        let e = load("ports = [\"metrics\"]", &[]).unwrap_err();
        assert_eq!(e.line_col, Some((12, 19)));
        assert!(e.message.contains("node web has no port \"http\""), "{e}");
        assert!(e.help.unwrap().contains("metrics"));
        let e = load("", &["client.args.server={ address = \"wbe.http\" }"]).unwrap_err();
        assert!(e.message.contains("no node is named \"wbe\""), "{e}");
        let e = load("", &["client.args.server={ address = \"web\" }"]).unwrap_err();
        assert!(e.message.contains("\"node.port\""), "{e}");
    }
}
