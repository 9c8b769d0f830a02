//! `lp-host check PROGRAM`: everything `run` would refuse, found without
//! running a node — the program.toml schema and values, files and granted
//! directories, that each file is a component for the lp:node world, and
//! that every edge type-checks. Human-readable by default; `--format json`
//! for tools. Exit 0 when the program is good, 2 when it is not (as `run`).

use std::path::PathBuf;

use serde::Serialize;

use crate::launch::placement::{self, Process};
use crate::launch::{LoadError, LoadOptions, Plan};
use crate::program::{Diagnostic, Override};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The program.toml to check.
    program: PathBuf,

    /// Override a setting without editing the file (repeatable), as for `run`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<Override>,

    /// How to print the result.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,

    /// Where compiled components are cached (default: $LP_CACHE_DIR or ~/.cache/lp).
    #[arg(long, env = "LP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

/// What `check` found.
#[derive(Serialize)]
pub struct Report {
    pub ok: bool,
    pub file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub nodes: usize,
    pub components: usize,
    pub edges: usize,
    pub errors: Vec<Problem>,
    /// What passes but is said (a grant of the host's root or a home).
    pub warnings: Vec<Problem>,
    /// What each process that asks for resources needs of its machine
    /// (none when no node has `resources`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ProcessNeeds>,
}

/// The resources one process (a colocation group, or a node) asks for.
#[derive(Serialize)]
pub struct ProcessNeeds {
    /// The node, or the colocation group.
    pub process: String,
    pub nodes: Vec<String>,
    pub cpus: f64,
    pub memory_mib: u64,
    pub gpus: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl ProcessNeeds {
    fn of(process: &Process) -> ProcessNeeds {
        ProcessNeeds {
            process: match &process.colocate {
                Some(group) => group.clone(),
                None => process.names.join(", "),
            },
            nodes: process.names.clone(),
            cpus: process.needs.cpus,
            memory_mib: process.needs.memory_mib,
            gpus: process.needs.gpus,
            host: process.needs.host.clone(),
        }
    }
}

/// One problem: what, where (when known), and what to do.
#[derive(Serialize)]
pub struct Problem {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The `--set` override the problem came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl From<Diagnostic> for Problem {
    fn from(d: Diagnostic) -> Problem {
        Problem {
            message: d.message,
            line: d.line_col.map(|(l, _)| l),
            column: d.line_col.map(|(_, c)| c),
            set: d.override_text,
            help: d.help,
        }
    }
}

impl From<anyhow::Error> for Problem {
    /// A planning error: its text, with its `help:` lines apart.
    fn from(e: anyhow::Error) -> Problem {
        let e = match e.downcast::<Diagnostic>() {
            Ok(diagnostic) => return diagnostic.into(),
            Err(e) => e,
        };
        let text = format!("{e:#}");
        let (mut message, mut help) = (Vec::new(), Vec::new());
        for line in text.lines() {
            match line.trim_start().strip_prefix("help: ") {
                Some(h) => help.push(h.to_string()),
                None => message.push(line.to_string()),
            }
        }
        Problem {
            message: message.join("\n"),
            line: None,
            column: None,
            set: None,
            help: (!help.is_empty()).then(|| help.join("\n")),
        }
    }
}

/// Check the program at `args.program`.
pub fn check(file: &std::path::Path, overrides: &[Override], cache_dir: Option<PathBuf>) -> Report {
    let mut report = Report {
        ok: false,
        file: file.to_path_buf(),
        program: None,
        nodes: 0,
        components: 0,
        edges: 0,
        errors: Vec::new(),
        warnings: Vec::new(),
        resources: Vec::new(),
    };
    let loading = LoadOptions {
        cache_dir,
        ..LoadOptions::default()
    };
    let program = match Plan::load(file, overrides, &loading) {
        Ok(plan) => {
            report.ok = true;
            plan.program
        }
        Err(LoadError::Program(d)) => {
            report.errors.push(d.into());
            return report;
        }
        Err(LoadError::Plan { program, error }) => {
            report.errors.push(error.into());
            *program
        }
    };
    report.program = Some(program.name.clone());
    report.warnings = program
        .warnings
        .iter()
        .cloned()
        .map(Problem::from)
        .collect();
    report.nodes = program.nodes.len();
    report.components = program.components.len();
    report.edges = program.nodes.iter().map(|n| n.edges.len()).sum();
    report.resources = placement::processes(&program)
        .iter()
        .filter(|p| !p.needs.is_empty())
        .map(ProcessNeeds::of)
        .collect();
    report
}

pub fn main(args: CheckArgs) -> i32 {
    let report = check(&args.program, &args.overrides, args.cache_dir.clone());
    match args.format {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        ),
        Format::Human => print_human(&report),
    }
    // The same status as `run` gives a program it refuses.
    if report.ok { 0 } else { 2 }
}

fn print_human(report: &Report) {
    let file = report.file.display();
    for warning in &report.warnings {
        print_problem("warning", report, warning);
    }
    if report.ok {
        crate::outln!(
            "ok: {file}: program {}, {} nodes, {} components, {} edges type-checked",
            report.program.as_deref().unwrap_or("?"),
            report.nodes,
            report.components,
            report.edges
        );
        print_resources(report);
        return;
    }
    for problem in &report.errors {
        print_problem("error", report, problem);
    }
}

/// `resources: learner: cpus = 2, gpus = 1, host = "gpu-box"`, one line
/// per process that asks for any, with the keys it asks for (summed over
/// a colocation group's nodes).
fn print_resources(report: &Report) {
    for needs in &report.resources {
        let who = match needs.nodes[..] {
            [_] => needs.process.clone(),
            _ => format!(
                "colocation group {:?} ({} nodes)",
                needs.process,
                needs.nodes.len()
            ),
        };
        let mut keys = Vec::new();
        if needs.cpus > 0.0 {
            keys.push(format!("cpus = {}", needs.cpus));
        }
        if needs.memory_mib > 0 {
            keys.push(format!("memory_mib = {}", needs.memory_mib));
        }
        if needs.gpus > 0 {
            keys.push(format!("gpus = {}", needs.gpus));
        }
        if let Some(host) = &needs.host {
            keys.push(format!("host = {host:?}"));
        }
        crate::outln!("resources: {who}: {}", keys.join(", "));
    }
}

/// `error: file:line:column: message` (or `warning: ...`), then its help.
fn print_problem(level: &str, report: &Report, problem: &Problem) {
    let file = report.file.display();
    let place = match (&problem.line, &problem.column, &problem.set) {
        (Some(l), Some(c), _) => format!("{file}:{l}:{c}"),
        (_, _, Some(set)) => format!("--set {set}"),
        _ => file.to_string(),
    };
    crate::errln!("{level}: {place}: {}", problem.message);
    if let Some(help) = &problem.help {
        for line in help.lines() {
            crate::errln!("  help: {line}");
        }
    }
}
