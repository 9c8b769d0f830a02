//! The framed transport: length-prefixed frames on a socket (Unix or TCP,
//! they differ only in how the connection is made), tuned for latency;
//! between machines the frames travel inside mutual TLS ([`Security`]),
//! and the caller pings so that a peer that is gone (a dead machine, a cut
//! link) is noticed. Each connection has one writer task
//! (frames from every caller are queued to it, and written back to back) and
//! one reader task; readers spin on the socket for a short while after each
//! frame before parking in epoll, because on this kind of machine waking a
//! parked thread costs far more than the call itself (`spin_socket`).
//! Values travel in the same encodings as over gRPC (`codec`, or the
//! typed-shape encoding).
//!
//! Frame: `len: u32` (of what follows), `kind: u8`, `id: u64`, then by kind:
//! - CALL: `target: u32`, `func: u32`, `typed: u8`, the arguments;
//! - RESULTS: the results; ERROR: `kind: u8`, a UTF-8 message;
//! - CANCEL: nothing (the caller dropped the call);
//! - HELLO: the launch's secret (the first frame of every connection; a
//!   connection that opens with anything else, or with nothing for
//!   [`HELLO_WITHIN`], is closed unanswered);
//! - PING (caller → callee) and PONG (the answer): only across machines,
//!   every [`KEEPALIVE`]; a connection either end has heard nothing on for
//!   twice that is lost (its calls fail as `unreachable`).
//!
//! Dropping a call's future sends CANCEL: the callee drops the call if its
//! node has not started it yet, and otherwise discards the reply.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};

use super::endpoint::{Connection as Connected, Endpoint, Listener};
use super::link::{Link, Security};
use super::spin_socket::SpinSocket;
use super::transport::{self, Transport};
use super::{CallError, FuncKey, Payload, Reply, Router, Secret};
use crate::lock;
use crate::proto::KEEPALIVE;

/// The largest frame accepted (calls of at least 64 MiB are promised).
pub const MAX_FRAME: usize = 1 << 30;

const CALL: u8 = 0;
const RESULTS: u8 = 1;
const ERROR: u8 = 2;
const CANCEL: u8 = 3;
const HELLO: u8 = 4;
const PING: u8 = 5;
const PONG: u8 = 6;

/// How long an accepted connection has to finish its TLS handshake (across
/// machines) and present the launch's secret.
pub const HELLO_WITHIN: Duration = Duration::from_secs(10);

/// Bytes before a frame's body: length, kind, id.
const HEADER: usize = 4 + 1 + 8;

/// A frame being built: the header is filled in by [`FrameBuf::finish`].
struct FrameBuf(Vec<u8>);

impl FrameBuf {
    fn new(kind: u8, id: u64) -> FrameBuf {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&[0; 4]);
        bytes.push(kind);
        bytes.extend_from_slice(&id.to_le_bytes());
        FrameBuf(bytes)
    }

    fn finish(self) -> io::Result<OutFrame> {
        self.finish_with(None)
    }

    /// The frame, with `tail` (a large payload's bytes, not copied) sent
    /// right after what was built.
    fn finish_with(mut self, tail: Option<Vec<u8>>) -> io::Result<OutFrame> {
        let len = self.0.len() - 4 + tail.as_ref().map_or(0, Vec::len);
        if len > MAX_FRAME {
            return Err(io::Error::other(format!(
                "a message of {len} bytes is over the limit of {MAX_FRAME}"
            )));
        }
        self.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(OutFrame { head: self.0, tail })
    }
}

/// A frame to write: its first bytes, and maybe a payload sent as is.
struct OutFrame {
    head: Vec<u8>,
    tail: Option<Vec<u8>>,
}

/// One frame as read: its kind, call id and body.
struct Frame {
    kind: u8,
    id: u64,
    body: Vec<u8>,
}

/// A connected socket, shared by its reader and writer tasks.
type Socket = Arc<SpinSocket>;

/// The reading direction of a connection: the socket itself between the
/// processes of one machine, the TLS stream's between machines.
enum ReadSide {
    Plain(Socket),
    Tls(ReadHalf<Link>),
}

/// The writing direction of a connection (see [`ReadSide`]).
enum WriteSide {
    Plain(Socket),
    Tls(WriteHalf<Link>),
}

/// Both directions of a new connection, secured as `security` says: a
/// client (`dialed` names the endpoint) or the accepting end.
async fn open(
    connected: Connected,
    dialed: Option<&Endpoint>,
    security: &Security,
    spin: Duration,
) -> io::Result<(ReadSide, WriteSide)> {
    if !security.is_tls() {
        let socket = SpinSocket::new(connected, spin)?;
        return Ok((ReadSide::Plain(socket.clone()), WriteSide::Plain(socket)));
    }
    let link = match dialed {
        Some(endpoint) => security.client(connected, endpoint, spin).await?,
        None => security.server(connected, spin).await?,
    };
    let (read, write) = tokio::io::split(link);
    Ok((ReadSide::Tls(read), WriteSide::Tls(write)))
}

impl ReadSide {
    /// What is there, into `buf` (0 at the end of the stream).
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadSide::Plain(socket) => socket.read(buf).await,
            ReadSide::Tls(stream) => stream.read(buf).await,
        }
    }

    /// Like [`Self::read`], into `buf`'s spare room, `buf` never longer
    /// than `limit` (its capacity at least that).
    async fn read_spare(&mut self, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
        match self {
            ReadSide::Plain(socket) => socket.read_spare(buf, limit).await,
            ReadSide::Tls(stream) => {
                let want = (limit - buf.len()) as u64;
                stream.take(want).read_buf(buf).await
            }
        }
    }
}

impl WriteSide {
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            WriteSide::Plain(socket) => socket.write_all(data).await,
            WriteSide::Tls(stream) => stream.write_all(data).await,
        }
    }

    /// Send what is buffered (TLS keeps a record until flushed).
    async fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteSide::Plain(_) => Ok(()),
            WriteSide::Tls(stream) => stream.flush().await,
        }
    }

    /// Close the writing direction.
    async fn close(&mut self) {
        match self {
            WriteSide::Plain(socket) => socket.shutdown(std::net::Shutdown::Write),
            WriteSide::Tls(stream) => {
                let _ = stream.shutdown().await;
            }
        }
    }
}

/// When a connection across machines last heard from its peer; it is
/// lost once that is more than twice [`KEEPALIVE`] ago.
struct Heard {
    since: Instant,
    /// Milliseconds after `since`.
    last: AtomicU64,
    lost: Notify,
}

impl Heard {
    fn new() -> Arc<Heard> {
        Arc::new(Heard {
            since: Instant::now(),
            last: AtomicU64::new(0),
            lost: Notify::new(),
        })
    }

    fn now(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn silent_too_long(&self) -> bool {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last) > 2 * KEEPALIVE
    }

    /// Every [`KEEPALIVE`] while `alive` says so: `tick`, and when nothing
    /// was heard for too long, say the connection is lost and end.
    async fn watch(self: Arc<Self>, mut tick: impl FnMut() -> bool) {
        let mut ticks = tokio::time::interval(KEEPALIVE);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if !tick() {
                return;
            }
            if self.silent_too_long() {
                self.lost.notify_one();
                return;
            }
        }
    }
}

/// Reads frames, spinning for `spin` after each before parking.
struct FrameReader {
    side: ReadSide,
    /// Across machines: noted at every read.
    heard: Option<Arc<Heard>>,
    buf: Box<[u8]>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl FrameReader {
    fn new(side: ReadSide, heard: Option<Arc<Heard>>) -> FrameReader {
        FrameReader {
            side,
            heard,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The next frame, or `None` when the peer closed the connection.
    async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            let unread = &self.buf[self.start..self.end];
            if unread.len() >= HEADER {
                let len = u32::from_le_bytes(unread[..4].try_into().unwrap()) as usize;
                if !(HEADER - 4..=MAX_FRAME).contains(&len) {
                    return Err(io::Error::other(format!("bad frame length {len}")));
                }
                let kind = unread[4];
                let id = u64::from_le_bytes(unread[5..HEADER].try_into().unwrap());
                let body_len = len - (HEADER - 4);
                let have = unread.len() - HEADER;
                if have >= body_len {
                    let body = unread[HEADER..HEADER + body_len].to_vec();
                    self.start += HEADER + body_len;
                    return Ok(Some(Frame { kind, id, body }));
                }
                if HEADER + body_len > self.buf.len() {
                    // A large body: read it straight into its own buffer
                    // (not zeroed first: the socket fills it).
                    let mut body = Vec::with_capacity(body_len);
                    body.extend_from_slice(&unread[HEADER..]);
                    (self.start, self.end) = (0, 0);
                    while body.len() < body_len {
                        if self.side.read_spare(&mut body, body_len).await? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        self.heard_now();
                    }
                    return Ok(Some(Frame { kind, id, body }));
                }
            }
            // Keep the unread bytes at the front, then read more.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.side.read(&mut self.buf[self.end..]).await? {
                0 if self.end == 0 => return Ok(None),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => self.end += n,
            }
            self.heard_now();
        }
    }

    fn heard_now(&self) {
        if let Some(heard) = &self.heard {
            heard.now();
        }
    }
}

/// Write every frame queued on `frames` (flushed whenever the queue is
/// empty), then close the connection for writing.
async fn write_frames(mut side: WriteSide, mut frames: mpsc::UnboundedReceiver<OutFrame>) {
    while let Some(frame) = frames.recv().await {
        let written = async {
            side.write_all(&frame.head).await?;
            if let Some(tail) = &frame.tail {
                side.write_all(tail).await?;
            }
            if frames.is_empty() {
                side.flush().await?;
            }
            io::Result::Ok(())
        };
        if written.await.is_err() {
            break;
        }
    }
    side.close().await;
}

fn error_frame(id: u64, error: &CallError) -> FrameBuf {
    let mut frame = FrameBuf::new(ERROR, id);
    let (kind, message) = error.to_wire();
    frame.0.push(kind);
    frame.0.extend_from_slice(message.as_bytes());
    frame
}

fn parse_error(body: &[u8]) -> CallError {
    let message = String::from_utf8_lossy(body.get(1..).unwrap_or_default()).into_owned();
    // An ERROR frame with no kind byte at all is `unreachable` too.
    CallError::from_wire(body.first().map_or(0, |&k| k.into()), message)
}

/// What a caller waits for: the reply frame (RESULTS or ERROR), or the
/// connection's end.
type Pending = Mutex<HashMap<u64, oneshot::Sender<Frame>>>;

/// The caller's end of one connection.
struct Connection {
    frames: mpsc::UnboundedSender<OutFrame>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

impl Connection {
    /// Open a connection dialed to `endpoint`: secure it, present the
    /// launch's secret, start its writer and reader (and, across machines,
    /// its pings).
    async fn start(
        connected: Connected,
        endpoint: &Endpoint,
        remote: &Remote,
    ) -> io::Result<Connection> {
        let (read, write) = open(connected, Some(endpoint), &remote.security, remote.spin).await?;
        let (frames, queued) = mpsc::unbounded_channel();
        let mut hello = FrameBuf::new(HELLO, 0);
        hello.0.extend_from_slice(remote.secret.bytes());
        let _ = frames.send(hello.finish()?);
        let pending: Arc<Pending> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_frames(write, queued));
        let heard = remote.security.is_tls().then(Heard::new);
        if let Some(heard) = &heard {
            // Pings go while the connection is open and in use.
            let (pings, closed) = (frames.downgrade(), closed.clone());
            tokio::spawn(heard.clone().watch(move || {
                let Some(frames) = pings.upgrade().filter(|_| !closed.load(Ordering::Acquire))
                else {
                    return false;
                };
                FrameBuf::new(PING, 0)
                    .finish()
                    .is_ok_and(|ping| frames.send(ping).is_ok())
            }));
        }
        let mut reader = FrameReader::new(read, heard.clone());
        let (reader_pending, reader_closed) = (pending.clone(), closed.clone());
        tokio::spawn(async move {
            let frames = async {
                while let Ok(Some(frame)) = reader.next().await {
                    if frame.kind == PONG {
                        continue;
                    }
                    if let Some(waiter) = lock(&reader_pending).remove(&frame.id) {
                        let _ = waiter.send(frame);
                    }
                }
            };
            match &heard {
                Some(heard) => tokio::select! {
                    () = frames => {}
                    () = heard.lost.notified() => {
                        tracing::warn!("lost the connection to a process on another machine: nothing heard for {:?}", 2 * KEEPALIVE);
                    }
                },
                None => frames.await,
            }
            // Waiters see their sender dropped: the connection is gone.
            reader_closed.store(true, Ordering::Release);
            lock(&reader_pending).clear();
        });
        Ok(Connection {
            frames,
            pending,
            next_id: AtomicU64::new(0),
            closed,
        })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.frames.is_closed()
    }
}

/// Sends CANCEL for a call whose caller stopped waiting.
struct CancelOnDrop<'a> {
    connection: &'a Connection,
    id: u64,
    done: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.done
            && lock(&self.connection.pending).remove(&self.id).is_some()
            && let Ok(frame) = FrameBuf::new(CANCEL, self.id).finish()
        {
            let _ = self.connection.frames.send(frame);
        }
    }
}

/// The nodes of another process, reached over its socket.
struct Remote {
    endpoint: Endpoint,
    spin: Duration,
    secret: Secret,
    security: Security,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Remote {
    /// The open connection, else a new one once the process listens
    /// (wait-for-ready); the caller's deadline bounds the wait.
    async fn connection(&self, router: &Router) -> Result<Arc<Connection>, CallError> {
        let mut current = self.connection.lock().await;
        if let Some(connection) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let connected = self.endpoint.dial_when_ready(router.stop_signal()).await?;
        let connection = Connection::start(connected, &self.endpoint, self)
            .await
            .map(Arc::new)
            .map_err(|e| CallError::Unreachable(format!("transport: {e}")))?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Send one call (see [`transport::Remote::call`]).
    async fn send(&self, router: &Router, target: u32, func: FuncKey, args: Payload) -> Reply {
        let signature = router.signature(func);
        let connection = self.connection(router).await?;
        let id = connection.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = FrameBuf::new(CALL, id);
        frame.0.extend_from_slice(&target.to_le_bytes());
        frame.0.extend_from_slice(&func.0.to_le_bytes());
        frame.0.push(0);
        // A byte-list argument is sent from its own buffer, not copied.
        let (typed, bytes) = signature
            .encode_args_split(args, &mut frame.0)
            .map_err(|e| transport::cannot_encode("arguments", e))?;
        frame.0[HEADER + 8] = typed as u8;
        let frame = frame
            .finish_with(bytes)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;

        let (waiter, reply) = oneshot::channel();
        lock(&connection.pending).insert(id, waiter);
        if connection.is_closed() {
            lock(&connection.pending).remove(&id);
            return Err(CallError::connection_lost(router.stop_signal()));
        }
        let mut cancel = CancelOnDrop {
            connection: &connection,
            id,
            done: false,
        };
        if connection.frames.send(frame).is_err() {
            return Err(CallError::connection_lost(router.stop_signal()));
        }
        let reply = reply.await;
        cancel.done = true;
        match reply {
            Ok(Frame {
                kind: RESULTS,
                body,
                ..
            }) => transport::decode_results(signature, &body, typed),
            Ok(Frame {
                kind: ERROR, body, ..
            }) => Err(parse_error(&body)),
            Ok(_) => Err(CallError::Unreachable("unexpected reply".into())),
            Err(_) => Err(CallError::connection_lost(router.stop_signal())),
        }
    }
}

impl transport::Remote for Remote {
    fn call<'a>(
        &'a self,
        router: &'a Router,
        target: u32,
        func: FuncKey,
        args: Payload,
    ) -> BoxFuture<'a, Reply> {
        Box::pin(self.send(router, target, func, args))
    }
}

/// The framed transport: readers spin for `spin` before they park; every
/// connection opens with the launch's secret, and is secured as
/// `security` says.
pub struct Framed {
    spin: Duration,
    secret: Secret,
    security: Security,
}

impl Framed {
    pub fn new(spin: Duration, secret: Secret, security: Security) -> Framed {
        Framed {
            spin,
            secret,
            security,
        }
    }
}

impl Transport for Framed {
    fn connect(&self, endpoint: &Endpoint) -> Arc<dyn transport::Remote> {
        Arc::new(Remote {
            endpoint: endpoint.clone(),
            spin: self.spin,
            secret: self.secret.clone(),
            security: self.security.clone(),
            connection: tokio::sync::Mutex::new(None),
        })
    }

    fn serve(
        &self,
        listener: Listener,
        router: Arc<Router>,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, Result<()>> {
        let serving = Serving {
            router,
            spin: self.spin,
            secret: self.secret.clone(),
            security: self.security.clone(),
        };
        Box::pin(serve(listener, Arc::new(serving), shutdown))
    }
}

/// What every accepted connection is served with.
struct Serving {
    router: Arc<Router>,
    spin: Duration,
    secret: Secret,
    security: Security,
}

/// Serve calls into `router`'s local nodes until `shutdown` resolves.
async fn serve(
    listener: Listener,
    serving: Arc<Serving>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let connected = accepted.context("cannot accept a connection")?;
                tokio::spawn(serve_connection(connected, serving.clone()));
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// Admit an accepted connection: its handshake (across machines) and its
/// HELLO with the launch's secret, within [`HELLO_WITHIN`].
async fn admit(connected: Connected, serving: &Serving) -> Option<(FrameReader, WriteSide)> {
    let heard = serving.security.is_tls().then(Heard::new);
    let admitted = tokio::time::timeout(HELLO_WITHIN, async {
        let (read, write) = match open(connected, None, &serving.security, serving.spin).await {
            Ok(sides) => sides,
            Err(e) => {
                tracing::debug!("refused a courier connection: {e}");
                return None;
            }
        };
        let mut reader = FrameReader::new(read, heard);
        match reader.next().await {
            Ok(Some(Frame {
                kind: HELLO, body, ..
            })) if serving.secret.matches(&body) => Some((reader, write)),
            // Closed before sending anything: a member whose process ended (or
            // whose connection was dropped) before its HELLO went out. (A HELLO
            // is one small write, so a member never leaves half of one.)
            Ok(None) => None,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            _ => {
                tracing::warn!(
                    "refused a courier connection that did not present the launch's secret"
                );
                None
            }
        }
    });
    admitted.await.unwrap_or_else(|_| {
        tracing::debug!("dropped a courier connection silent for {HELLO_WITHIN:?}");
        None
    })
}

/// Serve the calls arriving on one connection, each as a task of its own
/// (a CANCEL aborts it).
async fn serve_connection(connected: Connected, serving: Arc<Serving>) {
    let Some((mut reader, write)) = admit(connected, &serving).await else {
        return;
    };
    let (frames, queued) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(write, queued));
    let calls: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>> = Arc::default();
    let heard = reader.heard.clone();
    if let Some(heard) = &heard {
        // The caller pings every KEEPALIVE: silence means it is gone.
        let frames = frames.downgrade();
        tokio::spawn(heard.clone().watch(move || frames.upgrade().is_some()));
    }
    let serve_frames = async {
        while let Ok(Some(Frame { kind, id, body })) = reader.next().await {
            match kind {
                CALL => {
                    let (router, frames, finished) =
                        (serving.router.clone(), frames.clone(), calls.clone());
                    // Registered before the task can run, so it can always
                    // remove itself.
                    let mut running = lock(&calls);
                    let task = tokio::spawn(async move {
                        let reply = serve_call(&router, id, &body).await;
                        lock(&finished).remove(&id);
                        let _ = frames.send(reply);
                    });
                    running.insert(id, task.abort_handle());
                }
                CANCEL => {
                    if let Some(call) = lock(&calls).remove(&id) {
                        call.abort();
                    }
                }
                PING => {
                    let answered = FrameBuf::new(PONG, 0)
                        .finish()
                        .is_ok_and(|pong| frames.send(pong).is_ok());
                    if !answered {
                        break;
                    }
                }
                _ => break,
            }
        }
    };
    match &heard {
        Some(heard) => tokio::select! {
            () = serve_frames => {}
            () = heard.lost.notified() => {}
        },
        None => serve_frames.await,
    }
    // The caller is gone: so are the calls it was waiting for.
    for (_, call) in lock(&calls).drain() {
        call.abort();
    }
}

/// Run one call; its reply frame.
async fn serve_call(router: &Router, id: u64, body: &[u8]) -> OutFrame {
    let outcome = async {
        let (header, args) = body
            .split_at_checked(9)
            .ok_or_else(|| CallError::Unreachable("truncated call".into()))?;
        let target = u32::from_le_bytes(header[..4].try_into().unwrap());
        let func = FuncKey(u32::from_le_bytes(header[4..8].try_into().unwrap()));
        let typed = header[8] != 0;
        let (signature, results) = transport::serve_call(router, target, func, args, typed).await?;
        let mut frame = FrameBuf::new(RESULTS, id);
        let bytes = signature
            .encode_results_split(results, &mut frame.0)
            .map_err(|e| transport::cannot_encode("results", e))?;
        frame
            .finish_with(bytes)
            .map_err(|e| CallError::Unreachable(e.to_string()))
    }
    .await;
    outcome.unwrap_or_else(|e| {
        error_frame(id, &e)
            .finish()
            .expect("an error frame is small")
    })
}
