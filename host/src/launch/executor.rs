//! The executor each node thread runs its store on: poll the node's future;
//! when it waits, spin briefly for a wake-up before parking the thread.
//! A thread wake-up from park costs tens of microseconds on small VMs, a
//! spin hop well under one, so back-to-back calls between nodes never park.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

struct ThreadWaker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

/// How long a waiting node spins before it parks: `$LP_SPIN_US`
/// microseconds, default 50.
pub fn default_spin() -> Duration {
    let micros = std::env::var("LP_SPIN_US")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    Duration::from_micros(micros)
}

/// Run `future` to completion on this thread.
pub fn block_on<F: Future>(future: F, spin: Duration) -> F::Output {
    let waker_state = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(waker_state.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        wait_for_wake(&waker_state, spin);
    }
}

fn wait_for_wake(state: &ThreadWaker, spin: Duration) {
    if !spin.is_zero() {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if state.woken.swap(false, Ordering::AcqRel) {
                return;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 && start.elapsed() >= spin {
                break;
            }
        }
    }
    while !state.woken.swap(false, Ordering::AcqRel) {
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_from_another_thread_with_and_without_spinning() {
        for spin in [Duration::ZERO, Duration::from_micros(50)] {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let sender = thread::spawn(move || {
                thread::sleep(Duration::from_millis(5));
                tx.send(7).unwrap();
            });
            assert_eq!(block_on(rx, spin).unwrap(), 7);
            sender.join().unwrap();
        }
    }
}
