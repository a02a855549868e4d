//! Thread CPU time for the examples that time searches on a shared machine.

/// Seconds this thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`): unlike wall time it leaves
/// out time spent waiting for a core, so runs on a shared machine compare fairly.
#[cfg(target_os = "linux")]
pub fn cpu_seconds() -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call writes only it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

#[cfg(not(target_os = "linux"))]
pub fn cpu_seconds() -> Option<f64> {
    None
}
