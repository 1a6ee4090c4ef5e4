//! The PTP clock character device's ioctls, from include/uapi/linux/ptp_clock.h: the request
//! numbers and the structures they fill, laid out as the kernel's (the tests hold them to the
//! header's sizes, offsets and `_IOR`/`_IOW`/`_IOWR` numbers).

/// `PTP_MAX_SAMPLES`: the most readings one PTP_SYS_OFFSET(_EXTENDED) call takes.
pub const MAX_SAMPLES: usize = 25;

const MAGIC: u64 = b'=' as u64;
const DIR_WRITE: u64 = 1;
const DIR_READ: u64 = 2;

/// `_IOC(dir, '=', nr, size)` of asm-generic/ioctl.h (x86, arm64, riscv: 2 direction bits at
/// 30, 14 size bits at 16).
const fn ioc(dir: u64, nr: u64, size: usize) -> libc::c_ulong {
    (dir << 30 | (size as u64) << 16 | MAGIC << 8 | nr) as libc::c_ulong
}

pub const PTP_CLOCK_GETCAPS: libc::c_ulong = ioc(DIR_READ, 1, std::mem::size_of::<ClockCaps>());
pub const PTP_SYS_OFFSET: libc::c_ulong = ioc(DIR_WRITE, 5, std::mem::size_of::<SysOffset>());
pub const PTP_SYS_OFFSET_PRECISE: libc::c_ulong =
    ioc(DIR_READ | DIR_WRITE, 8, std::mem::size_of::<SysOffsetPrecise>());
pub const PTP_SYS_OFFSET_EXTENDED: libc::c_ulong =
    ioc(DIR_READ | DIR_WRITE, 9, std::mem::size_of::<SysOffsetExtended>());

/// `struct ptp_clock_time`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockTime {
    pub sec: i64,
    pub nsec: u32,
    pub reserved: u32,
}

impl ClockTime {
    pub fn ns(&self) -> i64 {
        self.sec
            .wrapping_mul(1_000_000_000)
            .wrapping_add(self.nsec as i64)
    }
}

/// `struct ptp_clock_caps`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ClockCaps {
    /// Parts per billion.
    pub max_adj: i32,
    pub n_alarm: i32,
    pub n_ext_ts: i32,
    pub n_per_out: i32,
    pub pps: i32,
    pub n_pins: i32,
    /// Whether PTP_SYS_OFFSET_PRECISE is there.
    pub cross_timestamping: i32,
    pub adjust_phase: i32,
    pub rsv: [i32; 12],
}

/// `struct ptp_sys_offset`: 2n+1 readings, system first and last.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SysOffset {
    pub n_samples: u32,
    pub rsv: [u32; 3],
    pub ts: [ClockTime; 2 * MAX_SAMPLES + 1],
}

/// `struct ptp_sys_offset_extended`: n (system, PHC, system) triples.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SysOffsetExtended {
    pub n_samples: u32,
    pub rsv: [u32; 3],
    pub ts: [[ClockTime; 3]; MAX_SAMPLES],
}

/// `struct ptp_sys_offset_precise`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SysOffsetPrecise {
    pub device: ClockTime,
    pub sys_realtime: ClockTime,
    pub sys_monoraw: ClockTime,
    pub rsv: [u32; 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The figures a C program compiled against linux/ptp_clock.h prints (sizeof, offsetof and
    /// the ioctl macros), on x86_64 and arm64 alike.
    #[test]
    fn layout_matches_the_kernel_header() {
        assert_eq!(size_of::<ClockTime>(), 16);
        assert_eq!(offset_of!(ClockTime, nsec), 8);
        assert_eq!(size_of::<ClockCaps>(), 80);
        assert_eq!(offset_of!(ClockCaps, cross_timestamping), 24);
        assert_eq!(size_of::<SysOffset>(), 832);
        assert_eq!(offset_of!(SysOffset, ts), 16);
        assert_eq!(size_of::<SysOffsetExtended>(), 1216);
        assert_eq!(offset_of!(SysOffsetExtended, ts), 16);
        assert_eq!(size_of::<SysOffsetPrecise>(), 64);
        assert_eq!(offset_of!(SysOffsetPrecise, sys_realtime), 16);
        assert_eq!(offset_of!(SysOffsetPrecise, sys_monoraw), 32);
    }

    #[test]
    fn request_numbers_match_the_kernel_header() {
        assert_eq!(PTP_CLOCK_GETCAPS, 0x8050_3d01);
        assert_eq!(PTP_SYS_OFFSET, 0x4340_3d05);
        assert_eq!(PTP_SYS_OFFSET_PRECISE, 0xc040_3d08);
        assert_eq!(PTP_SYS_OFFSET_EXTENDED, 0xc4c0_3d09);
    }

    #[test]
    fn clock_time_in_nanoseconds() {
        let t = ClockTime {
            sec: 1_700_000_000,
            nsec: 999_999_999,
            reserved: 0,
        };
        assert_eq!(t.ns(), 1_700_000_000_999_999_999);
        assert_eq!(
            ClockTime {
                sec: -1,
                nsec: 500_000_000,
                reserved: 0
            }
            .ns(),
            -500_000_000
        );
    }
}
