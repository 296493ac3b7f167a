//! Per-plugin resource limits and the memory limiter that enforces the cap.

use std::time::Duration;

use serde::Serialize;

/// Limits applied to every instance and call of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Linear memory cap per instance, in MiB.
    pub memory_mib: u64,
    /// Wall-clock deadline of one call (host calls such as HTTP included).
    pub call_timeout: Duration,
    /// A fuel budget per call, for deterministic budgets in the test kit. The engine must
    /// be built with fuel enabled.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_mib: 256, call_timeout: Duration::from_secs(60), fuel: None }
    }
}

/// Refuses memory growth past the cap and remembers that it did, so the call's failure can
/// be reported as a memory-limit hit rather than the guest's own panic.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    cap_bytes: usize,
    pub(crate) hit: bool,
    pub(crate) peak_bytes: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(cap_mib: u64) -> Self {
        MemoryLimiter { cap_bytes: (cap_mib as usize).saturating_mul(1 << 20), hit: false, peak_bytes: 0 }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap_bytes {
            self.hit = true;
            return Err(wasmtime::format_err!("memory cap of {} bytes reached (asked for {desired})", self.cap_bytes));
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far past any real adapter.
        Ok(desired <= 1_000_000)
    }
}
