//! `lp-host export k8s`: Kubernetes manifests that run a program as the
//! multi-host launch does: the launcher as a Job (one pod, `--launch hosts`
//! listening at its pod IP), the agents as indexed Jobs (one per resource
//! class: a pod per process, each sized for one, offering that size; a
//! `resources.host`'s processes in one pod pinned to that node), a headless Service
//! that names the launcher for the agents, and a Secret with the join
//! material made here (the agents' token pins the launcher's join
//! certificate, as a launcher's own token does). Written as JSON, one file
//! per object, which `kubectl apply -f DIR` takes.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::launch::classes::{self, Size};
use crate::launch::placement;
use crate::program::{Override, Program};
use crate::trust::{JoinMaterial, MATERIAL_ENV, TOKEN_ENV};

/// The port the launcher's join listener takes in its pod.
pub const JOIN_PORT: u16 = 7070;

/// The longest name of a Kubernetes object the export makes.
const MAX_NAME: usize = 63;

/// How long an agent's pod keeps trying to reach the launcher (pods of
/// one export start in any order, and images take time to pull).
const AGENT_WAIT_SECS: u32 = 600;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// What to export to (only `k8s` so far).
    #[arg(value_enum)]
    target: Target,

    /// The program.toml to export.
    program: PathBuf,

    /// Where to write the manifests (created if missing).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,

    /// The container image: lp-host on PATH, and the program's directory at --program-dir.
    #[arg(long, default_value = "lp-host:latest")]
    image: String,

    /// Where the image holds the program's directory (its program.toml and components).
    #[arg(long, default_value = "/program")]
    program_dir: String,

    /// The Kubernetes namespace the objects go into.
    #[arg(long, default_value = "default")]
    namespace: String,

    /// Override a setting without editing the file (repeatable), as for `run`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<Override>,

    /// The launcher's host name in the agents' token (default: its Service's DNS name).
    #[arg(long, hide = true)]
    launcher_host: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    /// Kubernetes manifests (JSON).
    K8s,
}

pub fn main(args: ExportArgs) -> i32 {
    let Target::K8s = args.target;
    match export(&args) {
        Ok(files) => {
            for file in files {
                crate::outln!("{}", file.display());
            }
            crate::errln!(
                "export: apply with `kubectl apply -f {}`; the Secret holds this launch's join secret: keep the directory private",
                args.output.display()
            );
            0
        }
        Err(e) => {
            crate::errln!("error: {e:#}");
            2
        }
    }
}

/// The objects' names, all derived from the program's.
pub struct Names {
    pub base: String,
}

/// `text` as a Kubernetes name: lowercase letters, digits and '-'.
fn kube_name(text: &str) -> String {
    text.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

impl Names {
    fn of(program: &Program) -> Names {
        Names {
            base: kube_name(&format!("lp-{}", program.name)),
        }
    }
    pub fn secret(&self) -> String {
        format!("{}-join", self.base)
    }
    pub fn service(&self) -> String {
        format!("{}-launcher", self.base)
    }
    pub fn launcher(&self) -> String {
        format!("{}-launcher", self.base)
    }
    pub fn agents(&self) -> String {
        format!("{}-agents", self.base)
    }
}

fn export(args: &ExportArgs) -> Result<Vec<PathBuf>> {
    let program =
        crate::program::load(&args.program, &args.overrides).map_err(|d| anyhow::anyhow!("{d}"))?;
    let names = Names::of(&program);
    let processes = placement::processes(&program);
    // A pod per process (a host's processes share one).
    let layout = classes::layout(&processes, processes.len() as u32);
    let agents = layout.machines();
    // Kubernetes names (and the Service's, a DNS label) are at most 63
    // characters: refused here, before anything is made or written.
    let agent_jobs = agent_job_names(&names, &layout);
    let agent_names = agent_jobs.iter().map(|(name, _)| name.clone());
    for name in agent_names.chain([names.launcher(), names.secret(), names.agents()]) {
        if name.len() > MAX_NAME {
            bail!(
                "the Kubernetes name {name:?} would be {} characters, over the {MAX_NAME} allowed: shorten the program's name (or the host label)",
                name.len()
            );
        }
    }
    let host = args
        .launcher_host
        .clone()
        .unwrap_or_else(|| format!("{}.{}.svc.cluster.local", names.service(), args.namespace));
    let (material, token) = JoinMaterial::generate(vec![format!("{host}:{JOIN_PORT}")])?;
    let file_name = args
        .program
        .file_name()
        .context("the program path names no file")?
        .to_string_lossy()
        .into_owned();
    let program_in_image = format!("{}/{file_name}", args.program_dir.trim_end_matches('/'));
    let labels = |role: &str| json!({ "app.kubernetes.io/name": names.base, "lp.dev/role": role });
    let secret_env = |name: &str, key: &str| json!({ "name": name, "valueFrom": { "secretKeyRef": { "name": names.secret(), "key": key } } });

    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": names.secret(), "namespace": args.namespace, "labels": labels("join") },
        "type": "Opaque",
        "stringData": { "token": token.encode(), "material": material.encode() },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": names.service(), "namespace": args.namespace, "labels": labels("launcher") },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": labels("launcher"),
            "ports": [{ "name": "join", "port": JOIN_PORT, "targetPort": "join", "protocol": "TCP" }],
        },
    });
    let mut run = vec![
        "lp-host".to_string(),
        "run".into(),
        program_in_image,
        "--launch".into(),
        "hosts".into(),
        "--listen".into(),
        format!("$(POD_IP):{JOIN_PORT}"),
        "--agents".into(),
        agents.to_string(),
        "--join-material-from-env".into(),
    ];
    for o in &args.overrides {
        run.push("--set".into());
        run.push(o.text.clone());
    }
    let launcher = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": names.launcher(), "namespace": args.namespace, "labels": labels("launcher") },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": labels("launcher") },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "launcher",
                        "image": args.image,
                        "command": run,
                        "ports": [{ "name": "join", "containerPort": JOIN_PORT, "protocol": "TCP" }],
                        "env": [
                            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                            secret_env(MATERIAL_ENV, "material"),
                        ],
                    }],
                },
            },
        },
    });
    // One agents' Job per resource class (`classes::layout`, a pod per
    // process): a class of processes that need the same, each pod sized
    // for one; a host label's processes, one pod pinned to that node and
    // sized for all of them. Each agent offers its pod's size.
    let agent_jobs: Vec<(String, Value)> = layout
        .groups()
        .iter()
        .zip(agent_jobs)
        .map(|(group, (name, file))| {
            let mut command: Vec<String> = [
                "lp-host", "agent", "--quiet", "--host", "$(NODE_NAME)", "--wait-secs",
            ]
            .map(String::from)
            .into();
            command.push(AGENT_WAIT_SECS.to_string());
            command.extend(group.size.agent_args());
            let mut pod = json!({
                "restartPolicy": "Never",
                "containers": [{
                    "name": "agent",
                    "image": args.image,
                    "command": command,
                    "env": [
                        { "name": "NODE_NAME", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                        secret_env(TOKEN_ENV, "token"),
                    ],
                    "resources": pod_resources(&group.size),
                }],
            });
            if let Some(host) = &group.host {
                // resources.host names a node: the agent's label is its node's name.
                pod["nodeSelector"] = json!({ "kubernetes.io/hostname": host });
            }
            let job = json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": { "name": name, "namespace": args.namespace, "labels": labels("agent") },
                "spec": {
                    "completionMode": "Indexed",
                    "completions": group.machines,
                    "parallelism": group.machines,
                    "backoffLimit": 0,
                    "template": { "metadata": { "labels": labels("agent") }, "spec": pod },
                },
            });
            (file, job)
        })
        .collect();

    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut written = Vec::new();
    let fixed = [
        ("secret.json".to_string(), secret),
        ("service.json".to_string(), service),
        ("launcher.json".to_string(), launcher),
    ];
    for (file, object) in fixed.into_iter().chain(agent_jobs) {
        let path = args.output.join(&file);
        write_manifest(&path, &object, file == "secret.json")?;
        written.push(path);
    }
    Ok(written)
}

/// The name and file of each group's agents' Job: `<base>-agents` (a
/// program of one class), `-c1`, `-c2`, ... for several, and
/// `-<host>` for a host's.
fn agent_job_names(names: &Names, layout: &classes::Layout) -> Vec<(String, String)> {
    let sized = layout.groups().iter().filter(|g| g.host.is_none()).count();
    let mut unlabelled = 0;
    layout
        .groups()
        .iter()
        .map(|group| {
            let tail = match &group.host {
                Some(host) => kube_name(host),
                None if sized == 1 => return (names.agents(), "agents.json".to_string()),
                None => {
                    unlabelled += 1;
                    format!("c{unlabelled}")
                }
            };
            (
                format!("{}-{tail}", names.agents()),
                format!("agents-{tail}.json"),
            )
        })
        .collect()
}

/// An agent pod's requests and limits: `size` (cpus as millicpus,
/// memory_mib as Mi, gpus as nvidia.com/gpu); none if it asks nothing.
fn pod_resources(size: &Size) -> Value {
    let mut amounts = serde_json::Map::new();
    if size.cpus > 0.0 {
        amounts.insert(
            "cpu".into(),
            json!(format!("{}m", (size.cpus * 1000.0).ceil())),
        );
    }
    if size.memory_mib > 0 {
        amounts.insert("memory".into(), json!(format!("{}Mi", size.memory_mib)));
    }
    if size.gpus > 0 {
        amounts.insert("nvidia.com/gpu".into(), json!(size.gpus.to_string()));
    }
    if amounts.is_empty() {
        return json!({});
    }
    json!({ "requests": amounts, "limits": amounts })
}

/// Write one manifest; the Secret's file is readable by its owner only.
fn write_manifest(path: &Path, object: &Value, private: bool) -> Result<()> {
    let text = serde_json::to_string_pretty(object)? + "\n";
    if private {
        crate::launch::write_private(path, text.as_bytes())
    } else {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_for(program: PathBuf, output: PathBuf) -> ExportArgs {
        ExportArgs {
            target: Target::K8s,
            program,
            output,
            image: "lp-host:latest".into(),
            program_dir: "/program".into(),
            namespace: "default".into(),
            overrides: Vec::new(),
            launcher_host: None,
        }
    }

    #[test]
    fn names_kubernetes_would_refuse_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let program = dir.path().join("program.toml");
        let name = "a_program_whose_name_is_far_too_long_for_kubernetes_objects";
        std::fs::write(
            &program,
            format!(
                "[program]\nname = \"{name}\"\n\n[[node]]\nname = \"a\"\ncomponent = \"n.wasm\"\n"
            ),
        )
        .unwrap();
        let out = dir.path().join("k8s");
        let e = export(&args_for(program.clone(), out.clone())).unwrap_err();
        assert!(format!("{e:#}").contains("over the 63 allowed"), "{e:#}");
        assert!(!out.exists(), "nothing is written");

        std::fs::write(
            &program,
            "[program]\nname = \"Short_One\"\n\n[[node]]\nname = \"a\"\ncomponent = \"n.wasm\"\n",
        )
        .unwrap();
        let files = export(&args_for(program, out.clone())).unwrap();
        assert_eq!(files.len(), 4);
        let job: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("launcher.json")).unwrap())
                .unwrap();
        assert_eq!(job["metadata"]["name"], "lp-short-one-launcher");
    }
}
