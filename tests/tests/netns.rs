//! The network-namespace harness itself: hosts reach each other by IP over
//! the bridge, each sees its own address, and nothing of it outlives a drop
//! (also one during a panic). Skipped where there is no root or `ip netns`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};

use lp_tests::netns::{self, Hosts, process_gone};

#[test]
fn a_listener_in_one_host_is_reachable_from_another_by_its_ip() {
    let Some(hosts) = Hosts::new(2) else { return };
    let listener = hosts
        .within(1, || TcpListener::bind((hosts.ip(1), 0)))
        .expect("enter host 1")
        .expect("bind in host 1");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, peer) = listener.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        writeln!(&stream, "host 1 heard `{}` from {}", line.trim(), peer.ip()).unwrap();
        peer
    });
    let script = format!(
        "exec 3<>/dev/tcp/{}/{port} && echo ping >&3 && read -r reply <&3 && echo \"$reply\"",
        hosts.ip(1)
    );
    let out = hosts
        .output(hosts.command(2, "bash").args(["-c", &script]))
        .expect("run bash in host 2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("host 1 heard `ping` from {}", hosts.ip(2))
    );
    let peer: SocketAddr = server.join().unwrap();
    assert_eq!(peer.ip(), hosts.ip(2));
}

#[test]
fn each_host_has_its_own_ip_and_loopback() {
    let Some(hosts) = Hosts::new(3) else { return };
    for i in 1..=3 {
        let out = hosts
            .output(hosts.command(i, "ip").args(["-4", "-o", "addr", "show"]))
            .expect("ip in the host");
        let addresses = String::from_utf8_lossy(&out.stdout);
        assert!(
            addresses.contains(&format!("inet {}/24", hosts.ip(i))),
            "host {i}: {addresses}"
        );
        for j in (1..=3).filter(|&j| j != i) {
            assert!(
                !addresses.contains(&format!("inet {}/", hosts.ip(j))),
                "host {i} has host {j}'s address: {addresses}"
            );
        }
        assert!(
            addresses.contains("inet 127.0.0.1/8"),
            "host {i}: {addresses}"
        );
        let loopback = hosts
            .within(i, || {
                TcpListener::bind(("127.0.0.1", 0)).map(|l| l.local_addr())
            })
            .expect("enter the host");
        assert!(
            loopback.is_ok(),
            "host {i}: loopback is not up: {loopback:?}"
        );
    }
    // The bridge's own address in the root namespace reaches every host.
    let listener = hosts
        .within(3, || TcpListener::bind((hosts.ip(3), 0)))
        .unwrap()
        .unwrap();
    let to = listener.local_addr().unwrap();
    let stream = std::net::TcpStream::connect(to).expect("root namespace reaches host 3");
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), hosts.bridge_ip());
    drop(stream);
}

#[test]
fn nothing_of_the_harness_remains_after_drop() {
    let Some(hosts) = Hosts::new(2) else { return };
    let pid = hosts
        .spawn(hosts.command(1, "sleep").arg("600"))
        .expect("spawn sleep in host 1");
    // A process the harness did not start itself, inside host 2.
    let out = hosts
        .output(
            hosts
                .command(2, "bash")
                .args(["-c", "sleep 600 >/dev/null 2>&1 & echo $!"]),
        )
        .unwrap();
    let orphan: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let namespaces: Vec<String> = (1..=2).map(|i| hosts.namespace(i).to_string()).collect();
    let interfaces = hosts.root_interfaces();
    assert!(netns::namespaces().contains(&namespaces[0]));
    assert!(netns::root_interfaces().contains(&interfaces[0]));
    assert!(!process_gone(pid) && !process_gone(orphan));

    drop(hosts);
    assert_gone(&namespaces, &interfaces);
    assert!(process_gone(pid), "sleep {pid} outlived the harness");
    assert!(process_gone(orphan), "sleep {orphan} outlived the harness");
}

#[test]
fn a_panicking_test_still_tears_the_harness_down() {
    let mut made = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(hosts) = Hosts::new(1) else { return };
        made = Some((
            vec![hosts.namespace(1).to_string()],
            hosts.root_interfaces(),
        ));
        panic!("the test fails with the hosts up");
    }));
    let Some((namespaces, interfaces)) = made else {
        return;
    };
    assert!(result.is_err());
    assert_gone(&namespaces, &interfaces);
}

fn assert_gone(namespaces: &[String], interfaces: &[String]) {
    let left = netns::namespaces();
    for namespace in namespaces {
        assert!(!left.contains(namespace), "namespace {namespace} remains");
    }
    let left = netns::root_interfaces();
    for interface in interfaces {
        assert!(!left.contains(interface), "interface {interface} remains");
    }
}
