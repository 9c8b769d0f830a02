//! Mutual TLS and the join handshake over real TCP on loopback: what is
//! accepted, and that everything else is refused without the server side
//! ever handing the connection on.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use lp_host::courier::Secret;
use lp_host::trust::{
    Admitted, CertPin, Credentials, JOIN_TIMEOUT, JoinDesk, JoinRefused, JoinToken, LaunchCa,
    MAX_JOIN_MESSAGE, MutualTls, PIN_MISMATCH, Role, join, names_role, peer_certificate,
    pinned_client_config, read_message, write_message,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const SHORT: Duration = Duration::from_millis(300);

fn launch() -> (Arc<LaunchCa>, Credentials) {
    let ca = Arc::new(LaunchCa::generate().unwrap());
    let launcher = ca.issue(Role::Launcher, &["127.0.0.1".into()]).unwrap();
    (ca, launcher)
}

/// A listener whose first connection is accepted with `server`'s mutual
/// TLS; the task yields the accepted stream's outcome (after echoing one
/// line back when it was accepted).
async fn mtls_server(server: MutualTls) -> (String, tokio::task::JoinHandle<Result<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = server.accept(tcp).await?;
        let peer = peer_certificate(tls.get_ref().1).expect("a verified client has a certificate");
        assert!(names_role(peer, Role::Agent(7)));
        assert!(!names_role(peer, Role::Launcher));
        let mut buf = [0; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.flush().await?;
        Ok(buf.to_vec())
    });
    (address, task)
}

#[tokio::test]
async fn mutual_tls_between_two_certificates_of_one_launch() {
    let (ca, launcher) = launch();
    let agent = ca.issue(Role::Agent(7), &["127.0.0.1".into()]).unwrap();
    let (address, server) = mtls_server(MutualTls::new(&launcher).unwrap()).await;

    let client = MutualTls::new(&agent).unwrap();
    let tcp = TcpStream::connect(&address).await.unwrap();
    let mut tls = client
        .connect(tcp, Role::Launcher.server_name())
        .await
        .unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut echo = [0; 5];
    tls.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"hello");
    assert_eq!(server.await.unwrap().unwrap(), b"hello");
}

#[tokio::test]
async fn a_server_is_verified_by_role_and_by_address() {
    let (ca, launcher) = launch();
    let agent = ca.issue(Role::Agent(7), &[]).unwrap();
    let client = MutualTls::new(&agent).unwrap();
    for (name, accepted) in [
        (Role::Launcher.server_name(), true),
        ("127.0.0.1".try_into().unwrap(), true),
        (Role::Agent(1).server_name(), false),
        ("10.9.9.9".try_into().unwrap(), false),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = MutualTls::new(&launcher).unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            server.accept(tcp).await.map(drop)
        });
        let tcp = TcpStream::connect(address).await.unwrap();
        let shown = format!("{name:?}");
        let connected = client.connect(tcp, name).await;
        assert_eq!(connected.is_ok(), accepted, "{shown}: {connected:?}");
        if !accepted {
            assert!(task.await.unwrap().is_err(), "{shown}");
        }
    }
}

#[tokio::test]
async fn a_client_certificate_of_another_launch_is_refused() {
    let (_, launcher) = launch();
    let (other_ca, _) = launch();
    let foreign = other_ca.issue(Role::Agent(7), &[]).unwrap();
    // It trusts our launch's CA, so only its own certificate can fail.
    let stranger = Credentials::from_der(
        Role::Agent(7),
        launcher.ca_cert().to_vec(),
        foreign.cert().to_vec(),
        foreign.key_der().to_vec(),
    );
    let (address, server) = mtls_server(
        MutualTls::new(&launcher)
            .unwrap()
            .with_handshake_timeout(SHORT),
    )
    .await;
    let client = MutualTls::new(&stranger).unwrap();
    let tcp = TcpStream::connect(&address).await.unwrap();
    // Under TLS 1.3 the client may finish its side before the server has
    // judged its certificate; the refusal then arrives on the first read.
    if let Ok(mut tls) = client.connect(tcp, Role::Launcher.server_name()).await {
        let _ = tls.write_all(b"hello").await;
        let mut buf = [0; 5];
        assert!(!matches!(tls.read(&mut buf).await, Ok(n) if n > 0));
    }
    let error = format!("{:#}", server.await.unwrap().unwrap_err());
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let (_, launcher) = launch();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = MutualTls::new(&launcher).unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await.map(drop)
    });
    // A client that trusts the launcher (by pin) but presents nothing.
    let config = pinned_client_config(CertPin::of(launcher.cert())).unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    if let Ok(mut tls) = connector.connect(Role::Launcher.server_name(), tcp).await {
        let _ = tls.write_all(b"hello").await;
        let mut buf = [0; 5];
        assert!(!matches!(tls.read(&mut buf).await, Ok(n) if n > 0));
    }
    let error = format!("{:#}", task.await.unwrap().unwrap_err());
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

/// An mTLS server's outcome for a peer that sends `bytes` and then waits.
async fn server_after_raw(bytes: &'static [u8]) -> String {
    let (_, launcher) = launch();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = MutualTls::new(&launcher)
        .unwrap()
        .with_handshake_timeout(SHORT);
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await.map(drop)
    });
    let mut tcp = TcpStream::connect(address).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let outcome = task.await.unwrap();
    // Whatever happened, the server closed the connection.
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    format!("{:#}", outcome.unwrap_err())
}

#[tokio::test]
async fn plain_tcp_garbage_and_silence_are_refused() {
    let plain = server_after_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.contains("TLS handshake"), "{plain}");
    let garbage = server_after_raw(&[0xff; 64]).await;
    assert!(garbage.contains("TLS handshake"), "{garbage}");
    let silence = server_after_raw(b"").await;
    assert!(silence.contains("timed out"), "{silence}");
    // A handshake that starts and then stalls is bounded too.
    let stalled = server_after_raw(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    assert!(stalled.contains("timed out"), "{stalled}");
}

/// A join desk listening on loopback, serving `joins` joins; its token
/// and a task that yields each join's outcome.
async fn serve_joins(
    desk: JoinDesk,
    joins: usize,
) -> (JoinToken, tokio::task::JoinHandle<Vec<Result<Admitted>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let token = desk.token(vec![address]).unwrap();
    let task = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for _ in 0..joins {
            let (tcp, _) = listener.accept().await.unwrap();
            outcomes.push(desk.admit(tcp).await);
        }
        outcomes
    });
    (token, task)
}

#[tokio::test]
async fn an_agent_joins_and_then_speaks_mutual_tls() {
    let (ca, launcher) = launch();
    let desk = JoinDesk::new(ca, &launcher, Secret::generate().unwrap()).unwrap();
    let (token, admitted) = serve_joins(desk, 2).await;
    // The token travels as text (a file, an environment variable).
    let token = JoinToken::parse(&token.encode()).unwrap();

    let first = join(&token, &["agent-a.example".into()], JOIN_TIMEOUT)
        .await
        .unwrap();
    let second = join(&token, &[], JOIN_TIMEOUT).await.unwrap();
    assert_ne!(first.agent, second.agent);
    assert_eq!(first.credentials.role(), Role::Agent(first.agent));
    assert_eq!(first.credentials.ca_cert(), launcher.ca_cert());
    let outcomes = admitted.await.unwrap();
    let admitted: Vec<&Admitted> = outcomes.iter().map(|o| o.as_ref().unwrap()).collect();
    assert_eq!(admitted[0].agent, first.agent);
    assert_eq!(admitted[0].addresses, vec!["agent-a.example", "127.0.0.1"]);

    // The agent's new certificate names its role and its addresses, and
    // the launcher accepts it for mutual TLS.
    let cert = first.credentials.cert();
    assert!(names_role(cert, Role::Agent(first.agent)));
    assert!(!names_role(cert, Role::Agent(second.agent)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = MutualTls::new(&launcher).unwrap();
    let agent_id = first.agent;
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = server.accept(tcp).await.unwrap();
        let peer = peer_certificate(tls.get_ref().1).unwrap().clone();
        let mut buf = [0; 2];
        tls.read_exact(&mut buf).await.unwrap();
        names_role(&peer, Role::Agent(agent_id))
    });
    let client = MutualTls::new(&first.credentials).unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let mut tls = client
        .connect(tcp, Role::Launcher.server_name())
        .await
        .unwrap();
    tls.write_all(b"hi").await.unwrap();
    assert!(task.await.unwrap(), "the launcher sees the agent's role");
}

#[tokio::test]
async fn a_join_with_a_wrong_secret_is_refused() {
    let (ca, launcher) = launch();
    let desk = JoinDesk::new(ca, &launcher, Secret::generate().unwrap()).unwrap();
    let (token, admitted) = serve_joins(desk, 1).await;
    let wrong = JoinToken::new(
        token.addresses().to_vec(),
        token.pin(),
        Secret::generate().unwrap(),
    )
    .unwrap();
    let error = join(&wrong, &[], JOIN_TIMEOUT).await.unwrap_err();
    assert!(error.is::<JoinRefused>(), "{error:#}");
    assert!(
        format!("{error:#}").contains("wrong join secret"),
        "{error:#}"
    );
    let outcome = admitted.await.unwrap().pop().unwrap();
    let refusal = format!("{:#}", outcome.unwrap_err());
    assert!(refusal.contains("wrong join secret"), "{refusal}");
}

#[tokio::test]
async fn a_launcher_that_does_not_match_the_pin_is_refused_and_never_sees_the_secret() {
    let (ca, launcher) = launch();
    let real = JoinDesk::new(ca, &launcher, Secret::generate().unwrap()).unwrap();
    let real_token = real.token(vec!["127.0.0.1:1".into()]).unwrap();
    // Another launcher (a man in the middle) answers at the token's address.
    let (mitm_ca, mitm_launcher) = launch();
    let mitm = JoinDesk::new(mitm_ca, &mitm_launcher, Secret::generate().unwrap()).unwrap();
    let (mitm_token, mitm_outcomes) = serve_joins(mitm, 1).await;
    let token = JoinToken::new(
        mitm_token.addresses().to_vec(),
        real_token.pin(),
        real_token.secret().clone(),
    )
    .unwrap();
    let error = format!("{:#}", join(&token, &[], JOIN_TIMEOUT).await.unwrap_err());
    assert!(error.contains(PIN_MISMATCH), "{error}");
    // The impostor's handshake failed: it never read a join request.
    let outcome = format!(
        "{:#}",
        mitm_outcomes.await.unwrap().pop().unwrap().unwrap_err()
    );
    assert!(outcome.contains("TLS handshake"), "{outcome}");
    assert!(!outcome.contains("join request"), "{outcome}");
}

#[tokio::test]
async fn a_join_desk_drops_garbage_silence_and_oversized_requests() {
    let (ca, launcher) = launch();
    let desk = JoinDesk::new(ca, &launcher, Secret::generate().unwrap())
        .unwrap()
        .with_timeout(SHORT);
    let (token, outcomes) = serve_joins(desk, 4).await;
    let address = token.addresses()[0].clone();

    let mut garbage = TcpStream::connect(&address).await.unwrap();
    garbage.write_all(&[0x42; 100]).await.unwrap();
    let _ = garbage.read_to_end(&mut Vec::new()).await;

    let mut silent = TcpStream::connect(&address).await.unwrap();
    let _ = silent.read_to_end(&mut Vec::new()).await;

    // TLS done right, then a frame claiming 4 GiB, then one of JSON garbage.
    let connector = tokio_rustls::TlsConnector::from(pinned_client_config(token.pin()).unwrap());
    for frame in [
        u32::MAX.to_be_bytes().to_vec(),
        [&[0, 0, 0, 3][..], b"{{{"].concat(),
    ] {
        let tcp = TcpStream::connect(&address).await.unwrap();
        let mut tls = connector
            .connect(Role::Launcher.server_name(), tcp)
            .await
            .unwrap();
        tls.write_all(&frame).await.unwrap();
        tls.flush().await.unwrap();
        let _ = tls.read_to_end(&mut Vec::new()).await;
    }
    let errors: Vec<String> = outcomes
        .await
        .unwrap()
        .into_iter()
        .map(|o| format!("{:#}", o.unwrap_err()))
        .collect();
    assert!(errors[0].contains("TLS handshake"), "{}", errors[0]);
    assert!(errors[1].contains("not done after"), "{}", errors[1]);
    assert!(errors[2].contains("over the limit"), "{}", errors[2]);
    assert!(errors[3].contains("not what was expected"), "{}", errors[3]);
}

#[tokio::test]
async fn a_join_message_over_the_limit_is_not_read() {
    let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
    write_message(&mut ours, &"x".repeat(MAX_JOIN_MESSAGE))
        .await
        .unwrap();
    let read: Result<String> = read_message(&mut theirs, MAX_JOIN_MESSAGE).await;
    assert!(format!("{:#}", read.unwrap_err()).contains("over the limit"));
    let (mut ours, mut theirs) = tokio::io::duplex(1024);
    write_message(&mut ours, &"fits").await.unwrap();
    let read: String = read_message(&mut theirs, MAX_JOIN_MESSAGE).await.unwrap();
    assert_eq!(read, "fits");
}

fn token() -> JoinToken {
    JoinToken::new(
        vec![
            "10.1.2.3:7000".into(),
            "[::1]:7000".into(),
            "launcher.example:9".into(),
        ],
        CertPin::from_bytes([7; 32]),
        Secret::generate().unwrap(),
    )
    .unwrap()
}

#[test]
fn a_token_roundtrips_as_printable_text() {
    let token = token();
    let text = token.encode();
    assert!(text.starts_with("lp1."), "{text}");
    assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text}");
    assert_eq!(JoinToken::parse(&format!("  {text}\n")).unwrap(), token);
    assert!(!format!("{token:?}").contains(&token.secret().to_hex()));
}

#[test]
fn malformed_tokens_are_refused_with_what_is_wrong() {
    let good = token().encode();
    let body = good.strip_prefix("lp1.").unwrap();
    let short = format!("lp1.{}", &body[..40]);
    let cases = [
        ("", "does not start with `lp1.`"),
        ("hello world", "does not start with `lp1.`"),
        (&format!("lp2.{body}")[..], "version `lp2` is not supported"),
        ("lp1.not*base64!", "not base64url"),
        (&short[..], "too short"),
    ];
    for (text, expected) in cases {
        let error = format!("{:#}", JoinToken::parse(text).unwrap_err());
        assert!(error.contains(expected), "{text:?}: {error}");
    }
    for address in ["no-port", "host:0", "host:99999", "[nope]:1", "a b:1", ":1"] {
        let error = JoinToken::new(
            vec![address.into()],
            CertPin::from_bytes([0; 32]),
            Secret::generate().unwrap(),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains(address),
            "{address}: {error:#}"
        );
    }
    assert!(
        JoinToken::new(
            vec![],
            CertPin::from_bytes([0; 32]),
            Secret::generate().unwrap()
        )
        .is_err()
    );
}

#[test]
fn a_token_file_is_read_only_when_only_its_owner_can_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("join.token");
    let token = token();
    token.write_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(JoinToken::read_file(&path).unwrap(), token);
    assert!(
        token.write_file(&path).is_err(),
        "an existing file is not overwritten"
    );

    for open in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
        let error = format!("{:#}", JoinToken::read_file(&path).unwrap_err());
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("chmod 600"), "{error}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let link = dir.path().join("link.token");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let error = format!("{:#}", JoinToken::read_file(&link).unwrap_err());
    assert!(error.contains("symbolic link"), "{error}");
    let error = format!("{:#}", JoinToken::read_file(dir.path()).unwrap_err());
    assert!(error.contains("directory"), "{error}");

    let garbage = dir.path().join("garbage.token");
    std::fs::write(&garbage, "lp1.####").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = format!("{:#}", JoinToken::read_file(&garbage).unwrap_err());
    assert!(
        error.contains("garbage.token") && error.contains("not base64url"),
        "{error}"
    );
}
