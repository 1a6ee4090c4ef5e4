//! Pinning worker threads to CPUs, and the thread settings that make paced sleeps precise.

/// Pins the calling thread to `core`; false if the kernel refused (no such CPU, or not allowed
/// by the cpuset).
pub fn pin_current(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// Asks for 1 ns timer slack on the calling thread. The default 50 µs slack would let the kernel
/// defer every paced wake-up by that much, which at high rates means fatter, burstier batches.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}
