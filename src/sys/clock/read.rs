//! Reading the time. Responders read CLOCK_TAI (or CLOCK_REALTIME) through the vDSO (no
//! syscall) and convert it with the published [`ClockParams`].

use crate::proto::clock::{Clock, ClockParams};
use crate::proto::wire::NtpTimestamp;

/// Reads a kernel clock in nanoseconds.
#[inline]
pub fn read_clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it. The clocks
    // passed here (TAI, REALTIME, MONOTONIC) always exist on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// A kernel clock, converted with a copy of the published parameters.
///
/// A responder reads T3 from the same kernel clock its T2 stamps come from, so that the two can
/// never disagree by a change of the kernel's TAI offset: CLOCK_TAI on the XDP path (stamps from
/// `bpf_ktime_get_tai_ns`), CLOCK_REALTIME on the socket path (SO_TIMESTAMPING software stamps).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    pub params: ClockParams,
    tai: bool,
}

impl SystemClock {
    /// Reads CLOCK_TAI.
    pub fn new(params: ClockParams) -> Self {
        SystemClock { params, tai: true }
    }

    /// Reads CLOCK_REALTIME.
    pub fn realtime(params: ClockParams) -> Self {
        SystemClock { params, tai: false }
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> NtpTimestamp {
        if self.tai {
            self.params.ntp_from_tai(read_clock_ns(libc::CLOCK_TAI))
        } else {
            self.params.ntp_from_realtime(read_clock_ns(libc::CLOCK_REALTIME))
        }
    }
}

/// TAI − UTC in seconds as the kernel currently applies it (adjtimex's `tai` field), read as
/// the whole seconds between CLOCK_TAI and CLOCK_REALTIME, which differ by exactly that: two
/// vDSO reads, no adjtimex, so that a service whose system call filter refuses the clock
/// calls (systemd's ProtectClock=, deploy/strata.service) still gets it right.
pub fn kernel_tai_offset() -> i32 {
    loop {
        let utc = read_clock_ns(libc::CLOCK_REALTIME);
        let tai = read_clock_ns(libc::CLOCK_TAI);
        let diff = tai - utc;
        let seconds = diff.div_euclid(1_000_000_000);
        // The reads are nanoseconds apart; a preemption between them (the remainder far from
        // zero) is read again rather than rounded.
        if diff.rem_euclid(1_000_000_000) < 10_000_000 {
            return seconds as i32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tai_offset_is_adjtimex_s() {
        // SAFETY: an all-zero timex with modes = 0 is a valid read-only query.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        // SAFETY: `tx` is a valid, writable timex; with modes 0 adjtimex changes nothing.
        assert!(unsafe { libc::adjtimex(&mut tx) } >= 0);
        assert_eq!(kernel_tai_offset(), tx.tai);
    }

    #[test]
    fn system_clocks_agree_with_realtime() {
        let params = ClockParams::identity(kernel_tai_offset());
        for clock in [SystemClock::new(params), SystemClock::realtime(params)] {
            let before = read_clock_ns(libc::CLOCK_REALTIME);
            let now = clock.now().to_unix_nanos(before as i128);
            let after = read_clock_ns(libc::CLOCK_REALTIME);
            // Both reads bracket the clock read; allow a few ms for a preempted thread.
            assert!(now >= before as i128 - 1_000, "{now} < {before}");
            assert!(now <= after as i128 + 5_000_000, "{now} > {after}");
        }
    }
}
