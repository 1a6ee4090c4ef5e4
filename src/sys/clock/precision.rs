//! The server's precision: log2 of the smallest step at which its clock can be read, measured at
//! start as ntpd and chrony do, and sent in every reply.

use super::read::read_clock_ns;

/// Measures the clock's read granularity: the smallest non-zero difference between consecutive
/// reads over a short run, as a log2 of seconds, rounded up (the conservative side).
pub fn measure_precision() -> i8 {
    let mut smallest = i64::MAX;
    let mut last = read_clock_ns(libc::CLOCK_TAI);
    for _ in 0..2_000 {
        let now = read_clock_ns(libc::CLOCK_TAI);
        let step = now - last;
        if step > 0 && step < smallest {
            smallest = step;
        }
        last = now;
    }
    precision_from_nanos(smallest)
}

/// log2 of `nanos` nanoseconds in seconds, rounded up, bounded to what the field can say.
pub fn precision_from_nanos(nanos: i64) -> i8 {
    if nanos <= 0 || nanos == i64::MAX {
        return -20; // no measurement: the microsecond clock ntpd assumes
    }
    let log2 = (nanos as f64 * 1e-9).log2().ceil();
    log2.clamp(-32.0, 0.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_of_known_steps() {
        assert_eq!(precision_from_nanos(1_000), -9 - 10); // 1 µs ≈ 2^-19.93
        assert_eq!(precision_from_nanos(30), -24); // 30 ns is just over 2^-25 s (29.8 ns)
        assert_eq!(precision_from_nanos(29), -25);
        assert_eq!(precision_from_nanos(1), -29);
        assert_eq!(precision_from_nanos(2_000_000_000), 0);
        assert_eq!(precision_from_nanos(0), -20);
    }

    #[test]
    fn measured_precision_is_plausible() {
        let p = measure_precision();
        assert!((-32..=-10).contains(&p), "{p}");
    }
}
