//! The `[program.slurm]` table of program.toml: how `--launch slurm` asks
//! Slurm for the job (how many nodes, the partition, the time limit, and
//! any other `sbatch` option), with `--set program.slurm.<key>=VALUE` over
//! it. What each node needs (cpus, memory_mib, gpus, host) stays in the
//! nodes' `resources`; the launcher turns both into sbatch options.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::schema::{Context, Located};
use super::{Diagnostic, Origin, Place};

const KEYS_HELP: &str = "[program.slurm] takes nodes, partition, time and sbatch, e.g. slurm = { nodes = 2, partition = \"gpu\", time = \"1:00:00\", sbatch = { account = \"rl\" } }";

/// `[program.slurm]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlurm {
    #[serde(default)]
    pub nodes: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub partition: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub time: Option<Spanned<toml::Value>>,
    /// Other sbatch options: `{ account = "rl", exclusive = true }`.
    #[serde(default)]
    pub sbatch: BTreeMap<String, Spanned<toml::Value>>,
}

/// How the program's Slurm job is asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slurm {
    /// Nodes (machines) of the job, one agent on each; `None`: as many as
    /// the program has processes, at most the partition's nodes.
    pub nodes: Option<u32>,
    pub partition: Option<String>,
    /// Slurm's time limit, as sbatch reads it ("30", "1:00:00", "2-0").
    pub time: Option<String>,
    /// Other sbatch options, each as `--name=value` (or `--name` for true).
    pub sbatch: Vec<String>,
    /// Where the table (or its first `--set`) was written.
    pub place: Place,
}

/// The table, then its overrides (`program.slurm.<key>` paths, the
/// `program.slurm.` taken off), each value checked.
pub(super) fn slurm(
    cx: &Context,
    table: Option<Spanned<RawSlurm>>,
    overrides: &[(Vec<String>, Located<toml::Value>)],
) -> Result<Slurm, Diagnostic> {
    let mut settings: Vec<(Vec<String>, Located<toml::Value>)> = Vec::new();
    let mut origin = None;
    if let Some(table) = table {
        origin = Some(Origin::File(table.span()));
        let raw = table.into_inner();
        for (key, value) in [
            ("nodes", raw.nodes),
            ("partition", raw.partition),
            ("time", raw.time),
        ] {
            if let Some(value) = value {
                settings.push((vec![key.to_string()], value.into()));
            }
        }
        for (name, value) in raw.sbatch {
            settings.push((vec!["sbatch".into(), name], value.into()));
        }
    }
    if origin.is_none()
        && let Some((_, first)) = overrides.first()
    {
        origin = Some(first.origin.clone());
    }
    settings.extend(overrides.iter().map(|(path, value)| {
        (
            path.clone(),
            Located::new(value.value.clone(), &value.origin),
        )
    }));
    let mut slurm = Slurm {
        place: origin
            .as_ref()
            .map_or_else(Place::default, |o| Place::of(cx.source, o)),
        ..Slurm::default()
    };
    let mut sbatch: BTreeMap<String, String> = BTreeMap::new();
    for (path, value) in &settings {
        let origin = &value.origin;
        let text = |key: &str, example: &str| match &value.value {
            toml::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            toml::Value::Integer(n) if key == "time" && *n > 0 => Ok(n.to_string()),
            other => Err(cx
                .error(
                    origin,
                    format!("slurm.{key} must be a non-empty string, not {other}"),
                )
                .help(format!("e.g. {key} = {example}"))),
        };
        match &path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["nodes"] => match value.value {
                toml::Value::Integer(n) if (1..=10_000).contains(&n) => {
                    slurm.nodes = Some(n as u32);
                }
                ref other => {
                    return Err(cx
                        .error(
                            origin,
                            format!("slurm.nodes must be a whole number from 1, not {other}"),
                        )
                        .help("e.g. nodes = 2; leave it out for one node per process, as many as the partition has"));
                }
            },
            ["partition"] => slurm.partition = Some(text("partition", "\"gpu\"")?),
            ["time"] => slurm.time = Some(text("time", "\"1:00:00\" (or minutes: 30)")?),
            ["sbatch", name] => {
                let option = sbatch_option(cx, origin, name, &value.value)?;
                sbatch.insert(name.to_string(), option);
            }
            _ => {
                return Err(cx
                    .error(origin, format!("unknown slurm setting {}", path.join(".")))
                    .help(KEYS_HELP));
            }
        }
    }
    slurm.sbatch = sbatch.into_values().filter(|o| !o.is_empty()).collect();
    Ok(slurm)
}

/// Options the launcher sets itself: changing them would break the job
/// it runs (one agent per node, its output, its name).
const OWN_OPTIONS: [&str; 9] = [
    "nodes",
    "ntasks",
    "ntasks-per-node",
    "output",
    "error",
    "wrap",
    "parsable",
    "export",
    "job-name",
];

/// One extra sbatch option, `--name=value` (`--name` for true, nothing
/// for false), refusing what is not a plain option.
fn sbatch_option(
    cx: &Context,
    origin: &Origin,
    name: &str,
    value: &toml::Value,
) -> Result<String, Diagnostic> {
    let named = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if !named {
        return Err(cx
            .error(origin, format!("{name:?} is not an sbatch option name"))
            .help("name it without dashes, e.g. sbatch = { account = \"rl\", exclusive = true }"));
    }
    if OWN_OPTIONS.contains(&name) {
        return Err(cx
            .error(
                origin,
                format!("sbatch option {name} is set by lp-host itself"),
            )
            .help("use slurm.nodes for the number of nodes; the job runs one agent per node, and its output goes to --logs-dir"));
    }
    match value {
        toml::Value::Boolean(true) => Ok(format!("--{name}")),
        toml::Value::Boolean(false) => Ok(String::new()),
        toml::Value::String(s) if !s.contains('\n') => Ok(format!("--{name}={s}")),
        toml::Value::Integer(n) => Ok(format!("--{name}={n}")),
        other => Err(cx
            .error(
                origin,
                format!("sbatch option {name} must be a string, a whole number or a boolean, not {other}"),
            )
            .help("e.g. sbatch = { account = \"rl\", exclusive = true, cpus-per-gpu = 4 }")),
    }
}

#[cfg(test)]
mod tests {
    use crate::program::{Diagnostic, Override, Program};

    /// A one-node program with `slurm` as its `[program.slurm]` line.
    fn load_with(slurm: &str, set: &[&str]) -> Result<Program, Diagnostic> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let file = dir.path().join("program.toml");
        let source = format!(
            "[program]\nname = \"p\"\n{slurm}\n\n[[node]]\nname = \"a\"\ncomponent = \"n.wasm\"\n"
        );
        let overrides: Vec<Override> = set.iter().map(|s| s.parse().unwrap()).collect();
        crate::program::load_str(&file, &source, &overrides)
    }

    #[test]
    fn the_table_and_its_overrides_become_the_jobs_settings() {
        let p = load_with(
            "slurm = { nodes = 2, partition = \"gpu\", time = 30, sbatch = { account = \"rl\", exclusive = true, requeue = false, cpus-per-gpu = 4 } }",
            &[],
        )
        .unwrap();
        assert_eq!(p.slurm.nodes, Some(2));
        assert_eq!(p.slurm.partition.as_deref(), Some("gpu"));
        assert_eq!(p.slurm.time.as_deref(), Some("30"));
        assert_eq!(
            p.slurm.sbatch,
            ["--account=rl", "--cpus-per-gpu=4", "--exclusive"]
        );
        assert_eq!(p.slurm.place.line_col, Some((3, 9)));

        let p = load_with(
            "slurm = { nodes = 2 }",
            &[
                "program.slurm.nodes=3",
                "program.slurm.time=\"1:00:00\"",
                "program.slurm.sbatch.qos=\"high\"",
            ],
        )
        .unwrap();
        assert_eq!(p.slurm.nodes, Some(3));
        assert_eq!(p.slurm.time.as_deref(), Some("1:00:00"));
        assert_eq!(p.slurm.sbatch, ["--qos=high"]);

        // No table: nothing asked.
        let p = load_with("", &[]).unwrap();
        assert_eq!(p.slurm, super::Slurm::default());
    }

    #[test]
    fn bad_settings_are_refused_at_their_line_with_what_to_do() {
        let e = load_with("slurm = { nodes = 0 }", &[]).unwrap_err();
        assert!(
            e.message.contains("slurm.nodes must be a whole number"),
            "{e}"
        );
        assert_eq!(e.line_col.map(|(l, _)| l), Some(3));
        let e = load_with("slurm = { gpus = 1 }", &[]).unwrap_err();
        assert!(e.message.contains("unknown field `gpus`"), "{e}");
        let e = load_with("slurm = { sbatch = { nodes = 4 } }", &[]).unwrap_err();
        assert!(e.message.contains("set by lp-host itself"), "{e}");
        assert!(e.help.unwrap().contains("slurm.nodes"));
        let e = load_with("slurm = { sbatch = { \"--x\" = 1 } }", &[]).unwrap_err();
        assert!(e.message.contains("not an sbatch option name"), "{e}");
        let e = load_with("", &["program.slurm.partition=3"]).unwrap_err();
        assert_eq!(
            e.override_text.as_deref(),
            Some("program.slurm.partition=3")
        );
        assert!(
            e.message
                .contains("slurm.partition must be a non-empty string"),
            "{e}"
        );
        let e = load_with("", &["program.slurm.queue=\"x\""]).unwrap_err();
        assert!(e.message.contains("unknown slurm setting queue"), "{e}");
    }
}
