//! The program-wide stop signal: set once (by a node's `stop()`, Ctrl-C, a
//! failure, or every `run` finishing), awaited by `wait-for-stop` and by the
//! launcher.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

#[derive(Default)]
pub struct StopSignal {
    stopping: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Request a stop; returns true if this call is the one that set it.
    pub fn stop(&self) -> bool {
        let first = !self.stopping.swap(true, Ordering::SeqCst);
        if first {
            self.notify.notify_waiters();
        }
        first
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once a stop has been requested. The future may be polled
    /// again after it resolved (a loop that polls it among others does):
    /// it resolves again at once.
    pub fn wait(&self) -> Stopped<'_> {
        Stopped {
            signal: self,
            notified: Box::pin(self.notify.notified()),
        }
    }
}

/// The future of [`StopSignal::wait`].
pub struct Stopped<'a> {
    signal: &'a StopSignal,
    notified: Pin<Box<Notified<'a>>>,
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            // Registered before the flag is read, so a stop in between wakes us.
            this.notified.as_mut().enable();
            if this.signal.is_stopping() {
                return Poll::Ready(());
            }
            match this.notified.as_mut().poll(cx) {
                Poll::Ready(()) => this.notified.set(this.signal.notify.notified()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    #[test]
    fn a_finished_wait_can_be_polled_again() {
        let signal = StopSignal::new();
        let mut wait = std::pin::pin!(signal.wait());
        assert!(wait.as_mut().now_or_never().is_none(), "not stopped yet");
        signal.stop();
        for _ in 0..3 {
            assert!(wait.as_mut().now_or_never().is_some(), "stopped");
        }
    }
}
