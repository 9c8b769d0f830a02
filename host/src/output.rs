//! Where node output goes: every line a node writes (stdout, stderr, log) is
//! prefixed with the node's name (`[producer/3] ...`, coloured on a
//! terminal) and printed, and/or captured for tests and benchmarks.
//!
//! Printed lines pass through [`neutralize`] first, so a node cannot move
//! the cursor, clear the screen or rewrite a prefix: control characters are
//! shown escaped (`\x1b`, `\r`), and only plain colour (SGR) sequences are
//! kept, when colour is on, with a reset before the next prefix. Log files
//! (`--logs-dir`) and captured lines keep the node's bytes.
//!
//! Printing is done by a thread of its own, so a slow reader of stdout
//! never holds up a thread that runs nodes or the launcher's streams: a
//! line with a [`Receipt`] is queued at once (its writer's credit bounds
//! how much waits), one without waits while too much is queued.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::console::{self, Std};
use crate::credit::Receipt;

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

type Forward = Box<dyn Fn(&str, Stream, &str, Receipt) + Send + Sync>;

struct Inner {
    print: Option<Printer>,
    capture: Option<Mutex<Vec<OutputLine>>>,
    forward: Option<Forward>,
    files: Option<LogFiles>,
}

/// One log file per node.
struct LogFiles {
    files: std::collections::HashMap<String, Mutex<LogFile>>,
}

struct LogFile {
    path: std::path::PathBuf,
    /// None once a write to it failed.
    file: Option<std::fs::File>,
}

impl Output {
    /// Print prefixed lines to this process's stdout/stderr.
    pub fn terminal() -> Output {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Output::new(Some(Printer::new(color)), false)
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

    /// Hand every line to `forward`.
    pub fn forward(forward: impl Fn(&str, Stream, &str) + Send + Sync + 'static) -> Output {
        Output::forward_held(move |node, stream, text, _receipt| forward(node, stream, text))
    }

    /// Hand every line to `forward` with its receipt, to be dropped once
    /// the line is gone on (a worker sends lines to its launcher).
    pub fn forward_held(
        forward: impl Fn(&str, Stream, &str, Receipt) + Send + Sync + 'static,
    ) -> Output {
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
            let file = Some(std::fs::File::create(&path)?);
            let log = LogFile {
                path: path.clone(),
                file,
            };
            files.insert(node.clone(), Mutex::new(log));
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

    /// Emit one line from `node`; waits while too much printing is queued.
    pub fn line(&self, node: &str, stream: Stream, text: &str) {
        self.line_held(node, stream, text, Receipt::none());
    }

    /// Emit one line from `node`, its writer's credit held by `receipt`
    /// until the line is printed, written or sent on.
    pub fn line_held(&self, node: &str, stream: Stream, text: &str, receipt: Receipt) {
        let mut receipt = Some(receipt);
        if let Some(printer) = &self.inner.print {
            printer.print(
                node,
                stream,
                text,
                receipt.take().unwrap_or_else(Receipt::none),
            );
        }
        if let Some(forward) = &self.inner.forward {
            forward(
                node,
                stream,
                text,
                receipt.take().unwrap_or_else(Receipt::none),
            );
        }
        if let Some(file) = self.inner.files.as_ref().and_then(|f| f.files.get(node)) {
            let line = format!("{}{text}\n", level_prefix(stream));
            let mut log = crate::lock(file);
            if let Some(Err(e)) = log.file.as_mut().map(|f| f.write_all(line.as_bytes())) {
                log.file = None;
                console::lost(
                    &format!("node {node}'s log file {}", log.path.display()),
                    &e,
                );
            }
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

    /// Wait until every line handed to this output has been printed.
    pub fn flush(&self) {
        if let Some(printer) = &self.inner.print {
            printer.queue.flush();
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

/// Prints prefixed lines through its own thread (started with the first line).
struct Printer {
    color: bool,
    queue: Arc<Queue>,
    thread: std::sync::Once,
}

/// How many bytes of lines without a receipt may wait to be printed.
const UNHELD_QUEUE_BYTES: usize = 1 << 20;

/// Lines waiting for the printing thread.
#[derive(Default)]
struct Queue {
    state: Mutex<Queued>,
    changed: Condvar,
}

#[derive(Default)]
struct Queued {
    lines: VecDeque<(Std, String, Receipt)>,
    /// Bytes of the lines waiting or being written.
    bytes: usize,
    /// Bytes of those lines that came without a receipt.
    unheld: usize,
    /// Lines taken by the thread and not yet written.
    writing: usize,
    /// The output is gone: print what is left, then end.
    closed: bool,
}

impl Printer {
    fn new(color: bool) -> Printer {
        Printer {
            color,
            queue: Arc::default(),
            thread: std::sync::Once::new(),
        }
    }

    fn print(&self, node: &str, stream: Stream, text: &str, receipt: Receipt) {
        let level = level_prefix(stream);
        let prefix = if self.color {
            format!("\x1b[{}m[{node}]\x1b[0m", colour_of(node))
        } else {
            format!("[{node}]")
        };
        let line = format!("{prefix} {level}{}\n", neutralize(text, self.color));
        let std = match stream {
            Stream::Stderr => Std::Err,
            _ => Std::Out,
        };
        self.thread.call_once(|| {
            let queue = self.queue.clone();
            let started = std::thread::Builder::new()
                .name("lp-output".into())
                .spawn(move || queue.print_until_closed());
            if let Err(e) = started {
                tracing::warn!("cannot start the output thread: {e}; node output is lost");
            }
        });
        self.queue.push(std, line, receipt);
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        crate::lock(&self.queue.state).closed = true;
        self.queue.changed.notify_all();
    }
}

impl Queue {
    fn push(&self, std: Std, line: String, receipt: Receipt) {
        let unheld = !receipt.holds_credit();
        let mut state = crate::lock(&self.state);
        while unheld && state.unheld > UNHELD_QUEUE_BYTES {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.bytes += line.len();
        if unheld {
            state.unheld += line.len();
        }
        state.lines.push_back((std, line, receipt));
        drop(state);
        self.changed.notify_all();
    }

    fn flush(&self) {
        let mut state = crate::lock(&self.state);
        while !state.lines.is_empty() || state.writing > 0 {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The printing thread: write queued lines, consecutive ones of a
    /// stream at once, and give back their credit once written.
    fn print_until_closed(&self) {
        let mut batch = Vec::new();
        loop {
            let mut state = crate::lock(&self.state);
            while state.lines.is_empty() && !state.closed {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.lines.is_empty() {
                return;
            }
            batch.extend(state.lines.drain(..));
            state.writing = batch.len();
            drop(state);
            let (mut bytes, mut unheld) = (0, 0);
            let mut text = String::new();
            let mut batch_std = Std::Out;
            for (std, line, receipt) in batch.drain(..) {
                if std != batch_std && !text.is_empty() {
                    console::write(batch_std, text.as_bytes());
                    text.clear();
                }
                batch_std = std;
                bytes += line.len();
                if !receipt.holds_credit() {
                    unheld += line.len();
                }
                text.push_str(&line);
            }
            console::write(batch_std, text.as_bytes());
            let mut state = crate::lock(&self.state);
            state.writing = 0;
            state.bytes -= bytes;
            state.unheld -= unheld;
            drop(state);
            self.changed.notify_all();
        }
    }
}

/// `text` as it may be shown after a prefix: every control character (C0
/// but tab, DEL, C1, and so ESC, a bare `\r`, backspace) escaped as `\xNN`
/// or `\u{NN}`. With `keep_colour`, plain SGR sequences (`ESC [ 1;31 m`)
/// stay, followed by a reset at the end of the line.
pub fn neutralize(text: &str, keep_colour: bool) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    let mut coloured = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if keep_colour && let Some(len) = sgr_len(rest) {
            shown.push_str(&rest[..len]);
            coloured = true;
            rest = &rest[len..];
            continue;
        }
        match c {
            c if !is_control(c) => shown.push(c),
            '\u{0}'..='\u{7f}' => shown.push_str(&format!("\\x{:02x}", c as u32)),
            c => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
        rest = &rest[c.len_utf8()..];
    }
    if coloured {
        shown.push_str("\x1b[0m");
    }
    Cow::Owned(shown)
}

fn is_control(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// The length of the SGR sequence `text` starts with, if it does: ESC `[`,
/// digits and `;`, then `m`.
fn sgr_len(text: &str) -> Option<usize> {
    let params = text.strip_prefix("\x1b[")?;
    let end = params.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
    (params[end..].starts_with('m')).then_some(2 + end + 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_unchanged() {
        assert!(matches!(
            neutralize("step 3: [1, 2]\tok é", false),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(neutralize("\x1b]0;title\x07", false), "\\x1b]0;title\\x07");
        assert_eq!(neutralize("\x1b[2J", false), "\\x1b[2J");
        assert_eq!(neutralize("\r[other] fake", false), "\\x0d[other] fake");
        assert_eq!(neutralize("ab\x08\x08cd\x7f", false), "ab\\x08\\x08cd\\x7f");
        // C1 controls, as UTF-8 (U+009B is a one-character CSI).
        assert_eq!(neutralize("\u{9b}2J \u{85}", false), "\\u{9b}2J \\u{85}");
    }

    #[test]
    fn colour_is_kept_only_when_on_and_reset_before_the_next_prefix() {
        assert_eq!(neutralize("\x1b[1;31mred", false), "\\x1b[1;31mred");
        assert_eq!(neutralize("\x1b[1;31mred", true), "\x1b[1;31mred\x1b[0m");
        // Anything else than plain SGR stays escaped with colour on.
        assert_eq!(
            neutralize("\x1b[31mred\x1b[2J\x1b[1A\x1b]0;t\x07", true),
            "\x1b[31mred\\x1b[2J\\x1b[1A\\x1b]0;t\\x07\x1b[0m"
        );
        assert_eq!(neutralize("\x1b[31", true), "\\x1b[31");
    }

    #[test]
    fn log_files_keep_the_nodes_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (files, paths) = Output::files(dir.path(), &["n/0".to_string()]).unwrap();
        files.line("n/0", Stream::Stdout, "\x1b[2J\rfake");
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"\x1b[2J\rfake\n");
    }
}
