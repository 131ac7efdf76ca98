//! Memory and size limits: the budget one container's instances share (like a cgroup's memory
//! limit), the limiter that charges a store's growth to it, and the most tables, memories and
//! core instances one instance may have.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The memory one container may use, shared by all its instances (main and hooks), like a
/// container's cgroup limit — and within its pod's, if the pod has one (a parent cgroup).
pub(crate) struct MemoryBudget {
    limit: Option<u64>,
    used: AtomicU64,
    /// The pod's budget, which this container's memory counts against too.
    pod: Option<Arc<MemoryBudget>>,
}

impl MemoryBudget {
    /// The container's own limit, if it has one.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn new(limit: Option<u64>, pod: Option<Arc<MemoryBudget>>) -> Self {
        MemoryBudget {
            limit,
            used: AtomicU64::new(0),
            pod,
        }
    }

    fn try_charge(&self, bytes: u64) -> bool {
        let granted = match self.limit {
            None => {
                self.used.fetch_add(bytes, Ordering::SeqCst);
                true
            }
            Some(limit) => self
                .used
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                    used.checked_add(bytes).filter(|total| *total <= limit)
                })
                .is_ok(),
        };
        if granted
            && let Some(pod) = &self.pod
            && !pod.try_charge(bytes)
        {
            self.used.fetch_sub(bytes, Ordering::SeqCst);
            return false;
        }
        granted
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
        if let Some(pod) = &self.pod {
            pod.release(bytes);
        }
    }
}

/// The most elements one table may have, whatever the memory limit: a guest growing a table
/// without end is refused before it exhausts the host.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 10_000_000;

/// What a table element costs the container's memory budget (a reference is one pointer).
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

/// The most core module instances one instance of a component may create (a Rust guest creates
/// three; a composition of a dozen components, a few dozen).
pub(crate) const MAX_CORE_INSTANCES: usize = 1000;
/// The most linear memories one instance may define. Each reserves address space and a memory
/// mapping of the host process, which the kernel caps for the whole process (65530 by default);
/// a Rust guest has one.
pub(crate) const MAX_MEMORIES: usize = 100;
/// The most tables one instance may define (a Rust guest has two or three).
pub(crate) const MAX_TABLES: usize = 1000;

/// Charges one store's linear-memory and table growth to its container's [`MemoryBudget`].
pub(super) struct MemoryLimiter {
    pub(super) budget: Arc<MemoryBudget>,
    pub(super) charged: u64,
    pub(super) refused: Arc<AtomicBool>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.charge(desired.saturating_sub(current) as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let growth = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.charge(growth))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl MemoryLimiter {
    /// Charges `bytes` of growth to the budget; a refusal is remembered (the guest's failed
    /// allocation then ends it as `OOMKilled`).
    fn charge(&mut self, bytes: u64) -> bool {
        let granted = self.budget.try_charge(bytes);
        if granted {
            self.charged += bytes;
        } else {
            self.refused.store(true, Ordering::SeqCst);
        }
        granted
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.release(self.charged);
    }
}
