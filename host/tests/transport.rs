//! The conformance suite of the courier transports between processes (the
//! framed transport and the gRPC stream, each over Unix and TCP endpoints),
//! seen from the router: a server process's router holds a node whose
//! mailbox this test reads, a client router reaches it over a real socket.
//! Checks what the components cannot show directly: a caller dropping its
//! call reaches the callee, replies are routed to the right caller, hostile
//! bytes get an error or a closed connection and the server keeps serving,
//! and only members of the launch are served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lp_host::courier::{
    CallError, Endpoint, FuncKey, FuncTable, Mailbox, Payload, Placement, Router, Secret, Security,
    Signature, TransportKind, Wire,
};
use lp_host::proto;
use lp_host::stop::StopSignal;
use lp_host::trust::{LaunchCa, MutualTls, Role};

/// Which endpoints a server listens at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    Unix,
    Tcp,
}

/// Every transport over every kind of endpoint.
const COMBINATIONS: [(TransportKind, Net); 4] = [
    (TransportKind::Socket, Net::Unix),
    (TransportKind::Socket, Net::Tcp),
    (TransportKind::Grpc, Net::Unix),
    (TransportKind::Grpc, Net::Tcp),
];

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
    /// Where the server listens.
    endpoint: Endpoint,
    /// Holds a Unix endpoint's socket: bind it (`_dir`, not `..`) for as
    /// long as the server is called, or the socket file goes with it.
    _dir: tempfile::TempDir,
}

/// A server with one local node (its mailbox returned) on a fresh endpoint,
/// and a client router that reaches it.
async fn pair(transport: TransportKind, net: Net) -> Pair {
    let secret = Secret::generate().unwrap();
    pair_with(transport, net, secret.clone(), secret).await
}

/// The same, the client presenting `presented` to a server that wants `secret`.
async fn pair_with(transport: TransportKind, net: Net, secret: Secret, presented: Secret) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (funcs, _) = funcs();
    let wire = Wire {
        transport,
        spin: Duration::from_micros(20),
        secret: secret.clone(),
        security: Security::plain(),
    };
    let (server, mut mailboxes) = Router::new(
        vec!["node".into()],
        &[Placement::Local],
        wire.clone(),
        funcs.clone(),
        Arc::new(StopSignal::new()),
        None,
    );
    let listener = match net {
        Net::Unix => Endpoint::Unix(dir.path().join("w0.sock")),
        Net::Tcp => Endpoint::Tcp("127.0.0.1:0".parse().unwrap()),
    }
    .bind()
    .unwrap();
    // A port 0 listener says which port it took.
    let endpoint = listener.endpoint().unwrap();
    tokio::spawn(wire.transport().serve(
        listener,
        Arc::new(server),
        Box::pin(std::future::pending()),
    ));
    let (client, _) = Router::new(
        vec!["node".into()],
        &[Placement::Remote(endpoint.clone())],
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
        endpoint,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_dropped_call_is_cancelled_at_the_callee() {
    let (_, key) = funcs();
    for (transport, net) in COMBINATIONS {
        let Pair {
            client,
            mut mailbox,
            _dir,
            ..
        } = pair(transport, net).await;
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
                .unwrap_or_else(|_| {
                    panic!("{transport:?} over {net:?}: the call never reached the node")
                })
                .unwrap()
        });
        assert_eq!(
            outcome.err(),
            Some(CallError::Timeout),
            "{transport:?} over {net:?}"
        );
        // The callee learns that nobody waits for this reply any more (a
        // node skips such calls if it has not started them).
        tokio::time::timeout(Duration::from_secs(5), request.reply.closed())
            .await
            .unwrap_or_else(|_| {
                panic!("{transport:?} over {net:?}: the cancel never reached the callee")
            });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn concurrent_replies_reach_their_own_callers() {
    let (_, key) = funcs();
    for (transport, net) in COMBINATIONS {
        let Pair {
            client,
            mut mailbox,
            _dir,
            ..
        } = pair(transport, net).await;
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
            "{transport:?} over {net:?}: no reply before the others"
        );
        let (a, b, c) = tokio::join!(first, call(), call());
        assert_eq!(
            a.err(),
            Some(CallError::RemoteTrap("first".into())),
            "{transport:?} over {net:?}"
        );
        assert!(b.is_ok() && c.is_ok(), "{transport:?} over {net:?}");
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
async fn exchange(endpoint: &Endpoint, bytes: Vec<u8>) -> Vec<u8> {
    use std::io::{Read, Write};
    fn talk(mut stream: impl Read + Write, bytes: &[u8]) -> Vec<u8> {
        // The server may close before taking everything: that is an answer.
        let _ = stream.write_all(bytes);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply
    }
    let endpoint = endpoint.clone();
    tokio::task::spawn_blocking(move || {
        let timeout = Some(Duration::from_secs(1));
        match endpoint {
            Endpoint::Unix(path) => {
                let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
                stream.set_read_timeout(timeout).unwrap();
                talk(stream, &bytes)
            }
            Endpoint::Tcp(addr) => {
                let stream = std::net::TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(timeout).unwrap();
                talk(stream, &bytes)
            }
        }
    })
    .await
    .unwrap()
}

/// One honest call through `client`, answered by the node.
async fn an_honest_call_is_served(client: &Router, mailbox: &mut Mailbox, what: &str) {
    let (_, key) = funcs();
    let (outcome, ()) = tokio::join!(
        client.call_with_deadline(0, key, Payload::Vals(vec![]), Some(Duration::from_secs(10))),
        async {
            let request = mailbox.recv().await.unwrap();
            let _ = request.reply.send(Ok(Payload::Vals(vec![])));
        }
    );
    assert!(outcome.is_ok(), "{what}: {:?}", outcome.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn hostile_frames_get_an_error_or_a_closed_connection_never_a_panic() {
    let _turn = WARNING_SITE.lock().await;
    for net in [Net::Unix, Net::Tcp] {
        let secret = Secret::generate().unwrap();
        let Pair {
            client,
            mut mailbox,
            endpoint,
            _dir,
        } = pair_with(TransportKind::Socket, net, secret.clone(), secret.clone()).await;
        // Each connection first presents the secret, as a member would.
        let hello = frame(4, 0, secret.bytes());
        let with_hello = |bytes: Vec<u8>| [hello.clone(), bytes].concat();

        // A call to a function key nobody has: an ERROR frame (kind 2) naming it.
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend_from_slice(&99u32.to_le_bytes());
        body.push(0);
        let reply = exchange(&endpoint, with_hello(frame(0, 7, &body))).await;
        assert_eq!(reply.get(4), Some(&2), "{net:?}: an ERROR frame: {reply:?}");
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
            let reply = exchange(&endpoint, with_hello(bytes.clone())).await;
            assert!(
                reply.is_empty() || reply[4] == 2,
                "{net:?}: {bytes:?}: no reply, or an error: {reply:?}"
            );
        }

        // The server still serves honest callers.
        an_honest_call_is_served(&client, &mut mailbox, &format!("{net:?}")).await;
    }
}

/// A client of the gRPC stream, presenting `secret`, and its stream of replies.
async fn open_grpc_stream(
    endpoint: &Endpoint,
    secret: &Secret,
) -> (
    tokio::sync::mpsc::UnboundedSender<proto::CallMessage>,
    Result<tonic::Streaming<proto::ReplyMessage>, tonic::Status>,
) {
    let mut client = proto::courier_client::CourierClient::with_interceptor(
        proto::channel(endpoint, &Security::plain()),
        proto::PresentSecret::new(secret),
    );
    let (calls, outgoing) = tokio::sync::mpsc::unbounded_channel();
    let replies = client
        .calls(tokio_stream::wrappers::UnboundedReceiverStream::new(
            outgoing,
        ))
        .await
        .map(tonic::Response::into_inner);
    (calls, replies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn hostile_grpc_messages_get_an_error_or_a_closed_stream_never_a_panic() {
    let _turn = WARNING_SITE.lock().await;
    for net in [Net::Unix, Net::Tcp] {
        let secret = Secret::generate().unwrap();
        let Pair {
            client,
            mut mailbox,
            endpoint,
            _dir,
        } = pair_with(TransportKind::Grpc, net, secret.clone(), secret.clone()).await;
        let (calls, replies) = open_grpc_stream(&endpoint, &secret).await;
        let mut replies = replies.expect("a member's stream opens");
        let call = |id: u64, func: u32, args: Vec<u8>| proto::CallMessage {
            id,
            kind: Some(proto::call_message::Kind::Call(proto::CallRequest {
                target: 0,
                func,
                args,
                typed: false,
            })),
        };
        // An unknown function key, arguments that do not decode, a target
        // nobody is, a message of no kind known: each an error for its id.
        let hostile = [
            (call(7, 99, vec![]), "no function has key 99"),
            (call(8, 0, vec![1, 2]), "cannot decode arguments"),
            (
                proto::CallMessage {
                    id: 9,
                    kind: Some(proto::call_message::Kind::Call(proto::CallRequest {
                        target: 5,
                        ..Default::default()
                    })),
                },
                "no node has id 5",
            ),
            (
                proto::CallMessage { id: 10, kind: None },
                "unknown message kind",
            ),
        ];
        for (message, expected) in hostile {
            let id = message.id;
            calls.send(message).unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(10), replies.message())
                .await
                .expect("an answer")
                .expect("the stream goes on")
                .expect("a reply");
            assert_eq!(reply.id, id, "{net:?}");
            match reply.reply.and_then(|r| r.outcome) {
                Some(proto::call_reply::Outcome::Error(e)) => {
                    assert!(e.message.contains(expected), "{net:?}: {}", e.message)
                }
                other => panic!("{net:?}: {expected}: {other:?}"),
            }
        }
        // A cancel of a call that does not exist changes nothing.
        calls
            .send(proto::CallMessage {
                id: 77,
                kind: Some(proto::call_message::Kind::Cancel(proto::Cancel {})),
            })
            .unwrap();
        drop(calls);

        // Garbage where HTTP/2 should open, a framed HELLO, HTTP/1: closed.
        for bytes in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            frame(4, 0, secret.bytes()),
            vec![0xff; 100],
        ] {
            let reply = exchange(&endpoint, bytes.clone()).await;
            // HTTP/2 may say why (a GOAWAY frame) before it closes.
            assert!(reply.len() < 200, "{net:?}: {bytes:?}: {reply:?}");
        }

        // The server still serves honest callers.
        an_honest_call_is_served(&client, &mut mailbox, &format!("{net:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_grpc_message_over_the_size_limit_ends_its_stream_not_the_server() {
    let secret = Secret::generate().unwrap();
    let Pair {
        client,
        mut mailbox,
        endpoint,
        _dir,
    } = pair_with(
        TransportKind::Grpc,
        Net::Tcp,
        secret.clone(),
        secret.clone(),
    )
    .await;
    let Endpoint::Tcp(addr) = endpoint else {
        unreachable!()
    };
    // A gRPC message whose length prefix says 4 GiB, sent on an honest
    // stream with raw HTTP/2.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/lp.v1.Courier/Calls"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("lp-secret", secret.to_hex())
        .body(())
        .unwrap();
    let (response, mut body) = h2.send_request(request, false).unwrap();
    body.send_data(
        bytes::Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        false,
    )
    .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer");
    // Refused: an error status in the trailers, or the stream reset.
    if let Ok(response) = response {
        let mut body = response.into_body();
        while let Some(Ok(_)) = body.data().await {}
        let status = body
            .trailers()
            .await
            .ok()
            .flatten()
            .and_then(|t| t.get("grpc-status").cloned());
        assert!(
            status.is_none_or(|s| s != "0"),
            "an oversized message was accepted"
        );
    }
    an_honest_call_is_served(&client, &mut mailbox, "after an oversized message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn only_members_of_the_launch_are_served() {
    let _turn = WARNING_SITE.lock().await;
    let (_, key) = funcs();
    for (transport, net) in COMBINATIONS {
        // A client with another launch's secret: refused, as a typed error.
        let secret = Secret::generate().unwrap();
        let Pair {
            client,
            mut mailbox,
            endpoint,
            _dir,
        } = pair_with(transport, net, secret.clone(), Secret::generate().unwrap()).await;
        let outcome = client
            .call_with_deadline(0, key, Payload::Vals(vec![]), Some(Duration::from_secs(5)))
            .await;
        assert!(
            matches!(&outcome, Err(CallError::Unreachable(_))),
            "{transport:?} over {net:?}: {:?}",
            outcome.err()
        );
        assert!(
            mailbox.try_recv().is_err(),
            "{transport:?} over {net:?}: the call reached the node"
        );

        match transport {
            TransportKind::Socket => {
                // Raw bytes with no secret, or a call before it: closed, unanswered.
                let mut call = 0u32.to_le_bytes().to_vec();
                call.extend_from_slice(&0u32.to_le_bytes());
                call.push(0);
                for bytes in [
                    frame(0, 1, &call),
                    frame(4, 0, &[0; 32]),
                    b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                ] {
                    assert_eq!(exchange(&endpoint, bytes).await, Vec::<u8>::new());
                }
            }
            TransportKind::Grpc => {
                // The stream itself is refused when it opens.
                let (_calls, replies) =
                    open_grpc_stream(&endpoint, &Secret::generate().unwrap()).await;
                assert_eq!(
                    replies.err().map(|status| status.code()),
                    Some(tonic::Code::Unauthenticated),
                    "{net:?}"
                );
            }
        }
        assert!(mailbox.try_recv().is_err(), "a raw call reached the node");
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
    let Pair { endpoint, _dir, .. } = pair_with(
        TransportKind::Socket,
        Net::Unix,
        secret.clone(),
        secret.clone(),
    )
    .await;
    let Endpoint::Unix(path) = endpoint.clone() else {
        unreachable!()
    };

    // A member that connects and goes away before it says anything (a
    // process ending under its connection) is no intruder.
    for _ in 0..3 {
        drop(std::os::unix::net::UnixStream::connect(&path).unwrap());
    }
    // An honest hello, then nothing.
    assert_eq!(exchange(&endpoint, frame(4, 0, secret.bytes())).await, b"");
    assert_eq!(log.refusals(), 0, "no bad secret was presented");

    // A wrong secret, and a call before any hello: each warned about once.
    let wrong = Secret::generate().unwrap();
    assert_eq!(exchange(&endpoint, frame(4, 0, wrong.bytes())).await, b"");
    assert_eq!(log.refusals_reaching(1).await, 1);
    assert_eq!(exchange(&endpoint, frame(0, 1, &[0; 9])).await, b"");
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

/// A server of `transport` over TCP with mutual TLS (a certificate of `ca`
/// for 127.0.0.1), and a client router that connects as `client` says.
async fn tls_pair(transport: TransportKind, ca: &LaunchCa, client: Security) -> Pair {
    tls_pair_via(transport, ca, client, |endpoint| async { endpoint }).await
}

/// The same, the client reaching the server at the endpoint `via` makes of
/// the server's (a relay, say).
async fn tls_pair_via<F: Future<Output = Endpoint>>(
    transport: TransportKind,
    ca: &LaunchCa,
    client: Security,
    via: impl FnOnce(Endpoint) -> F,
) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (funcs, _) = funcs();
    let secret = Secret::generate().unwrap();
    let server_tls = MutualTls::new(&ca.issue(Role::Worker(0), &["127.0.0.1".into()]).unwrap());
    let wire = Wire {
        transport,
        spin: Duration::from_micros(20),
        secret,
        security: Security::mutual_tls(server_tls.unwrap()),
    };
    let (server, mut mailboxes) = Router::new(
        vec!["node".into()],
        &[Placement::Local],
        wire.clone(),
        funcs.clone(),
        Arc::new(StopSignal::new()),
        None,
    );
    let listener = Endpoint::Tcp("127.0.0.1:0".parse().unwrap())
        .bind()
        .unwrap();
    let endpoint = listener.endpoint().unwrap();
    tokio::spawn(wire.transport().serve(
        listener,
        Arc::new(server),
        Box::pin(std::future::pending()),
    ));
    let reached = via(endpoint.clone()).await;
    let (client, _) = Router::new(
        vec!["node".into()],
        &[Placement::Remote(reached)],
        Wire {
            security: client,
            ..wire
        },
        funcs,
        Arc::new(StopSignal::new()),
        None,
    );
    Pair {
        client,
        mailbox: mailboxes.remove(0).unwrap(),
        endpoint,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn mutual_tls_serves_members_of_the_launch_only() {
    for transport in [TransportKind::Socket, TransportKind::Grpc] {
        members_only_over_tls(transport).await;
    }
}

async fn members_only_over_tls(transport: TransportKind) {
    let (_, key) = funcs();
    let ca = LaunchCa::generate().unwrap();
    let member = |ca: &LaunchCa| {
        let credentials = ca.issue(Role::Worker(1), &["127.0.0.1".into()]).unwrap();
        Security::mutual_tls(MutualTls::new(&credentials).unwrap())
    };
    // A member of the launch: served.
    let Pair {
        client,
        mut mailbox,
        endpoint,
        _dir,
    } = tls_pair(transport, &ca, member(&ca)).await;
    an_honest_call_is_served(&client, &mut mailbox, "a member over mutual TLS").await;

    // Another launch's certificate, and no TLS at all: the call fails
    // (typed), and nothing reaches the node.
    let other = LaunchCa::generate().unwrap();
    for (what, security) in [
        ("another launch's certificate", member(&other)),
        ("plain TCP", Security::plain()),
    ] {
        let Pair {
            client,
            mailbox: mut stranger_box,
            _dir,
            ..
        } = tls_pair(transport, &ca, security).await;
        let outcome = client
            .call_with_deadline(0, key, Payload::Vals(vec![]), Some(Duration::from_secs(5)))
            .await;
        assert!(
            matches!(outcome, Err(CallError::Unreachable(_))),
            "{transport:?}, {what}: {:?}",
            outcome.err()
        );
        assert!(
            stranger_box.try_recv().is_err(),
            "{transport:?}: {what} reached the node"
        );
    }

    // A client without a certificate (TLS, but trusting anything): the
    // handshake fails and the connection is closed.
    let Endpoint::Tcp(addr) = endpoint else {
        unreachable!()
    };
    let config = rustls::ClientConfig::builder_with_provider(lp_host::trust::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let refused = match connector.connect(name, tcp).await {
        Err(_) => true,
        Ok(mut tls) => {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let mut buf = [0u8; 64];
            // TLS 1.3 reports the missing certificate after the handshake.
            matches!(
                tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
                Ok(Ok(0) | Err(_))
            )
        }
    };
    assert!(
        refused,
        "{transport:?}: a client without a certificate was served"
    );
    assert!(mailbox.try_recv().is_err());
    an_honest_call_is_served(&client, &mut mailbox, "after the strangers").await;
}

/// A TCP relay to `to` on loopback; once `frozen` it forwards nothing
/// either way, its connections left open: a cut link between machines.
async fn relay(to: Endpoint, frozen: Arc<AtomicBool>) -> Endpoint {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Endpoint::Tcp(to) = to else {
        unreachable!("relays are for TCP")
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let (a, b) = (inbound.into_split(), outbound.into_split());
            for (mut from, mut into) in [(a.0, b.1), (b.0, a.1)] {
                let frozen = frozen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf).await {
                        if !frozen.load(Ordering::SeqCst)
                            && into.write_all(&buf[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }
    });
    Endpoint::Tcp(at)
}

/// Across machines a call in flight over a link that goes silent fails as
/// unreachable once the pings go unanswered, well before its deadline,
/// over either transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_a_link_that_goes_silent_fails_before_its_deadline() {
    let (_, key) = funcs();
    let ca = LaunchCa::generate().unwrap();
    for transport in [TransportKind::Socket, TransportKind::Grpc] {
        let frozen = Arc::new(AtomicBool::new(false));
        let credentials = ca.issue(Role::Worker(1), &["127.0.0.1".into()]).unwrap();
        let member = Security::mutual_tls(MutualTls::new(&credentials).unwrap());
        let Pair {
            client,
            mut mailbox,
            _dir,
            ..
        } = tls_pair_via(transport, &ca, member, |to| relay(to, frozen.clone())).await;
        an_honest_call_is_served(&client, &mut mailbox, "before the cut").await;
        let deadline = Duration::from_secs(60);
        let call = client.call_with_deadline(0, key, Payload::Vals(vec![]), Some(deadline));
        let (outcome, _request) = tokio::join!(call, async {
            // The call reached the node: now cut the link, and never answer.
            let request = mailbox.recv().await.unwrap();
            frozen.store(true, Ordering::SeqCst);
            request
        });
        assert!(
            matches!(outcome, Err(CallError::Unreachable(_))),
            "{transport:?}: {:?}",
            outcome.err()
        );
    }
}

/// Accepts any server certificate (a stranger that checks nothing).
#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        lp_host::trust::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[test]
fn the_function_table_digest_tells_tables_apart() {
    use wasmtime::component::types::Type;
    let table = |result: Option<Type>| {
        let mut table = FuncTable::default();
        table.intern(
            "svc",
            "get",
            Signature {
                args: vec![],
                result,
                typed: None,
            },
        );
        table.digest()
    };
    assert_eq!(table(Some(Type::U64)), table(Some(Type::U64)));
    assert_ne!(table(Some(Type::U64)), table(Some(Type::U32)));
    assert_ne!(table(Some(Type::U64)), table(None));
    assert_ne!(table(None), FuncTable::default().digest());
}
