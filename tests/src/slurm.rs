//! A real Slurm cluster for tests that launch across hosts: slurmctld in
//! the root network namespace on a bridge, and one slurmd per node, each in
//! a network namespace of its own (its own IP), brought up and down by
//! `scripts/slurm-cluster.sh` (read its header for the names, the subnet and
//! the config). Client commands (srun, sbatch, squeue, ...) run in the root
//! namespace and find the cluster through `SLURM_CONF`, which
//! [`Cluster::command`] and [`Cluster::run`] set.
//!
//! Slurm daemons, their ports and the namespace names are machine-wide, so
//! one cluster at a time: [`Cluster::up`] takes a lock (flock on
//! `/tmp/lp-slurm-tests.lock`) that it holds until the cluster is dropped;
//! tests in other threads or other test binaries wait for it. Drop (also
//! during a panic) cancels every job and removes the cluster.
//!
//! Needs root, iproute2 and Slurm; Slurm is installed (`apt-get`, through
//! the script's `install`) when missing. Where any of it cannot be had
//! [`Cluster::up`] returns `None` and says why, and the test skips itself.

use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The state directory and namespace tag of the tests' cluster: apart from
/// the script's defaults (`/tmp/lp-slurm`, tag `0`), so a cluster that
/// someone brought up by hand is left alone.
const DIR: &str = "/tmp/lp-slurm-tests";
const TAG: &str = "t";
/// Held for a cluster's lifetime.
const LOCK: &str = "/tmp/lp-slurm-tests.lock";
/// How long [`Cluster::up`] waits for another test's cluster to go.
const LOCK_WAIT: Duration = Duration::from_secs(900);
/// How long [`Cluster::run`] lets a command run before killing it.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The path of the script that makes the cluster.
pub fn script() -> PathBuf {
    crate::path("scripts/slurm-cluster.sh")
}

/// What [`Cluster::up_with`] can change.
#[derive(Clone, Debug)]
pub struct Options {
    /// Refuse at submission a job that no node or partition can hold
    /// (`EnforcePartLimits=ALL`, the default here). With `false` (Slurm's
    /// own default) such a job is accepted and pends for ever, with
    /// `Reason=PartitionConfig` or `PartitionNodeLimit`.
    pub enforce_part_limits: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            enforce_part_limits: true,
        }
    }
}

/// A running Slurm cluster of N nodes (`n1`..`nN`), 2 CPUs and 2000 MB each.
pub struct Cluster {
    conf: PathBuf,
    controller: Ipv4Addr,
    port: u16,
    nodes: Vec<String>,
    node_ips: Vec<Ipv4Addr>,
    namespaces: Vec<String>,
    partition: String,
    small_partition: String,
    /// The flock; released when the cluster is dropped (after `down`).
    _lock: File,
}

impl Cluster {
    /// `nodes` nodes (1 to 99), all idle, with [`Options::default`]; or
    /// `None` with a line on stderr saying why the test is skipped.
    pub fn up(nodes: usize) -> Option<Cluster> {
        Cluster::up_with(nodes, Options::default())
    }

    /// Like [`Cluster::up`], with `options`. A failure after the
    /// prerequisites are found (the script's `up` failing) panics with the
    /// script's output, after removing what it made.
    pub fn up_with(nodes: usize, options: Options) -> Option<Cluster> {
        assert!((1..=99).contains(&nodes), "Cluster::up({nodes}): 1 to 99");
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: a Slurm cluster in network namespaces needs root");
            return None;
        }
        let script = script();
        if !script.is_file() {
            eprintln!("skipped: no {}", script.display());
            return None;
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                eprintln!("skipped: `ip netns list` failed: {}", why.trim());
                return None;
            }
            Err(e) => {
                eprintln!("skipped: cannot run `ip` (iproute2): {e}");
                return None;
            }
        }
        if !installed() {
            let out = script_command("install").output();
            let ok = matches!(&out, Ok(out) if out.status.success());
            if !ok || !installed() {
                let why = match out {
                    Ok(out) => tail(&out, 5),
                    Err(e) => e.to_string(),
                };
                eprintln!("skipped: Slurm is not installed and installing it failed: {why}");
                return None;
            }
        }
        let lock = take_lock();
        // The lock is ours: whatever is in DIR was left by a test process
        // that was killed before its cluster could be dropped.
        let down = script_command("down").output();
        if let Ok(out) = &down
            && !out.status.success()
        {
            eprintln!("removing a leftover Slurm cluster: {}", tail(out, 10));
        }
        let limits = if options.enforce_part_limits {
            "ALL"
        } else {
            "NO"
        };
        let up = script_command("up")
            .arg(nodes.to_string())
            .env("LP_SLURM_ENFORCE_PART_LIMITS", limits)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        if !up.status.success() {
            let _ = script_command("down").output();
            panic!(
                "{} up {nodes} failed:\n{}{}",
                script.display(),
                String::from_utf8_lossy(&up.stdout),
                String::from_utf8_lossy(&up.stderr)
            );
        }
        match Cluster::from_env(lock) {
            Ok(cluster) => Some(cluster),
            Err(why) => {
                let _ = script_command("down").output();
                panic!("reading {DIR}/env: {why}");
            }
        }
    }

    fn from_env(lock: File) -> Result<Cluster, String> {
        let text =
            std::fs::read_to_string(Path::new(DIR).join("env")).map_err(|e| e.to_string())?;
        let get = |key: &str| -> Result<String, String> {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(|value| value.trim_matches('"').to_string())
                .ok_or_else(|| format!("no {key}"))
        };
        let ip = |text: &str| -> Result<Ipv4Addr, String> {
            text.parse().map_err(|e| format!("`{text}`: {e}"))
        };
        let words =
            |text: String| -> Vec<String> { text.split_whitespace().map(str::to_string).collect() };
        let cluster = Cluster {
            conf: PathBuf::from(get("SLURM_CONF")?),
            controller: ip(&get("LP_SLURM_CONTROLLER")?)?,
            port: get("LP_SLURM_PORT")?
                .parse()
                .map_err(|e| format!("LP_SLURM_PORT: {e}"))?,
            nodes: words(get("LP_SLURM_NODES")?),
            node_ips: words(get("LP_SLURM_NODE_IPS")?)
                .iter()
                .map(|s| ip(s))
                .collect::<Result<_, _>>()?,
            namespaces: words(get("LP_SLURM_NAMESPACES")?),
            partition: get("LP_SLURM_PARTITION")?,
            small_partition: get("LP_SLURM_SMALL_PARTITION")?,
            _lock: lock,
        };
        if cluster.nodes.len() != cluster.node_ips.len()
            || cluster.nodes.len() != cluster.namespaces.len()
        {
            return Err("as many nodes, node IPs and namespaces".into());
        }
        Ok(cluster)
    }

    /// The slurm.conf (what `SLURM_CONF` must name for a Slurm command).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The state directory: slurm.conf, `env`, log/, spool/, state/.
    pub fn dir(&self) -> &Path {
        Path::new(DIR)
    }

    /// slurmctld's address: the bridge IP in the root namespace (a launcher
    /// listening there is reachable from every node).
    pub fn controller_ip(&self) -> Ipv4Addr {
        self.controller
    }

    /// slurmctld's TCP port.
    pub fn controller_port(&self) -> u16 {
        self.port
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: there is at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node names, `n1`..`nN`.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The nodes' IPs, in the order of [`Cluster::nodes`].
    pub fn node_ips(&self) -> &[Ipv4Addr] {
        &self.node_ips
    }

    /// The IP of the node called `name`.
    pub fn node_ip(&self, name: &str) -> Option<Ipv4Addr> {
        let i = self.nodes.iter().position(|n| n == name)?;
        Some(self.node_ips[i])
    }

    /// The nodes' network namespaces (as `ip netns` names them), in the
    /// order of [`Cluster::nodes`].
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// The default partition (every node).
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// A partition of the first node only.
    pub fn small_partition(&self) -> &str {
        &self.small_partition
    }

    /// What the script's `env` file says, as (name, value) pairs:
    /// SLURM_CONF, LP_SLURM_CONTROLLER, LP_SLURM_NODES, ...
    pub fn env(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(Path::new(DIR).join("env"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect()
    }

    /// A command for `program` with `SLURM_CONF` naming this cluster.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf).stdin(Stdio::null());
        command
    }

    /// Run the shell command `script` (`bash -c`) to its end with output
    /// captured, killed after 120 s (a job that never starts would keep
    /// srun waiting for ever).
    pub fn run(&self, script: &str) -> Output {
        self.run_for(script, RUN_LIMIT)
    }

    /// Like [`Cluster::run`], killed after `limit`.
    pub fn run_for(&self, script: &str, limit: Duration) -> Output {
        self.command("timeout")
            .args(["--kill-after=5", &format!("{}", limit.as_secs_f64())])
            .args(["bash", "-c", script])
            .output()
            .unwrap_or_else(|e| panic!("running `{script}`: {e}"))
    }

    /// The ids of the jobs in this cluster's queue (pending, running,
    /// completing), in squeue's order; a heterogeneous job once, by its
    /// leader's id.
    pub fn squeue_jobs(&self) -> Vec<String> {
        let out = self
            .command("squeue")
            .args(["-h", "-o", "%i"])
            .output()
            .expect("running squeue");
        assert!(out.status.success(), "squeue: {}", tail(&out, 5));
        let mut jobs: Vec<String> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // A heterogeneous job's components show as `5+0`, `5+1`.
            let id = line.trim().split('+').next().unwrap_or_default();
            if !id.is_empty() && !jobs.iter().any(|j| j == id) {
                jobs.push(id.to_string());
            }
        }
        jobs
    }

    /// Job `id`'s state and reason (`("PENDING", "PartitionConfig")`,
    /// `("RUNNING", "None")`, `("COMPLETED", "None")`, ...), while slurmctld
    /// remembers it (MinJobAge, 300 s after its end); `None` if it does not.
    pub fn job_state(&self, id: &str) -> Option<(String, String)> {
        let out = self
            .command("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some((field("JobState")?, field("Reason")?))
    }

    /// Wait up to `limit` until job `id` is in `state` (as
    /// [`Cluster::job_state`] says); whether it got there.
    pub fn wait_for_state(&self, id: &str, state: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.job_state(id).is_some_and(|(s, _)| s == state) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every process of the cluster now: slurmctld, and whatever runs in
    /// the nodes' namespaces (slurmd, slurmstepd, tasks).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = std::fs::read_to_string(Path::new(DIR).join("slurmctld.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .into_iter()
            .collect();
        for namespace in &self.namespaces {
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", namespace])
                .output()
            {
                let text = String::from_utf8_lossy(&out.stdout);
                pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        pids
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match script_command("down").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("slurm-cluster.sh down failed: {}", tail(&out, 10)),
            Err(e) => eprintln!("slurm-cluster.sh down: {e}"),
        }
    }
}

/// Whether Debian's Slurm and munge are there. (Not `srun --version`: a
/// Slurm command finding no config fails, even for that.)
fn installed() -> bool {
    [
        "/usr/sbin/slurmctld",
        "/usr/sbin/slurmd",
        "/usr/sbin/munged",
        "/usr/bin/srun",
    ]
    .iter()
    .all(|p| Path::new(p).is_file())
}

/// `bash scripts/slurm-cluster.sh SUBCOMMAND` for the tests' cluster.
fn script_command(subcommand: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(script())
        .arg(subcommand)
        .env("LP_SLURM_DIR", DIR)
        .env("LP_SLURM_TAG", TAG)
        .env_remove("SLURM_CONF")
        .stdin(Stdio::null());
    command
}

/// The lock on [`LOCK`], waiting up to [`LOCK_WAIT`] for whoever holds it.
fn take_lock() -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .unwrap_or_else(|e| panic!("opening {LOCK}: {e}"));
    let deadline = Instant::now() + LOCK_WAIT;
    let mut said = false;
    loop {
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return file;
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            panic!("flock {LOCK}: {error}");
        }
        if Instant::now() >= deadline {
            panic!("another test has held {LOCK} (its Slurm cluster) for {LOCK_WAIT:?}");
        }
        if !said {
            eprintln!("waiting for another test's Slurm cluster ({LOCK}) to go");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `lines` lines of a command's stderr (or stdout if it said
/// nothing there).
fn tail(out: &Output, lines: usize) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        stderr
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
