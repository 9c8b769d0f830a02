//! `--set path=value` overrides: change args, replicas, group, component or
//! the call timeout without editing program.toml.
//!
//! Paths: `program.call_timeout_secs`, `<node>.replicas`, `<node>.group`,
//! `<node>.component`, `<node>.args.<key>`. Values are TOML (`3`, `"x"`,
//! `[1, 2]`, `{ handle = "learner" }`); a bare word is taken as a string.

use std::str::FromStr;

use super::Origin;
use super::diagnostic::Diagnostic;
use super::load::{Context, Entry, Located};

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
        let paths_help = "paths are program.call_timeout_secs, <node>.replicas, <node>.restarts, <node>.group, <node>.colocate, <node>.component, <node>.args.<key>";

        if self.path[0] == "program" {
            if self.path[1..] != ["call_timeout_secs"] {
                return bad(
                    format!("unknown program setting {}", self.path[1..].join(".")),
                    paths_help,
                );
            }
            let secs = match &self.value {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                _ => {
                    return bad(
                        "call_timeout_secs must be a number".into(),
                        "e.g. program.call_timeout_secs=5",
                    );
                }
            };
            return Ok(OverrideTarget::CallTimeout(located(secs, &origin)));
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
                toml::Value::Integer(n) => entry.replicas = Some(located(n, &origin)),
                _ => {
                    return bad(
                        "replicas must be a whole number".into(),
                        "e.g. producer.replicas=100",
                    );
                }
            },
            ["restarts"] => match self.value {
                toml::Value::Integer(n) => entry.restarts = Some(located(n, &origin)),
                _ => {
                    return bad(
                        "restarts must be a whole number".into(),
                        "e.g. learner.restarts=3",
                    );
                }
            },
            ["group"] => entry.group = Some(located(string()?, &origin)),
            ["colocate"] => entry.colocate = Some(located(string()?, &origin)),
            ["component"] => entry.component = located(string()?, &origin),
            ["args", key] => {
                entry
                    .args
                    .insert(key.to_string(), located(self.value.clone(), &origin));
            }
            _ => return bad(format!("cannot set {}", self.path.join(".")), paths_help),
        }
        Ok(OverrideTarget::Applied)
    }
}

fn located<T>(value: T, origin: &Origin) -> Located<T> {
    Located {
        value,
        origin: origin.clone(),
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
}
