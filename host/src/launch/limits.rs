//! A node's resource limits, enforced: memory and table growth and the
//! number of instances through wasmtime's `ResourceLimiter`, CPU time by
//! counting the epoch ticks that find the node's wasm running. Hitting a
//! limit fails that node (its store traps) with a message naming the limit
//! and its configured value; the host and the other nodes carry on.

use std::time::Duration;

use crate::program::Limits;

const MIB: usize = 1 << 20;

/// The limits of one node's store, and the CPU it has used.
pub struct NodeLimiter {
    limits: Limits,
    /// Epoch ticks that found this node's wasm running.
    busy_ticks: u64,
}

impl NodeLimiter {
    pub fn new(limits: Limits) -> NodeLimiter {
        NodeLimiter {
            limits,
            busy_ticks: 0,
        }
    }

    /// One more epoch tick (of length `tick`) found wasm running: an error
    /// once the node has used more than its CPU budget.
    pub fn tick(&mut self, tick: Duration) -> wasmtime::Result<()> {
        self.busy_ticks += 1;
        match self.limits.cpu_secs {
            Some(budget) if tick.as_secs_f64() * self.busy_ticks as f64 > budget => {
                Err(wasmtime::Error::msg(format!(
                    "CPU limit reached: the node ran wasm for more than limits.cpu_secs = {budget} s"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The instance limit, for the error when instantiation fails.
    pub fn instances_limit(&self) -> Option<u64> {
        self.limits.instances
    }
}

impl wasmtime::ResourceLimiter for NodeLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.limits.memory_mib {
            Some(mib) if desired > mib as usize * MIB => Err(wasmtime::Error::msg(format!(
                "memory limit reached: a linear memory would grow to {:.1} MiB, over limits.memory_mib = {mib}",
                desired as f64 / MIB as f64
            ))),
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.limits.table_elements {
            Some(max) if desired as u64 > max => Err(wasmtime::Error::msg(format!(
                "table limit reached: a table would grow to {desired} elements, over limits.table_elements = {max}"
            ))),
            _ => Ok(true),
        }
    }

    fn instances(&self) -> usize {
        self.limits.instances.map_or(10_000, |n| n as usize)
    }
}
