//! A node's resource limits, enforced: memory and table growth and the
//! number of instances through wasmtime's `ResourceLimiter`, CPU time by
//! counting the epoch ticks that find the node's wasm running. Hitting a
//! limit fails that node (its store traps) with a message naming the limit
//! and its configured value; the host and the other nodes carry on.
//!
//! Also the limits that are wasmtime's own (the wasm stack, live handles,
//! bytes per host call): set on every store here, and explained in lp's
//! terms when a node hits one, since wasmtime's own message does not say
//! what was hit or what to do.

use std::time::Duration;

use crate::program::Limits;

const MIB: usize = 1 << 20;

/// The most component-model handles a node's store may hold live at once
/// (wasmtime 48's default, set explicitly): every call in flight from or
/// into the node holds at least one (its subtask, or its task's thread).
pub const MAX_HANDLES: usize = 100_000;

/// The most bytes one call from a node's wasm into the host may carry, its
/// arguments, or a served call's results (wasmtime 48's "hostcall fuel",
/// default 128 MiB, set explicitly).
pub const MAX_HOSTCALL_BYTES: usize = 128 << 20;

/// The default wasm stack limit (wasmtime's), in KiB.
const DEFAULT_STACK_KIB: u64 = 512;

/// Give `store` the limits that are wasmtime's own, at the values
/// [`explain`] names.
pub fn set_engine_limits<T>(store: &mut wasmtime::Store<T>) {
    store.set_max_component_handles(MAX_HANDLES);
    store.set_hostcall_fuel(MAX_HOSTCALL_BYTES);
}

/// The cause of a node's failure (the innermost error) in one or more
/// lines: wasmtime's message, and for a limit that is wasmtime's own, which
/// limit was hit and what to do.
pub fn cause(error: &anyhow::Error, stack_kib: Option<u64>) -> String {
    let root = error.root_cause().to_string();
    match explain(error, &root, stack_kib) {
        Some(explained) => format!("{root}\n  {explained}"),
        None => root,
    }
}

/// Which of wasmtime's own limits `error` (whose innermost message is
/// `root`) hit, and what to do; `None` if it hit none of them.
fn explain(error: &anyhow::Error, root: &str, stack_kib: Option<u64>) -> Option<String> {
    let stack_overflow = error.chain().any(|layer| {
        layer
            .downcast_ref::<wasmtime::Trap>()
            .is_some_and(|trap| *trap == wasmtime::Trap::StackOverflow)
    }) || root.contains("call stack exhausted");
    if stack_overflow {
        return Some(match stack_kib {
            Some(kib) => format!(
                "the wasm stack grew past limits.stack_kib = {kib}\n  help: recurse less deeply, or raise stack_kib under [program] limits"
            ),
            None => format!(
                "the wasm stack grew past the default limit of {DEFAULT_STACK_KIB} KiB (limits.stack_kib)\n  help: recurse less deeply, or set a larger stack_kib under [program] limits"
            ),
        });
    }
    // wasmtime's messages for these two carry no type to match on.
    if root.contains("store handle limit exceeded") {
        return Some(format!(
            "the node held {MAX_HANDLES} handles at once, the most a node may hold (each call in flight from or into it holds at least one)\n  help: keep fewer calls in flight at once, e.g. await them in batches of at most 10,000"
        ));
    }
    if root.contains("fuel allocated for hostcalls has been exhausted") {
        return Some(format!(
            "one call carried more than {} MiB from the node's wasm to the host, the most one call may carry (its arguments, or the results of a call it served)\n  help: send the data in parts of at most {} MiB",
            MAX_HOSTCALL_BYTES / MIB,
            MAX_HOSTCALL_BYTES / MIB
        ));
    }
    None
}

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
