//! Reading the time. Responders read CLOCK_TAI through the vDSO (no syscall) and convert it with
//! the published [`ClockParams`]; tests use a [`FixedClock`].

use super::ClockParams;
use crate::wire::NtpTimestamp;

/// A source of "now" in NTP time, as `respond()` reads it for the transmit timestamp.
pub trait Clock {
    fn now(&self) -> NtpTimestamp;
}

/// Reads a kernel clock in nanoseconds.
#[inline]
pub fn read_clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it. The clocks
    // passed here (TAI, REALTIME, MONOTONIC) always exist on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The kernel's CLOCK_TAI, converted with a copy of the published parameters.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    pub params: ClockParams,
}

impl SystemClock {
    pub fn new(params: ClockParams) -> Self {
        SystemClock { params }
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> NtpTimestamp {
        self.params.ntp_from_tai(read_clock_ns(libc::CLOCK_TAI))
    }
}

/// A clock that always reads the same time: for tests and benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub NtpTimestamp);

impl Clock for FixedClock {
    fn now(&self) -> NtpTimestamp {
        self.0
    }
}

/// TAI − UTC in seconds as the kernel currently applies it (adjtimex's `tai` field).
pub fn kernel_tai_offset() -> i32 {
    // SAFETY: an all-zero timex with modes = 0 is a valid read-only query.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex; with modes 0 adjtimex changes nothing.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        0
    } else {
        tx.tai
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_agrees_with_realtime() {
        let clock = SystemClock::new(ClockParams::identity(kernel_tai_offset()));
        let before = read_clock_ns(libc::CLOCK_REALTIME);
        let now = clock.now().to_unix_nanos(before as i128);
        let after = read_clock_ns(libc::CLOCK_REALTIME);
        // Both reads bracket the TAI read; allow a few ms for a preempted thread.
        assert!(now >= before as i128 - 1_000, "{now} < {before}");
        assert!(now <= after as i128 + 5_000_000, "{now} > {after}");
    }
}
