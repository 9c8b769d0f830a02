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

impl Stream {
    /// As a number on the wire: 0 stdout, 1 stderr, 2 + level for logs.
    pub fn to_wire(self) -> u32 {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
            Stream::Log(level) => 2 + level as u32,
        }
    }

    pub fn from_wire(n: u32) -> Stream {
        const LEVELS: [LogLevel; 5] = [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ];
        match n {
            0 => Stream::Stdout,
            1 => Stream::Stderr,
            n => Stream::Log(LEVELS[((n - 2) as usize).min(4)]),
        }
    }
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

type Forward = Box<dyn Fn(&str, Stream, &str) + Send + Sync>;

struct Inner {
    print: Option<Printer>,
    capture: Option<Mutex<Vec<OutputLine>>>,
    forward: Option<Forward>,
    files: Option<LogFiles>,
}

/// One log file per node.
struct LogFiles {
    files: std::collections::HashMap<String, Mutex<std::fs::File>>,
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

    /// Hand every line to `forward` (a worker sends them to its launcher).
    pub fn forward(forward: impl Fn(&str, Stream, &str) + Send + Sync + 'static) -> Output {
        Output {
            inner: Arc::new(Inner {
                print: None,
                capture: None,
                forward: Some(Box::new(forward)),
                files: None,
            }),
        }
    }

    /// Write each node's lines to its own file in `dir` (created if need
    /// be); returns the output and the file of each node, in `nodes` order.
    pub fn files(
        dir: &std::path::Path,
        nodes: &[String],
    ) -> std::io::Result<(Output, Vec<std::path::PathBuf>)> {
        std::fs::create_dir_all(dir)?;
        let mut files = std::collections::HashMap::new();
        let mut paths = Vec::new();
        for node in nodes {
            let path = dir.join(format!("{}.log", node.replace('/', "_")));
            files.insert(node.clone(), Mutex::new(std::fs::File::create(&path)?));
            paths.push(path);
        }
        let inner = Inner {
            print: None,
            capture: None,
            forward: None,
            files: Some(LogFiles { files }),
        };
        Ok((
            Output {
                inner: Arc::new(inner),
            },
            paths,
        ))
    }

    fn new(print: Option<Printer>, capture: bool) -> Output {
        Output {
            inner: Arc::new(Inner {
                print,
                capture: capture.then(|| Mutex::new(Vec::new())),
                forward: None,
                files: None,
            }),
        }
    }

    /// Emit one line from `node`.
    pub fn line(&self, node: &str, stream: Stream, text: &str) {
        if let Some(forward) = &self.inner.forward {
            forward(node, stream, text);
        }
        if let Some(printer) = &self.inner.print {
            printer.print(node, stream, text);
        }
        if let Some(file) = self.inner.files.as_ref().and_then(|f| f.files.get(node)) {
            let line = format!("{}{text}\n", level_prefix(stream));
            let _ = crate::lock(file).write_all(line.as_bytes());
        }
        if let Some(capture) = &self.inner.capture {
            let line = OutputLine {
                node: node.to_string(),
                stream,
                text: text.to_string(),
                at: Instant::now(),
            };
            crate::lock(capture).push(line);
        }
    }

    /// Every captured line so far (empty unless capturing).
    pub fn lines(&self) -> Vec<OutputLine> {
        match &self.inner.capture {
            Some(c) => crate::lock(c).clone(),
            None => Vec::new(),
        }
    }
}

impl Printer {
    fn print(&self, node: &str, stream: Stream, text: &str) {
        let level = level_prefix(stream);
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

/// What stands before a log line of this level (nothing for info and plain
/// output).
fn level_prefix(stream: Stream) -> &'static str {
    match stream {
        Stream::Log(LogLevel::Warn) => "WARN ",
        Stream::Log(LogLevel::Error) => "ERROR ",
        Stream::Log(LogLevel::Debug) => "DEBUG ",
        Stream::Log(LogLevel::Trace) => "TRACE ",
        _ => "",
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
