//! The program-wide stop signal: set once (by a node's `stop()`, Ctrl-C, a
//! failure, or every `run` finishing), awaited by `wait-for-stop` and by the
//! launcher.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

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

    /// Resolves once a stop has been requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopping() {
                return;
            }
            notified.await;
        }
    }
}
