//! The worker pool nodes run on: a few threads (one per core by default)
//! that poll node tasks from one shared queue. An idle worker spins for a
//! short while before it sleeps, because a thread wake-up from sleep costs
//! tens of microseconds on small VMs and a spin hop well under one: a call
//! handed to another node is picked up at once by a spinning worker, and a
//! fan-out to many nodes is spread over every core without a thread per
//! node.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lock;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long an idle worker spins before sleeping: `$LP_SPIN_US`
/// microseconds, default 50.
pub fn default_spin() -> Duration {
    let micros = std::env::var("LP_SPIN_US")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    Duration::from_micros(micros)
}

struct Shared {
    queue: Mutex<VecDeque<Arc<Task>>>,
    /// Length of `queue`, readable without the lock (for spinning).
    queued: AtomicUsize,
    sleepers: Mutex<usize>,
    wake_up: Condvar,
    closing: AtomicBool,
    spin: Duration,
}

struct Task {
    future: Mutex<Option<BoxFuture>>,
    scheduled: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.shared.push(self.clone());
        }
    }
}

impl Shared {
    fn push(&self, task: Arc<Task>) {
        lock(&self.queue).push_back(task);
        self.queued.fetch_add(1, Ordering::Release);
        if *lock(&self.sleepers) > 0 {
            self.wake_up.notify_one();
        }
    }

    fn pop(&self) -> Option<Arc<Task>> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let task = lock(&self.queue).pop_front()?;
        self.queued.fetch_sub(1, Ordering::Release);
        Some(task)
    }

    /// Wait for work: spin, then sleep until a push (or closing).
    fn idle(&self) {
        let start = Instant::now();
        let mut spins = 0u32;
        while start.elapsed() < self.spin || spins < 64 {
            if self.queued.load(Ordering::Acquire) > 0 || self.closing.load(Ordering::Acquire) {
                return;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
        }
        let mut sleepers = lock(&self.sleepers);
        *sleepers += 1;
        while self.queued.load(Ordering::Acquire) == 0 && !self.closing.load(Ordering::Acquire) {
            // The timeout bounds a lost wake-up between the check and the wait.
            sleepers = self
                .wake_up
                .wait_timeout(sleepers, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *sleepers -= 1;
    }
}

/// A fixed set of worker threads polling spawned tasks.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Start `threads` workers; each enters `runtime` (timers) for its life.
    pub fn new(
        threads: usize,
        spin: Duration,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            sleepers: Mutex::new(0),
            wake_up: Condvar::new(),
            closing: AtomicBool::new(false),
            spin,
        });
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            let runtime = runtime.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("lp-worker-{i}"))
                    .stack_size(2 * 1024 * 1024)
                    .spawn(move || {
                        let _enter = runtime.enter();
                        work(&shared);
                    })?,
            );
        }
        Ok(Pool { shared, workers })
    }

    /// Run `future` on the pool.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(future))),
            scheduled: AtomicBool::new(true),
            shared: self.shared.clone(),
        });
        self.shared.push(task);
    }

    /// Stop the workers once the queue is drained; tasks not finished are dropped.
    pub fn close(self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake_up.notify_all();
        for worker in self.workers {
            let _ = worker.join();
        }
        lock(&self.shared.queue).clear();
    }
}

fn work(shared: &Shared) {
    loop {
        match shared.pop() {
            Some(task) => poll(task),
            None if shared.closing.load(Ordering::Acquire) => return,
            None => shared.idle(),
        }
    }
}

fn poll(task: Arc<Task>) {
    task.scheduled.store(false, Ordering::Release);
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    let mut slot = lock(&task.future);
    if let Some(future) = slot.as_mut()
        && future.as_mut().poll(&mut cx).is_ready()
    {
        *slot = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tasks_that_wake_each_other_across_workers() {
        let timers = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for spin in [Duration::ZERO, Duration::from_micros(50)] {
            let pool = Pool::new(2, spin, timers.handle().clone()).unwrap();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            // A chain of 100 tasks, each waiting for the previous one.
            let mut prev: Option<tokio::sync::oneshot::Receiver<u32>> = None;
            for i in 0..100u32 {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let wait = prev.replace(rx);
                pool.spawn(async move {
                    let before = match wait {
                        Some(rx) => rx.await.unwrap(),
                        None => 0,
                    };
                    let _ = tx.send(before + i);
                });
            }
            let last = prev.unwrap();
            pool.spawn(async move {
                done_tx.send(last.await.unwrap()).unwrap();
            });
            assert_eq!(
                done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
                (0..100).sum::<u32>()
            );
            pool.close();
        }
    }
}
