//! `--set path=value` overrides: change args, replicas, group, component,
//! limits, resources, port numbers or the call timeout without editing program.toml.
//!
//! Paths: `program.call_timeout_secs`, `program.limits.<limit>`,
//! `program.wait_for`, `program.end_on`,
//! `<node>.replicas`, `<node>.restarts`, `<node>.group`, `<node>.colocate`,
//! `<node>.component`, `<node>.world`, `<node>.wit`, `<node>.limits.<limit>`, `<node>.resources.<key>`,
//! `<node>.ports.<port>` (the number of a declared port), `<node>.args.<key>`.
//! Values are TOML (`3`, `"x"`, `[1, 2]`, `{ handle = "learner" }`); a bare
//! word is taken as a string. Grants cannot be set: they stay in the file,
//! where they are reviewed with the program.

use std::str::FromStr;

use super::Origin;
use super::diagnostic::Diagnostic;
use super::schema::{Context, Entry, Located};

/// One `--set path=value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub path: Vec<String>,
    pub value: toml::Value,
    pub text: String,
}

impl FromStr for Override {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((path, value)) = text.split_once('=') else {
            return Err(format!(
                "{text:?} is not path=value (e.g. producer.replicas=100)"
            ));
        };
        let path: Vec<String> = path
            .trim()
            .split('.')
            .map(|s| s.trim().to_string())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("{text:?}: the path has an empty part"));
        }
        let value = value.trim();
        let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(mut t) => t.remove("v").expect("parsed key"),
            Err(_) => toml::Value::String(value.to_string()),
        };
        Ok(Override {
            path,
            value,
            text: text.to_string(),
        })
    }
}

pub(super) enum OverrideTarget {
    CallTimeout(Located<f64>),
    /// `program.limits.<key>`: a default of every node (or the stack limit).
    ProgramLimit(String, Located<toml::Value>),
    /// `program.wait_for`: the names (a list, or one), and the override.
    WaitFor(toml::Value, Origin),
    EndOn(Located<toml::Value>),
    /// `program.slurm.<path>`: the path after `program.slurm.`.
    Slurm(Vec<String>, Located<toml::Value>),
    Applied,
}

impl Override {
    /// Apply to the node entries (or return the program-level setting).
    pub(super) fn target(
        &self,
        cx: &Context,
        entries: &mut [Entry],
    ) -> Result<OverrideTarget, Diagnostic> {
        let origin = Origin::Override(self.text.clone());
        let bad = |message: String, help: &str| Err(cx.error(&origin, message).help(help));
        let paths_help = "paths are program.call_timeout_secs, program.limits.<limit>, program.wait_for, program.end_on, program.slurm.<key>, <node>.replicas, <node>.restarts, <node>.group, <node>.colocate, <node>.component, <node>.world, <node>.wit, <node>.limits.<limit>, <node>.resources.<key>, <node>.ports.<port>, <node>.args.<key>";

        if self.path[0] == "program" {
            if let [_, limits, key] = &self.path[..]
                && limits == "limits"
            {
                return Ok(OverrideTarget::ProgramLimit(
                    key.clone(),
                    Located::new(self.value.clone(), &origin),
                ));
            }
            if self.path[1..] == ["wait_for"] {
                return Ok(OverrideTarget::WaitFor(self.value.clone(), origin.clone()));
            }
            if self.path.len() > 2 && self.path[1] == "slurm" {
                return Ok(OverrideTarget::Slurm(
                    self.path[2..].to_vec(),
                    Located::new(self.value.clone(), &origin),
                ));
            }
            if self.path[1..] == ["end_on"] {
                return Ok(OverrideTarget::EndOn(Located::new(
                    self.value.clone(),
                    &origin,
                )));
            }
            if self.path[1..] != ["call_timeout_secs"] {
                return bad(
                    format!("unknown program setting {}", self.path[1..].join(".")),
                    paths_help,
                );
            }
            let secs = match super::schema::number(&self.value) {
                Some(secs) => secs,
                None => {
                    return bad(
                        "call_timeout_secs must be a number".into(),
                        "e.g. program.call_timeout_secs=5",
                    );
                }
            };
            return Ok(OverrideTarget::CallTimeout(Located::new(secs, &origin)));
        }

        let Some(entry) = entries.iter_mut().find(|e| e.name.value == self.path[0]) else {
            let names: Vec<&str> = entries.iter().map(|e| e.name.value.as_str()).collect();
            return bad(
                format!("no node is named {:?}", self.path[0]),
                &format!("nodes are: {}", names.join(", ")),
            );
        };
        let string = || match &self.value {
            toml::Value::String(s) => Ok(s.clone()),
            other => Err(cx.error(&origin, format!("expected a string, found {other}"))),
        };
        match self.path[1..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()[..]
        {
            ["replicas"] => match self.value {
                toml::Value::Integer(n) => entry.replicas = Some(Located::new(n, &origin)),
                _ => {
                    return bad(
                        "replicas must be a whole number".into(),
                        "e.g. producer.replicas=100",
                    );
                }
            },
            ["restarts"] => match self.value {
                toml::Value::Integer(n) => entry.restarts = Some(Located::new(n, &origin)),
                _ => {
                    return bad(
                        "restarts must be a whole number".into(),
                        "e.g. learner.restarts=3",
                    );
                }
            },
            ["group"] => entry.group = Some(Located::new(string()?, &origin)),
            ["colocate"] => entry.colocate = Some(Located::new(string()?, &origin)),
            ["component"] => entry.component = Some(Located::new(string()?, &origin)),
            ["world"] => entry.world = Some(Located::new(string()?, &origin)),
            ["wit"] => entry.wit = Some(Located::new(string()?, &origin)),
            ["args", key] => {
                entry
                    .args
                    .insert(key.to_string(), Located::new(self.value.clone(), &origin));
            }
            ["limits", key] => entry
                .limit_overrides
                .push((key.to_string(), Located::new(self.value.clone(), &origin))),
            ["resources", key] => entry
                .resource_overrides
                .push((key.to_string(), Located::new(self.value.clone(), &origin))),
            ["ports", name] => entry
                .port_overrides
                .push((name.to_string(), Located::new(self.value.clone(), &origin))),
            ["ports"] => {
                return bad(
                    "ports cannot be declared with --set".into(),
                    "a node's ports let it serve on the network, so they are declared in program.toml, where they are reviewed with the program; --set <node>.ports.<name>=N changes the number of a declared port (0: any free port)",
                );
            }
            ["grants", ..] => {
                return bad(
                    "grants cannot be set with --set".into(),
                    "grants (what a node may reach of the host) stay in program.toml, where they are reviewed with the program: edit the node's `grants` there",
                );
            }
            _ => return bad(format!("cannot set {}", self.path.join(".")), paths_help),
        }
        Ok(OverrideTarget::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_values_and_bare_words() {
        let o: Override = "consumer.args.steps=20".parse().unwrap();
        assert_eq!(o.path, ["consumer", "args", "steps"]);
        assert_eq!(o.value, toml::Value::Integer(20));
        let o: Override = "a.args.mode=fast".parse().unwrap();
        assert_eq!(o.value, toml::Value::String("fast".into()));
        let o: Override = "a.args.h={ handle = \"b\" }".parse().unwrap();
        assert!(o.value.as_table().unwrap().contains_key("handle"));
        assert!("novalue".parse::<Override>().is_err());
        assert!("a..b=1".parse::<Override>().is_err());
    }

    /// A program of two nodes, one with limits of its own.
    fn load_with(set: &[&str]) -> Result<crate::program::Program, Diagnostic> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let file = dir.path().join("program.toml");
        let source = "[program]\nname = \"p\"\nlimits = { memory_mib = 100 }\n\n[[node]]\nname = \"a\"\ncomponent = \"n.wasm\"\n\n[[node]]\nname = \"b\"\ncomponent = \"n.wasm\"\nlimits = { memory_mib = 50, cpu_secs = 9 }\n";
        let overrides: Vec<Override> = set.iter().map(|s| s.parse().unwrap()).collect();
        crate::program::load_str(&file, source, &overrides)
    }

    #[test]
    fn limits_can_be_set_per_node_and_for_the_program() {
        let p = load_with(&["a.limits.memory_mib=64", "a.limits.cpu_secs=1.5"]).unwrap();
        assert_eq!(p.node("a").unwrap().limits.memory_mib, Some(64));
        assert_eq!(p.node("a").unwrap().limits.cpu_secs, Some(1.5));
        assert_eq!(p.node("b").unwrap().limits.memory_mib, Some(50));

        let p = load_with(&["program.limits.cpu_secs=3", "program.limits.stack_kib=2048"]).unwrap();
        assert_eq!(p.node("a").unwrap().limits.cpu_secs, Some(3.0));
        assert_eq!(p.node("a").unwrap().limits.memory_mib, Some(100));
        // A node's own limit still wins over the program's default.
        assert_eq!(p.node("b").unwrap().limits.cpu_secs, Some(9.0));
        assert_eq!(p.stack_kib, Some(2048));
    }

    #[test]
    fn bad_limit_settings_name_the_override_and_what_to_do() {
        let e = load_with(&["a.limits.memory_mib=-1"]).unwrap_err();
        assert_eq!(e.override_text.as_deref(), Some("a.limits.memory_mib=-1"));
        assert!(e.message.contains("memory_mib must be a positive"), "{e}");
        let e = load_with(&["a.limits.stack_kib=64"]).unwrap_err();
        assert!(e.message.contains("whole program"), "{e}");
        assert!(e.help.unwrap().contains("program.limits.stack_kib"));
        let e = load_with(&["a.limits.heap=1"]).unwrap_err();
        assert!(e.message.contains("unknown limit `heap`"), "{e}");
    }

    #[test]
    fn grants_cannot_be_widened_from_the_command_line() {
        let e = load_with(&["a.grants.env.TOKEN=x"]).unwrap_err();
        assert_eq!(e.override_text.as_deref(), Some("a.grants.env.TOKEN=x"));
        assert!(e.message.contains("grants cannot be set with --set"), "{e}");
        assert!(e.help.unwrap().contains("program.toml"));
    }
}
