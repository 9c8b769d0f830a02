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
    async fn current(&self, router: &Router) -> Result<Arc<dyn Remote>, CallError> {
        let endpoint = match self.directory.get(self.process) {
            Some(endpoint) => endpoint,
            None => self.directory.wait(self.process, router).await?,
        };
        let mut remote = lock(&self.remote);
        match remote.as_ref() {
            Some((known, route)) if *known == endpoint => Ok(route.clone()),
            _ => {
                let route = self.transport.connect(&endpoint);
                *remote = Some((endpoint, route.clone()));
                Ok(route)
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
            let remote = self.current(router).await?;
            remote.call(router, target, func, args).await
        })
    }
}
