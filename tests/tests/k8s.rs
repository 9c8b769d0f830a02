//! `lp-host export k8s`: the manifests parse back as Kubernetes API
//! objects with nothing dropped (a misspelt field would be), and every
//! reference between them resolves: the Service selects the launcher's
//! pod and names its port, every secret reference names the Secret and a
//! key it has, the agents' Job runs as many agents as the launcher waits
//! for, every `$(VAR)` in a command is an env var of its container, the
//! token names the Service. No API server can run here, so the pods'
//! commands are then run as they are written, in network namespaces (one
//! "pod IP" each): the launcher with the Secret's material, the agents
//! with its token, and the program runs to its end.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret, Service};
use lp_host::trust::{JoinMaterial, JoinToken};
use lp_tests::netns::Hosts;

/// `lp-host export k8s` of consumer_producers into `dir`.
fn export(dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(lp_tests::lp_host_exe())
        .args(["export", "k8s"])
        .arg(lp_tests::path("examples/consumer_producers/program.toml"))
        .arg("-o")
        .arg(dir)
        .args(["--namespace", "rl", "--set", "producer.replicas=2"])
        .args(extra)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    said
}

/// A manifest as the API type, checked to lose nothing on the way.
fn parse<T: serde::de::DeserializeOwned + serde::Serialize>(dir: &Path, file: &str) -> T {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let written: serde_json::Value = serde_json::from_str(&text).unwrap();
    let object: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut read = serde_json::to_value(&object).unwrap();
    // The API types fill in `apiVersion` and `kind`; stringData is
    // write-only, kept as written.
    if let (Some(read), Some(written)) = (read.as_object_mut(), written.as_object()) {
        for key in ["apiVersion", "kind"] {
            read.insert(key.into(), written[key].clone());
        }
    }
    assert_eq!(read, written, "{file}: a field was not understood");
    object
}

fn pod_spec(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container(job: &Job) -> &Container {
    &pod_spec(job).containers[0]
}

fn pod_labels(job: &Job) -> BTreeMap<String, String> {
    let template = &job.spec.as_ref().unwrap().template;
    template.metadata.as_ref().unwrap().labels.clone().unwrap()
}

fn env_names(container: &Container) -> Vec<String> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect()
}

#[test]
fn the_manifests_parse_and_every_reference_resolves() {
    let dir = tempfile::tempdir().unwrap();
    export(
        dir.path(),
        &[
            "--set",
            "consumer.resources.cpus=1.5",
            "--set",
            "consumer.resources.memory_mib=512",
            "--set",
            "consumer.resources.host=\"node-a\"",
        ],
    );
    let secret: Secret = parse(dir.path(), "secret.json");
    let service: Service = parse(dir.path(), "service.json");
    let launcher: Job = parse(dir.path(), "launcher.json");
    let agents: Job = parse(dir.path(), "agents.json");
    // The consumer names a node: its agent has a Job of its own, pinned there.
    let pinned: Job = parse(dir.path(), "agents-node-a.json");
    let ns = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.namespace.clone();
    for namespace in [
        ns(&secret.metadata),
        ns(&service.metadata),
        ns(&launcher.metadata),
        ns(&agents.metadata),
    ] {
        assert_eq!(namespace.as_deref(), Some("rl"));
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("secret.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the Secret's file is its owner's only");

    // The Service selects the launcher's pod, at the port it names.
    let spec = service.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
    let launcher_labels = pod_labels(&launcher);
    for (key, value) in spec.selector.as_ref().unwrap() {
        assert_eq!(launcher_labels.get(key), Some(value), "selector {key}");
    }
    let agent_labels = pod_labels(&agents);
    assert!(
        spec.selector
            .as_ref()
            .unwrap()
            .iter()
            .any(|(k, v)| agent_labels.get(k) != Some(v)),
        "the Service must not select the agents"
    );
    let port = &spec.ports.as_ref().unwrap()[0];
    let target = match port.target_port.as_ref().unwrap() {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => name.clone(),
        other => panic!("{other:?}"),
    };
    let launcher_c = container(&launcher);
    let named = launcher_c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(&target))
        .unwrap();
    assert_eq!(named.container_port, port.port);

    // Every secret reference names the Secret and one of its keys.
    let keys: Vec<&String> = secret.string_data.as_ref().unwrap().keys().collect();
    let agent_c = container(&agents);
    for c in [launcher_c, agent_c] {
        for env in c.env.iter().flatten() {
            if let Some(reference) = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                assert_eq!(reference.name, secret.metadata.name.clone().unwrap());
                assert!(keys.contains(&&reference.key), "{}", reference.key);
            }
        }
        // Every $(VAR) of the command is an env var of the container.
        for word in c.command.iter().flatten() {
            if let Some(var) = word.split("$(").nth(1).and_then(|w| w.split(')').next()) {
                assert!(
                    env_names(c).contains(&var.to_string()),
                    "$({var}) in {word}"
                );
            }
        }
    }
    // As many agents as the launcher waits for: one per process (a
    // consumer and two producers), over the two agents' Jobs.
    let command = launcher_c.command.clone().unwrap();
    let at = command.iter().position(|w| w == "--agents").unwrap();
    assert_eq!(command[at + 1], "3");
    let counts = |job: &Job| {
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!(spec.completions, spec.parallelism);
        spec.completions.unwrap()
    };
    assert_eq!((counts(&agents), counts(&pinned)), (2, 1));
    let selector = |job: &Job| pod_spec(job).node_selector.clone();
    assert_eq!(selector(&agents), None);
    assert_eq!(
        selector(&pinned)
            .unwrap()
            .get("kubernetes.io/hostname")
            .map(String::as_str),
        Some("node-a")
    );
    // Each sized for its class: the consumer's for the consumer.
    let requests = pod_requests;
    let consumer = requests(&pinned);
    assert_eq!(consumer.get("cpu").map(String::as_str), Some("1500m"));
    assert_eq!(consumer.get("memory").map(String::as_str), Some("512Mi"));
    assert!(
        requests(&agents).is_empty(),
        "the producers ask for nothing"
    );
    for job in [&agents, &pinned] {
        assert_eq!(pod_labels(job), agent_labels);
    }
    // The consumer's agent offers what its pod holds; the producers' their
    // machine (they ask for nothing).
    let mut offering = agent_c.command.clone().unwrap();
    offering.extend(["--cpus", "1.5", "--memory-mib", "512"].map(String::from));
    assert_eq!(container(&pinned).command, Some(offering));

    // The token names the Service; the material is what it pins.
    let data = secret.string_data.unwrap();
    let token = JoinToken::parse(&data["token"]).unwrap();
    assert_eq!(
        token.addresses(),
        [format!(
            "{}.rl.svc.cluster.local:{}",
            service.metadata.name.unwrap(),
            port.port
        )]
    );
    let material = JoinMaterial::parse(&data["material"]).unwrap();
    assert!(token.pin().matches(material.credentials.cert()));
}

/// Requests of a Job's pods, as `(resource, quantity)`.
fn pod_requests(job: &Job) -> BTreeMap<String, String> {
    container(job)
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// Processes that need different sizes: a consumer of 1 cpu and a gpu,
/// producers of 0.5 cpus.
const CLASSES: [&str; 6] = [
    "--set",
    "consumer.resources.cpus=1",
    "--set",
    "consumer.resources.gpus=1",
    "--set",
    "producer.resources.cpus=0.5",
];

#[test]
fn each_resource_class_is_an_agents_job_of_pods_sized_for_it() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), &CLASSES);
    // Classes in the order of their first process: the producers come
    // first in the program.
    let producers: Job = parse(dir.path(), "agents-c1.json");
    let consumer: Job = parse(dir.path(), "agents-c2.json");
    assert!(!dir.path().join("agents.json").exists());
    let launcher: Job = parse(dir.path(), "launcher.json");
    let command = container(&launcher).command.clone().unwrap();
    let at = command.iter().position(|w| w == "--agents").unwrap();
    assert_eq!(command[at + 1], "3", "a pod per process");
    let completions = |job: &Job| job.spec.as_ref().unwrap().completions.unwrap();
    assert_eq!((completions(&consumer), completions(&producers)), (1, 2));
    let consumer_requests = pod_requests(&consumer);
    assert_eq!(consumer_requests["cpu"], "1000m");
    assert_eq!(consumer_requests["nvidia.com/gpu"], "1");
    assert_eq!(pod_requests(&producers)["cpu"], "500m");
    assert!(!pod_requests(&producers).contains_key("nvidia.com/gpu"));
    let tail = |job: &Job| {
        let command = container(job).command.clone().unwrap();
        command[command.len() - 4..].to_vec()
    };
    assert_eq!(tail(&consumer), ["--cpus", "1", "--gpus", "1"]);
    assert_eq!(tail(&producers)[2..], ["--cpus", "0.5"]);
}

#[test]
fn the_pods_commands_run_the_program_across_hosts() {
    let Some(hosts) = Hosts::new(3) else { return };
    let dir = tempfile::tempdir().unwrap();
    // The launcher's "pod" is host 1; the token names its IP (no DNS here).
    // Two resource classes: the consumer's pod (with a gpu) on host 2, the
    // producers' two pods on host 3.
    let mut args = vec!["--launcher-host".to_string(), hosts.ip(1).to_string()];
    args.extend(CLASSES.map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    export(dir.path(), &args);
    let secret: Secret = parse(dir.path(), "secret.json");
    let launcher: Job = parse(dir.path(), "launcher.json");
    let producer_pod: Job = parse(dir.path(), "agents-c1.json");
    let consumer_pod: Job = parse(dir.path(), "agents-c2.json");
    let data = secret.string_data.unwrap();
    // The commands as written, `$(VAR)` expanded as the kubelet would,
    // the program where the image would hold it.
    let expand = |word: &str, vars: &[(&str, String)]| {
        let mut word = word.to_string();
        for (name, value) in vars {
            word = word.replace(&format!("$({name})"), value);
        }
        word.replace(
            "/program/program.toml",
            lp_tests::path("examples/consumer_producers/program.toml")
                .to_str()
                .unwrap(),
        )
    };
    let mut run = container(&launcher).command.clone().unwrap();
    assert_eq!(run.remove(0), "lp-host");
    let vars = [("POD_IP", hosts.ip(1).to_string())];
    let launcher_out = dir.path().join("launcher.out");
    let launcher_err = dir.path().join("launcher.err");
    let mut started = hosts
        .command(1, lp_tests::lp_host_exe())
        .args(run.iter().map(|w| expand(w, &vars)))
        .env("LP_JOIN_MATERIAL", &data["material"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&launcher_out).unwrap())
        .stderr(std::fs::File::create(&launcher_err).unwrap())
        .spawn()
        .unwrap();
    let mut pods = Vec::new();
    for (k, (job, host)) in [(&consumer_pod, 2), (&producer_pod, 3), (&producer_pod, 3)]
        .into_iter()
        .enumerate()
    {
        let mut agent_command = container(job).command.clone().unwrap();
        assert_eq!(agent_command.remove(0), "lp-host");
        let vars = [("NODE_NAME", format!("node-{host}"))];
        let said = std::fs::File::create(dir.path().join(format!("agent-{k}.err"))).unwrap();
        pods.push(
            hosts
                .command(host, lp_tests::lp_host_exe())
                .args(agent_command.iter().map(|w| expand(w, &vars)))
                .env("LP_JOIN_TOKEN", &data["token"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(said)
                .spawn()
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = started.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = started.kill();
            let read =
                |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
            panic!(
                "the launcher did not end:\n{}\nagents:\n{}\n{}\n{}",
                read("launcher.err"),
                read("agent-0.err"),
                read("agent-1.err"),
                read("agent-2.err")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&launcher_err).unwrap();
    let out = std::fs::read_to_string(&launcher_out).unwrap();
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("[consumer] step 9: [9, 9]"), "{out}");
    // Each process on a pod of its class: only the consumer's offers a
    // gpu, and each producer's pod has room for one producer.
    assert!(err.contains("[node-2] runs consumer\n"), "{err}");
    let on_node_3: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("[node-3] runs producer/"))
        .collect();
    assert_eq!(
        on_node_3.len(),
        2,
        "one producer on each of their pods: {err}"
    );
    for mut pod in pods {
        let deadline = Instant::now() + Duration::from_secs(30);
        while pod.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "an agent did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(pod.wait().unwrap().success());
    }
}
