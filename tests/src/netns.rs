//! Several "hosts" on one machine for tests that need them: a bridge in
//! the root network namespace with an address of its own, and N network
//! namespaces, each joined to the bridge by a veth pair and given its own
//! IP (bridge `lpbr<tag>` at 10.a.b.254/24, host i in namespace
//! `lp-<tag>-h<i>` at 10.a.b.i). Names carry the test process's pid and a
//! sequence number, so tests in parallel and runs side by side do not
//! collide; the /24 is one no route of the machine uses. Everything is
//! removed on drop (also when the test panics): processes started inside
//! are killed, then the namespaces (and with them their veths) and the
//! bridge are deleted. Traffic stays on that bridge: no other interface or
//! route of the machine is touched.
//!
//! Needs root and `ip netns`; where either is missing [`Hosts::new`]
//! returns `None` and says why, and the test skips itself.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Host indices are 1-based and become the last byte of the host's IP.
const MAX_HOSTS: usize = 99;

/// Setup of the harness takes turns within a test process, so that two
/// harnesses never pick the same free /24.
static SETUP: Mutex<()> = Mutex::new(());
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// N network namespaces on one bridge.
pub struct Hosts {
    tag: String,
    bridge: String,
    subnet: [u8; 2],
    /// Namespaces created so far (all of them once `new` returns).
    namespaces: Vec<String>,
    bridge_made: bool,
    children: Mutex<Vec<Child>>,
}

impl Hosts {
    /// `count` hosts (1 to 99), or `None` with a line on stderr saying why
    /// the test is skipped: not root, or no usable `ip netns`. Any later
    /// failure of the setup panics, naming the command and its error, after
    /// removing what it had made.
    pub fn new(count: usize) -> Option<Hosts> {
        assert!(
            (1..=MAX_HOSTS).contains(&count),
            "Hosts::new({count}): 1 to {MAX_HOSTS} hosts"
        );
        if !is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "skipped: `ip netns list` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("skipped: cannot run `ip` (iproute2): {e}");
                return None;
            }
        }
        let _turn = SETUP.lock().unwrap_or_else(|p| p.into_inner());
        fetch_crates_once();
        remove_leftovers();
        let pid = std::process::id();
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 256;
        let tag = format!("{pid:x}-{sequence:x}");
        let mut hosts = Hosts {
            bridge: format!("lpbr{tag}"),
            subnet: free_subnet(pid, sequence),
            tag,
            namespaces: Vec::new(),
            bridge_made: false,
            children: Mutex::new(Vec::new()),
        };
        // The first namespace is the probe: where it cannot be made (no
        // CAP_SYS_ADMIN, no /run/netns), the test is skipped.
        let first = hosts.namespace_name(1);
        if let Err(why) = ip(&["netns", "add", &first]) {
            eprintln!("skipped: cannot create a network namespace: {why}");
            return None;
        }
        hosts.namespaces.push(first);
        hosts.build(count);
        Some(hosts)
    }

    fn build(&mut self, count: usize) {
        let bridge = self.bridge.clone();
        let cidr = format!("{}/24", self.bridge_ip());
        must(&["link", "add", &bridge, "type", "bridge"]);
        self.bridge_made = true;
        must(&["addr", "add", &cidr, "dev", &bridge]);
        must(&["link", "set", &bridge, "up"]);
        for i in 1..=count {
            let namespace = self.namespace_name(i);
            if i > 1 {
                must(&["netns", "add", &namespace]);
                self.namespaces.push(namespace.clone());
            }
            let outside = format!("lpv{}h{i}", self.tag);
            let inside = format!("lpp{}h{i}", self.tag);
            let address = format!("{}/24", self.ip(i));
            must(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            must(&["link", "set", &inside, "netns", &namespace]);
            must(&["link", "set", &outside, "master", &bridge]);
            must(&["link", "set", &outside, "up"]);
            let inside_ns = ["-n", namespace.as_str()];
            must(&[&inside_ns[..], &["link", "set", &inside, "name", "eth0"]].concat());
            must(&[&inside_ns[..], &["addr", "add", &address, "dev", "eth0"]].concat());
            must(&[&inside_ns[..], &["link", "set", "eth0", "up"]].concat());
            must(&[&inside_ns[..], &["link", "set", "lo", "up"]].concat());
        }
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    /// Never: there is at least one host.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Host `i`'s IP (i from 1).
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        assert!((1..=MAX_HOSTS).contains(&i), "host {i}: hosts count from 1");
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], i as u8)
    }

    /// The bridge's IP, in the root namespace.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], 254)
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Host `i`'s network namespace (as `ip netns` names it).
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i - 1]
    }

    /// Every interface name the harness made in the root namespace.
    pub fn root_interfaces(&self) -> Vec<String> {
        let mut names = vec![self.bridge.clone()];
        names.extend((1..=self.len()).map(|i| format!("lpv{}h{i}", self.tag)));
        names
    }

    fn namespace_name(&self, i: usize) -> String {
        format!("lp-{}-h{i}", self.tag)
    }

    /// A command that runs `program` inside host `i`
    /// (`ip netns exec NAME program`, which execs the program itself).
    pub fn command(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.namespace(i)])
            .arg(program);
        command
    }

    /// Start `command` (made by [`Hosts::command`]) and keep it: it is
    /// killed when the harness is dropped. Returns its pid.
    pub fn spawn(&self, command: &mut Command) -> std::io::Result<u32> {
        let child = command.spawn()?;
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        Ok(pid)
    }

    /// Run `command` (made by [`Hosts::command`]) to its end, with its
    /// output captured.
    pub fn output(&self, command: &mut Command) -> std::io::Result<Output> {
        command.stdin(Stdio::null()).output()
    }

    /// Run `f` on a new thread that has entered host `i`'s network
    /// namespace: sockets it creates (a listener, a connection) belong to
    /// that host and stay there when handed back to any thread.
    pub fn within<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
        let path = format!("/run/netns/{}", self.namespace(i));
        let namespace = std::fs::File::open(&path)?;
        let fd = namespace.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns on a valid namespace fd; it changes only
                    // this thread's network namespace, and the thread ends
                    // when `f` returns.
                    let entered = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
                    if entered != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for mut child in
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|p| p.into_inner()))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        for namespace in &self.namespaces {
            kill_processes_in(namespace);
            let _ = ip(&["netns", "del", namespace]);
        }
        // Deleting a namespace deletes its end of each veth, and so the pair;
        // these are for a setup that stopped half-way.
        let unmoved = (1..=self.len()).map(|i| format!("lpp{}h{i}", self.tag));
        for interface in self.root_interfaces().into_iter().chain(unmoved) {
            if interface != self.bridge || self.bridge_made {
                let _ = ip(&["link", "del", &interface]);
            }
        }
    }
}

/// Whether the process `pid` has ended: no longer in /proc, or a zombie
/// (killed, waiting for a parent that reaps it late).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Every network namespace `ip netns list` shows.
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every interface name of the root namespace.
pub fn root_interfaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            // Real, effective, saved, filesystem: the effective one counts.
            uids.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Run `ip ARGS`; its stderr if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("`ip {}`: {e}", args.join(" "))),
    }
}

fn must(args: &[&str]) {
    if let Err(why) = ip(args) {
        panic!("setting up network namespaces: {why}");
    }
}

/// Kill (SIGKILL) every process inside `namespace`.
fn kill_processes_in(namespace: &str) {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            // SAFETY: kill(2) with a pid read from `ip netns pids` just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A 10.a.b.0/24 that no route of the root namespace mentions, starting
/// from one picked by the pid and sequence number (a in 64..=191).
fn free_subnet(pid: u32, sequence: u32) -> [u8; 2] {
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let start = pid.wrapping_mul(256).wrapping_add(sequence * 7) % (128 * 256);
    (0..128 * 256)
        .map(|k| {
            let n = (start + k) % (128 * 256);
            [64 + (n / 256) as u8, (n % 256) as u8]
        })
        .find(|[a, b]| !routes.contains(&format!("10.{a}.{b}.")))
        .unwrap_or([64, 0])
}

/// Remove namespaces and bridges of this harness left by test processes
/// that are gone (killed before their harness could be dropped).
fn remove_leftovers() {
    let owner_gone = |tag: &str| {
        tag.split_once('-')
            .and_then(|(pid, _)| u32::from_str_radix(pid, 16).ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    for namespace in namespaces() {
        if let Some(rest) = namespace.strip_prefix("lp-")
            && let Some((tag, _host)) = rest.rsplit_once("-h")
            && owner_gone(tag)
        {
            kill_processes_in(&namespace);
            let _ = ip(&["netns", "del", &namespace]);
        }
    }
    for interface in root_interfaces() {
        if let Some(tag) = interface.strip_prefix("lpbr")
            && owner_gone(tag)
        {
            let _ = ip(&["link", "del", &interface]);
        }
    }
}

/// Download the crates of every node crate of the workspace, once per
/// test process, here in the root namespace: a launcher started inside a
/// namespace builds node crates with no way out to the registry, so a
/// test run alone (not after one that built them) would fail on a
/// download.
fn fetch_crates_once() {
    static FETCHED: std::sync::Once = std::sync::Once::new();
    FETCHED.call_once(|| {
        let fetched = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .arg("fetch")
            .current_dir(crate::repo())
            .output();
        if let Ok(out) = fetched
            && !out.status.success()
        {
            eprintln!(
                "warning: cargo fetch failed (node crates may not build in a namespace): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    });
}
