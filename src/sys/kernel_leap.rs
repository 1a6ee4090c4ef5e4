//! `--discipline-system` and leap seconds: the kernel's TAI offset (`ADJ_TAI`, as chrony sets
//! it from `leapsectz`) and its leap-second arming (`STA_INS`/`STA_DEL`), so that the system
//! clock goes through the leap as strata's served time does: the kernel steps CLOCK_REALTIME
//! back at 00:00:00 (23:59:59 twice) or forward at 23:59:59, and moves its TAI offset with it,
//! so that CLOCK_TAI runs on untouched.
//!
//! The kernel leaps at the next UTC midnight whenever a bit is set, and does not clear the bit
//! afterwards (it would leap again the next midnight): strata arms it only during the last day
//! of the month and disarms it once the leap is seen done (the offset moved). The timex values
//! are pure functions, tested without touching the clock; only the two `set_*` calls change the
//! kernel.

use std::io;

/// `status` with the leap bits for `delta`: +1 `STA_INS`, -1 `STA_DEL`, 0 neither; every other
/// bit kept.
pub fn leap_status_bits(status: i32, delta: i8) -> i32 {
    let cleared = status & !(libc::STA_INS | libc::STA_DEL);
    match delta.signum() {
        1 => cleared | libc::STA_INS,
        -1 => cleared | libc::STA_DEL,
        _ => cleared,
    }
}

/// Whether the kernel status word arms a leap of `delta` (+1 `STA_INS`, -1 `STA_DEL`).
pub fn kernel_armed_for(status: i32, delta: i8) -> bool {
    match delta.signum() {
        1 => status & libc::STA_INS != 0,
        -1 => status & libc::STA_DEL != 0,
        _ => false,
    }
}

/// The timex that arms (or disarms, `delta` 0) the kernel for a leap, from its current status.
pub fn timex_for_leap(current_status: i32, delta: i8) -> libc::timex {
    // SAFETY: an all-zero timex is a valid value (modes 0, every field zero).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_STATUS as libc::c_uint;
    tx.status = leap_status_bits(current_status, delta);
    tx
}

/// The timex that sets the kernel's TAI offset (seconds; it goes in `constant`).
pub fn timex_for_tai(tai_minus_utc: i32) -> libc::timex {
    // SAFETY: as above.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_TAI as libc::c_uint;
    tx.constant = tai_minus_utc as libc::c_long;
    tx
}

fn adjtimex(tx: &mut libc::timex) -> io::Result<i32> {
    // SAFETY: `tx` is a valid, initialized timex; adjtimex reads the fields its modes name and
    // writes the kernel's state back into it.
    let rc = unsafe { libc::adjtimex(tx) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The kernel's status word and TAI offset, read without changing anything.
pub fn read_kernel_leap() -> io::Result<(i32, i32)> {
    // SAFETY: an all-zero timex with modes 0 is a read-only query.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    adjtimex(&mut tx)?;
    Ok((tx.status, tx.tai))
}

/// Arms the kernel for a leap at the coming UTC midnight (+1 insert, -1 delete), or disarms it
/// (0). Changes the kernel clock's state.
pub fn set_kernel_leap(delta: i8) -> io::Result<()> {
    // SAFETY: an all-zero timex with modes 0 is a read-only query.
    let mut now: libc::timex = unsafe { std::mem::zeroed() };
    adjtimex(&mut now)?;
    let mut tx = timex_for_leap(now.status, delta);
    adjtimex(&mut tx).map(|_| ())
}

/// Sets the kernel's TAI offset: CLOCK_TAI moves by the change. Changes the kernel clock's
/// state; call it before anything reads CLOCK_TAI with the old offset.
pub fn set_kernel_tai(tai_minus_utc: i32) -> io::Result<()> {
    let mut tx = timex_for_tai(tai_minus_utc);
    adjtimex(&mut tx).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arming_sets_one_leap_bit_and_keeps_the_others() {
        let others = libc::STA_NANO | libc::STA_UNSYNC;
        assert_eq!(leap_status_bits(others, 1), others | libc::STA_INS);
        assert_eq!(
            leap_status_bits(others | libc::STA_INS, -1),
            others | libc::STA_DEL
        );
        assert_eq!(
            leap_status_bits(others | libc::STA_DEL | libc::STA_INS, 0),
            others
        );
        let tx = timex_for_leap(libc::STA_NANO, 1);
        assert_eq!(tx.modes, libc::ADJ_STATUS as libc::c_uint);
        assert_eq!(tx.status, libc::STA_NANO | libc::STA_INS);
    }

    #[test]
    fn armed_means_the_bit_of_that_sign() {
        assert!(kernel_armed_for(libc::STA_INS | libc::STA_NANO, 1));
        assert!(!kernel_armed_for(libc::STA_INS, -1));
        assert!(kernel_armed_for(libc::STA_DEL, -1));
        assert!(!kernel_armed_for(libc::STA_NANO, 1));
        assert!(!kernel_armed_for(libc::STA_INS | libc::STA_DEL, 0));
    }

    #[test]
    fn reading_the_kernel_s_leap_state_changes_nothing() {
        // A read-only query (modes 0): safe on any machine.
        let (_status, tai) = read_kernel_leap().unwrap();
        assert!((0..1000).contains(&tai), "{tai}");
    }

    #[test]
    fn the_tai_offset_goes_in_constant_with_adj_tai_alone() {
        let tx = timex_for_tai(37);
        assert_eq!(tx.modes, libc::ADJ_TAI as libc::c_uint);
        assert_eq!(tx.constant, 37);
        assert_eq!(tx.status, 0, "no status change");
    }
}
