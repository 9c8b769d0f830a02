//! What a cluster engine is asked for: the program's processes grouped into
//! resource classes, and, for a number of machines, how many of them each
//! class gets and what each of those machines must hold ([`layout`]).
//!
//! A class is the processes that need the same (cpus, memory, gpus), or
//! all the processes that name one host (that host is one machine). A
//! Slurm launch asks for one component of a heterogeneous job per class
//! (`launch/slurm.rs`); a Kubernetes export writes one agents' Job per
//! class (`k8s.rs`). The agents of a class offer exactly their machine's
//! size (`lp-host agent --cpus --memory-mib --gpus`), so placement puts
//! every process where the engine made room for it. Pure: the same
//! processes and machine count always give the same layout (a detached
//! Slurm launch computes it again inside its allocation).

use super::placement::Process;

/// What one machine of a group holds (0: not asked for).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Size {
    pub cpus: f64,
    pub memory_mib: u64,
    pub gpus: u64,
}

impl Size {
    fn of(process: &Process) -> Size {
        Size {
            cpus: process.needs.cpus,
            memory_mib: process.needs.memory_mib,
            gpus: process.needs.gpus,
        }
    }

    fn plus(self, other: Size) -> Size {
        Size {
            cpus: self.cpus + other.cpus,
            memory_mib: self.memory_mib.saturating_add(other.memory_mib),
            gpus: self.gpus.saturating_add(other.gpus),
        }
    }

    fn times(self, n: u32) -> Size {
        Size {
            cpus: self.cpus * f64::from(n),
            memory_mib: self.memory_mib.saturating_mul(n.into()),
            gpus: self.gpus.saturating_mul(n.into()),
        }
    }

    /// Whole cpus, as engines that count cores allocate them.
    fn whole_cpus(self) -> Size {
        Size {
            cpus: self.cpus.ceil(),
            ..self
        }
    }

    /// An agent's options offering this size (none for what is 0: the
    /// agent then offers its machine's).
    pub fn agent_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.cpus > 0.0 {
            args.extend(["--cpus".to_string(), self.cpus.to_string()]);
        }
        if self.memory_mib > 0 {
            args.extend(["--memory-mib".to_string(), self.memory_mib.to_string()]);
        }
        if self.gpus > 0 {
            args.extend(["--gpus".to_string(), self.gpus.to_string()]);
        }
        args
    }
}

/// Machines of one kind: how many, what each holds, and the host they
/// must be (a class of processes that name one).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub machines: u32,
    pub size: Size,
    pub host: Option<String>,
    /// The processes (indices into the input) this group was made for.
    pub members: Vec<usize>,
}

/// The machines an engine is asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    /// One group per class, each machine sized for its class
    /// (heterogeneous when there are several).
    Classes(Vec<Group>),
    /// Fewer machines than classes: one group of like machines, each
    /// sized for the most any one process needs or an even share of
    /// everything, whichever is more; its agents offer their machine's
    /// own size (placement then packs as it can).
    Shared(Group),
}

impl Layout {
    /// The groups, in order.
    pub fn groups(&self) -> &[Group] {
        match self {
            Layout::Classes(groups) => groups,
            Layout::Shared(group) => std::slice::from_ref(group),
        }
    }

    /// How many machines in all.
    pub fn machines(&self) -> u32 {
        self.groups().iter().map(|g| g.machines).sum()
    }

    /// `3 nodes`, or `1 node of 2 cpus, 4096 MiB, 1 gpu + 2 nodes of 1 cpu`
    /// (`machine`: what a machine is called, e.g. "node").
    pub fn describe(&self, machine: &str) -> String {
        let groups: Vec<String> = self
            .groups()
            .iter()
            .map(|g| {
                let count = match g.machines {
                    1 => format!("1 {machine}"),
                    n => format!("{n} {machine}s"),
                };
                let mut held = Vec::new();
                let size = g.size;
                if size.cpus > 0.0 {
                    held.push(match size.cpus {
                        1.0 => "1 cpu".to_string(),
                        n => format!("{n} cpus"),
                    });
                }
                if size.memory_mib > 0 {
                    held.push(format!("{} MiB", size.memory_mib));
                }
                if size.gpus > 0 {
                    held.push(match size.gpus {
                        1 => "1 gpu".to_string(),
                        n => format!("{n} gpus"),
                    });
                }
                if let Some(host) = &g.host {
                    held.push(format!("on {host}"));
                }
                match held.is_empty() {
                    true => count,
                    false => format!("{count} of {}", held.join(", ")),
                }
            })
            .collect();
        groups.join(" + ")
    }

    /// The same machines, with whole cpus (as engines that count cores
    /// allocate them).
    pub fn whole_cpus(mut self) -> Layout {
        match &mut self {
            Layout::Classes(groups) => groups.iter_mut().for_each(|g| g.size = g.size.whole_cpus()),
            Layout::Shared(group) => group.size = group.size.whole_cpus(),
        }
        self
    }

    /// Whether the agents offer the groups' sizes (else their machines').
    pub fn offers_sizes(&self) -> bool {
        matches!(self, Layout::Classes(_))
    }
}

/// A class: the processes that need one size, or that name one host.
struct Class {
    host: Option<String>,
    /// What one member needs (a host class: all of them together).
    unit: Size,
    members: Vec<usize>,
}

/// The classes of `processes`, in the order their first member comes.
fn classes(processes: &[Process]) -> Vec<Class> {
    let mut classes: Vec<Class> = Vec::new();
    for (i, process) in processes.iter().enumerate() {
        let size = Size::of(process);
        let host = process.needs.host.clone();
        let same = |c: &Class| match &host {
            Some(_) => c.host == host,
            None => c.host.is_none() && c.unit == size,
        };
        match classes.iter_mut().find(|c| same(c)) {
            Some(class) => {
                if host.is_some() {
                    class.unit = class.unit.plus(size);
                }
                class.members.push(i);
            }
            None => classes.push(Class {
                host,
                unit: size,
                members: vec![i],
            }),
        }
    }
    classes
}

/// The machines `processes` are to run on, `machines` of them at most:
/// each class gets one, then each machine left goes to the class with the
/// most processes per machine (a host's class has one machine; no class
/// more machines than processes). With fewer machines than classes, one
/// shared group of `machines`.
pub fn layout(processes: &[Process], machines: u32) -> Layout {
    let machines = machines.max(1);
    let classes = classes(processes);
    if classes.len() as u64 > u64::from(machines) {
        return Layout::Shared(shared(processes, machines));
    }
    let mut counts = vec![1u32; classes.len()];
    let room = |k: usize, counts: &[u32]| {
        classes[k].host.is_none() && (counts[k] as usize) < classes[k].members.len()
    };
    for _ in classes.len() as u32..machines {
        // Most processes per machine first; the first such class on a tie.
        let busiest = (0..classes.len())
            .filter(|&k| room(k, &counts))
            .max_by(|&a, &b| {
                let load = |k: usize| classes[k].members.len() as f64 / f64::from(counts[k]);
                load(a).total_cmp(&load(b)).then(b.cmp(&a))
            });
        match busiest {
            Some(k) => counts[k] += 1,
            None => break,
        }
    }
    Layout::Classes(
        classes
            .into_iter()
            .zip(counts)
            .map(|(class, n)| {
                let per_machine = (class.members.len() as u32).div_ceil(n);
                Group {
                    machines: n,
                    size: match class.host {
                        Some(_) => class.unit,
                        None => class.unit.times(per_machine),
                    },
                    host: class.host,
                    members: class.members,
                }
            })
            .collect(),
    )
}

/// One group of `machines` like machines for all of `processes`.
fn shared(processes: &[Process], machines: u32) -> Group {
    let largest = processes
        .iter()
        .map(Size::of)
        .fold(Size::default(), |a, b| Size {
            cpus: a.cpus.max(b.cpus),
            memory_mib: a.memory_mib.max(b.memory_mib),
            gpus: a.gpus.max(b.gpus),
        });
    let total = processes
        .iter()
        .map(Size::of)
        .fold(Size::default(), Size::plus);
    let share = |total: f64| (total / f64::from(machines)).ceil();
    let size = Size {
        cpus: largest.cpus.ceil().max(share(total.cpus)),
        memory_mib: largest
            .memory_mib
            .max(share(total.memory_mib as f64) as u64),
        gpus: largest.gpus.max(share(total.gpus as f64) as u64),
    };
    let mut hosts: Vec<&str> = processes
        .iter()
        .filter_map(|p| p.needs.host.as_deref())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    Group {
        machines,
        size,
        host: (!hosts.is_empty()).then(|| hosts.join(",")),
        members: (0..processes.len()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::placement::tests::process as named;

    fn process(cpus: f64, memory_mib: u64, gpus: u64, host: Option<&str>) -> Process {
        named("n", cpus, memory_mib, gpus, host)
    }

    #[test]
    fn processes_asking_the_same_are_one_class_and_machines_go_to_the_busiest() {
        // A learner (2 cpus, a gpu) and ten actors (0.5 cpus) on 3 machines.
        let mut processes = vec![process(2.0, 4096, 1, None)];
        processes.extend((0..10).map(|_| process(0.5, 256, 0, None)));
        let layout = layout(&processes, 3);
        assert!(layout.offers_sizes());
        let groups = layout.groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].machines, 1);
        assert_eq!(groups[0].members, [0]);
        assert_eq!(
            groups[0].size,
            Size {
                cpus: 2.0,
                memory_mib: 4096,
                gpus: 1
            }
        );
        // Two machines for the actors: five each.
        assert_eq!(groups[1].machines, 2);
        assert_eq!(groups[1].members.len(), 10);
        assert_eq!(
            groups[1].size,
            Size {
                cpus: 2.5,
                memory_mib: 1280,
                gpus: 0
            }
        );
        assert_eq!(layout.machines(), 3);
        assert_eq!(
            layout.describe("node"),
            "1 node of 2 cpus, 4096 MiB, 1 gpu + 2 nodes of 2.5 cpus, 1280 MiB"
        );
    }

    #[test]
    fn a_class_gets_no_more_machines_than_processes_and_a_host_one() {
        let processes = vec![
            process(1.0, 0, 0, Some("n3")),
            process(1.0, 0, 0, Some("n3")),
            process(1.0, 0, 0, None),
        ];
        let layout = layout(&processes, 5);
        let groups = layout.groups();
        // The host's processes together on its one machine.
        assert_eq!(groups[0].host.as_deref(), Some("n3"));
        assert_eq!((groups[0].machines, groups[0].size.cpus), (1, 2.0));
        assert_eq!((groups[1].machines, groups[1].size.cpus), (1, 1.0));
        assert_eq!(layout.machines(), 2, "not five: nothing would run on them");
    }

    #[test]
    fn fewer_machines_than_classes_share_one_group() {
        let processes = vec![
            process(2.0, 0, 0, None),
            process(0.5, 0, 0, None),
            process(0.5, 0, 0, None),
        ];
        let layout = layout(&processes, 1);
        assert!(!layout.offers_sizes());
        assert_eq!(layout.groups()[0].machines, 1);
        assert_eq!(layout.groups()[0].size.cpus, 3.0);
        // Nothing asked: one class, machines only.
        let none = vec![process(0.0, 0, 0, None); 4];
        let layout = super::layout(&none, 2);
        assert_eq!(layout.groups().len(), 1);
        let group = &layout.groups()[0];
        assert!(group.size == Size::default() && group.host.is_none());
        assert_eq!(layout.machines(), 2);
    }

    #[test]
    fn agents_offer_what_was_asked_and_their_machine_for_the_rest() {
        let size = Size {
            cpus: 2.5,
            memory_mib: 0,
            gpus: 1,
        };
        assert_eq!(size.agent_args(), ["--cpus", "2.5", "--gpus", "1"]);
        assert_eq!(size.whole_cpus().cpus, 3.0);
        assert!(Size::default().agent_args().is_empty());
    }
}
