//! Which agent (machine) each process of a program runs on, for a launch
//! across machines. A process is a colocation group or a node of its own
//! ([`processes`], the grouping local_mp uses); an agent offers cpus,
//! memory, gpus and host labels ([`Offer`]). Processes that ask for
//! nothing are spread evenly; the others are placed largest first, each on
//! the first agent with its host label and room left ([`place`]). Pure:
//! the same processes and agents always give the same placement.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::program::{Diagnostic, Place, Program, Resources};

/// One process of a launch: a colocation group, or one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// Its nodes' ids, in program order.
    pub nodes: Vec<u32>,
    pub names: Vec<String>,
    /// The colocation group's name, for a group.
    pub colocate: Option<String>,
    /// What its nodes need together (cpus, memory and gpus summed; the
    /// host label they agree on), and where that was written.
    pub needs: Resources,
}

impl Process {
    /// How errors name it: the node, or the group and its first nodes.
    pub fn describe(&self) -> String {
        match &self.colocate {
            None => self.names.join(", "),
            Some(group) => {
                let mut shown: Vec<&str> = self.names.iter().take(3).map(String::as_str).collect();
                if self.names.len() > 3 {
                    shown.push("...");
                }
                format!("colocation group {group:?} ({})", shown.join(", "))
            }
        }
    }
}

/// The processes of `program`: one per colocation name (in the order the
/// name first appears), else one per node.
pub fn processes(program: &Program) -> Vec<Process> {
    let mut processes: Vec<Process> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for node in &program.nodes {
        let k = match &node.colocate {
            Some(name) => *by_name.entry(name).or_insert_with(|| {
                processes.push(Process::empty(Some(name.clone())));
                processes.len() - 1
            }),
            None => {
                processes.push(Process::empty(None));
                processes.len() - 1
            }
        };
        processes[k].add(node.id, &node.name, &node.resources);
    }
    processes
}

impl Process {
    fn empty(colocate: Option<String>) -> Process {
        Process {
            nodes: Vec::new(),
            names: Vec::new(),
            colocate,
            needs: Resources::default(),
        }
    }

    fn add(&mut self, id: u32, name: &str, resources: &Resources) {
        self.nodes.push(id);
        self.names.push(name.to_string());
        let needs = &mut self.needs;
        if needs.is_empty() && !resources.is_empty() {
            needs.place = resources.place.clone();
        }
        needs.cpus += resources.cpus;
        needs.memory_mib = needs.memory_mib.saturating_add(resources.memory_mib);
        needs.gpus = needs.gpus.saturating_add(resources.gpus);
        // The loader refuses a group whose nodes name different hosts.
        if needs.host.is_none() {
            needs.host.clone_from(&resources.host);
        }
    }
}

/// What an agent offers to the processes placed on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// The labels `resources.host` may name to run on it.
    pub hosts: Vec<String>,
    pub cpus: f64,
    /// `None`: not known (not checked).
    pub memory_mib: Option<u64>,
    pub gpus: u64,
}

impl Offer {
    /// This machine: its cpus (available parallelism), its memory
    /// (MemTotal of /proc/meminfo), and `$LP_GPUS` gpus (0 when unset).
    pub fn of_this_machine(host_label: Option<&str>) -> anyhow::Result<Offer> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
        let gpus = std::env::var("LP_GPUS").ok();
        Offer::from_readings(host_label, cpus, meminfo.as_deref(), gpus.as_deref())
    }

    /// An offer from what [`Offer::of_this_machine`] reads.
    pub fn from_readings(
        host_label: Option<&str>,
        cpus: usize,
        meminfo: Option<&str>,
        lp_gpus: Option<&str>,
    ) -> anyhow::Result<Offer> {
        let memory_mib = meminfo.and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line
                .trim_start_matches("MemTotal:")
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kib / 1024)
        });
        let gpus = match lp_gpus.map(str::trim) {
            None | Some("") => 0,
            Some(text) => text.parse().with_context(|| {
                format!("LP_GPUS={text:?} is not a number of gpus (e.g. LP_GPUS=2; unset for none)")
            })?,
        };
        let hosts = match host_label {
            Some(label) if label.trim().is_empty() => bail!("a host label cannot be empty"),
            Some(label) => vec![label.to_string()],
            None => Vec::new(),
        };
        Ok(Offer {
            hosts,
            cpus: cpus as f64,
            memory_mib,
            gpus,
        })
    }

    fn offers_host(&self, label: &str) -> bool {
        self.hosts.iter().any(|h| h == label)
    }
}

/// A joined agent and what it offers.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: u32,
    pub offer: Offer,
}

impl Agent {
    /// `agent 2, host a.example` (or just `agent 2`).
    fn describe(&self) -> String {
        match self.offer.hosts.is_empty() {
            true => format!("agent {}", self.id),
            false => format!("agent {}, host {}", self.id, self.offer.hosts.join(", ")),
        }
    }
}

/// Why a process cannot be placed: which, why, what to do, and where its
/// resources were written.
#[derive(Clone, Debug, PartialEq)]
pub struct Unplaceable {
    /// Index of the process in the input.
    pub process: usize,
    pub message: String,
    pub help: String,
    pub place: Place,
}

impl Unplaceable {
    /// As a diagnostic of the program file (file:line:column).
    pub fn diagnostic(&self, file: &Path) -> Diagnostic {
        Diagnostic::at(file, &self.place, self.message.clone()).help(self.help.clone())
    }
}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  help: {}", self.message, self.help)
    }
}

impl std::error::Error for Unplaceable {}

/// Room on an agent, in whole units: cpus in thousandths, so that ten
/// processes of 0.1 fit in one cpu.
#[derive(Clone, Copy, Debug)]
struct Room {
    millicpus: u64,
    memory_mib: Option<u64>,
    gpus: u64,
}

impl Room {
    fn of_offer(offer: &Offer) -> Room {
        Room {
            millicpus: millicpus(offer.cpus),
            memory_mib: offer.memory_mib,
            gpus: offer.gpus,
        }
    }

    fn of_needs(needs: &Resources) -> Room {
        Room {
            millicpus: millicpus(needs.cpus),
            memory_mib: Some(needs.memory_mib),
            gpus: needs.gpus,
        }
    }

    fn holds(&self, needs: &Room) -> bool {
        let memory = match (self.memory_mib, needs.memory_mib) {
            (Some(have), Some(need)) => need <= have,
            _ => true,
        };
        needs.millicpus <= self.millicpus && needs.gpus <= self.gpus && memory
    }

    fn take(&mut self, needs: &Room) {
        self.millicpus -= needs.millicpus;
        self.gpus -= needs.gpus;
        if let (Some(have), Some(need)) = (&mut self.memory_mib, needs.memory_mib) {
            *have -= need;
        }
    }

    fn describe(&self) -> String {
        let memory = self
            .memory_mib
            .map_or("memory unknown".to_string(), |m| format!("{m} MiB"));
        format!(
            "{}, {memory}, {}",
            count(self.millicpus as f64 / 1000.0, "cpu"),
            count(self.gpus as f64, "gpu")
        )
    }
}

fn millicpus(cpus: f64) -> u64 {
    // The loader admits only finite cpus, 0 or more; `as` saturates.
    (cpus * 1000.0).round() as u64
}

/// `1 gpu`, `4 gpus`, `0.5 cpus`.
fn count(n: f64, unit: &str) -> String {
    if n == 1.0 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The agent (an index into `agents`) of each process.
///
/// Processes that ask for something go first, largest first (a host label
/// first, then gpus, cpus, memory; in input order among equals), each to
/// the first agent that has its host label (if it names one) and room for
/// it. Then the processes that ask for nothing, each to the agent with the
/// fewest processes so far (the first of those): without any resources
/// this is round-robin.
pub fn place(processes: &[Process], agents: &[Agent]) -> Result<Vec<usize>, Unplaceable> {
    if processes.is_empty() {
        return Ok(Vec::new());
    }
    if agents.is_empty() {
        return Err(Unplaceable {
            process: 0,
            message: format!(
                "no agent has joined, so the program's {} processes have nowhere to run",
                processes.len()
            ),
            help: "start an agent on each machine and let it join before the launch".into(),
            place: Place::default(),
        });
    }
    let mut room: Vec<Room> = agents.iter().map(|a| Room::of_offer(&a.offer)).collect();
    let mut load = vec![0usize; agents.len()];
    let mut placed = vec![0usize; processes.len()];

    let mut needy: Vec<usize> = (0..processes.len())
        .filter(|&i| !processes[i].needs.is_empty())
        .collect();
    needy.sort_by_key(|&i| {
        let needs = &processes[i].needs;
        std::cmp::Reverse((
            needs.host.is_some(),
            needs.gpus,
            millicpus(needs.cpus),
            needs.memory_mib,
            std::cmp::Reverse(i),
        ))
    });
    for i in needy {
        let process = &processes[i];
        let needs = Room::of_needs(&process.needs);
        let allowed = |a: &Agent| {
            process
                .needs
                .host
                .as_deref()
                .is_none_or(|label| a.offer.offers_host(label))
        };
        let fit = (0..agents.len()).find(|&k| allowed(&agents[k]) && room[k].holds(&needs));
        let Some(k) = fit else {
            return Err(why_not(i, process, agents, &room, &allowed));
        };
        room[k].take(&needs);
        load[k] += 1;
        placed[i] = k;
    }
    for (i, process) in processes.iter().enumerate() {
        if process.needs.is_empty() {
            let k = (0..agents.len())
                .min_by_key(|&k| load[k])
                .expect("there are agents");
            load[k] += 1;
            placed[i] = k;
        }
    }
    Ok(placed)
}

/// Why process `i` fits on none of `agents` (`room` is what each has left).
fn why_not(
    i: usize,
    process: &Process,
    agents: &[Agent],
    room: &[Room],
    allowed: &dyn Fn(&Agent) -> bool,
) -> Unplaceable {
    let what = process.describe();
    let needs = &process.needs;
    let error = |message: String, help: &str| Unplaceable {
        process: i,
        message,
        help: help.to_string(),
        place: needs.place.clone(),
    };
    let candidates: Vec<&Agent> = agents.iter().filter(|a| allowed(a)).collect();
    let (among, label) = match &needs.host {
        Some(label) => (format!("agent with host {label:?}"), label.as_str()),
        None => ("agent".to_string(), ""),
    };
    if candidates.is_empty() {
        let mut labels: Vec<&str> = agents
            .iter()
            .flat_map(|a| a.offer.hosts.iter().map(String::as_str))
            .collect();
        labels.sort_unstable();
        labels.dedup();
        let offered = match labels.is_empty() {
            true => "no agent has a host label".to_string(),
            false => format!("agents offer {}", labels.join(", ")),
        };
        return error(
            format!("{what} needs host {label:?}; no agent offers it ({offered})"),
            "start an agent with that host label on the machine meant, or change resources.host",
        );
    }
    let help = "ask for less in the node's resources, or add a machine that offers it";
    let largest = |of: &dyn Fn(&Agent) -> f64| {
        candidates
            .iter()
            .copied()
            .min_by(|a, b| of(b).total_cmp(&of(a)))
            .expect("there are candidates")
    };
    let a = largest(&|a| a.offer.gpus as f64);
    if needs.gpus > a.offer.gpus {
        return error(
            format!(
                "{what} needs {}; the largest {among} offers {} ({})",
                count(needs.gpus as f64, "gpu"),
                a.offer.gpus,
                a.describe()
            ),
            help,
        );
    }
    let a = largest(&|a| a.offer.cpus);
    if millicpus(needs.cpus) > millicpus(a.offer.cpus) {
        return error(
            format!(
                "{what} needs {}; the largest {among} offers {} ({})",
                count(needs.cpus, "cpu"),
                a.offer.cpus,
                a.describe()
            ),
            help,
        );
    }
    if candidates.iter().all(|a| a.offer.memory_mib.is_some()) {
        let a = largest(&|a| a.offer.memory_mib.unwrap_or(0) as f64);
        let offered = a.offer.memory_mib.unwrap_or(0);
        if needs.memory_mib > offered {
            return error(
                format!(
                    "{what} needs {} MiB of memory; the largest {among} offers {offered} MiB ({})",
                    needs.memory_mib,
                    a.describe()
                ),
                help,
            );
        }
    }
    let left: Vec<String> = agents
        .iter()
        .zip(room)
        .filter(|(a, _)| allowed(a))
        .map(|(a, r)| format!("{}: {} left", a.describe(), r.describe()))
        .collect();
    error(
        format!(
            "{what} needs {}, {} MiB and {}; no {among} has that much left after the processes placed before it (largest first): {}",
            count(needs.cpus, "cpu"),
            needs.memory_mib,
            count(needs.gpus as f64, "gpu"),
            left.join("; ")
        ),
        "add a machine, or ask for less in the resources of this or the larger processes",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn agent(id: u32, host: Option<&str>, cpus: f64, memory_mib: u64, gpus: u64) -> Agent {
        Agent {
            id,
            offer: Offer {
                hosts: host.map(str::to_string).into_iter().collect(),
                cpus,
                memory_mib: Some(memory_mib),
                gpus,
            },
        }
    }

    /// A process named `name` that needs so much (written at 7:13).
    pub(crate) fn process(
        name: &str,
        cpus: f64,
        memory_mib: u64,
        gpus: u64,
        host: Option<&str>,
    ) -> Process {
        Process {
            nodes: vec![0],
            names: vec![name.to_string()],
            colocate: None,
            needs: Resources {
                cpus,
                memory_mib,
                gpus,
                host: host.map(str::to_string),
                place: Place {
                    line_col: Some((7, 13)),
                    override_text: None,
                },
            },
        }
    }

    fn plain(name: &str) -> Process {
        process(name, 0.0, 0, 0, None)
    }

    #[test]
    fn without_resources_processes_are_spread_round_robin() {
        let processes: Vec<Process> = (0..5).map(|i| plain(&format!("n{i}"))).collect();
        let agents = [agent(0, None, 1.0, 10, 0), agent(1, None, 1.0, 10, 0)];
        assert_eq!(place(&processes, &agents).unwrap(), [0, 1, 0, 1, 0]);
        // More agents than processes: one each, the rest idle.
        let agents: Vec<Agent> = (0..8).map(|i| agent(i, None, 1.0, 10, 0)).collect();
        assert_eq!(place(&processes, &agents).unwrap(), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn processes_are_placed_largest_first_within_capacity() {
        let processes = [
            process("a", 6.0, 0, 0, None),
            process("b", 2.0, 0, 0, None),
            process("c", 3.0, 0, 0, None),
            process("d", 1.0, 0, 0, None),
        ];
        let agents = [agent(0, None, 4.0, 100, 0), agent(1, None, 8.0, 100, 0)];
        // a (6) only fits on 1; c (3) first fits on 0; b (2) on 1; d (1) on 0.
        assert_eq!(place(&processes, &agents).unwrap(), [1, 1, 0, 0]);
        // The same input always gives the same placement.
        assert_eq!(place(&processes, &agents).unwrap(), [1, 1, 0, 0]);
    }

    #[test]
    fn fractional_cpus_add_up_exactly() {
        let processes: Vec<Process> = (0..10)
            .map(|i| process(&format!("n{i}"), 0.1, 0, 0, None))
            .collect();
        let agents = [agent(0, None, 1.0, 100, 0)];
        assert_eq!(place(&processes, &agents).unwrap(), [0; 10]);
        let mut more = processes.clone();
        more.push(process("extra", 0.1, 0, 0, None));
        let e = place(&more, &agents).unwrap_err();
        assert_eq!(e.process, 10);
        assert!(e.message.contains("extra needs 0.1 cpus"), "{e}");
        assert!(
            e.message.contains("agent 0: 0 cpus, 100 MiB, 0 gpus left"),
            "{e}"
        );
    }

    #[test]
    fn gpus_and_memory_are_capacity_too() {
        let processes = [
            plain("actor"),
            process("learner", 1.0, 0, 1, None),
            process("replay", 0.0, 6000, 0, None),
        ];
        let agents = [agent(0, None, 8.0, 4096, 0), agent(1, None, 8.0, 8192, 2)];
        // learner needs the gpu agent, replay its memory; actor goes where
        // fewest processes are, agent 0.
        assert_eq!(place(&processes, &agents).unwrap(), [0, 1, 1]);
    }

    #[test]
    fn host_labels_pin_processes_to_agents() {
        let processes = [
            process("learner", 1.0, 0, 0, Some("gpu-box")),
            plain("actor0"),
            plain("actor1"),
            process("env", 0.0, 0, 0, Some("a.example")),
        ];
        let agents = [
            agent(0, Some("a.example"), 4.0, 100, 0),
            agent(1, Some("gpu-box"), 4.0, 100, 0),
            agent(2, None, 4.0, 100, 0),
        ];
        let placed = place(&processes, &agents).unwrap();
        assert_eq!(placed[0], 1);
        assert_eq!(placed[3], 0);
        // The unpinned ones go to the least loaded: agent 2, then 0.
        assert_eq!(&placed[1..3], [2, 0]);
    }

    #[test]
    fn a_host_no_agent_offers_is_named() {
        let processes = [process("learner", 0.0, 0, 0, Some("gpu-box"))];
        let agents = [
            agent(0, Some("b.example"), 4.0, 100, 0),
            agent(1, Some("a.example"), 4.0, 100, 0),
        ];
        let e = place(&processes, &agents).unwrap_err();
        assert_eq!(
            e.message,
            "learner needs host \"gpu-box\"; no agent offers it (agents offer a.example, b.example)"
        );
        assert!(e.help.contains("host label"), "{e}");
    }

    #[test]
    fn a_process_larger_than_any_agent_is_named_with_the_largest() {
        let processes = [plain("actor"), process("learner", 1.0, 0, 4, None)];
        let agents = [
            agent(0, None, 4.0, 100, 0),
            agent(1, None, 4.0, 100, 0),
            agent(2, Some("a.example"), 4.0, 100, 1),
        ];
        let e = place(&processes, &agents).unwrap_err();
        assert_eq!(e.process, 1);
        assert_eq!(
            e.message,
            "learner needs 4 gpus; the largest agent offers 1 (agent 2, host a.example)"
        );
        let d = e.diagnostic(Path::new("p/program.toml"));
        assert!(
            d.to_string()
                .starts_with("p/program.toml:7:13: learner needs 4 gpus"),
            "{d}"
        );
        assert!(d.help.is_some());

        let processes = [process("learner", 16.0, 0, 0, Some("a.example"))];
        let e = place(&processes, &agents).unwrap_err();
        assert_eq!(
            e.message,
            "learner needs 16 cpus; the largest agent with host \"a.example\" offers 4 (agent 2, host a.example)"
        );
        let processes = [process("replay", 0.0, 1000, 0, None)];
        let e = place(&processes, &agents).unwrap_err();
        assert!(
            e.message
                .starts_with("replay needs 1000 MiB of memory; the largest agent offers 100 MiB"),
            "{e}"
        );
    }

    #[test]
    fn no_agents_is_an_error_and_no_processes_is_not() {
        let e = place(&[plain("a")], &[]).unwrap_err();
        assert!(e.message.contains("no agent has joined"), "{e}");
        assert_eq!(place(&[], &[]).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn unknown_memory_is_not_checked() {
        let mut a = agent(0, None, 2.0, 0, 0);
        a.offer.memory_mib = None;
        let processes = [process("big", 1.0, 1 << 20, 0, None)];
        assert_eq!(place(&processes, &[a]).unwrap(), [0]);
    }

    fn load(source: &str) -> Program {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.wasm"), b"").unwrap();
        crate::program::load_str(&dir.path().join("program.toml"), source, &[]).unwrap()
    }

    #[test]
    fn processes_are_colocation_groups_or_single_nodes() {
        let program = load(
            r#"
[program]
name = "p"

[[node]]
name = "actor"
component = "n.wasm"
replicas = 3
colocate = "actors"
resources = { cpus = 0.5, memory_mib = 100 }

[[node]]
name = "learner"
component = "n.wasm"
resources = { cpus = 2, gpus = 1, host = "gpu-box" }

[[node]]
name = "logger"
component = "n.wasm"
colocate = "actors"
resources = { cpus = 1.5, gpus = 1 }

[[node]]
name = "replay"
component = "n.wasm"
"#,
        );
        let processes = processes(&program);
        let nodes: Vec<&[u32]> = processes.iter().map(|p| &p.nodes[..]).collect();
        assert_eq!(nodes, [&[0, 1, 2, 4][..], &[3], &[5]]);
        let actors = &processes[0];
        assert_eq!(actors.colocate.as_deref(), Some("actors"));
        assert_eq!(actors.names, ["actor/0", "actor/1", "actor/2", "logger"]);
        assert_eq!(actors.needs.cpus, 3.0);
        assert_eq!(actors.needs.memory_mib, 300);
        assert_eq!(actors.needs.gpus, 1);
        assert_eq!(actors.needs.host, None);
        assert_eq!(actors.needs.place.line_col, Some((10, 13)));
        assert_eq!(
            actors.describe(),
            "colocation group \"actors\" (actor/0, actor/1, actor/2, ...)"
        );
        assert_eq!(processes[1].needs.host.as_deref(), Some("gpu-box"));
        assert!(processes[2].needs.is_empty());

        // The group's sum decides: 3 cpus do not fit on a 2-cpu agent.
        let agents = [
            agent(0, Some("gpu-box"), 2.0, 1000, 1),
            agent(1, None, 4.0, 1000, 1),
        ];
        assert_eq!(place(&processes, &agents).unwrap(), [1, 0, 0]);
        let agents = [
            agent(0, Some("gpu-box"), 4.0, 1000, 1),
            agent(1, None, 2.0, 1000, 1),
        ];
        let e = place(&processes, &agents).unwrap_err();
        assert!(
            e.message.starts_with("colocation group \"actors\" (actor/0, actor/1, actor/2, ...) needs 3 cpus, 300 MiB and 1 gpu; no agent has that much left"),
            "{e}"
        );
    }

    #[test]
    fn an_offer_reads_cpus_memory_and_gpus() {
        let meminfo = "MemTotal:       16318228 kB\nMemFree:         1000 kB\n";
        let offer = Offer::from_readings(Some("a.example"), 8, Some(meminfo), Some("2")).unwrap();
        assert_eq!(
            offer,
            Offer {
                hosts: vec!["a.example".into()],
                cpus: 8.0,
                memory_mib: Some(15935),
                gpus: 2,
            }
        );
        let offer = Offer::from_readings(None, 1, None, None).unwrap();
        assert_eq!((offer.memory_mib, offer.gpus), (None, 0));
        assert!(offer.hosts.is_empty());
        let e = Offer::from_readings(None, 1, None, Some("many")).unwrap_err();
        assert!(e.to_string().contains("LP_GPUS=\"many\""), "{e}");
        assert!(Offer::from_readings(Some(" "), 1, None, None).is_err());
        let here = Offer::of_this_machine(None);
        assert!(here.is_ok_and(|o| o.cpus >= 1.0));
    }
}
