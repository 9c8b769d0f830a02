//! Where each process of a launch listens, as this process has learnt it:
//! processes that bind a TCP port 0 announce the port they got, and the
//! launcher passes every announcement on. A route to a process not yet
//! announced ([`Announced`]) waits for it as a call waits for a process to
//! listen: bounded by the caller's deadline, ended by a stop.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::endpoint::Endpoint;
use super::transport::{Remote, Transport};
use super::{CallError, FuncKey, Payload, Reply, Router};
use crate::lock;

/// The endpoint of each process (by index), once known.
#[derive(Debug)]
pub struct Directory {
    entries: watch::Sender<Vec<Option<Endpoint>>>,
}

impl Directory {
    /// A directory of `processes` processes, none known yet.
    pub fn new(processes: usize) -> Arc<Directory> {
        Arc::new(Directory {
            entries: watch::Sender::new(vec![None; processes]),
        })
    }

    /// Record where `process` listens; whether that was news. An index out
    /// of range is ignored.
    pub fn set(&self, process: usize, endpoint: Endpoint) -> bool {
        self.entries
            .send_if_modified(|entries| match entries.get_mut(process) {
                Some(entry) if entry.as_ref() != Some(&endpoint) => {
                    *entry = Some(endpoint);
                    true
                }
                _ => false,
            })
    }

    pub fn get(&self, process: usize) -> Option<Endpoint> {
        self.entries.borrow().get(process).cloned().flatten()
    }

    /// Every endpoint known, with its process.
    pub fn known(&self) -> Vec<(usize, Endpoint)> {
        self.entries
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(k, e)| Some((k, e.clone()?)))
            .collect()
    }

    /// Resolves once `process` is announced somewhere other than `endpoint`.
    async fn moved_from(&self, process: usize, endpoint: &Endpoint) {
        let mut entries = self.entries.subscribe();
        let moved = entries.wait_for(|entries| {
            entries
                .get(process)
                .is_some_and(|entry| entry.as_ref().is_some_and(|e| e != endpoint))
        });
        if moved.await.is_err() {
            // The directory is gone: nothing will move.
            std::future::pending::<()>().await;
        }
    }

    /// Where `process` listens, once announced (or `Stopping`).
    async fn wait(&self, process: usize, router: &Router) -> Result<Endpoint, CallError> {
        let mut entries = self.entries.subscribe();
        let known = entries.wait_for(|entries| matches!(entries.get(process), Some(Some(_))));
        tokio::select! {
            known = known => match known {
                Ok(entries) => Ok(entries[process].clone().expect("waited for")),
                Err(_) => Err(CallError::Unreachable("the launch's directory is gone".into())),
            },
            () = router.stop_signal().wait() => Err(CallError::Stopping),
        }
    }
}

/// The route to a process whose endpoint is announced later. A process
/// started again (on another port, or another machine) announces its new
/// endpoint: the next call connects there.
pub(super) struct Announced {
    pub directory: Arc<Directory>,
    pub process: usize,
    pub transport: Arc<dyn Transport>,
    pub remote: Mutex<Option<(Endpoint, Arc<dyn Remote>)>>,
}

impl Announced {
    /// The route to the endpoint announced last (waiting for the first).
    async fn current(&self, router: &Router) -> Result<(Endpoint, Arc<dyn Remote>), CallError> {
        let endpoint = match self.directory.get(self.process) {
            Some(endpoint) => endpoint,
            None => self.directory.wait(self.process, router).await?,
        };
        let mut remote = lock(&self.remote);
        match remote.as_ref() {
            Some((known, route)) if *known == endpoint => Ok((endpoint, route.clone())),
            _ => {
                let route = self.transport.connect(&endpoint);
                *remote = Some((endpoint.clone(), route.clone()));
                Ok((endpoint, route))
            }
        }
    }
}

impl Remote for Announced {
    fn call<'a>(
        &'a self,
        router: &'a Router,
        target: u32,
        func: FuncKey,
        args: Payload,
    ) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let (endpoint, remote) = self.current(router).await?;
            // A call to a process that is started again elsewhere meanwhile
            // (its machine was lost) would wait for the old address for
            // ever: it fails instead, as a call in flight to a restarted
            // process does (it may or may not have run).
            tokio::select! {
                biased;
                reply = remote.call(router, target, func, args) => reply,
                () = self.directory.moved_from(self.process, &endpoint) => {
                    Err(CallError::Unreachable(format!(
                        "{}'s process was started again at another address while this call \
                         was on its way (it may or may not have run)",
                        router.name(target)
                    )))
                }
            }
        })
    }
}
