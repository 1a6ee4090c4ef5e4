//! The kernel's PPS API (RFC 2783 as Linux implements it, include/uapi/linux/pps.h): a
//! `/dev/ppsN` device timestamps each edge of a pulse-per-second signal with the system clock in
//! its interrupt handler, and counts the edges. The reader sets the edge it wants captured
//! (`PPS_GETCAP`, `PPS_GETPARAMS`, `PPS_SETPARAMS`), then asks for the latest edge with
//! `PPS_FETCH` and a zero timeout, which returns at once: the sequence number tells a new edge
//! from one already read, and how many were missed in between.
//!
//! [`PpsDevice`] is what the refclock driver reads; [`KernelPps`] is the device, and
//! [`SimulatedPps`] an edge generator behind the same interface for the tests (no PPS hardware
//! is needed to exercise everything above the ioctls).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// `struct pps_ktime`: a timestamp (or a timeout) as the PPS ioctls exchange it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PpsKtime {
    pub sec: i64,
    pub nsec: i32,
    /// `PPS_TIME_INVALID` in a timeout: wait without a limit.
    pub flags: u32,
}

/// `struct pps_kinfo`: the latest edge of each kind and its sequence number.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PpsKinfo {
    pub assert_sequence: u32,
    pub clear_sequence: u32,
    pub assert_tu: PpsKtime,
    pub clear_tu: PpsKtime,
    pub current_mode: libc::c_int,
}

/// `struct pps_fdata`: what `PPS_FETCH` fills in, and how long it may wait for an edge.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PpsFdata {
    pub info: PpsKinfo,
    pub timeout: PpsKtime,
}

/// `struct pps_kparams`: the API version, the capture mode and the offset compensations.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PpsKparams {
    pub api_version: libc::c_int,
    pub mode: libc::c_int,
    pub assert_off_tu: PpsKtime,
    pub clear_off_tu: PpsKtime,
}

pub const PPS_CAPTUREASSERT: libc::c_int = 0x01;
pub const PPS_CAPTURECLEAR: libc::c_int = 0x02;

/// Linux's `_IOC(dir, type, nr, size)` on the architectures with the generic encoding.
const fn ioc(dir: u64, kind: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((kind as u64) << 8) | nr as u64
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
/// The header declares the four with a pointer type as the "size" (`struct pps_kparams *`), so
/// the size field of their numbers is a pointer's; the kernel copies the whole struct anyway.
const PTR: usize = std::mem::size_of::<*const u8>();
pub const PPS_GETPARAMS: u64 = ioc(IOC_READ, b'p', 0xa1, PTR);
pub const PPS_SETPARAMS: u64 = ioc(IOC_WRITE, b'p', 0xa2, PTR);
pub const PPS_GETCAP: u64 = ioc(IOC_READ, b'p', 0xa3, PTR);
pub const PPS_FETCH: u64 = ioc(IOC_READ | IOC_WRITE, b'p', 0xa4, PTR);

/// The latest edge of the captured kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PpsEdge {
    /// The kernel's count of edges of this kind (wraps at 2^32).
    pub sequence: u32,
    /// CLOCK_REALTIME when the edge came (Unix nanoseconds).
    pub system_time_ns: i64,
}

/// A PPS source the driver reads without blocking.
pub trait PpsDevice: Send {
    /// The latest edge; `None` before the first one. The same edge is returned until the next.
    fn fetch(&mut self) -> io::Result<Option<PpsEdge>>;
}

/// A `/dev/ppsN` device, set to capture one edge kind.
pub struct KernelPps {
    file: File,
    clear: bool,
}

fn ioctl<T>(file: &File, request: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed `#[repr(C)]` value of the struct the
    // request's header declaration names (checked by the layout tests below), which the kernel
    // reads and/or writes for the length of the call only.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl KernelPps {
    /// Opens the device and sets it to capture the assert edge (`clear`: the clear edge) only,
    /// as chrony does; a device that cannot capture that edge is an error.
    pub fn open(path: &Path, clear: bool) -> io::Result<KernelPps> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut caps: libc::c_int = 0;
        ioctl(&file, PPS_GETCAP, &mut caps)
            .map_err(|e| io::Error::new(e.kind(), format!("PPS_GETCAP: {e} (not a PPS device?)")))?;
        let (want, other, name) = if clear {
            (PPS_CAPTURECLEAR, PPS_CAPTUREASSERT, "clear")
        } else {
            (PPS_CAPTUREASSERT, PPS_CAPTURECLEAR, "assert")
        };
        if caps & want == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the device cannot capture the {name} edge (capabilities {caps:#x})"),
            ));
        }
        let mut params = PpsKparams::default();
        ioctl(&file, PPS_GETPARAMS, &mut params)
            .map_err(|e| io::Error::new(e.kind(), format!("PPS_GETPARAMS: {e}")))?;
        // The mode read back already names the timestamp format (the kernel fills in
        // PPS_TSFMT_TSPEC); asking for a bit the device lacks would be EINVAL.
        params.mode = (params.mode | want) & !other;
        ioctl(&file, PPS_SETPARAMS, &mut params)
            .map_err(|e| io::Error::new(e.kind(), format!("PPS_SETPARAMS: {e}")))?;
        Ok(KernelPps { file, clear })
    }
}

impl PpsDevice for KernelPps {
    fn fetch(&mut self) -> io::Result<Option<PpsEdge>> {
        // A zero timeout (flags clear): the latest edges, without waiting for a new one.
        let mut data = PpsFdata::default();
        ioctl(&self.file, PPS_FETCH, &mut data)?;
        let (sequence, tu) = if self.clear {
            (data.info.clear_sequence, data.info.clear_tu)
        } else {
            (data.info.assert_sequence, data.info.assert_tu)
        };
        Ok(edge_of(sequence, tu))
    }
}

/// The edge a fetched timestamp names; a zero timestamp is "no edge yet", as chrony reads it.
fn edge_of(sequence: u32, tu: PpsKtime) -> Option<PpsEdge> {
    if (tu.sec == 0 && tu.nsec == 0) || !(0..1_000_000_000).contains(&tu.nsec) {
        return None;
    }
    let ns = tu.sec.checked_mul(1_000_000_000)?.checked_add(tu.nsec as i64)?;
    Some(PpsEdge {
        sequence,
        system_time_ns: ns,
    })
}

/// A PPS device made of edges a test gives it: each [`SimulatedPps::pulse`] is the next edge
/// (sequence number one up) and `fetch` returns the latest, as the kernel does, so two pulses
/// between fetches are a missed edge. Clones share the device.
#[derive(Debug, Clone, Default)]
pub struct SimulatedPps {
    inner: Arc<Mutex<SimState>>,
}

#[derive(Debug, Default)]
struct SimState {
    latest: Option<PpsEdge>,
    sequence: u32,
    /// Errors to return at the next fetches (a device that went away).
    errors: VecDeque<io::ErrorKind>,
}

impl SimulatedPps {
    pub fn new() -> SimulatedPps {
        SimulatedPps::default()
    }

    /// An edge at system time `system_time_ns`.
    pub fn pulse(&self, system_time_ns: i64) {
        let mut s = self.inner.lock().expect("simulated PPS");
        s.sequence = s.sequence.wrapping_add(1);
        s.latest = Some(PpsEdge {
            sequence: s.sequence,
            system_time_ns,
        });
    }

    /// The next fetch fails with `kind`.
    pub fn fail_next(&self, kind: io::ErrorKind) {
        self.inner.lock().expect("simulated PPS").errors.push_back(kind);
    }
}

impl PpsDevice for SimulatedPps {
    fn fetch(&mut self) -> io::Result<Option<PpsEdge>> {
        let mut s = self.inner.lock().expect("simulated PPS");
        if let Some(kind) = s.errors.pop_front() {
            return Err(io::Error::new(kind, "simulated PPS failure"));
        }
        Ok(s.latest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The sizes, offsets and request numbers of include/uapi/linux/pps.h on 64-bit Linux
    /// (as a C compiler gives them for that header on x86_64 and aarch64).
    #[test]
    fn layouts_and_numbers_match_the_kernel_header() {
        assert_eq!(size_of::<PpsKtime>(), 16);
        assert_eq!(size_of::<PpsKinfo>(), 48);
        assert_eq!(offset_of!(PpsKinfo, assert_tu), 8);
        assert_eq!(offset_of!(PpsKinfo, clear_tu), 24);
        assert_eq!(offset_of!(PpsKinfo, current_mode), 40);
        assert_eq!(size_of::<PpsFdata>(), 64);
        assert_eq!(offset_of!(PpsFdata, timeout), 48);
        assert_eq!(size_of::<PpsKparams>(), 40);
        assert_eq!(offset_of!(PpsKparams, assert_off_tu), 8);
        assert_eq!(offset_of!(PpsKparams, clear_off_tu), 24);
        assert_eq!(PPS_GETPARAMS, 0x8008_70a1);
        assert_eq!(PPS_SETPARAMS, 0x4008_70a2);
        assert_eq!(PPS_GETCAP, 0x8008_70a3);
        assert_eq!(PPS_FETCH, 0xc008_70a4);
    }

    #[test]
    fn a_zero_or_malformed_timestamp_is_no_edge() {
        let t = |sec, nsec| PpsKtime { sec, nsec, flags: 0 };
        assert_eq!(edge_of(0, t(0, 0)), None);
        assert_eq!(edge_of(3, t(5, 1_000_000_000)), None);
        assert_eq!(edge_of(3, t(5, -1)), None);
        assert_eq!(
            edge_of(3, t(5, 7)),
            Some(PpsEdge {
                sequence: 3,
                system_time_ns: 5_000_000_007
            })
        );
    }

    #[test]
    fn a_missing_device_or_a_file_that_is_not_one_is_an_error() {
        let e = KernelPps::open(Path::new("/dev/pps-strata-missing"), false)
            .err()
            .expect("no such device");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // /dev/null opens but answers no PPS ioctl.
        let e = KernelPps::open(Path::new("/dev/null"), false)
            .err()
            .expect("not a PPS device");
        assert!(e.to_string().contains("PPS_GETCAP"), "{e}");
    }

    #[test]
    fn the_simulated_device_returns_the_latest_edge() {
        let pps = SimulatedPps::new();
        let mut reader = pps.clone();
        assert_eq!(reader.fetch().unwrap(), None);
        pps.pulse(10);
        pps.pulse(20);
        let e = reader.fetch().unwrap().unwrap();
        assert_eq!((e.sequence, e.system_time_ns), (2, 20));
        assert_eq!(reader.fetch().unwrap(), Some(e), "until the next edge");
        pps.fail_next(io::ErrorKind::NotFound);
        assert!(reader.fetch().is_err());
    }
}
