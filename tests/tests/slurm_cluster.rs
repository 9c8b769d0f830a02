//! The Slurm cluster harness itself: `srun -N3 -n3` puts one task on each
//! of three nodes, each with its own namespace IP, and nothing of the
//! cluster outlives a drop, not even a job still running then (the next
//! cluster's queue is empty). Skipped
//! where there is no root, iproute2 or Slurm.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use lp_tests::netns::{self, process_gone};
use lp_tests::slurm::Cluster;

#[test]
fn three_nodes_with_their_own_ips_and_nothing_left_after_drop() {
    let Some(cluster) = Cluster::up(3) else {
        return;
    };
    assert_eq!(cluster.nodes(), ["n1", "n2", "n3"]);
    let out = cluster.run("srun -N3 -n3 -l bash -c 'echo $SLURMD_NODENAME $(hostname -I)'");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "srun: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `-l` lines: `<task>: <node> <ip>`.
    let mut ip_of = BTreeMap::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_task, node, ip] = fields[..] else {
            panic!("unexpected srun line `{line}` in:\n{stdout}");
        };
        let ip: Ipv4Addr = ip.parse().expect("an IPv4 address");
        assert_eq!(cluster.node_ip(node), Some(ip), "{line}");
        assert!(ip_of.insert(node.to_string(), ip).is_none(), "{stdout}");
    }
    assert_eq!(ip_of.len(), 3, "three distinct nodes:\n{stdout}");
    let mut ips: Vec<Ipv4Addr> = ip_of.values().copied().collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "three distinct IPs:\n{stdout}");
    assert!(!ips.contains(&cluster.controller_ip()));

    // A job still running at the drop.
    let out = cluster.run("sbatch --parsable -N3 -o /dev/null --wrap 'srun sleep 300'");
    assert!(out.status.success(), "sbatch: {out:?}");
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        cluster.wait_for_state(&job, "RUNNING", Duration::from_secs(20)),
        "job {job}: {:?}",
        cluster.job_state(&job)
    );
    assert_eq!(cluster.squeue_jobs(), [job]);
    let pids = cluster.pids();
    let namespaces = cluster.namespaces().to_vec();
    let dir = cluster.dir().to_path_buf();
    assert!(pids.len() > 3, "slurmctld, 3 slurmd and the job: {pids:?}");

    drop(cluster);
    let left = netns::namespaces();
    assert!(
        namespaces.iter().all(|n| !left.contains(n)),
        "{namespaces:?} in {left:?}"
    );
    let alive: Vec<u32> = pids.into_iter().filter(|&p| !process_gone(p)).collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
    assert!(!dir.exists(), "{} is left", dir.display());
    // (Not squeue with the old SLURM_CONF: a Slurm command whose config
    // file is missing retries for 60 s, and the old controller address is
    // routed out of the machine.) The next cluster starts with an empty
    // queue: the job did not outlive its cluster.
    let Some(next) = Cluster::up(3) else { return };
    assert_eq!(next.squeue_jobs(), Vec::<String>::new());
}
