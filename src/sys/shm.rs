//! The ntpshm shared-memory segment that gpsd, phc2sys and other time sources write for ntpd and
//! chrony (ntpd's SHM driver, type 28): one System V segment per unit, key 0x4e545030 ("NTP0")
//! plus the unit, holding one `struct shmTime`. The writer fills in the reference's time
//! (`clockTimeStamp`) and the system time it was taken at (`receiveTimeStamp`), then sets
//! `valid`; in mode 1 it also increments `count` before and after writing, so that a reader that
//! sees `count` change while it copies knows the copy is torn. The reader clears `valid` once it
//! has the sample, so each sample is read once.

use std::io;
use std::sync::atomic::{fence, Ordering};

/// The key of unit 0; unit N is this plus N.
pub const SHM_KEY_BASE: i32 = 0x4e54_5030;

/// `struct shmTime` as ntpd's refclock_shm.c defines it (C layout, native `time_t` and `int`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShmTime {
    pub mode: libc::c_int,
    pub count: libc::c_int,
    pub clock_sec: libc::time_t,
    pub clock_usec: libc::c_int,
    pub receive_sec: libc::time_t,
    pub receive_usec: libc::c_int,
    pub leap: libc::c_int,
    pub precision: libc::c_int,
    pub nsamples: libc::c_int,
    pub valid: libc::c_int,
    pub clock_nsec: libc::c_uint,
    pub receive_nsec: libc::c_uint,
    pub dummy: [libc::c_int; 8],
}

/// One sample read from the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmSample {
    /// The reference's time (Unix nanoseconds).
    pub clock_ns: i64,
    /// The system clock (CLOCK_REALTIME, Unix nanoseconds) when the reference had that time.
    pub receive_ns: i64,
    /// NTP leap indicator (0 none, 1 insert, 2 delete, 3 not synchronized).
    pub leap: u8,
    /// The writer's precision (log2 s).
    pub precision: i32,
}

/// What one look at the segment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmRead {
    Sample(ShmSample),
    /// Nothing new (`valid` clear).
    Empty,
    /// The writer changed it while it was copied (mode 1): read again next time.
    Torn,
    /// A mode other than 0 and 1, or timestamps out of range.
    Bad,
}

/// Seconds and the nanosecond field if it agrees with the microsecond one (a writer that
/// predates `*NSec` leaves them zero), else the microseconds.
fn unix_ns(sec: libc::time_t, usec: libc::c_int, nsec: libc::c_uint) -> Option<i64> {
    let sub = if nsec < 1_000_000_000 && (nsec / 1000) as i64 == usec as i64 {
        nsec as i64
    } else if (0..1_000_000).contains(&usec) {
        usec as i64 * 1000
    } else {
        return None;
    };
    sec.checked_mul(1_000_000_000)?.checked_add(sub)
}

impl ShmTime {
    /// The sample a consistent copy holds, as chrony's SHM driver reads it.
    pub fn sample(&self) -> Option<ShmSample> {
        Some(ShmSample {
            clock_ns: unix_ns(self.clock_sec, self.clock_usec, self.clock_nsec)?,
            receive_ns: unix_ns(self.receive_sec, self.receive_usec, self.receive_nsec)?,
            leap: (self.leap & 3) as u8,
            precision: self.precision,
        })
    }
}

/// An attached segment.
pub struct ShmSegment {
    ptr: *mut ShmTime,
    unit: u8,
}

// SAFETY: the pointer is to a shared mapping that lives until `Drop` detaches it; it is only
// dereferenced through `&mut self`, so one thread at a time uses it (other processes write it
// concurrently, which the count/valid protocol and volatile accesses are for).
unsafe impl Send for ShmSegment {}

impl ShmSegment {
    /// Attaches the segment of `unit`, creating it if no writer has yet (as ntpd and chrony do;
    /// units 0 and 1 readable and writable by root only, the others by everyone, ntpd's
    /// convention that gpsd follows).
    pub fn attach(unit: u8) -> io::Result<ShmSegment> {
        let key = SHM_KEY_BASE + unit as i32;
        let perm = if unit < 2 { 0o600 } else { 0o666 };
        // SAFETY: shmget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::shmget(key, std::mem::size_of::<ShmTime>(), libc::IPC_CREAT | perm) };
        if id < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("shmget of the SHM segment of unit {unit} (key {key:#x}): {e}"),
            ));
        }
        // SAFETY: a null address lets the kernel choose where to map it; the result is checked.
        let ptr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if ptr as isize == -1 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("shmat of the SHM segment of unit {unit}: {e}"),
            ));
        }
        Ok(ShmSegment {
            ptr: ptr.cast(),
            unit,
        })
    }

    pub fn unit(&self) -> u8 {
        self.unit
    }

    /// Looks at the segment once; a sample found is marked read (`valid` cleared).
    pub fn read(&mut self) -> ShmRead {
        // SAFETY: `ptr` is a live mapping of at least size_of::<ShmTime>() bytes (shmget was
        // asked for that size and refuses a smaller existing segment), suitably aligned (page
        // aligned); volatile because another process writes it.
        let copy = unsafe { std::ptr::read_volatile(self.ptr) };
        fence(Ordering::Acquire);
        // SAFETY: as above; one field, read again.
        let count = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*self.ptr).count)) };
        if copy.valid == 0 {
            return ShmRead::Empty;
        }
        let result = match copy.mode {
            1 if copy.count != count => return ShmRead::Torn,
            0 | 1 => copy.sample().map_or(ShmRead::Bad, ShmRead::Sample),
            _ => ShmRead::Bad,
        };
        // SAFETY: as above; the reader's one write, so the next sample is a new one.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*self.ptr).valid), 0) };
        result
    }
}

impl Drop for ShmSegment {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from shmat and is detached once; the segment itself stays for the
        // writer.
        unsafe { libc::shmdt(self.ptr.cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_ntpds() {
        // 64-bit Linux: time_t is 8 bytes, so the struct is 96 bytes with these offsets.
        assert_eq!(std::mem::size_of::<ShmTime>(), 96);
        assert_eq!(std::mem::offset_of!(ShmTime, clock_sec), 8);
        assert_eq!(std::mem::offset_of!(ShmTime, receive_sec), 24);
        assert_eq!(std::mem::offset_of!(ShmTime, valid), 48);
        assert_eq!(std::mem::offset_of!(ShmTime, clock_nsec), 52);
        assert_eq!(std::mem::offset_of!(ShmTime, receive_nsec), 56);
    }

    proptest::proptest! {
        /// Whatever a writer leaves in the segment, reading it never panics, and a sample read
        /// has sub-second parts in range.
        #[test]
        fn any_segment_contents_read_safely(
            clock in (proptest::prelude::any::<i64>(), proptest::prelude::any::<i32>(), proptest::prelude::any::<u32>()),
            receive in (proptest::prelude::any::<i64>(), proptest::prelude::any::<i32>(), proptest::prelude::any::<u32>()),
            leap in proptest::prelude::any::<i32>(),
        ) {
            let t = ShmTime {
                mode: 1,
                clock_sec: clock.0,
                clock_usec: clock.1,
                clock_nsec: clock.2,
                receive_sec: receive.0,
                receive_usec: receive.1,
                receive_nsec: receive.2,
                leap,
                valid: 1,
                ..ShmTime::default()
            };
            if let Some(s) = t.sample() {
                proptest::prop_assert_eq!(s.clock_ns.div_euclid(1_000_000_000), clock.0);
                proptest::prop_assert!(s.leap <= 3);
            }
        }
    }

    #[test]
    fn nanoseconds_when_they_agree_with_microseconds() {
        let t = ShmTime {
            clock_sec: 100,
            clock_usec: 250_000,
            clock_nsec: 250_000_123,
            receive_sec: 100,
            receive_usec: 249_000,
            receive_nsec: 0,
            leap: 1,
            ..ShmTime::default()
        };
        let s = t.sample().unwrap();
        assert_eq!(s.clock_ns, 100_250_000_123);
        assert_eq!(s.receive_ns, 100_249_000_000, "nsec zero: the microseconds");
        assert_eq!(s.leap, 1);
        let bad = ShmTime {
            clock_usec: 1_000_000,
            ..t
        };
        assert_eq!(bad.sample(), None);
    }
}
