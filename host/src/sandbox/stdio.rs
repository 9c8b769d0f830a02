//! A node's stdout and stderr: bytes the guest writes are split into lines
//! and each complete line handed to a callback (which prefixes and prints or
//! captures it). A partial last line is flushed when the writer is dropped.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

type LineFn = dyn Fn(&str) + Send + Sync;

/// A WASI output stream that emits whole lines.
#[derive(Clone)]
pub struct LineWriter {
    inner: Arc<Inner>,
}

struct Inner {
    partial: Mutex<Vec<u8>>,
    emit: Box<LineFn>,
}

impl LineWriter {
    pub fn new(emit: impl Fn(&str) + Send + Sync + 'static) -> Self {
        LineWriter {
            inner: Arc::new(Inner {
                partial: Mutex::new(Vec::new()),
                emit: Box::new(emit),
            }),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut partial = crate::lock(&self.inner.partial);
        partial.extend_from_slice(bytes);
        let Some(last_newline) = partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut *partial, rest);
        drop(partial);
        for line in complete[..complete.len() - 1].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            (self.inner.emit)(line.strip_suffix('\r').unwrap_or(&line));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let partial = self.partial.get_mut().unwrap_or_else(|p| p.into_inner());
        if !partial.is_empty() {
            (self.emit)(&String::from_utf8_lossy(partial));
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
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        std::task::Poll::Ready(Ok(buf.len()))
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
        let w = LineWriter::new(move |l| sink.lock().unwrap().push(l.to_string()));
        w.write_bytes(b"a\nb");
        w.write_bytes(b"c\r\n\nd");
        assert_eq!(*lines.lock().unwrap(), ["a", "bc", ""]);
        drop(w);
        assert_eq!(*lines.lock().unwrap(), ["a", "bc", "", "d"]);
    }
}
