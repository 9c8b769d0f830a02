//! Named ports under every launch type: a node serves on the port the host
//! allocated it (over wasi:sockets), a peer given its address handle
//! connects and gets the answer, and the sandbox lets a node bind its own
//! ports only and connect only to the addresses it was given.

use std::path::{Path, PathBuf};

use lp_host::testing::{TestLaunch, TestProgram};
use lp_tests::path;

fn program(file: &Path) -> TestProgram {
    TestProgram::new(file).cache_dir(path("target/lp-test-cache"))
}

/// `ports.toml`: `web` serves on its port `http`, `client` fetches from it.
fn served() -> TestProgram {
    program(&path("tests/programs/ports.toml"))
}

const REPLY: &str = "reply: hello client from web";

#[test]
fn a_peer_reaches_a_node_by_its_address_handle_under_local_mt() {
    let mut run = served().launch(TestLaunch::Mt).unwrap();
    run.end().unwrap();
    assert_eq!(run.output("web"), ["serving on port http", "answered 1"]);
    assert_eq!(run.output("client"), [REPLY]);
}

#[test]
fn a_peer_reaches_a_node_by_its_address_handle_under_local_mp() {
    let mut run = served().launch(TestLaunch::Mp).unwrap();
    run.end().unwrap();
    assert_eq!(run.output("web"), ["serving on port http", "answered 1"]);
    assert_eq!(run.output("client"), [REPLY]);
}

#[test]
fn a_peer_reaches_a_node_by_its_address_handle_under_test_mt() {
    for seed in [1, 2, 3] {
        let run = served().run_seeded(seed, 0).unwrap();
        run.check().unwrap();
        for line in [format!("[client] {REPLY}"), "[web] answered 1".into()] {
            assert!(
                run.output.contains(&line),
                "seed {seed}: {line} missing from {:?}",
                run.output
            );
        }
    }
}

#[test]
fn every_replica_serves_on_a_port_of_its_own() {
    // Three servers, and one client per server by index.
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        &format!(
            "[program]\nname = \"replicas\"\nwait_for = [\"client\"]\n\n[[node]]\nname = \"web\"\ncomponent = {netpeer:?}\nreplicas = 3\nports = [\"http\"]\nargs = {{ mode = \"serve\" }}\n\n[[node]]\nname = \"client\"\ncomponent = {netpeer:?}\nreplicas = 3\nargs = {{ mode = \"fetch\", server = {{ address = \"web.http\", index = \"index\" }} }}\n",
            netpeer = netpeer()
        ),
    );
    let mut run = program(&file).launch(TestLaunch::Mt).unwrap();
    run.end().unwrap();
    for i in 0..3 {
        assert_eq!(
            run.output(&format!("client/{i}")),
            [format!("reply: hello client/{i} from web/{i}")]
        );
        assert_eq!(
            run.output(&format!("web/{i}")),
            ["serving on port http", "answered 1"]
        );
    }
}

/// A node with port `http` that tries to bind what it was not given: the
/// port of `other` (whose address it has), a port beside its own, any
/// port, its port on every interface; then its own.
fn binder(dir: &Path) -> PathBuf {
    write(
        dir,
        &format!(
            "[program]\nname = \"binder\"\n\n[[node]]\nname = \"binder\"\ncomponent = {netpeer:?}\nports = [\"http\"]\nargs = {{ mode = \"bind\", server = {{ address = \"other.http\" }} }}\n\n[[node]]\nname = \"other\"\ncomponent = {netpeer:?}\nports = [\"http\"]\nargs = {{ mode = \"idle\" }}\n",
            netpeer = netpeer()
        ),
    )
}

const BIND_OUTCOMES: [&str; 5] = [
    "bind another port: denied (PermissionDenied)",
    "bind any port: denied (PermissionDenied)",
    "bind its port on every interface: denied (PermissionDenied)",
    "bind the server's port: denied (PermissionDenied)",
    "bind its own port: ok",
];

#[test]
fn a_node_may_bind_its_own_ports_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let file = binder(dir.path());
    for how in [TestLaunch::Mt, TestLaunch::Mp] {
        let mut run = program(&file).launch(how).unwrap();
        run.end().unwrap();
        assert_eq!(run.output("binder"), BIND_OUTCOMES, "{how:?}");
    }
    let run = program(&file).run_seeded(7, 0).unwrap();
    run.check().unwrap();
    let binder: Vec<&str> = run
        .output
        .iter()
        .filter_map(|l| l.strip_prefix("[binder] "))
        .collect();
    assert_eq!(binder, BIND_OUTCOMES);
}

#[test]
fn a_peer_without_the_address_handle_cannot_connect() {
    // The same address written as a plain string is no grant.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        &format!(
            "[program]\nname = \"stranger\"\n\n[[node]]\nname = \"web\"\ncomponent = {netpeer:?}\nports = {{ http = {port} }}\nargs = {{ mode = \"idle\" }}\n\n[[node]]\nname = \"client\"\ncomponent = {netpeer:?}\nargs = {{ mode = \"fetch\", server = \"127.0.0.1:{port}\" }}\n",
            netpeer = netpeer()
        ),
    );
    let mut run = program(&file).launch(TestLaunch::Mt).unwrap();
    run.end().unwrap();
    assert_eq!(run.output("client"), ["reply: none (PermissionDenied)"]);
}

#[test]
fn a_fixed_port_that_is_taken_refuses_the_launch_at_its_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        &format!(
            "[program]\nname = \"taken\"\n\n[[node]]\nname = \"web\"\ncomponent = {netpeer:?}\nports = {{ http = {port} }}\nargs = {{ mode = \"serve\" }}\n",
            netpeer = netpeer()
        ),
    );
    for how in [TestLaunch::Mt, TestLaunch::Mp] {
        let error = format!("{:#}", program(&file).launch(how).err().expect("refused"));
        assert!(
            error.contains(&format!(
                "program.toml:7:9: port http of node web is {port}, which cannot be had on 127.0.0.1"
            )),
            "{how:?}: {error}"
        );
    }
}

fn netpeer() -> PathBuf {
    path("tests/nodes/netpeer")
}

fn write(dir: &Path, toml: &str) -> PathBuf {
    let file = dir.join("program.toml");
    std::fs::write(&file, toml).unwrap();
    file
}
