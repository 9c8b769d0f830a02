//! A node's stdout and stderr: bytes the guest writes are split into lines
//! and each complete line handed to a callback (which prefixes and prints or
//! captures it). A partial last line is flushed when the writer is dropped.
//!
//! The writer holds [`Credit`]: the guest may write only as many bytes as
//! are free (`check-write`), and its `subscribe` pollable waits until its
//! lines have been taken. A line longer than the credit is handed on in
//! pieces.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::credit::{Credit, Receipt};

/// The bytes a node's stdout (or stderr) may have on the way to its reader;
/// also the longest line handed on whole.
pub const OUTPUT_CREDIT: usize = 1 << 20;

type LineFn = dyn Fn(&str, Receipt) + Send + Sync;

/// A WASI output stream that emits whole lines.
#[derive(Clone)]
pub struct LineWriter {
    inner: Arc<Inner>,
}

struct Inner {
    partial: Mutex<Partial>,
    credit: Credit,
    emit: Box<LineFn>,
}

/// The bytes of a line not yet ended, and the credit they hold.
struct Partial {
    bytes: Vec<u8>,
    held: Receipt,
}

impl LineWriter {
    /// A writer handing each line and its receipt to `emit`, with
    /// [`OUTPUT_CREDIT`] bytes of credit.
    pub fn new(emit: impl Fn(&str, Receipt) + Send + Sync + 'static) -> Self {
        LineWriter::with_credit(OUTPUT_CREDIT, emit)
    }

    pub fn with_credit(bytes: usize, emit: impl Fn(&str, Receipt) + Send + Sync + 'static) -> Self {
        LineWriter {
            inner: Arc::new(Inner {
                partial: Mutex::new(Partial {
                    bytes: Vec::new(),
                    held: Receipt::none(),
                }),
                credit: Credit::new(bytes),
                emit: Box::new(emit),
            }),
        }
    }

    /// Take `bytes`, which the credit must cover, and hand on every line
    /// they complete.
    fn write_bytes(&self, bytes: &[u8]) -> Result<(), StreamError> {
        let Some(receipt) = self.inner.credit.try_take(bytes.len()) else {
            return Err(StreamError::trap(
                "the node wrote more to its output than check-write allowed",
            ));
        };
        let mut partial = crate::lock(&self.inner.partial);
        partial.bytes.extend_from_slice(bytes);
        partial.held.absorb(receipt);
        let end = match partial.bytes.iter().rposition(|&b| b == b'\n') {
            Some(last_newline) => last_newline + 1,
            // All the credit is in one unended line: hand it on as it is.
            None if partial.bytes.len() >= self.inner.credit.capacity() => partial.bytes.len(),
            None => return Ok(()),
        };
        let rest = partial.bytes.split_off(end);
        let complete = std::mem::replace(&mut partial.bytes, rest);
        let mut held = partial.held.split(complete.len());
        drop(partial);
        let complete = complete.strip_suffix(b"\n").unwrap_or(&complete);
        for line in complete.split(|&b| b == b'\n') {
            let receipt = held.split(line.len() + 1);
            let line = String::from_utf8_lossy(line);
            (self.inner.emit)(line.strip_suffix('\r').unwrap_or(&line), receipt);
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let partial = self.partial.get_mut().unwrap_or_else(|p| p.into_inner());
        if !partial.bytes.is_empty() {
            let held = std::mem::replace(&mut partial.held, Receipt::none());
            (self.emit)(&String::from_utf8_lossy(&partial.bytes), held);
        }
    }
}

impl IsTerminal for LineWriter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineWriter {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    /// Ready once some of the node's output has been taken.
    async fn ready(&mut self) {
        self.inner.credit.ready().await;
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(self.inner.credit.available())
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let free = self.inner.credit.available().min(buf.len());
        if free == 0 && !buf.is_empty() {
            let (credit, waker) = (self.inner.credit.clone(), cx.waker().clone());
            tokio::spawn(async move {
                credit.ready().await;
                waker.wake();
            });
            return std::task::Poll::Pending;
        }
        match self.write_bytes(&buf[..free]) {
            Ok(()) => std::task::Poll::Ready(Ok(free)),
            Err(e) => std::task::Poll::Ready(Err(std::io::Error::other(e.to_string()))),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_flushes_the_rest_on_drop() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let w = LineWriter::new(move |l, _| sink.lock().unwrap().push(l.to_string()));
        w.write_bytes(b"a\nb").unwrap();
        w.write_bytes(b"c\r\n\nd").unwrap();
        assert_eq!(*lines.lock().unwrap(), ["a", "bc", ""]);
        drop(w);
        assert_eq!(*lines.lock().unwrap(), ["a", "bc", "", "d"]);
    }

    #[test]
    fn credit_is_held_until_the_reader_drops_each_line() {
        let receipts = Arc::new(Mutex::new(Vec::new()));
        let sink = receipts.clone();
        let mut w = LineWriter::with_credit(10, move |l, receipt| {
            sink.lock().unwrap().push((l.to_string(), receipt))
        });
        assert_eq!(w.check_write().unwrap(), 10);
        w.write(Bytes::from_static(b"abc\nde")).unwrap();
        // "abc\n" is with its reader, "de" waits for its newline.
        assert_eq!(w.check_write().unwrap(), 4);
        assert!(w.write(Bytes::from_static(b"fghij")).is_err());
        receipts.lock().unwrap().clear();
        assert_eq!(w.check_write().unwrap(), 8);
        // A line that takes all the credit is handed on unended.
        w.write(Bytes::from_static(b"fghijklm")).unwrap();
        assert_eq!(receipts.lock().unwrap()[0].0, "defghijklm");
        assert_eq!(w.check_write().unwrap(), 0);
        receipts.lock().unwrap().clear();
        assert_eq!(w.check_write().unwrap(), 10);
    }
}
