//! The host's own stdout and stderr: writes that never panic. A stream that
//! fails once (a closed pipe, a full disk) is written no more, and the loss
//! is said once on stderr while stderr still works; the program keeps
//! running and lp-host still ends with the program's status.
//!
//! Use [`outln!`](crate::outln) and [`errln!`](crate::errln) instead of
//! `println!` and `eprintln!`, which panic when their stream is gone.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// One of the host's two standard streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Std {
    Out,
    Err,
}

static STDOUT_LOST: AtomicBool = AtomicBool::new(false);
static STDERR_LOST: AtomicBool = AtomicBool::new(false);

impl Std {
    fn lost(self) -> &'static AtomicBool {
        match self {
            Std::Out => &STDOUT_LOST,
            Std::Err => &STDERR_LOST,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Std::Out => "stdout",
            Std::Err => "stderr",
        }
    }
}

/// Write `bytes` to `stream` unless it failed before; false when they were
/// lost. The first failure is reported (see [`lost`]).
pub fn write(stream: Std, bytes: &[u8]) -> bool {
    if stream.lost().load(Ordering::Relaxed) {
        return false;
    }
    let written = match stream {
        Std::Out => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Std::Err => std::io::stderr().lock().write_all(bytes),
    };
    match written {
        Ok(()) => true,
        Err(e) => {
            if !stream.lost().swap(true, Ordering::Relaxed) {
                lost(&format!("lp-host's {}", stream.name()), &e);
            }
            false
        }
    }
}

/// Whether output to `stream` has been lost.
pub fn is_lost(stream: Std) -> bool {
    stream.lost().load(Ordering::Relaxed)
}

/// Say once, on stderr if it still works, that writing to `what` failed
/// and what is written to it from now on is dropped.
pub fn lost(what: &str, error: &std::io::Error) {
    let message = format!(
        "warning: output to {what} is lost from here on: {error}; the program keeps running\n  \
         help: keep the reader of the output open until lp-host ends, or give --logs-dir DIR \
         on a disk with room\n"
    );
    if !STDERR_LOST.load(Ordering::Relaxed)
        && std::io::stderr().write_all(message.as_bytes()).is_err()
    {
        STDERR_LOST.store(true, Ordering::Relaxed);
    }
}

/// Write `args` and a newline to `stream` (what the macros below expand to).
pub fn write_line(stream: Std, args: std::fmt::Arguments<'_>) {
    write(stream, format!("{args}\n").as_bytes());
}

/// Like `println!`, through [`write`]: never panics.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::console::write_line($crate::console::Std::Out, format_args!($($arg)*))
    };
}

/// Like `eprintln!`, through [`write`]: never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::write_line($crate::console::Std::Err, format_args!($($arg)*))
    };
}

/// Where host messages (tracing) go: stderr, through [`write`].
#[derive(Clone, Copy, Default)]
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write(Std::Err, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> StderrWriter {
        StderrWriter
    }
}
