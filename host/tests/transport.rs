//! The courier transports between processes (framed socket and gRPC), seen
//! from the router: a server process's router holds a node whose mailbox
//! this test reads, a client router reaches it over a real Unix socket.
//! Checks what the components cannot show directly: a caller dropping its
//! call reaches the callee, replies are routed to the right caller, and a
//! hostile function key is refused.

use std::sync::Arc;
use std::time::Duration;

use lp_host::courier::{
    CallError, FuncKey, FuncTable, Mailbox, Payload, Placement, Router, Secret, Signature,
    Transport, Wire, grpc, socket,
};
use lp_host::stop::StopSignal;

const TRANSPORTS: [Transport; 2] = [Transport::Socket, Transport::Grpc];

/// Held by the tests that make the server warn of a connection without the
/// secret. tracing caches whether a log call is enabled per call site: a
/// test hitting the warning on a thread with no subscriber while another
/// test's subscriber is being set up can leave that warning disabled for
/// the test that counts it, so they take turns.
static WARNING_SITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A function of no arguments and no results (nothing to encode).
fn funcs() -> (Arc<FuncTable>, FuncKey) {
    let mut table = FuncTable::default();
    let key = table.intern(
        "svc",
        "ping",
        Signature {
            args: vec![],
            result: None,
            typed: None,
        },
    );
    (Arc::new(table), key)
}

struct Pair {
    client: Router,
    mailbox: Mailbox,
    _dir: tempfile::TempDir,
}

/// A server with one local node (its mailbox returned) on a fresh socket,
/// and a client router that reaches it.
async fn pair(transport: Transport) -> Pair {
    let secret = Secret::generate().unwrap();
    pair_with(transport, secret.clone(), secret).await
}

/// The same, the client presenting `presented` to a server that wants `secret`.
async fn pair_with(transport: Transport, secret: Secret, presented: Secret) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w0.sock");
    let (funcs, _) = funcs();
    let wire = Wire {
        transport,
        spin: Duration::from_micros(20),
        secret: secret.clone(),
    };
    let (server, mut mailboxes) = Router::new(
        vec!["node".into()],
        &[Placement::Local],
        wire.clone(),
        funcs.clone(),
        Arc::new(StopSignal::new()),
        None,
    );
    let listener = grpc::bind(&path).unwrap();
    let server = Arc::new(server);
    let never = std::future::pending::<()>();
    let spin = wire.spin;
    tokio::spawn(async move {
        match transport {
            Transport::Socket => socket::serve(listener, server, spin, secret, never).await,
            Transport::Grpc => grpc::serve(listener, server, secret, never).await,
        }
    });
    let (client, _) = Router::new(
        vec!["node".into()],
        &[Placement::Remote(path)],
        Wire {
            secret: presented,
            ..wire
        },
        funcs,
        Arc::new(StopSignal::new()),
        None,
    );
    Pair {
        client,
        mailbox: mailboxes.remove(0).unwrap(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_dropped_call_is_cancelled_at_the_callee() {
    let (_, key) = funcs();
    for transport in TRANSPORTS {
        let Pair {
            client,
            mut mailbox,
            _dir,
        } = pair(transport).await;
        // The caller gives up after 200 ms (its future is dropped).
        let call = client.call_with_deadline(
            0,
            key,
            Payload::Vals(vec![]),
            Some(Duration::from_millis(200)),
        );
        let (outcome, mut request) = tokio::join!(call, async {
            tokio::time::timeout(Duration::from_secs(5), mailbox.recv())
                .await
                .expect("the call reaches the node")
                .unwrap()
        });
        assert_eq!(outcome.err(), Some(CallError::Timeout), "{transport:?}");
        // The callee learns that nobody waits for this reply any more (a
        // node skips such calls if it has not started them).
        tokio::time::timeout(Duration::from_secs(5), request.reply.closed())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: the cancel never reached the callee"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn concurrent_replies_reach_their_own_callers() {
    let (_, key) = funcs();
    for transport in TRANSPORTS {
        let Pair {
            client,
            mut mailbox,
            _dir,
        } = pair(transport).await;
        // Answer the calls in reverse order of arrival, the first with an
        // error: each caller must get its own reply.
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for _ in 0..3 {
                requests.push(mailbox.recv().await.unwrap());
            }
            for (i, request) in requests.into_iter().enumerate().rev() {
                let reply = match i {
                    0 => Err(CallError::RemoteTrap("first".into())),
                    _ => Ok(Payload::Vals(vec![])),
                };
                let _ = request.reply.send(reply);
            }
        });
        let call = || client.call(0, key, Payload::Vals(vec![]));
        let first = call();
        tokio::pin!(first);
        // Make sure the first call is sent first.
        let started = tokio::time::timeout(Duration::from_millis(100), &mut first).await;
        assert!(
            started.is_err(),
            "{transport:?}: no reply before the others"
        );
        let (a, b, c) = tokio::join!(first, call(), call());
        assert_eq!(
            a.err(),
            Some(CallError::RemoteTrap("first".into())),
            "{transport:?}"
        );
        assert!(b.is_ok() && c.is_ok(), "{transport:?}");
        server.await.unwrap();
    }
}

/// A raw frame of the socket transport: length, kind, id, body.
fn frame(kind: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = ((1 + 8 + body.len()) as u32).to_le_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Send `bytes` on a new connection; all that comes back until the server
/// closes it or a second passes. (Closing our side would tell the server
/// that the caller is gone, and it would drop the call.)
async fn exchange(path: std::path::PathBuf, bytes: Vec<u8>) -> Vec<u8> {
    use std::io::{Read, Write};
    tokio::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        // The server may close before taking everything: that is an answer.
        let _ = stream.write_all(&bytes);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn hostile_frames_get_an_error_or_a_closed_connection_never_a_panic() {
    let _turn = WARNING_SITE.lock().await;
    let secret = Secret::generate().unwrap();
    let Pair {
        client,
        mut mailbox,
        _dir,
    } = pair_with(Transport::Socket, secret.clone(), secret.clone()).await;
    let path = _dir.path().join("w0.sock");
    // Each connection first presents the secret, as a member would.
    let hello = frame(4, 0, secret.bytes());
    let with_hello = |bytes: Vec<u8>| [hello.clone(), bytes].concat();

    // A call to a function key nobody has: an ERROR frame (kind 2) naming it.
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(&99u32.to_le_bytes());
    body.push(0);
    let reply = exchange(path.clone(), with_hello(frame(0, 7, &body))).await;
    assert_eq!(reply.get(4), Some(&2), "an ERROR frame: {reply:?}");
    assert_eq!(u64::from_le_bytes(reply[5..13].try_into().unwrap()), 7);
    let message = String::from_utf8_lossy(&reply[14..]).into_owned();
    assert!(message.contains("no function has key 99"), "{message}");

    // A truncated call, an unknown kind, a length over the limit, half a
    // header: an error reply or a closed connection.
    for bytes in [
        frame(0, 1, &[1, 2]),
        frame(9, 1, &[]),
        u32::MAX.to_le_bytes().to_vec(),
        vec![5, 0],
    ] {
        let reply = exchange(path.clone(), with_hello(bytes.clone())).await;
        assert!(
            reply.is_empty() || reply[4] == 2,
            "{bytes:?}: no reply, or an error: {reply:?}"
        );
    }

    // The server still serves honest callers.
    let (_, key) = funcs();
    let (outcome, request) = tokio::join!(client.call(0, key, Payload::Vals(vec![])), async {
        let request = mailbox.recv().await.unwrap();
        let _ = request.reply.send(Ok(Payload::Vals(vec![])));
    });
    let () = request;
    assert!(outcome.is_ok(), "{:?}", outcome.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn only_members_of_the_launch_are_served() {
    let _turn = WARNING_SITE.lock().await;
    let (_, key) = funcs();
    for transport in TRANSPORTS {
        // A client with another launch's secret: refused, as a typed error.
        let secret = Secret::generate().unwrap();
        let Pair {
            client,
            mut mailbox,
            _dir,
        } = pair_with(transport, secret.clone(), Secret::generate().unwrap()).await;
        let outcome = client
            .call_with_deadline(0, key, Payload::Vals(vec![]), Some(Duration::from_secs(5)))
            .await;
        assert!(
            matches!(&outcome, Err(CallError::Unreachable(_))),
            "{transport:?}: {:?}",
            outcome.err()
        );
        assert!(
            mailbox.try_recv().is_err(),
            "{transport:?}: the call reached the node"
        );

        if transport == Transport::Socket {
            // Raw bytes with no secret, or a call before it: closed, unanswered.
            let path = _dir.path().join("w0.sock");
            let mut call = 0u32.to_le_bytes().to_vec();
            call.extend_from_slice(&0u32.to_le_bytes());
            call.push(0);
            for bytes in [
                frame(0, 1, &call),
                frame(4, 0, &[0; 32]),
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            ] {
                assert_eq!(exchange(path.clone(), bytes).await, Vec::<u8>::new());
            }
            assert!(mailbox.try_recv().is_err(), "a raw call reached the node");
        }
    }
}

/// Collects what the code under test logs (this thread's tracing events).
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn refusals(&self) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches("refused a courier connection that did not present the launch's secret")
            .count()
    }

    /// The refusals once `n` have been logged, or after 10 s (`exchange`
    /// may return at its read timeout, before the server has read a slow
    /// connection on a loaded machine).
    async fn refusals_reaching(&self, n: usize) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.refusals() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.refusals()
    }
}

// One thread: the server's tasks log where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn only_a_connection_with_a_bad_secret_is_warned_about() {
    let _turn = WARNING_SITE.lock().await;
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let secret = Secret::generate().unwrap();
    let Pair { _dir, .. } = pair_with(Transport::Socket, secret.clone(), secret.clone()).await;
    let path = _dir.path().join("w0.sock");

    // A member that connects and goes away before it says anything (a
    // process ending under its connection) is no intruder.
    for _ in 0..3 {
        drop(std::os::unix::net::UnixStream::connect(&path).unwrap());
    }
    // An honest hello, then nothing.
    assert_eq!(
        exchange(path.clone(), frame(4, 0, secret.bytes())).await,
        b""
    );
    assert_eq!(log.refusals(), 0, "no bad secret was presented");

    // A wrong secret, and a call before any hello: each warned about once.
    let wrong = Secret::generate().unwrap();
    assert_eq!(
        exchange(path.clone(), frame(4, 0, wrong.bytes())).await,
        b""
    );
    assert_eq!(log.refusals_reaching(1).await, 1);
    assert_eq!(exchange(path.clone(), frame(0, 1, &[0; 9])).await, b"");
    assert_eq!(log.refusals_reaching(2).await, 2);
}

/// Run `lp-host` with `args` from the repository root, killed if it has
/// not ended within a minute; its exit code and stderr.
fn lp_host(args: &[&str]) -> (Option<i32>, String) {
    use std::io::Read;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lp-host"))
        .args(args)
        .current_dir(repo)
        .env("LP_CACHE_DIR", repo.join("target/lp-test-cache"))
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lp-host starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lp-host {args:?} did not end within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap())
}

#[test]
fn a_failing_local_mp_run_warns_of_no_bad_secret() {
    // A caller that fails (over the handle limit) with calls on their way
    // to a node in another worker: connections end as the program does.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("program.toml");
    std::fs::write(
        &program,
        format!(
            "[program]\nname = \"failing\"\n\n[[node]]\nname = \"callee\"\ncomponent = {overreach:?}\n\n[[node]]\nname = \"caller\"\ncomponent = {overreach:?}\nargs = {{ target = {{ handle = \"callee\" }}, mode = \"fan-out\", count = 120000 }}\n",
            overreach = repo.join("tests/nodes/overreach"),
        ),
    )
    .unwrap();
    let program = program.to_str().unwrap();
    for courier in ["socket", "grpc"] {
        // Several runs: how connections end at shutdown is a matter of timing.
        for _ in 0..3 {
            let (code, stderr) =
                lp_host(&["run", program, "--launch", "local_mp", "--courier", courier]);
            assert_eq!(code, Some(1), "{courier}: {stderr}");
            assert!(stderr.contains("node caller failed"), "{courier}: {stderr}");
            assert!(
                !stderr.contains("did not present the launch's secret"),
                "{courier}: a spurious warning: {stderr}"
            );
        }
    }
}
