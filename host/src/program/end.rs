//! `[program] wait_for` and `end_on`: which nodes' runs end the program
//! (every node with a `run`, unless `wait_for` names nodes, entries or
//! groups) and whether all of them must finish or the first one does.

use std::collections::HashMap;

use super::diagnostic::Diagnostic;
use super::schema::{Context, Located};
use super::{EndRule, NodeSpec, Origin, Place, WaitFor};

const WAIT_FOR_HELP: &str = "e.g. wait_for = [\"trainer\", \"evaluator\"]: node names (\"worker/3\"), [[node]] entry names or group names";
const END_ON_HELP: &str = "end_on = \"all\" (the default) waits until every node of wait_for has finished its run; end_on = \"first\" ends the program when the first of them has";

/// `wait_for` and `end_on` as written (in the file or by `--set`).
#[derive(Default)]
pub(super) struct RawEnd {
    pub wait_for: Option<Located<Vec<Located<toml::Value>>>>,
    pub end_on: Option<Located<toml::Value>>,
}

impl RawEnd {
    /// `--set program.wait_for=VALUE`: a list of names, or one name.
    pub fn set_wait_for(&mut self, value: toml::Value, origin: &Origin) {
        let item = |value| Located {
            value,
            origin: origin.clone(),
        };
        let items = match value {
            toml::Value::Array(items) => items.into_iter().map(item).collect(),
            one => vec![item(one)],
        };
        self.wait_for = Some(Located {
            value: items,
            origin: origin.clone(),
        });
    }
}

/// Check the names against the program's nodes and resolve them to ids.
pub(super) fn resolve(
    cx: &Context,
    raw: RawEnd,
    nodes: &[NodeSpec],
) -> Result<EndRule, Diagnostic> {
    let first = match raw.end_on {
        None => false,
        Some(end_on) => match end_on.value.as_str() {
            Some("all") => false,
            Some("first") => true,
            _ => {
                return Err(cx
                    .error(
                        &end_on.origin,
                        format!("end_on must be \"all\" or \"first\", not {}", end_on.value),
                    )
                    .help(END_ON_HELP));
            }
        },
    };
    let Some(list) = raw.wait_for else {
        return Ok(EndRule {
            wait_for: None,
            first,
        });
    };
    if list.value.is_empty() {
        return Err(cx
            .error(
                &list.origin,
                "wait_for is empty, so no node's run would end the program",
            )
            .help("name the nodes whose runs end the program, or leave wait_for out to wait for every node with a run"));
    }
    let mut by_name: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut by_entry: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut by_group: HashMap<&str, Vec<u32>> = HashMap::new();
    for n in nodes {
        by_name.entry(&n.name).or_default().push(n.id);
        by_entry.entry(&n.entry).or_default().push(n.id);
        by_group.entry(&n.group).or_default().push(n.id);
    }
    let maps = [&by_name, &by_entry, &by_group];
    let mut wait_for = Vec::new();
    for item in list.value {
        let Some(name) = item.value.as_str() else {
            return Err(cx
                .error(
                    &item.origin,
                    format!(
                        "wait_for lists names in quotes, and {} is not one",
                        item.value
                    ),
                )
                .help(WAIT_FOR_HELP));
        };
        let Some(ids) = maps.iter().find_map(|map| map.get(name)) else {
            let mut known: Vec<&str> = by_entry.keys().chain(by_group.keys()).copied().collect();
            known.sort_unstable();
            known.dedup();
            return Err(cx
                .error(
                    &item.origin,
                    format!("wait_for: no node, entry or group is named {name:?}"),
                )
                .help(format!("entries and groups are: {}", known.join(", "))));
        };
        wait_for.push(WaitFor {
            name: name.to_string(),
            nodes: ids.clone(),
            place: Place::of(cx.source, &item.origin),
        });
    }
    Ok(EndRule {
        wait_for: Some(wait_for),
        first,
    })
}

#[cfg(test)]
mod tests {
    use crate::program::{Diagnostic, Override, Program, load_str};

    const SOURCE: &str = "[program]\nname = \"p\"\nwait_for = [\"trainer\", \"actors\"]\n\n[[node]]\nname = \"trainer\"\ncomponent = \"n.wasm\"\n\n[[node]]\nname = \"actor\"\ncomponent = \"n.wasm\"\ngroup = \"actors\"\nreplicas = 2\n\n[[node]]\nname = \"logger\"\ncomponent = \"n.wasm\"\n";

    fn load(source: &str, set: &[&str]) -> Result<Program, Diagnostic> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let overrides: Vec<Override> = set.iter().map(|s| s.parse().unwrap()).collect();
        load_str(&dir.path().join("program.toml"), source, &overrides)
    }

    fn waited(p: &Program) -> Vec<Vec<u32>> {
        let list = p.end.wait_for.as_ref().expect("wait_for");
        list.iter().map(|w| w.nodes.clone()).collect()
    }

    #[test]
    fn wait_for_names_nodes_entries_and_groups() {
        let p = load(SOURCE, &[]).unwrap();
        assert_eq!(waited(&p), [vec![0], vec![1, 2]]);
        assert!(!p.end.first);
        let p = load(
            SOURCE,
            &["program.wait_for=[\"actor/1\"]", "program.end_on=first"],
        )
        .unwrap();
        assert_eq!(waited(&p), [vec![2]]);
        assert!(p.end.first);
        // A bare word is one name.
        let p = load(SOURCE, &["program.wait_for=logger"]).unwrap();
        assert_eq!(waited(&p), [vec![3]]);
        // Without wait_for, every node with a run ends the program.
        let p = load(
            &SOURCE.replace("wait_for = [\"trainer\", \"actors\"]\n", ""),
            &[],
        )
        .unwrap();
        assert!(p.end.wait_for.is_none());
    }

    #[test]
    fn a_bad_wait_for_or_end_on_names_its_line_and_column() {
        let e = load(&SOURCE.replace("\"actors\"]", "\"actorz\"]"), &[]).unwrap_err();
        assert_eq!(e.line_col, Some((3, 24)), "{e}");
        assert!(
            e.message
                .contains("no node, entry or group is named \"actorz\""),
            "{e}"
        );
        assert!(e.help.as_deref().unwrap().contains("actors"), "{e}");

        let e = load(&SOURCE.replace("[\"trainer\", \"actors\"]", "[]"), &[]).unwrap_err();
        assert_eq!(e.line_col, Some((3, 12)), "{e}");
        assert!(e.message.contains("wait_for is empty"), "{e}");

        let e = load(&SOURCE.replace("\"actors\"]", "3]"), &[]).unwrap_err();
        assert!(e.message.contains("3 is not one"), "{e}");

        let e = load(
            &SOURCE.replace("name = \"p\"", "name = \"p\"\nend_on = \"any\""),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.line_col, Some((3, 10)), "{e}");
        assert!(
            e.message.contains("end_on must be \"all\" or \"first\""),
            "{e}"
        );

        let e = load(SOURCE, &["program.end_on=last"]).unwrap_err();
        assert_eq!(e.override_text.as_deref(), Some("program.end_on=last"));
        let e = load(SOURCE, &["program.wait_for=[\"nobody\"]"]).unwrap_err();
        assert_eq!(
            e.override_text.as_deref(),
            Some("program.wait_for=[\"nobody\"]")
        );
    }
}
