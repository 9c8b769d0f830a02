//! `lp-host export k8s`: Kubernetes manifests that run a program as the
//! multi-host launch does: the launcher as a Job (one pod, `--launch hosts`
//! listening at its pod IP), the agents as indexed Jobs (one pod per
//! process of the program, each sized for the largest of its Job; one Job
//! per `resources.host`, pinned to that node), a headless Service
//! that names the launcher for the agents, and a Secret with the join
//! material made here (the agents' token pins the launcher's join
//! certificate, as a launcher's own token does). Written as JSON, one file
//! per object, which `kubectl apply -f DIR` takes.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

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
    let agents = processes.len();
    // Kubernetes names (and the Service's, a DNS label) are at most 63
    // characters: refused here, before anything is made or written.
    let agent_names = processes
        .iter()
        .filter_map(|p| p.needs.host.as_deref())
        .map(|host| format!("{}-{}", names.agents(), kube_name(host)));
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
    // One agents' Job per host label (its pods pinned to that node), and
    // one for the processes that name none.
    let mut groups: Vec<(Option<String>, Vec<placement::Process>)> = Vec::new();
    for process in &processes {
        let host = process.needs.host.clone();
        match groups.iter_mut().find(|(h, _)| *h == host) {
            Some((_, members)) => members.push(process.clone()),
            None => groups.push((host, vec![process.clone()])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let agent_jobs: Vec<(String, Value)> = groups
        .iter()
        .map(|(host, members)| {
            let (name, file) = match host {
                None => (names.agents(), "agents.json".to_string()),
                Some(host) => {
                    let tail = kube_name(host);
                    (format!("{}-{tail}", names.agents()), format!("agents-{tail}.json"))
                }
            };
            let mut pod = json!({
                "restartPolicy": "Never",
                "containers": [{
                    "name": "agent",
                    "image": args.image,
                    "command": ["lp-host", "agent", "--quiet", "--host", "$(NODE_NAME)", "--wait-secs", AGENT_WAIT_SECS.to_string()],
                    "env": [
                        { "name": "NODE_NAME", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                        secret_env(TOKEN_ENV, "token"),
                    ],
                    "resources": agent_resources(members),
                }],
            });
            if let Some(host) = host {
                // resources.host names a node: the agent's label is its node's name.
                pod["nodeSelector"] = json!({ "kubernetes.io/hostname": host });
            }
            let job = json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": { "name": name, "namespace": args.namespace, "labels": labels("agent") },
                "spec": {
                    "completionMode": "Indexed",
                    "completions": members.len(),
                    "parallelism": members.len(),
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

/// Each agent pod's requests and limits: what the largest process needs
/// (cpus, memory_mib as Mi, gpus as nvidia.com/gpu); none if none asks.
fn agent_resources(processes: &[placement::Process]) -> Value {
    let largest =
        |need: fn(&placement::Process) -> f64| processes.iter().map(need).fold(0.0, f64::max);
    let mut amounts = serde_json::Map::new();
    let cpus = largest(|p| p.needs.cpus);
    if cpus > 0.0 {
        amounts.insert("cpu".into(), json!(format!("{}m", (cpus * 1000.0).ceil())));
    }
    let memory = largest(|p| p.needs.memory_mib as f64);
    if memory > 0.0 {
        amounts.insert("memory".into(), json!(format!("{memory}Mi")));
    }
    let gpus = largest(|p| p.needs.gpus as f64);
    if gpus > 0.0 {
        amounts.insert("nvidia.com/gpu".into(), json!(format!("{gpus}")));
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
