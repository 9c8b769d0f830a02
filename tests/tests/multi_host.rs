//! `--launch hosts` across real separate hosts: network namespaces on a
//! bridge (see lp_tests::netns), the launcher in one, an agent in each of
//! the others, every connection between them mutual TLS. The program runs
//! as under local_mp; a stranger's token is refused; a killed agent or a
//! cut link stops the program with the failure named, and no process of
//! the launch is left on any host. Skipped where there is no root or
//! `ip netns` (it says why).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lp_tests::netns::Hosts;

/// A launch in progress: the launcher in host 1, its output in files.
struct Launch {
    launcher: Child,
    dir: tempfile::TempDir,
}

impl Launch {
    /// Start `lp-host run --launch hosts` in host 1 for `agents` agents.
    fn start(hosts: &Hosts, program: &str, agents: usize, set: &[&str]) -> Launch {
        Launch::start_in(hosts, 1, program, agents, set, "socket")
    }

    /// The same, the launcher in host `host`, calls going by `courier`.
    fn start_in(
        hosts: &Hosts,
        host: usize,
        program: &str,
        agents: usize,
        set: &[&str],
        courier: &str,
    ) -> Launch {
        let dir = tempfile::tempdir().unwrap();
        let mut command = hosts.command(host, lp_tests::lp_host_exe());
        command
            .args(["run", "--launch", "hosts", "--courier", courier, "--agents"])
            .arg(agents.to_string())
            .arg("--listen")
            .arg(format!("{}:7070", hosts.ip(host)))
            .arg("--token-file")
            .arg(dir.path().join("token"))
            .args(["--join-timeout-secs", "120"])
            .arg(lp_tests::path(program));
        for setting in set {
            command.args(["--set", setting]);
        }
        let launcher = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("out")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
            .spawn()
            .expect("start the launcher");
        let launch = Launch { launcher, dir };
        launch.wait_for(|| launch.token().is_file(), "the join token");
        launch
    }

    fn token(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn wait_for(&self, done: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "no {what}; launcher said:\n{}",
                self.read("err")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the launcher's end (bounded: a hang fails the test).
    fn finish(&mut self) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let status = loop {
            if let Some(status) = self.launcher.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.launcher.kill();
                panic!("the launcher did not end:\n{}", self.read("err"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), self.read("out"), self.read("err"))
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
    }
}

/// An agent in host `i`, joining with `token`; its stderr captured.
fn agent(hosts: &Hosts, i: usize, token: &Path) -> Child {
    agent_labelled(hosts, i, token, "")
}

/// The same, the agent's machine labelled `label` for placement.
fn agent_labelled(hosts: &Hosts, i: usize, token: &Path, label: &str) -> Child {
    hosts
        .command(i, lp_tests::lp_host_exe())
        .args(["agent", "--host", label, "--token"])
        .arg(token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start an agent")
}

/// An agent's exit code and what it said, waiting (bounded) for its end.
fn agent_end(mut agent: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = agent.kill();
            panic!("an agent did not end after its launch");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut said = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    (status.code(), said)
}

/// The processes still in host `i`'s namespace.
fn pids_in(hosts: &Hosts, i: usize) -> String {
    let out = Command::new("ip")
        .args(["netns", "pids", hosts.namespace(i)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// No process of the launch is left on hosts 1..=n (bounded wait: the
/// last ones may still be on their way out).
fn assert_nothing_left(hosts: &Hosts, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 1..=n {
        while !pids_in(hosts, i).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pids_in(hosts, i), "", "processes left on host {i}");
    }
}

/// Which host (by IP) the launcher put `node` on, from its `runs` lines.
fn host_of(err: &str, node: &str) -> String {
    err.lines()
        .filter(|l| l.starts_with("hosts: agent") && l.contains(" runs "))
        .find(|l| {
            l.split(" runs ")
                .nth(1)
                .is_some_and(|names| names.split(", ").any(|n| n == node))
        })
        .and_then(|l| Some(l.split('(').nth(1)?.split(')').next()?.to_string()))
        .unwrap_or_else(|| panic!("{node} was not placed:\n{err}"))
}

/// Calls between machines go framed inside mutual TLS (the default), or
/// over gRPC (`--courier grpc`): both carry the program.
#[test]
fn consumer_producers_run_with_producers_on_two_other_hosts() {
    for courier in ["socket", "grpc"] {
        consumer_producers_over(courier);
    }
}

fn consumer_producers_over(courier: &str) {
    let Some(hosts) = Hosts::new(3) else { return };
    let mut launch = Launch::start_in(
        &hosts,
        1,
        "examples/consumer_producers/program.toml",
        2,
        &["producer.replicas=4", "consumer.resources.host=\"big\""],
        courier,
    );
    let agents = [
        agent(&hosts, 2, &launch.token()),
        agent_labelled(&hosts, 3, &launch.token(), "big"),
    ];
    let (code, out, err) = launch.finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("step 9: [9, 9, 9, 9]"), "{out}");
    // The processes went to both agents, each on its own host.
    let (two, three) = (hosts.ip(2).to_string(), hosts.ip(3).to_string());
    let producers: Vec<String> = (0..4)
        .map(|r| host_of(&err, &format!("producer/{r}")))
        .collect();
    assert!(
        producers.contains(&two) && producers.contains(&three),
        "{err}"
    );
    // The consumer went where its resources.host said.
    assert_eq!(host_of(&err, "consumer"), three, "{err}");
    for agent in agents {
        let (code, said) = agent_end(agent);
        assert_eq!(code, Some(0), "{said}");
    }
    assert_nothing_left(&hosts, 3);
}

#[test]
fn an_agent_with_another_launchs_token_is_refused_and_the_launch_goes_on() {
    let Some(hosts) = Hosts::new(2) else { return };
    let mut launch = Launch::start(&hosts, "examples/hello_world/program.toml", 1, &[]);
    // The same address, another launch's pin and secret.
    let other = tempfile::tempdir().unwrap();
    let stranger = {
        let fake = Launch::start_in(
            &hosts,
            2,
            "examples/hello_world/program.toml",
            1,
            &[],
            "socket",
        );
        let text = std::fs::read_to_string(fake.token()).unwrap();
        let file = other.path().join("token");
        std::fs::write(&file, text).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        drop(fake);
        file
    };
    // Point the stranger's token at the real launcher.
    let refused = hosts
        .output(
            hosts
                .command(2, lp_tests::lp_host_exe())
                .args(["agent", "--token"])
                .arg(&stranger)
                .arg("--join")
                .arg(format!("{}:7070", hosts.ip(1))),
        )
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("join"), "{said}");
    // The real agent still joins, and the program runs.
    let agent = agent(&hosts, 2, &launch.token());
    let (code, out, err) = launch.finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("agent 0 joined"), "{err}");
    let (code, said) = agent_end(agent);
    assert_eq!(code, Some(0), "{said}");
    assert_nothing_left(&hosts, 2);
}

/// run_and_serve for a long time (the actor polls the learner every 20 ms)
/// over two agents; `cut` then takes the learner's host away. The actor's
/// call in flight fails (typed), the program stops with the learner's
/// failure named, and no process is left on any host.
fn losing_the_learners_host(cut: impl FnOnce(&Hosts, usize, &mut Child)) {
    let Some(hosts) = Hosts::new(3) else { return };
    let mut launch = Launch::start(
        &hosts,
        "examples/run_and_serve/program.toml",
        2,
        &["actor.args.polls=100000"],
    );
    let mut agents = vec![
        agent(&hosts, 2, &launch.token()),
        agent(&hosts, 3, &launch.token()),
    ];
    launch.wait_for(|| launch.read("err").contains("runs"), "placement");
    let learner = host_of(&launch.read("err"), "learner");
    let i = (2..=3)
        .find(|&i| hosts.ip(i).to_string() == learner)
        .unwrap();
    // Running: the learner's version has been read a few times.
    std::thread::sleep(Duration::from_secs(3));
    let cut_at = Instant::now();
    cut(&hosts, i, &mut agents[i - 2]);
    let (code, out, err) = launch.finish();
    eprintln!("the launch ended {:?} after the cut", cut_at.elapsed());
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("learner"), "{err}");
    assert!(err.contains("lost with agent"), "{err}");
    assert!(out.contains("get-version failed"), "{out}\n{err}");
    for agent in agents {
        let _ = agent_end(agent);
    }
    assert_nothing_left(&hosts, 3);
}

#[test]
fn a_killed_agent_stops_the_program_and_leaves_nothing() {
    losing_the_learners_host(|_, _, agent| {
        agent.kill().unwrap();
    });
}

#[test]
fn a_cut_link_stops_the_program_and_leaves_nothing() {
    losing_the_learners_host(|hosts, i, _| {
        let status = Command::new("ip")
            .args(["-n", hosts.namespace(i), "link", "set", "eth0", "down"])
            .status()
            .unwrap();
        assert!(status.success());
    });
}

#[test]
fn a_node_with_restarts_left_moves_to_a_live_agent_when_its_agent_is_killed() {
    let Some(hosts) = Hosts::new(3) else { return };
    let mut launch = Launch::start(
        &hosts,
        "examples/run_and_serve/program.toml",
        2,
        // About 5 s of polls: the actor ends by itself if it sees no failure.
        &["actor.args.polls=250", "learner.restarts=1"],
    );
    let mut agents = vec![
        agent(&hosts, 2, &launch.token()),
        agent(&hosts, 3, &launch.token()),
    ];
    launch.wait_for(|| launch.read("err").contains("runs"), "placement");
    let learner = host_of(&launch.read("err"), "learner");
    let i = (2..=3)
        .find(|&i| hosts.ip(i).to_string() == learner)
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    agents[i - 2].kill().unwrap();
    let (code, out, err) = launch.finish();
    // The learner's worker moved to the live agent and started there. The
    // actor either had a call in flight (it failed, typed, and the actor
    // stopped the program) or was between polls and went on polling the
    // new learner to its last poll: which one depends on timing (a loaded
    // machine re-announces before the actor wakes); both end the program
    // well.
    assert!(
        err.contains("worker 0 moves from agent")
            && err.contains("restarting its process (1 of 1)"),
        "{err}"
    );
    assert!(
        out.contains("get-version failed") || out.contains("[actor] versions"),
        "{out}"
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    for agent in agents {
        let _ = agent_end(agent);
    }
    assert_nothing_left(&hosts, 3);
}

#[test]
fn ctrl_c_at_the_launcher_stops_every_host() {
    let Some(hosts) = Hosts::new(3) else { return };
    let mut launch = Launch::start(
        &hosts,
        "examples/run_and_serve/program.toml",
        2,
        &["actor.args.polls=100000"],
    );
    let agents = [
        agent(&hosts, 2, &launch.token()),
        agent(&hosts, 3, &launch.token()),
    ];
    launch.wait_for(|| launch.read("err").contains("runs"), "placement");
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on the launcher, our child.
    unsafe {
        libc::kill(launch.launcher.id() as i32, libc::SIGINT);
    }
    let (code, out, err) = launch.finish();
    // A graceful stop: the actor's wait_for_stop returns, every node ends.
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(!err.contains("error: node"), "{err}");
    for agent in agents {
        let (code, said) = agent_end(agent);
        assert_eq!(code, Some(0), "{said}");
    }
    assert_nothing_left(&hosts, 3);
}

#[test]
fn a_node_reaches_another_hosts_node_by_its_address_handle() {
    let Some(hosts) = Hosts::new(3) else { return };
    let mut launch = Launch::start(&hosts, "tests/programs/ports.toml", 2, &[]);
    let agents = [
        agent(&hosts, 2, &launch.token()),
        agent(&hosts, 3, &launch.token()),
    ];
    let (code, out, err) = launch.finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    // The two nodes on two hosts; the client connected to the server's
    // host at the port allocated there.
    assert_ne!(host_of(&err, "web"), host_of(&err, "client"), "{err}");
    assert!(out.contains("[web] serving on port http"), "{out}");
    assert!(
        out.contains("[client] reply: hello client from web"),
        "{out}"
    );
    for agent in agents {
        let (code, said) = agent_end(agent);
        assert_eq!(code, Some(0), "{said}");
    }
    assert_nothing_left(&hosts, 3);
}
