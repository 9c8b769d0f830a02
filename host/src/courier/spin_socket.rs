//! A connected socket (Unix or TCP) that the transports read and write
//! straight from its descriptor, without tokio's readiness cache: after each
//! read that finds nothing, a reader spins (yielding to the runtime between
//! tries) for a short while before it parks in epoll, because on this kind
//! of machine waking a parked thread costs more than a whole call; but only
//! while the machine has a core to spare ([`spin_pays`]). The
//! framed transport reads it directly; [`SpinIo`] gives it to hyper/tonic
//! as an `AsyncRead + AsyncWrite` with the same spinning.

use std::io;
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::endpoint::Connection;

/// How much a socket may hold unsent: large calls then need fewer
/// wake-ups of the reader. The system's limit (`net.core.wmem_max`) may
/// cap it lower; that only costs speed.
const SEND_BUFFER: libc::c_int = 4 << 20;

/// Whether a reader may spin now: only while the machine has a core to
/// spare, i.e. no more runnable tasks than online cores (`/proc/loadavg`,
/// looked at no more than every [`LOOK_EVERY_US`] per process). A reader that
/// spins while every core is wanted takes a core from the very processes
/// that would answer it: ten producer processes and a consumer on two
/// cores, each spinning 50 µs after every reply, made a fan-out across
/// machines 2.6 times slower than parking at once; with one caller and
/// one callee, parking at once made a small call 6 times slower.
fn spin_pays() -> bool {
    static CLOCK: OnceLock<(Instant, usize)> = OnceLock::new();
    // When it was last looked at (µs after CLOCK's instant, plus one: 0 is
    // never), and what was seen.
    static LOOKED_AT: AtomicU64 = AtomicU64::new(0);
    static PAYS: AtomicBool = AtomicBool::new(true);
    let (start, cores) = *CLOCK.get_or_init(|| {
        // SAFETY: sysconf has no memory arguments.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        (Instant::now(), usize::try_from(online).unwrap_or(1).max(1))
    });
    let now = start.elapsed().as_micros() as u64 + 1;
    let last = LOOKED_AT.load(Ordering::Relaxed);
    let fresh = last != 0 && now.saturating_sub(last) < LOOK_EVERY_US;
    if fresh
        || LOOKED_AT
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return PAYS.load(Ordering::Relaxed);
    }
    // Unknown (no /proc): spin, as before this check.
    let pays = runnable_now().is_none_or(|runnable| runnable <= cores);
    PAYS.store(pays, Ordering::Relaxed);
    pays
}

/// How often [`spin_pays`] looks again: a fan-out round here takes a few
/// hundred microseconds, and one look is one `pread`.
const LOOK_EVERY_US: u64 = 100;

/// The runnable tasks on this machine now (this one included), read from
/// `/proc/loadavg` kept open.
fn runnable_now() -> Option<usize> {
    use std::os::unix::fs::FileExt as _;
    static LOADAVG: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let file = LOADAVG
        .get_or_init(|| std::fs::File::open("/proc/loadavg").ok())
        .as_ref()?;
    let mut text = [0u8; 128];
    let n = file.read_at(&mut text, 0).ok()?;
    runnable_in(std::str::from_utf8(&text[..n]).ok()?)
}

/// The runnable tasks (this one included) in `/proc/loadavg`'s text:
/// `0.52 0.58 0.59 3/467 12345`, its fourth field's first number.
fn runnable_in(loadavg: &str) -> Option<usize> {
    let field = loadavg.split_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

/// A connected socket, shared by its reader and writer.
pub struct SpinSocket {
    fd: AsyncFd<Connection>,
    spin: Duration,
}

impl SpinSocket {
    /// Register `connection` with the runtime (inside one); its readers
    /// spin for `spin` before they park.
    pub fn new(connection: Connection, spin: Duration) -> io::Result<Arc<SpinSocket>> {
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live int,
        // on a descriptor the connection owns.
        unsafe {
            libc::setsockopt(
                connection.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&SEND_BUFFER as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: the connection owns its descriptor, and keeps it open and
        // unchanged until the AsyncFd (its owner) is dropped.
        let fd = unsafe { AsyncFd::register(connection) }.map_err(|e| e.into_parts().1)?;
        Ok(Arc::new(SpinSocket { fd, spin }))
    }

    /// One non-blocking read into `ptr..ptr+len`.
    fn try_read(&self, ptr: *mut u8, len: usize) -> io::Result<usize> {
        // SAFETY: the callers pass room of at least `len` writable bytes;
        // the descriptor is the connection's own.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), ptr.cast(), len, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// One non-blocking write of as much of `slices` as the socket takes
    /// (no SIGPIPE on a closed peer: an error instead).
    fn try_write(&self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the message
        // header points at them for the duration of the call only.
        let n = unsafe {
            let mut message: libc::msghdr = std::mem::zeroed();
            message.msg_iov = slices.as_ptr() as *mut libc::iovec;
            // At most IOV_MAX slices per call; the rest goes in the next.
            message.msg_iovlen = slices.len().min(1024) as _;
            libc::sendmsg(self.fd.as_raw_fd(), &message, libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Read what is there into `buf`: spin, then park until the socket is
    /// readable. Returns the bytes read (0 at end of stream).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|socket| socket.try_read(buf.as_mut_ptr(), buf.len()))
            .await
    }

    /// Like [`Self::read`], into `buf`'s spare capacity, up to `limit`
    /// bytes in all (no zeroing of the room first).
    pub async fn read_spare(&self, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
        let want = limit.min(buf.capacity()) - buf.len();
        let n = self
            .read_with(|socket| socket.try_read(buf.spare_capacity_mut().as_mut_ptr().cast(), want))
            .await?;
        // SAFETY: the first `n` bytes of the spare capacity were just written.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// One non-blocking `attempt` at a read after another: spinning while
    /// there is nothing, then parking until the socket is readable.
    async fn read_with(
        &self,
        mut attempt: impl FnMut(&SpinSocket) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut spinning_since: Option<Instant> = None;
        loop {
            match attempt(self) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let since = *spinning_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < self.spin && spin_pays() {
                        tokio::task::yield_now().await;
                    } else {
                        self.fd.readable().await?.clear_ready();
                        spinning_since = None;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Write all of `data`, waiting while the socket is full.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.try_write(&[io::IoSlice::new(data)]) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.fd.writable().await?.clear_ready();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Close one or both directions (errors mean it is closed already).
    pub fn shutdown(&self, how: std::net::Shutdown) {
        let _ = self.fd.get_ref().shutdown(how);
    }
}

/// A [`SpinSocket`] as hyper's (tokio's) byte stream, spinning as its
/// direct readers do.
pub struct SpinIo {
    socket: Arc<SpinSocket>,
    spinning_since: Option<Instant>,
}

impl SpinIo {
    pub fn new(socket: Arc<SpinSocket>) -> SpinIo {
        SpinIo {
            socket,
            spinning_since: None,
        }
    }
}

impl AsyncRead for SpinIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // SAFETY: recv writes at most `remaining` initialized-or-not
            // bytes into the unfilled part, which is that long.
            let unfilled = unsafe { buf.unfilled_mut() };
            match this
                .socket
                .try_read(unfilled.as_mut_ptr().cast(), unfilled.len())
            {
                Ok(n) => {
                    // SAFETY: recv just wrote these `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    this.spinning_since = None;
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let since = *this.spinning_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < this.socket.spin && spin_pays() {
                        // Try again at the runtime's next turn.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    let mut ready = ready!(this.socket.fd.poll_read_ready(cx))?;
                    ready.clear_ready();
                    this.spinning_since = None;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SpinIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = &self.socket;
        loop {
            match socket.try_write(slices) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(socket.fd.poll_write_ready(cx))?.clear_ready();
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runnable_tasks_are_read_from_loadavg() {
        assert_eq!(runnable_in("0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(runnable_in("0.00 0.01 0.05 1/80 7"), Some(1));
        assert_eq!(runnable_in(""), None);
        assert_eq!(runnable_in("0.52 0.58 0.59 x/467 12345"), None);
        // This machine's, as the spinning readers read it: this test's
        // thread at least, twice from the one open file.
        assert!(runnable_now().is_some_and(|n| n >= 1));
        assert!(runnable_now().is_some_and(|n| n >= 1));
    }
}
