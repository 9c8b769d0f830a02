//! `--launch slurm`: the agents of a multi-host launch ([`super::hosts`])
//! as one Slurm job, one agent per node of the job. The launcher writes the
//! join token and a batch script into a private directory the nodes share,
//! submits the script with `sbatch` (the program's `[program.slurm]` and
//! its nodes' `resources` become sbatch options), watches the job while
//! the agents join (a job Slurm cannot place, or one that ends first,
//! refuses the launch with Slurm's reason), and cancels it at the end.
//! The join secret reaches the agents as that owner-only file, never on a
//! command line. Nothing here schedules: Slurm does.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::classes::{self, Layout};
use super::hosts::{HostsOptions, Recruit};
use super::placement::{self, Process};
use super::run_dir;
use crate::program::Program;

/// The multi-host settings of a Slurm launch of `program`: as many agents
/// as the job has nodes, joining at `listen`, else at the address Slurm's
/// nodes reach this machine at (any free port).
pub fn hosts_options(
    program: &Program,
    listen: Option<SocketAddr>,
    job: JobOptions,
    join_timeout: Duration,
) -> Result<HostsOptions> {
    let processes = placement::processes(program);
    let layout = layout(program, &processes)?;
    let listen = match listen {
        Some(listen) => listen,
        None => SocketAddr::new(address_toward_controller()?, 0),
    };
    Ok(HostsOptions {
        listen,
        agents: layout.machines() as usize,
        token_file: None,
        recruit: Recruit::Slurm { job, layout },
        join_timeout,
    })
}

/// What the launcher needs to submit the job.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// The lp-host binary the agents run (default: this one). It must be
    /// at this path on every node (a shared filesystem, or installed).
    pub agent_exe: Option<PathBuf>,
    /// Where the job's own output (`slurm-<job>.out`: what the agents say)
    /// goes; default: the private directory, shown when the job fails.
    pub logs_dir: Option<PathBuf>,
}

/// The agents' Slurm job: cancelled (if still there) when dropped.
pub struct Job {
    /// The job's id (inside an allocation: the allocation's).
    pub id: String,
    /// The private directory on the shared filesystem: token, script and
    /// (without `--logs-dir`) the job's output.
    dir: tempfile::TempDir,
    output: PathBuf,
    /// Inside an allocation (`salloc`, a batch script, `--detach`): the
    /// `srun` step running the agents. The allocation is not the launch's
    /// to cancel; the step is.
    step: Option<std::process::Child>,
    cancelled: bool,
    /// The nodes its agents run on, as the launcher says them.
    nodes: String,
}

/// The Slurm allocation this process runs in, if any (`salloc`, a batch
/// script, or a `--detach`ed launch).
struct Allocation {
    id: String,
    /// Nodes in all.
    nodes: u32,
    /// A heterogeneous allocation's nodes, component by component.
    components: Vec<u32>,
}

fn allocation() -> Option<Allocation> {
    let var = |name: &str| std::env::var(name).ok();
    let id = var("SLURM_JOB_ID")?;
    let components: Vec<u32> = match var("SLURM_HET_SIZE").and_then(|n| n.parse::<u32>().ok()) {
        Some(size) => (0..size)
            .map(|k| {
                var(&format!("SLURM_JOB_NUM_NODES_HET_GROUP_{k}"))?
                    .parse()
                    .ok()
            })
            .collect::<Option<_>>()?,
        None => Vec::new(),
    };
    let nodes = match components.is_empty() {
        true => var("SLURM_JOB_NUM_NODES")
            .or_else(|| var("SLURM_NNODES"))?
            .parse()
            .ok()?,
        false => components.iter().sum(),
    };
    Some(Allocation {
        id,
        nodes,
        components,
    })
}

/// Slurm's states of a job that will not start, or has ended.
const ENDED: [&str; 8] = [
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "TIMEOUT",
];

/// Reasons a pending job gives when it can never run as asked (Slurm's
/// `squeue %r`); others (Resources, Priority, ...) mean "wait".
const HOPELESS: [&str; 10] = [
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "PartitionDown",
    "PartitionInactive",
    "BadConstraints",
    "ReqNodeNotAvail",
    "InvalidAccount",
    "InvalidQOS",
    "JobHeldAdmin",
];

/// The address of this machine Slurm's nodes reach it at: the one it uses
/// to reach slurmctld (from `scontrol show config`).
pub fn address_toward_controller() -> Result<IpAddr> {
    let config = slurm_command("scontrol", &["show", "config"])?;
    let line = config
        .lines()
        .find(|l| l.trim_start().starts_with("SlurmctldHost"))
        .context("`scontrol show config` names no SlurmctldHost")?;
    let value = line.split_once('=').map_or("", |(_, v)| v.trim());
    // `name(addr)` or `name`.
    let host = match value.split_once('(') {
        Some((_, addr)) => addr.trim_end_matches(')'),
        None => value,
    };
    let controller = (host, 6817)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve slurmctld's host {host:?}"))?
        .next()
        .with_context(|| format!("slurmctld's host {host:?} has no address"))?;
    // Connecting a UDP socket sends nothing: it picks the route, and with
    // it this machine's address on the way.
    let probe = UdpSocket::bind(SocketAddr::new(
        match controller.ip() {
            IpAddr::V4(_) => [0, 0, 0, 0].into(),
            IpAddr::V6(_) => [0u16; 8].into(),
        },
        0,
    ))?;
    probe.connect(controller)?;
    let ip = probe.local_addr()?.ip();
    if ip.is_loopback() && !controller.ip().is_loopback() {
        bail!("cannot tell which address of this machine Slurm's nodes reach");
    }
    Ok(ip)
}

/// The nodes the job asks for (`classes::layout`, whole cpus): `[program.slurm]
/// nodes` of them, else one per process, at most as many as the partition
/// (or the allocation this runs in) has.
pub fn layout(program: &Program, processes: &[Process]) -> Result<Layout> {
    let allocation = allocation();
    let nodes = match (program.slurm.nodes, &allocation) {
        (Some(nodes), _) => nodes,
        (None, Some(allocation)) => (processes.len() as u32).clamp(1, allocation.nodes),
        (None, None) => (processes.len() as u32).clamp(1, nodes_in_partition(program)?),
    };
    let layout = classes::layout(processes, nodes).whole_cpus();
    if let Some(allocation) = allocation
        && layout.machines() > allocation.nodes
    {
        bail!(
            "the program asks for {} node(s), but this allocation (job {}) has {}\n  help: ask salloc/sbatch for {} nodes, or set program.slurm.nodes={}",
            layout.machines(),
            allocation.id,
            allocation.nodes,
            layout.machines(),
            allocation.nodes
        );
    }
    Ok(layout)
}

/// How many nodes Slurm lists in the program's partition (at least one).
fn nodes_in_partition(program: &Program) -> Result<u32> {
    let mut args = vec!["-h", "-o", "%D"];
    if let Some(partition) = &program.slurm.partition {
        args.extend(["-p", partition]);
    }
    let listed = slurm_command("sinfo", &args)?;
    let in_partition: u32 = listed
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .sum();
    if in_partition == 0 {
        bail!(
            "Slurm lists no nodes{}",
            program
                .slurm
                .partition
                .as_ref()
                .map_or(String::new(), |p| format!(" in partition {p:?}"))
        );
    }
    Ok(in_partition)
}

/// The sbatch options of the job's components, one list per group of
/// `layout` (several: a heterogeneous job): its nodes, one agent on each,
/// what each node must hold, the host it must be, then `[program.slurm]`.
pub fn sbatch_components(program: &Program, layout: &Layout) -> Vec<Vec<String>> {
    layout
        .groups()
        .iter()
        .map(|group| {
            let mut options = vec![
                format!("--nodes={}", group.machines),
                "--ntasks-per-node=1".into(),
            ];
            let size = group.size;
            if size.cpus > 0.0 {
                options.push(format!("--cpus-per-task={}", size.cpus));
            }
            if size.memory_mib > 0 {
                options.push(format!("--mem={}M", size.memory_mib));
            }
            if size.gpus > 0 {
                options.push(format!("--gres=gpu:{}", size.gpus));
            }
            if let Some(host) = &group.host {
                options.push(format!("--nodelist={host}"));
            }
            let slurm = &program.slurm;
            if let Some(partition) = &slurm.partition {
                options.push(format!("--partition={partition}"));
            }
            if let Some(time) = &slurm.time {
                options.push(format!("--time={time}"));
            }
            options.extend(slurm.sbatch.iter().cloned());
            options
        })
        .collect()
}

/// How the agents' step uses the nodes it runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// A component per group of the layout (a heterogeneous job or
    /// allocation when there are several), each agent offering its
    /// group's size.
    PerGroup,
    /// All the layout's nodes as one (a plain allocation, or a job of like
    /// nodes), each agent offering its node as it is.
    AsOne,
}

impl Step {
    /// `3 nodes`, or (per group) each group's size.
    fn describe(self, layout: &Layout) -> String {
        match (self, layout.machines()) {
            (Step::PerGroup, _) => layout.describe("node"),
            (Step::AsOne, 1) => "1 node".into(),
            (Step::AsOne, n) => format!("{n} nodes"),
        }
    }

    /// The step of a job of its own for `layout`.
    fn of_job(layout: &Layout) -> Step {
        match layout.offers_sizes() {
            true => Step::PerGroup,
            false => Step::AsOne,
        }
    }
}

/// `srun`'s arguments for the agents of `layout`, an agent on each node,
/// labelled with the node's name, as `step` says.
fn srun_args(layout: &Layout, step: Step, exe: &Path, token: &Path) -> Vec<String> {
    let task = |nodes: u32| {
        vec![
            format!("--nodes={nodes}"),
            format!("--ntasks={nodes}"),
            "--ntasks-per-node=1".into(),
            "--kill-on-bad-exit=0".into(),
            "/bin/sh".into(),
            "-c".into(),
            AGENT_COMMAND.into(),
            exe.to_string_lossy().into_owned(),
            token.to_string_lossy().into_owned(),
        ]
    };
    if step == Step::AsOne {
        return task(layout.machines());
    }
    let groups = layout.groups();
    let mut args = Vec::new();
    for (k, group) in groups.iter().enumerate() {
        if k > 0 {
            args.push(":".to_string());
        }
        if groups.len() > 1 {
            args.push(format!("--het-group={k}"));
        }
        args.extend(task(group.machines));
        args.extend(group.size.agent_args());
    }
    args
}

/// What each of the job's tasks runs (`sh -c`, `$0` the lp-host binary,
/// `$1` the token file, then the agent's offer): an agent labelled with
/// its node's name, so that `resources.host` can name a Slurm node.
const AGENT_COMMAND: &str =
    r#"t=$1; shift; exec "$0" agent --quiet --token "$t" --host "$SLURMD_NODENAME" "$@""#;

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// `text` as one word for sh.
fn sh_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Job {
    /// Start the agents of `layout` (one per node), which join with the
    /// token `write_token` writes into the job's private directory: as a
    /// job of their own, or (inside an allocation) as a step of it.
    pub fn submit(
        program: &Program,
        layout: &Layout,
        options: &JobOptions,
        exe: &Path,
        write_token: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Job> {
        // The nodes read the token and script at these paths: the working
        // directory is assumed shared (it is home or a project directory
        // on most clusters).
        let dir = tempfile::Builder::new()
            .prefix(".lp-slurm-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(".")
            .context("cannot create the launch's directory (it must be on a filesystem the nodes share; run from such a directory)")?;
        let dir_path = std::path::absolute(dir.path())?;
        let token = dir_path.join("join.token");
        write_token(&token)?;
        let output = match &options.logs_dir {
            Some(logs) => {
                std::fs::create_dir_all(logs)
                    .with_context(|| format!("cannot create {}", logs.display()))?;
                std::path::absolute(logs)?.join("slurm-%j.out")
            }
            None => dir_path.join("slurm-%j.out"),
        };
        if let Some(allocation) = allocation() {
            let how = step_in(&allocation, layout)?;
            let step = Command::new("srun")
                .arg(format!("--output={}", output.display()))
                .args(srun_args(layout, how, exe, &token))
                .stdin(std::process::Stdio::null())
                .spawn()
                .context("cannot run srun (is Slurm's client installed and on PATH?)")?;
            let output = PathBuf::from(output.to_string_lossy().replace("%j", &allocation.id));
            return Ok(Job {
                id: allocation.id,
                dir,
                output,
                step: Some(step),
                cancelled: false,
                nodes: how.describe(layout),
            });
        }
        let script = dir_path.join("agents.sh");
        // One agent per node, labelled with the node's name (for
        // `resources.host`); an agent's failure does not end the others
        // (the launcher decides what a lost agent means).
        let words: Vec<String> = srun_args(layout, Step::of_job(layout), exe, &token)
            .iter()
            .map(|w| sh_quoted(w))
            .collect();
        let body = format!(
            "#!/bin/sh\n# lp-host: the agents of one launch of {}, one per node of this job.\n\
             exec srun {}\n",
            program.name,
            words.join(" "),
        );
        run_dir::write_private(&script, body.as_bytes())?;
        let id = submit_batch(program, layout, &output, &script)?;
        let output = PathBuf::from(output.to_string_lossy().replace("%j", &id));
        Ok(Job {
            id,
            dir,
            output,
            step: None,
            cancelled: false,
            nodes: Step::of_job(layout).describe(layout),
        })
    }

    /// The nodes its agents run on: `3 nodes`, or each group's size.
    pub fn nodes(&self) -> &str {
        &self.nodes
    }

    /// How the launcher names it.
    pub fn describe(&self) -> String {
        match self.step {
            Some(_) => format!("a step of job {}", self.id),
            None => format!("job {}", self.id),
        }
    }

    /// Why the job's agents will never all join, if that is so: Slurm
    /// cannot place it, or it ended.
    pub fn hopeless(&mut self) -> Option<String> {
        if let Some(step) = &mut self.step {
            return match step.try_wait() {
                Ok(None) => None,
                Ok(Some(status)) => Some(format!(
                    "the agents' step of job {} ended ({status}) before they joined{}",
                    self.id,
                    self.output_tail()
                )),
                Err(e) => Some(format!("cannot watch the agents' srun: {e}")),
            };
        }
        let listed = match self.state() {
            Ok(listed) => listed,
            Err(e) => {
                // slurmctld busy or away for a moment: ask again later.
                tracing::debug!("cannot see job {}: {e:#}", self.id);
                return None;
            }
        };
        let Some((state, reason)) = listed.as_ref().and_then(|l| l.split_once('|')) else {
            return Some(format!(
                "Slurm job {} ended before its agents joined{}",
                self.id,
                self.output_tail()
            ));
        };
        if state == "PENDING" && HOPELESS.contains(&reason) {
            return Some(format!(
                "Slurm cannot start job {} as asked: it is pending with reason {reason}{}",
                self.id,
                match reason {
                    "PartitionConfig" | "PartitionNodeLimit" =>
                        " (the partition has too few nodes, cpus or memory for it)",
                    "PartitionTimeLimit" => " (its time limit is over the partition's)",
                    "ReqNodeNotAvail" => " (a node it names is down or unavailable)",
                    _ => "",
                }
            ));
        }
        ENDED.contains(&state).then(|| {
            format!(
                "Slurm job {} is {state} before its agents joined{}",
                self.id,
                self.output_tail()
            )
        })
    }

    /// `STATE|REASON` of the job while Slurm lists it; `None` once it has
    /// gone from the queue.
    fn state(&self) -> Result<Option<String>> {
        squeue_line(&self.id, "%T|%r")
    }

    /// Wait up to `limit` for Slurm to stop listing the job: whether it
    /// did (an error from squeue ends the wait).
    fn gone_within(&self, limit: Duration) -> Result<bool> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.state()?.is_none() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(false)
    }

    /// The last lines of the job's output, to show with a failure.
    fn output_tail(&self) -> String {
        let Ok(text) = std::fs::read_to_string(&self.output) else {
            return String::new();
        };
        let tail = last_lines(&text, 10);
        if tail.is_empty() {
            return String::new();
        }
        format!(
            "; its output ({}) ends:\n  {}",
            self.output.display(),
            tail.join("\n  ")
        )
    }

    /// Cancel the job (its agents have gone, or are to go, now), and wait
    /// (a few seconds at most) until Slurm no longer lists it, so that
    /// nothing of the launch is left when the launcher exits.
    pub fn cancel(&mut self) {
        if self.cancelled {
            return;
        }
        self.cancelled = true;
        if let Some(step) = &mut self.step {
            // srun passes SIGTERM on to the agents and waits for them.
            // SAFETY: kill sends a signal to our own child.
            unsafe { libc::kill(step.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + CANCELLED_WITHIN;
            while matches!(step.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = step.kill();
            let _ = step.wait();
            return;
        }
        // Agents that have gone end their step, and the job with it: one
        // that ends so is COMPLETED in Slurm's books, not CANCELLED.
        if let Ok(true) = self.gone_within(ENDS_ALONE_WITHIN) {
            return;
        }
        if let Err(e) = slurm_command("scancel", &[&self.id]) {
            tracing::warn!("{e:#}");
        }
        match self.gone_within(CANCELLED_WITHIN) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("{e:#}");
                return;
            }
        }
        crate::errln!(
            "warning: Slurm still lists job {} {CANCELLED_WITHIN:?} after it was cancelled",
            self.id
        );
    }

    /// The job's private directory (kept until the job is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Submit `script` as a job of the nodes of `layout` (a heterogeneous
/// job when it has several groups), its output to `output` (`%j`: the
/// job id); the job's id.
fn submit_batch(
    program: &Program,
    layout: &Layout,
    output: &Path,
    script: &Path,
) -> Result<String> {
    let components = sbatch_components(program, layout);
    let mut sbatch = vec![
        "--parsable".to_string(),
        format!("--job-name=lp-{}", program.name),
        format!("--output={}", output.display()),
    ];
    let shown: Vec<String> = components.iter().map(|c| c.join(" ")).collect();
    for (k, options) in components.into_iter().enumerate() {
        if k > 0 {
            sbatch.push(":".into());
        }
        sbatch.extend(options);
    }
    // sbatch keeps its own copy of the script.
    sbatch.push(script.to_string_lossy().into_owned());
    tracing::debug!("submitting sbatch {sbatch:?}");
    let args: Vec<&str> = sbatch.iter().map(String::as_str).collect();
    let stdout = slurm_command("sbatch", &args).map_err(|e| {
        anyhow::anyhow!(
            "Slurm refused the job ({}): {e:#}\n  help: the options come from [program.slurm] and the nodes' resources{}",
            shown.join(" : "),
            match program.slurm.place.line_col {
                Some((line, _)) => format!(" ([program.slurm] is at {}:{line})", program.file.display()),
                None => String::new(),
            }
        )
    })?;
    job_id(&stdout)
}

/// The agents' step inside `allocation`: one component per group of
/// `layout` in a heterogeneous allocation (a `--detach`ed launch's own
/// job), which must be made of the same groups; in a plain one, all its
/// nodes as one, the agents offering their nodes as they are.
fn step_in(allocation: &Allocation, layout: &Layout) -> Result<Step> {
    if allocation.components.is_empty() {
        return Ok(Step::AsOne);
    }
    let wanted: Vec<u32> = layout.groups().iter().map(|g| g.machines).collect();
    if allocation.components != wanted {
        bail!(
            "this heterogeneous allocation (job {}) has components of {:?} node(s), but the program's resource classes ask for {wanted:?}\n  help: run from a plain allocation (one component), or let lp-host submit the job",
            allocation.id,
            allocation.components
        );
    }
    Ok(Step::PerGroup)
}

/// `--detach`: submit a job whose batch step is this launch's launcher
/// (`lp-host` with `args`, which run it under `--launch slurm` inside the
/// allocation, its agents a step of it), and return the job's id at once.
/// The launcher's own output goes to `logs_dir`/launcher-<job>.out.
pub fn detach(program: &Program, exe: &Path, args: &[String], logs_dir: &Path) -> Result<String> {
    let processes = placement::processes(program);
    let layout = layout(program, &processes)?;
    std::fs::create_dir_all(logs_dir)
        .with_context(|| format!("cannot create {}", logs_dir.display()))?;
    let logs = std::path::absolute(logs_dir)?;
    let dir = run_dir::create()?;
    let script = dir.path().join("launcher.sh");
    let words: Vec<String> = std::iter::once(exe.to_string_lossy().into_owned())
        .chain(args.iter().cloned())
        .map(|w| sh_quoted(&w))
        .collect();
    let body = format!(
        "#!/bin/sh\n# lp-host: a detached launch of {}; the launcher runs here, in the job.\nexec {}\n",
        program.name,
        words.join(" ")
    );
    run_dir::write_private(&script, body.as_bytes())?;
    submit_batch(program, &layout, &logs.join("launcher-%j.out"), &script)
}

/// Slurm's line for `job` in squeue's `format`; `None` once Slurm no longer
/// lists it.
fn squeue_line(job: &str, format: &str) -> Result<Option<String>> {
    match slurm_command("squeue", &["-h", "-j", job, "-o", format]) {
        Ok(listed) => Ok(listed.lines().next().map(|l| l.trim().to_string())),
        Err(e) if format!("{e:#}").contains("Invalid job id") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The job id `sbatch --parsable` printed (`id` or `id;cluster`).
fn job_id(stdout: &str) -> Result<String> {
    Ok(stdout
        .trim()
        .split(';')
        .next()
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .with_context(|| format!("sbatch printed no job id: {stdout:?}"))?
        .to_string())
}

/// A job of an lp launch as Slurm lists it: name, state, time, nodes and
/// where (or why not yet); `None` once Slurm no longer lists it.
fn listed(job: &str) -> Result<Option<[String; 5]>> {
    if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
        bail!("{job:?} is not a Slurm job id (a number, as `slurm: job N` printed)");
    }
    let Some(line) = squeue_line(job, "%j|%T|%M|%D|%R")? else {
        return Ok(None);
    };
    let fields: Vec<String> = line.trim().splitn(5, '|').map(str::to_string).collect();
    let fields: [String; 5] = fields
        .try_into()
        .map_err(|_| anyhow::anyhow!("unexpected squeue line {line:?}"))?;
    if !fields[0].starts_with("lp-") {
        bail!(
            "job {job} is not a launch of lp-host (its name is {:?})",
            fields[0]
        );
    }
    Ok(Some(fields))
}

/// `lp-host status JOB`: the job's state, and the end of its launcher's
/// output. Exit code 0 while Slurm lists it, 1 once it has gone.
pub fn status(job: &str) -> Result<i32> {
    let Some([name, state, time, nodes, place]) = listed(job)? else {
        println!("job {job}: no longer in Slurm's queue (ended, or never an lp launch)");
        return Ok(1);
    };
    println!("job {job} ({name}): {state} for {time} on {nodes} node(s): {place}");
    let shown = slurm_command("scontrol", &["show", "job", job]).unwrap_or_default();
    if let Some(file) = shown
        .split_whitespace()
        .find_map(|field| field.strip_prefix("StdOut="))
    {
        println!("output: {file}");
        if let Ok(text) = std::fs::read_to_string(file) {
            for line in last_lines(&text, 10) {
                println!("  {line}");
            }
        }
    }
    Ok(0)
}

/// `lp-host stop JOB`: stop a detached launch as Ctrl-C would (its
/// launcher stops the program: nodes get their termination notice), or
/// with `now` cancel the job at once; then wait up to `wait` for it to
/// leave the queue. Exit code 0 once it has, 1 if it is still there.
pub fn stop(job: &str, now: bool, wait: Duration) -> Result<i32> {
    if listed(job)?.is_none() {
        println!("job {job}: no longer in Slurm's queue");
        return Ok(0);
    }
    match now {
        true => slurm_command("scancel", &[job])?,
        false => slurm_command("scancel", &["--batch", "--signal=INT", job])?,
    };
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if listed(job)?.is_none() {
            println!("job {job}: stopped");
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "job {job}: still in Slurm's queue after {wait:?}\n  help: `lp-host stop {job} --now` cancels it at once"
    );
    Ok(1)
}

/// How long the launcher gives a job whose agents have gone to end by
/// itself before it cancels the job.
const ENDS_ALONE_WITHIN: Duration = Duration::from_millis(1000);

/// How long the launcher waits for a cancelled job to leave the queue.
const CANCELLED_WITHIN: Duration = Duration::from_secs(5);

/// How long `squeue` and friends may take before the launch gives up on
/// them (slurmctld unreachable retries for a minute).
const SLURM_COMMAND_WITHIN: Duration = Duration::from_secs(30);

/// Run a Slurm client command; its stdout, or its stderr as the error.
fn slurm_command(program: &str, args: &[&str]) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("cannot run {program} (is Slurm's client installed and on PATH?)")
        })?;
    let deadline = std::time::Instant::now() + SLURM_COMMAND_WITHIN;
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} did not answer within {SLURM_COMMAND_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = child.wait_with_output()?;
    if !done.status.success() {
        let said = String::from_utf8_lossy(&done.stderr);
        let help = if said.contains("Could not establish a configuration source") {
            "\n  help: this machine is not set up as a Slurm client: run from a login node of the cluster, or point SLURM_CONF at its slurm.conf"
        } else {
            ""
        };
        bail!("{program} {}: {}{help}", args.join(" "), said.trim());
    }
    Ok(String::from_utf8_lossy(&done.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{Override, Resources};

    fn program(set: &[&str]) -> Program {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        let file = dir.path().join("program.toml");
        let source = "[program]\nname = \"p\"\nslurm = { partition = \"lp\", time = \"10\", sbatch = { account = \"rl\" } }\n\n[[node]]\nname = \"learner\"\ncomponent = \"n.wasm\"\n\n[[node]]\nname = \"actor\"\ncomponent = \"n.wasm\"\nreplicas = 4\n";
        let overrides: Vec<Override> = set.iter().map(|s| s.parse().unwrap()).collect();
        crate::program::load_str(&file, source, &overrides).unwrap()
    }

    #[test]
    fn each_resource_class_is_a_component_of_a_heterogeneous_job() {
        let p = program(&[
            "learner.resources.cpus=2",
            "learner.resources.memory_mib=4096",
            "learner.resources.gpus=1",
            "actor.resources.cpus=0.5",
            "actor.resources.memory_mib=512",
        ]);
        let processes = placement::processes(&p);
        // Three nodes: the learner's class one node sized for it, the four
        // actors two nodes, each holding two of them (1 cpu, 1 GiB).
        let layout = classes::layout(&processes, 3);
        let common = ["--partition=lp", "--time=10", "--account=rl"];
        let components = sbatch_components(&p, &layout);
        assert_eq!(
            components,
            [
                [
                    &["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2"][..],
                    &["--mem=4096M", "--gres=gpu:1"],
                    &common
                ]
                .concat(),
                [
                    &["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1"][..],
                    &["--mem=1024M"],
                    &common
                ]
                .concat(),
            ]
        );
        // Its agents offer what their component holds, each group a
        // component of the step.
        let args = srun_args(
            &layout,
            Step::PerGroup,
            Path::new("/lp-host"),
            Path::new("/t"),
        );
        let groups: Vec<&[String]> = args.split(|w| w == ":").collect();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0][0], "--het-group=0");
        assert!(
            groups[0].ends_with(
                &["--cpus", "2", "--memory-mib", "4096", "--gpus", "1"].map(String::from)
            )
        );
        assert_eq!(groups[1][0], "--het-group=1");
        assert!(groups[1].ends_with(&["--cpus", "1", "--memory-mib", "1024"].map(String::from)));

        // One node must hold all of it: one component, the whole program.
        let one = classes::layout(&processes, 1);
        let one = &sbatch_components(&p, &one)[0];
        assert!(one.contains(&"--cpus-per-task=4".to_string()), "{one:?}");
        assert!(one.contains(&"--mem=6144M".to_string()), "{one:?}");
    }

    #[test]
    fn asking_nothing_asks_slurm_for_nodes_only_and_host_labels_name_nodes() {
        let p = program(&["learner.resources.host=\"n3\""]);
        let mut processes = placement::processes(&p);
        let components = sbatch_components(&p, &classes::layout(&processes, 3));
        assert_eq!(components.len(), 2, "{components:?}");
        assert_eq!(
            components[0][..3],
            ["--nodes=1", "--ntasks-per-node=1", "--nodelist=n3"]
        );
        assert_eq!(
            components[1][..3],
            ["--nodes=2", "--ntasks-per-node=1", "--partition=lp"]
        );
        processes
            .iter_mut()
            .for_each(|p| p.needs = Resources::default());
        let layout = classes::layout(&processes, 3);
        assert_eq!(
            sbatch_components(&p, &layout),
            [[
                "--nodes=3",
                "--ntasks-per-node=1",
                "--partition=lp",
                "--time=10",
                "--account=rl"
            ]]
        );
        // Not sized: the agents offer their nodes.
        let args = srun_args(
            &layout,
            Step::of_job(&layout),
            Path::new("/lp-host"),
            Path::new("/t"),
        );
        assert!(
            args.ends_with(&["/lp-host".to_string(), "/t".to_string()]),
            "{args:?}"
        );
        assert!(!args.iter().any(|a| a.starts_with("--het-group")));
    }

    #[test]
    fn inside_a_plain_allocation_the_agents_are_one_step_offering_their_nodes() {
        let p = program(&["learner.resources.cpus=2", "actor.resources.cpus=0.5"]);
        let layout = classes::layout(&placement::processes(&p), 3).whole_cpus();
        assert_eq!(layout.groups().len(), 2, "two classes");
        // A plain allocation has one component: no `:` (srun would take it
        // for a heterogeneous step), all three nodes, no sized offers.
        let args = srun_args(&layout, Step::AsOne, Path::new("/lp-host"), Path::new("/t"));
        assert!(
            !args
                .iter()
                .any(|a| a == ":" || a.starts_with("--het-group")),
            "{args:?}"
        );
        assert!(args.contains(&"--nodes=3".to_string()), "{args:?}");
        assert_eq!(Step::AsOne.describe(&layout), "3 nodes");
        assert!(
            args.ends_with(&["/lp-host".to_string(), "/t".to_string()]),
            "{args:?}"
        );
    }

    #[test]
    fn paths_are_quoted_for_the_batch_script() {
        assert_eq!(sh_quoted("/a b/lp-host"), "'/a b/lp-host'");
        assert_eq!(sh_quoted("it's"), r"'it'\''s'");
    }
}
