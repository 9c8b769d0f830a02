//! Serves on its own port, or reaches a peer's, over TCP (wasi:sockets), as
//! its `mode` arg says: `serve` binds its port `http` and, until the program
//! stops, answers each line a client sends with "hello LINE from NAME",
//! `fetch` connects to its `server` arg (an address handle), sends its name
//! and logs the answer as `reply: ...`, `bind` tries to bind its own port
//! and addresses it was not given and logs what the sandbox said.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

lp_guest::generate!({
    world: "lp:node/node-with-run",
    path: ["../../../wit"],
});

#[derive(serde::Deserialize)]
struct Args {
    mode: String,
    #[serde(default)]
    server: Option<String>,
}

/// How often `fetch` tries a server that is not listening yet.
const ATTEMPTS: u32 = 500;

/// Serve until the program stops (polling, so that the stop is seen);
/// returns how many clients were answered.
async fn serve() -> std::io::Result<u32> {
    let address = lp_guest::own_address("http").ok_or(ErrorKind::NotFound)?;
    let listener = TcpListener::bind(&address)?;
    listener.set_nonblocking(true)?;
    lp_guest::info!("serving on port http");
    let mut answered = 0;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line)?;
                let me = lp_guest::name();
                writeln!(&stream, "hello {} from {me}", line.trim_end())?;
                answered += 1;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if lp_guest::sleep(Duration::from_millis(10)).await {
                    return Ok(answered);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn fetch(server: &str) -> std::io::Result<String> {
    let mut attempt = 0;
    let stream = loop {
        match TcpStream::connect(server) {
            Ok(stream) => break stream,
            // Not listening yet: the server's run may not have bound it.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && attempt < ATTEMPTS => {
                attempt += 1;
                lp_guest::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    };
    writeln!(&stream, "{}", lp_guest::name())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(reply.trim_end().to_string())
}

fn try_bind(what: &str, address: SocketAddr) {
    match TcpListener::bind(address) {
        Ok(_) => lp_guest::info!("bind {what}: ok"),
        Err(e) => lp_guest::info!("bind {what}: denied ({:?})", e.kind()),
    }
}

struct NetPeer;

impl exports::lp::node::lifecycle::Guest for NetPeer {
    async fn run() {
        let args: Args = lp_guest::args().expect("args");
        match args.mode.as_str() {
            "serve" => match serve().await {
                Ok(answered) => lp_guest::info!("answered {answered}"),
                Err(e) => lp_guest::info!("serve: {e}"),
            },
            "fetch" => {
                let server = args.server.expect("a server address");
                match fetch(&server).await {
                    Ok(reply) => lp_guest::info!("reply: {reply}"),
                    Err(e) => lp_guest::info!("reply: none ({:?})", e.kind()),
                }
            }
            "bind" => {
                let own: SocketAddr = lp_guest::own_address("http")
                    .expect("a port http")
                    .parse()
                    .expect("an IP:port");
                let port = lp_guest::own_port("http").expect("a port http");
                assert_eq!(own.port(), port, "LP_PORT_HTTP and LP_ADDRESS_HTTP agree");
                let next = SocketAddr::new(own.ip(), port.wrapping_add(1).max(1));
                try_bind("another port", next);
                try_bind("any port", SocketAddr::new(own.ip(), 0));
                try_bind("its port on every interface", ([0, 0, 0, 0], port).into());
                if let Some(server) = &args.server {
                    try_bind("the server's port", server.parse().expect("an IP:port"));
                }
                try_bind("its own port", own);
            }
            other => lp_guest::info!("unknown mode {other}"),
        }
    }
}

export!(NetPeer);
