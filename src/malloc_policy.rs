//! The process's malloc policy: keep freed memory instead of returning it to the kernel.
//!
//! libtorch allocates every tensor through glibc's `malloc`. A training step's large tensors
//! (a batch-128 activation is ~100 MB) lie above glibc's mmap threshold, so by default each one
//! is `mmap`ed, `munmap`ed when freed, and page-faulted back in on the next step: measured here
//! as most of a step's system time and ~1.5–2× the step time at batch 128. Telling glibc never
//! to serve allocations by `mmap` (`M_MMAP_MAX = 0`) and never to trim the heap's top
//! (`M_TRIM_THRESHOLD` = the largest value) makes freed blocks reusable by the next step, at
//! the price of a higher peak RSS (what `vaepipe bench` reports beside the speed-up).
//!
//! The policy is set once, first thing in `main`, for the whole process (libtorch included);
//! `VAEPIPE_MALLOC=default` keeps glibc's defaults. `mallopt` is glibc's documented, thread-safe
//! tuning call; it is the only unsafe code in the crate and it lives here.

use std::fmt;

/// The environment variable that opts out: `VAEPIPE_MALLOC=default`.
pub const ENV: &str = "VAEPIPE_MALLOC";

/// How the process's allocator is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocPolicy {
    /// `M_MMAP_MAX = 0`, `M_TRIM_THRESHOLD = i32::MAX`: freed memory stays in the heap.
    Retain,
    /// glibc's defaults (mmap above a dynamic threshold, trim above 128 KiB).
    Default,
}

/// glibc's defaults, for switching back (`malloc.c`: `DEFAULT_MMAP_MAX`, `DEFAULT_TRIM_THRESHOLD`).
const GLIBC_MMAP_MAX: i32 = 65_536;
const GLIBC_TRIM_THRESHOLD: i32 = 128 * 1024;

impl MallocPolicy {
    /// What `VAEPIPE_MALLOC` asks for: unset or `retain` → `Retain`, `default` → `Default`.
    /// Anything else is `Retain` with a warning, as an unknown value should not stop a run.
    pub fn from_env() -> Self {
        match std::env::var(ENV).ok().as_deref().map(str::trim) {
            None | Some("") | Some("retain") => MallocPolicy::Retain,
            Some("default") => MallocPolicy::Default,
            Some(other) => {
                eprintln!("warning: {ENV}={other:?} is not `retain` or `default`; using `retain`");
                MallocPolicy::Retain
            }
        }
    }

    /// Configures glibc's malloc for this policy (later allocations follow it). Returns false
    /// where glibc refused a setting (or on a libc without `mallopt`).
    pub fn apply(self) -> bool {
        let (mmap_max, trim_threshold) = match self {
            MallocPolicy::Retain => (0, i32::MAX),
            MallocPolicy::Default => (GLIBC_MMAP_MAX, GLIBC_TRIM_THRESHOLD),
        };
        sys::mallopt(sys::M_MMAP_MAX, mmap_max)
            && sys::mallopt(sys::M_TRIM_THRESHOLD, trim_threshold)
    }
}

impl fmt::Display for MallocPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MallocPolicy::Retain => {
                write!(f, "retain (glibc M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1)")
            }
            MallocPolicy::Default => write!(f, "default (glibc's mmap and trim thresholds)"),
        }
    }
}

/// Applies the policy `VAEPIPE_MALLOC` asks for; called first thing in `main`.
pub fn apply_at_startup() -> MallocPolicy {
    let policy = MallocPolicy::from_env();
    if policy == MallocPolicy::Retain {
        policy.apply();
    }
    policy
}

/// The process's peak resident set (`VmHWM`) in bytes, where `/proc` has it.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Resets the peak-RSS mark to the current RSS (Linux: `5` into `/proc/self/clear_refs`), so
/// a benchmark can measure one phase's peak. Returns false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // mallopt: an FFI call with plain integer arguments, no pointers.
mod sys {
    pub use libc::{M_MMAP_MAX, M_TRIM_THRESHOLD};

    /// glibc's `mallopt`; true when it accepted the value.
    pub fn mallopt(param: libc::c_int, value: libc::c_int) -> bool {
        // SAFETY: mallopt takes two integers, touches only malloc's own (locked) state and is
        // documented as callable at any time from any thread.
        unsafe { libc::mallopt(param, value) == 1 }
    }

    /// Bytes glibc currently holds in mmapped blocks (`mallinfo2().hblkhd`).
    #[cfg(test)]
    pub fn mmapped_bytes() -> usize {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value.
        unsafe { libc::mallinfo2() }.hblkhd
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod sys {
    pub const M_MMAP_MAX: i32 = 0;
    pub const M_TRIM_THRESHOLD: i32 = 0;

    /// No glibc: nothing to tune.
    pub fn mallopt(_: i32, _: i32) -> bool {
        false
    }

    #[cfg(test)]
    pub fn mmapped_bytes() -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's count of bytes in mmapped blocks while a 16 MiB block is live, minus before.
    /// (16 MiB: above the default 128 KiB mmap threshold, and within a thread arena's 64 MiB
    /// heap — a larger block in a non-main thread is mapped whatever the policy.)
    fn mapped_while_holding_a_large_block() -> i64 {
        let before = sys::mmapped_bytes() as i64;
        let block = vec![1u8; 16 << 20];
        let during = sys::mmapped_bytes() as i64;
        std::hint::black_box(&block);
        during - before
    }

    #[test]
    fn retain_serves_large_blocks_from_the_heap() {
        // One test, not two: the policy is process-wide and tests run in parallel threads.
        // glibc's own accounting (mallinfo2) is per block, so other tests' allocations can only
        // add mapped bytes under `Default` and cannot add any under `Retain`.
        // Only the retain half is asserted: under glibc's defaults the mmap threshold adapts
        // (freeing a large mapped block raises it), so whether a 16 MiB block is mapped
        // depends on what the other tests in this process freed before.
        assert!(MallocPolicy::Default.apply(), "glibc rejected the defaults");
        assert!(
            MallocPolicy::Retain.apply(),
            "glibc rejected the retain policy"
        );
        let mapped = (0..3).map(|_| mapped_while_holding_a_large_block()).min();
        assert!(
            mapped < Some(1 << 20),
            "retain still mapped {mapped:?} bytes"
        );
    }

    #[test]
    fn peak_rss_is_read_from_proc() {
        let peak = peak_rss_bytes().unwrap_or(0);
        assert!(peak > 1 << 20, "{peak}");
    }
}
