//! The `resources` table of a node in program.toml: what the node needs of
//! the machine its process runs on (cpus, memory_mib, gpus, a host label),
//! with `--set <node>.resources.<key>` over it, and the rule that the nodes
//! of one colocation group (one process) agree on their host label.

use std::collections::HashMap;

use toml::Spanned;

use super::schema::{Context, Located, RawResources};
use super::{Diagnostic, Origin, Place, Resources};

const KEYS_HELP: &str = "resources are cpus, memory_mib, gpus and host, e.g. resources = { cpus = 2, memory_mib = 4096, gpus = 1, host = \"gpu-box\" }";

/// A node's resources: its table, then its overrides, each value checked.
/// Also returns where its host label was written, if it has one.
pub(super) fn resources(
    cx: &Context,
    table: Option<Spanned<RawResources>>,
    overrides: &[(String, Located<toml::Value>)],
) -> Result<(Resources, Option<Origin>), Diagnostic> {
    let mut settings: Vec<(String, Located<toml::Value>)> = Vec::new();
    let mut origin = None;
    if let Some(table) = table {
        origin = Some(Origin::File(table.span()));
        let raw = table.into_inner();
        let mut add = |key: &str, value: Option<Located<toml::Value>>| {
            if let Some(value) = value {
                settings.push((key.to_string(), value));
            }
        };
        add("cpus", raw.cpus.map(|v| located(v, toml::Value::Float)));
        add(
            "memory_mib",
            raw.memory_mib.map(|v| located(v, toml::Value::Integer)),
        );
        add("gpus", raw.gpus.map(|v| located(v, toml::Value::Integer)));
        add("host", raw.host.map(|v| located(v, toml::Value::String)));
    }
    if origin.is_none()
        && let Some((_, last)) = overrides.last()
    {
        origin = Some(last.origin.clone());
    }
    settings.extend(overrides.iter().map(|(k, v)| {
        (
            k.clone(),
            Located {
                value: v.value.clone(),
                origin: v.origin.clone(),
            },
        )
    }));

    let mut resources = Resources {
        place: origin
            .as_ref()
            .map_or_else(Place::default, |o| Place::of(cx.source, o)),
        ..Resources::default()
    };
    let mut host_origin = None;
    for (key, value) in &settings {
        set(cx, &mut resources, key, value)?;
        if key == "host" {
            host_origin = Some(value.origin.clone());
        }
    }
    Ok((resources, host_origin))
}

fn located<T>(value: Spanned<T>, wrap: impl Fn(T) -> toml::Value) -> Located<toml::Value> {
    let origin = Origin::File(value.span());
    Located {
        value: wrap(value.into_inner()),
        origin,
    }
}

/// Set one resource, refusing what a machine cannot offer.
fn set(
    cx: &Context,
    resources: &mut Resources,
    key: &str,
    value: &Located<toml::Value>,
) -> Result<(), Diagnostic> {
    let origin = &value.origin;
    let count = || match value.value {
        toml::Value::Integer(n) if n >= 0 => Ok(n as u64),
        ref other => Err(cx
            .error(
                origin,
                format!("resources.{key} must be a whole number, 0 or more, not {other}"),
            )
            .help(format!("e.g. {key} = 2; leave it out to ask for none"))),
    };
    match key {
        "cpus" => {
            let cpus = super::schema::number(&value.value).unwrap_or(f64::NAN);
            if !(cpus.is_finite() && cpus >= 0.0) {
                return Err(cx
                    .error(
                        origin,
                        format!(
                            "resources.cpus must be a number of CPUs, 0 or more, not {}",
                            value.value
                        ),
                    )
                    .help("e.g. cpus = 2, or cpus = 0.5 for half of one; leave it out to ask for none"));
            }
            resources.cpus = cpus;
        }
        "memory_mib" => resources.memory_mib = count()?,
        "gpus" => resources.gpus = count()?,
        "host" => match &value.value {
            toml::Value::String(label) if !label.trim().is_empty() => {
                resources.host = Some(label.clone());
            }
            other => {
                return Err(cx
                    .error(
                        origin,
                        format!("resources.host must be an agent's host label, not {other}"),
                    )
                    .help("e.g. host = \"gpu-box\": the node runs only on an agent started with that label; leave it out to run anywhere"));
            }
        },
        other => {
            return Err(cx
                .error(origin, format!("unknown resource `{other}`"))
                .help(KEYS_HELP));
        }
    }
    Ok(())
}

/// The host label each colocation group has so far, to refuse a group
/// whose nodes ask for different machines (they share one process).
#[derive(Default)]
pub(super) struct ColocatedHosts {
    /// colocation name → (label, the node that set it, where).
    first: HashMap<String, (String, String, Origin)>,
}

impl ColocatedHosts {
    pub fn add(
        &mut self,
        cx: &Context,
        colocate: &str,
        node: &str,
        label: &str,
        origin: &Origin,
    ) -> Result<(), Diagnostic> {
        let Some((first_label, first_node, first_origin)) = self.first.get(colocate) else {
            self.first.insert(
                colocate.to_string(),
                (label.to_string(), node.to_string(), origin.clone()),
            );
            return Ok(());
        };
        if first_label == label {
            return Ok(());
        }
        let first_place = match Place::of(cx.source, first_origin) {
            Place {
                line_col: Some((l, c)),
                ..
            } => format!("line {l}, column {c}"),
            Place {
                override_text: Some(text),
                ..
            } => format!("--set {text}"),
            _ => "the program".to_string(),
        };
        Err(cx
            .error(
                origin,
                format!(
                    "node {node} asks for host {label:?}, but {first_node} ({first_place}) asks for host {first_label:?}, and both are in colocation group {colocate:?} (one process, on one machine)"
                ),
            )
            .help("give the nodes of a colocation group one host label (or set it on one of them only), or put them in different groups"))
    }
}

#[cfg(test)]
mod tests {
    use crate::program::{Diagnostic, Override, Program, load_str};

    fn load_with(resources: &str, set: &[&str]) -> Result<Program, Diagnostic> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let source = format!(
            "[program]\nname = \"p\"\n\n[[node]]\nname = \"a\"\ncomponent = \"n.wasm\"\n{resources}\n"
        );
        let overrides: Vec<Override> = set.iter().map(|s| s.parse().unwrap()).collect();
        load_str(&dir.path().join("program.toml"), &source, &overrides)
    }

    #[test]
    fn an_override_replaces_one_key_of_the_table() {
        let p = load_with(
            "resources = { cpus = 1, memory_mib = 64 }",
            &["a.resources.cpus=3"],
        )
        .unwrap();
        let r = &p.node("a").unwrap().resources;
        assert_eq!((r.cpus, r.memory_mib), (3.0, 64));
        // The table is where the resources were written.
        assert_eq!(r.place.line_col, Some((7, 13)));
    }

    #[test]
    fn nan_infinite_and_negative_values_are_refused() {
        for bad in ["cpus = nan", "cpus = inf", "cpus = -0.5"] {
            let e = load_with(&format!("resources = {{ {bad} }}"), &[]).unwrap_err();
            assert_eq!(e.line_col.map(|(l, _)| l), Some(7), "{e}");
            assert!(e.message.starts_with("resources.cpus must be"), "{e}");
            assert!(e.help.is_some());
        }
        let e = load_with("", &["a.resources.cpus=nan"]).unwrap_err();
        assert_eq!(e.override_text.as_deref(), Some("a.resources.cpus=nan"));
        let e = load_with("", &["a.resources.memory_mib=-3"]).unwrap_err();
        assert!(e.message.contains("not -3"), "{e}");
        let e = load_with("", &["a.resources.host=3"]).unwrap_err();
        assert!(e.message.contains("host label"), "{e}");
        // Zero is asking for none.
        let p = load_with("resources = { cpus = 0, gpus = 0 }", &[]).unwrap();
        assert!(p.node("a").unwrap().resources.is_empty());
    }
}
