//! Where node output goes: every line a node writes (stdout, stderr, log) is
//! prefixed with the node's name (`[producer/3] ...`, coloured on a
//! terminal) and printed, and/or captured for tests and benchmarks.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which channel a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    Log(LogLevel),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn from_wit(name: &str) -> LogLevel {
        match name {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// One line of node output.
#[derive(Clone, Debug)]
pub struct OutputLine {
    pub node: String,
    pub stream: Stream,
    pub text: String,
    /// When the host received it.
    pub at: Instant,
}

/// The destination of node output; cheap to clone.
#[derive(Clone)]
pub struct Output {
    inner: Arc<Inner>,
}

struct Inner {
    print: Option<Printer>,
    capture: Option<Mutex<Vec<OutputLine>>>,
}

struct Printer {
    color: bool,
}

impl Output {
    /// Print prefixed lines to this process's stdout/stderr.
    pub fn terminal() -> Output {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Output::new(Some(Printer { color }), false)
    }

    /// Keep every line in memory (see [`Output::lines`]); print nothing.
    pub fn capture() -> Output {
        Output::new(None, true)
    }

    /// Print and keep.
    pub fn terminal_and_capture() -> Output {
        let mut out = Output::terminal();
        Arc::get_mut(&mut out.inner).expect("fresh").capture = Some(Mutex::new(Vec::new()));
        out
    }

    fn new(print: Option<Printer>, capture: bool) -> Output {
        Output {
            inner: Arc::new(Inner {
                print,
                capture: capture.then(|| Mutex::new(Vec::new())),
            }),
        }
    }

    /// Emit one line from `node`.
    pub fn line(&self, node: &str, stream: Stream, text: &str) {
        if let Some(printer) = &self.inner.print {
            printer.print(node, stream, text);
        }
        if let Some(capture) = &self.inner.capture {
            let line = OutputLine {
                node: node.to_string(),
                stream,
                text: text.to_string(),
                at: Instant::now(),
            };
            capture.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    }

    /// Every captured line so far (empty unless capturing).
    pub fn lines(&self) -> Vec<OutputLine> {
        match &self.inner.capture {
            Some(c) => c.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Vec::new(),
        }
    }
}

impl Printer {
    fn print(&self, node: &str, stream: Stream, text: &str) {
        let level = match stream {
            Stream::Log(LogLevel::Warn) => "WARN ",
            Stream::Log(LogLevel::Error) => "ERROR ",
            Stream::Log(LogLevel::Debug) => "DEBUG ",
            Stream::Log(LogLevel::Trace) => "TRACE ",
            _ => "",
        };
        let prefix = if self.color {
            format!("\x1b[{}m[{node}]\x1b[0m", colour_of(node))
        } else {
            format!("[{node}]")
        };
        let line = format!("{prefix} {level}{text}\n");
        // Output errors (a closed pipe) must not take the program down.
        let _ = match stream {
            Stream::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            _ => std::io::stdout().lock().write_all(line.as_bytes()),
        };
    }
}

/// A stable ANSI colour per node name.
fn colour_of(node: &str) -> u8 {
    const COLOURS: [u8; 6] = [31, 32, 33, 34, 35, 36];
    let hash = node
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    COLOURS[(hash % COLOURS.len() as u32) as usize]
}
