//! What a node said on stderr just before it failed: a guest that panics
//! (Rust's `panic!`) prints its message there and then traps with a bare
//! `unreachable`, so the message is taken from the node's last stderr lines
//! and carried into every report of the failure.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many of a node's last stderr lines are kept.
const KEPT_LINES: usize = 32;
/// The longest panic message carried into a report, in bytes.
const MAX_MESSAGE: usize = 2048;

/// A node's last stderr lines.
#[derive(Default)]
pub struct LastWords {
    lines: Mutex<VecDeque<String>>,
}

impl LastWords {
    /// Keep one line the node wrote to stderr.
    pub fn record(&self, line: &str) {
        let mut lines = crate::lock(&self.lines);
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(MAX_MESSAGE).collect());
    }

    /// Forget them (the node starts again).
    pub fn clear(&self) {
        crate::lock(&self.lines).clear();
    }

    /// The node's last panic, as `panicked: MESSAGE (FILE:LINE:COL)`, if its
    /// last stderr lines hold one.
    pub fn panic_message(&self) -> Option<String> {
        let lines = crate::lock(&self.lines);
        let start = lines.iter().rposition(|l| l.contains(" panicked at "))?;
        let at = lines[start]
            .split(" panicked at ")
            .nth(1)
            .map(|s| s.trim_end_matches(':'));
        let body: Vec<&str> = lines
            .iter()
            .skip(start + 1)
            .take_while(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
            .map(String::as_str)
            .collect();
        if let Some(python) = python_exception(&lines, start, &body) {
            return Some(python);
        }
        let message = shortened(body.join("; "));
        Some(match at {
            Some(at) => format!("panicked: {message} ({at})"),
            None => format!("panicked: {message}"),
        })
    }
}

/// A Python node's exception (componentize-py prints the traceback, then
/// its runtime panics with "Python function threw an unexpected
/// exception"): `Python exception: ValueError: ... (traceback: File
/// "/0/app.py", line 6, in work)`, the app's directory being `/0`.
fn python_exception(lines: &VecDeque<String>, panic: usize, body: &[&str]) -> Option<String> {
    if !body.iter().any(|l| l.contains("Python function threw")) {
        return None;
    }
    let start = lines
        .iter()
        .take(panic)
        .rposition(|l| l.starts_with("Traceback (most recent call last)"))?;
    let traceback: Vec<&str> = lines
        .iter()
        .take(panic)
        .skip(start + 1)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let (raised, frames) = traceback.split_last()?;
    let mut message = format!("Python exception: {raised}");
    if !frames.is_empty() {
        message.push_str(&format!(" (traceback: {})", frames.join("; ")));
    }
    Some(shortened(message))
}

/// `message`, cut to [`MAX_MESSAGE`] bytes (with "...") if it is longer.
fn shortened(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let cut = (0..=MAX_MESSAGE)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        message.truncate(cut);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_panic_and_its_place() {
        let words = LastWords::default();
        assert_eq!(words.panic_message(), None);
        words.record("starting");
        words.record("thread '<unnamed>' panicked at src/lib.rs:33:24:");
        words.record("the answer was 41");
        words.record("not 42");
        words.record(
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        assert_eq!(
            words.panic_message().as_deref(),
            Some("panicked: the answer was 41; not 42 (src/lib.rs:33:24)")
        );
    }

    #[test]
    fn keeps_only_the_last_lines_and_long_messages_short() {
        let words = LastWords::default();
        words.record("thread 'x' panicked at a.rs:1:1:");
        for i in 0..KEPT_LINES {
            words.record(&format!("line {i}"));
        }
        assert_eq!(words.panic_message(), None, "the panic line fell out");
        words.record("thread 'x' panicked at b.rs:2:2:");
        words.record(&"é".repeat(5000));
        let message = words.panic_message().unwrap();
        assert!(
            message.len() < MAX_MESSAGE + 100
                && message.contains("...")
                && message.ends_with("(b.rs:2:2)")
        );
    }

    #[test]
    fn a_python_exception_is_its_traceback() {
        let words = LastWords::default();
        for line in [
            "Traceback (most recent call last):",
            "  File \"/0/app.py\", line 6, in work",
            "ValueError: no work on step 2",
            "",
            "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:",
            "Python function threw an unexpected exception",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ] {
            words.record(line);
        }
        assert_eq!(
            words.panic_message().as_deref(),
            Some(
                "Python exception: ValueError: no work on step 2 (traceback: File \"/0/app.py\", line 6, in work)"
            )
        );
    }
}
