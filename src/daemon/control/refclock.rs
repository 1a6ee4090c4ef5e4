//! The reference clock drivers: they read what gpsd (or another time source) hands over and give
//! the engine its readings (`crate::proto::control::refclock`). Each is read without blocking
//! at every turn of the control loop (at least ten times a second), which is enough for the one
//! or few samples a second these sources write; the readings carry their own timestamps, so
//! the lateness of a look does not enter the measurement.
//!
//! - `shm:UNIT`: the ntpshm segment (`crate::sys::shm`).
//! - `sock:PATH`: chrony's SOCK protocol, a datagram Unix socket strata binds at PATH; gpsd
//!   sends to `/run/chrony.DEVICE.sock` when it exists. Each datagram is one
//!   `struct sock_sample { struct timeval tv; double offset; int pulse; int leap; int _pad;
//!   int magic; }` in the host's byte order: the system time of the sample, the reference's
//!   time minus it (seconds), whether it is a bare PPS edge, the leap warning and 0x534f434b.
//! - `pps:DEVICE`: a kernel PPS device (`crate::sys::pps`), fetched without waiting; each new
//!   edge (by its sequence number) goes to the engine to be numbered
//!   (`crate::proto::control::pps`).
//! - `phc:DEVICE`: a PTP hardware clock, one cross-timestamp per look (`crate::sys::ptp`, the
//!   layer the PHC thread of the XDP path reads too): the PHC's time minus the system clock's.
//!   With `tai` the PHC keeps TAI (as ptp4l sets it) and TAI − UTC is taken off, from the leap
//!   list at the time of the reading (else the kernel's offset); with neither, no reading.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::proto::control::pps::{EdgeTracker, EdgeVerdict};
use crate::proto::control::refclock::{RefSample, RefclockDriver, RefclockSpec};
use crate::proto::wire::ntp::Leap;
use crate::sys::pps::{KernelPps, PpsDevice};
use crate::sys::ptp::{CrossStampSource, PtpDevice};
use crate::sys::shm::{ShmRead, ShmSegment};

/// The magic number of chrony's SOCK samples ("SOCK").
pub const SOCK_MAGIC: i32 = 0x534f_434b;
/// The size of `struct sock_sample` on 64-bit Linux.
pub const SOCK_SAMPLE_LEN: usize = 40;

/// Why a SOCK datagram was not a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockRefusal {
    Length(usize),
    Magic,
    /// A bare PPS edge: SOCK pulses are not numbered (the `pps:` driver reads kernel PPS).
    Pulse,
    Time,
}

/// Decodes one SOCK datagram.
pub fn decode_sock_sample(bytes: &[u8]) -> Result<RefSample, SockRefusal> {
    if bytes.len() != SOCK_SAMPLE_LEN {
        return Err(SockRefusal::Length(bytes.len()));
    }
    let i64_at = |at: usize| i64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let i32_at = |at: usize| i32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if i32_at(36) != SOCK_MAGIC {
        return Err(SockRefusal::Magic);
    }
    if i32_at(24) != 0 {
        return Err(SockRefusal::Pulse);
    }
    let (sec, usec) = (i64_at(0), i64_at(8));
    let offset = f64::from_ne_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if !(0..1_000_000).contains(&usec) || !offset.is_finite() {
        return Err(SockRefusal::Time);
    }
    let time = sec
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(usec * 1000))
        .ok_or(SockRefusal::Time)?;
    Ok(RefSample {
        time,
        offset,
        leap: leap_of(i32_at(28)),
    })
}

fn leap_of(value: i32) -> Leap {
    match value & 3 {
        0 => Leap::NoWarning,
        1 => Leap::AddSecond,
        2 => Leap::DeleteSecond,
        _ => Leap::Unsynchronized,
    }
}

/// One opened driver.
pub enum Driver {
    Shm(ShmSegment),
    Sock(UnixDatagram),
    /// The device and the sequence number of the edge read last.
    Pps(Box<dyn PpsDevice>, EdgeTracker),
    Phc(PhcReference),
}

/// A new PPS edge: its kernel time and how many edges were missed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub time: i64,
    pub missed: u32,
}

/// A PHC read as a reference clock.
pub struct PhcReference {
    source: Box<dyn CrossStampSource>,
    /// The PHC keeps TAI (`tai`).
    tai: bool,
    /// TAI − UTC now, as the control thread last said ([`Refclock::set_tai_minus_utc`]).
    tai_minus_utc: Option<i32>,
}

impl PhcReference {
    fn read(&mut self, name: &str, out: &mut Vec<RefSample>) -> bool {
        let reading = match self.source.read() {
            Ok(reading) => reading,
            Err(e) => {
                log::debug!("{name}: {e}");
                return false;
            }
        };
        let tai_ns = match (self.tai, self.tai_minus_utc) {
            (false, _) => 0,
            (true, Some(tai)) => tai as i64 * 1_000_000_000,
            (true, None) => {
                log::debug!("{name}: the PHC keeps TAI, but TAI - UTC is not known (no leap list)");
                return false;
            }
        };
        let s = reading.stamp;
        out.push(RefSample {
            time: s.sys_ns,
            offset: (s.phc_ns as i128 - tai_ns as i128 - s.sys_ns as i128) as f64 * 1e-9,
            leap: Leap::NoWarning,
        });
        true
    }
}

/// A driver and what it refused, for the log.
pub struct Refclock {
    pub name: String,
    driver: Driver,
    /// Datagrams or segments that were not readings, since the last report.
    pub refused: u64,
}

impl Refclock {
    /// Opens the driver `spec` names: attaches the SHM segment, or binds the SOCK socket (a
    /// stale socket file left at its path is replaced; any other file there is an error).
    pub fn open(spec: &RefclockSpec) -> io::Result<Refclock> {
        let driver = match &spec.driver {
            RefclockDriver::Shm(unit) => Driver::Shm(ShmSegment::attach(*unit)?),
            RefclockDriver::Sock(path) => Driver::Sock(bind_sock(Path::new(path))?),
            RefclockDriver::Pps(path) => Driver::Pps(
                Box::new(KernelPps::open(Path::new(path), spec.options.pulse.clear)?),
                EdgeTracker::default(),
            ),
            RefclockDriver::Phc(path) => {
                return Ok(Refclock::with_phc_source(
                    spec,
                    Box::new(PtpDevice::open(Path::new(path))?),
                ));
            }
        };
        Ok(Refclock {
            name: spec.driver.to_string(),
            driver,
            refused: 0,
        })
    }

    /// A PPS refclock reading `device` (a simulated one in tests) instead of the kernel's.
    pub fn with_pps_device(spec: &RefclockSpec, device: Box<dyn PpsDevice>) -> Refclock {
        Refclock {
            name: spec.driver.to_string(),
            driver: Driver::Pps(device, EdgeTracker::default()),
            refused: 0,
        }
    }

    /// The `phc:` refclock `spec` names, read from `source` (the device, or a simulated one).
    pub fn with_phc_source(spec: &RefclockSpec, source: Box<dyn CrossStampSource>) -> Refclock {
        Refclock {
            name: spec.driver.to_string(),
            driver: Driver::Phc(PhcReference {
                source,
                tai: spec.options.tai,
                tai_minus_utc: None,
            }),
            refused: 0,
        }
    }

    /// The PPS edge that came since the last look, if any (other drivers have none: their
    /// readings come through [`Refclock::read`]). A failed fetch counts as refused.
    pub fn read_edge(&mut self) -> Option<Edge> {
        let Driver::Pps(device, tracker) = &mut self.driver else {
            return None;
        };
        match device.fetch() {
            Ok(Some(edge)) => match tracker.accept(edge.sequence) {
                EdgeVerdict::New { missed } => Some(Edge {
                    time: edge.system_time_ns,
                    missed,
                }),
                EdgeVerdict::Seen => None,
            },
            Ok(None) => None,
            Err(e) => {
                self.refused += 1;
                log::debug!("{}: PPS_FETCH failed: {e}", self.name);
                None
            }
        }
    }

    /// TAI − UTC now, for a reference that keeps TAI (the others ignore it).
    pub fn set_tai_minus_utc(&mut self, tai_minus_utc: Option<i32>) {
        if let Driver::Phc(phc) = &mut self.driver {
            phc.tai_minus_utc = tai_minus_utc;
        }
    }

    /// Every reading available now, without blocking.
    pub fn read(&mut self, out: &mut Vec<RefSample>) {
        match &mut self.driver {
            // Its edges are read by `read_edge`, and numbered by the engine.
            Driver::Pps(..) => {}
            Driver::Phc(phc) => {
                if !phc.read(&self.name, out) {
                    self.refused += 1;
                }
            }
            Driver::Shm(segment) => match segment.read() {
                ShmRead::Sample(s) => {
                    let offset = (s.clock_ns as i128 - s.receive_ns as i128) as f64 * 1e-9;
                    out.push(RefSample {
                        time: s.receive_ns,
                        offset,
                        leap: leap_of(s.leap as i32),
                    });
                }
                ShmRead::Empty | ShmRead::Torn => {}
                ShmRead::Bad => self.refused += 1,
            },
            Driver::Sock(socket) => {
                let mut buf = [0u8; 64];
                loop {
                    match socket.recv(&mut buf) {
                        Ok(n) => match decode_sock_sample(&buf[..n]) {
                            Ok(s) => out.push(s),
                            Err(why) => {
                                self.refused += 1;
                                log::debug!("{}: datagram refused: {why:?}", self.name);
                            }
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            log::debug!("{}: receive failed: {e}", self.name);
                            break;
                        }
                    }
                }
            }
        }
    }
}

fn bind_sock(path: &Path) -> io::Result<UnixDatagram> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let socket = UnixDatagram::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample as chrony's documented `struct sock_sample` lays it out.
    fn sample(sec: i64, usec: i64, offset: f64, pulse: i32, leap: i32, magic: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&sec.to_ne_bytes());
        b.extend_from_slice(&usec.to_ne_bytes());
        b.extend_from_slice(&offset.to_ne_bytes());
        for v in [pulse, leap, 0, magic] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b
    }

    #[test]
    fn sock_samples_decode_and_bad_ones_are_refused() {
        let s = decode_sock_sample(&sample(1_800_000_000, 500_000, -0.25, 0, 1, SOCK_MAGIC)).unwrap();
        assert_eq!(s.time, 1_800_000_000_500_000_000);
        assert_eq!(s.offset, -0.25);
        assert_eq!(s.leap, Leap::AddSecond);
        assert_eq!(
            decode_sock_sample(&sample(1, 0, 0.0, 0, 0, 0x1234)),
            Err(SockRefusal::Magic)
        );
        assert_eq!(
            decode_sock_sample(&sample(1, 0, 0.0, 1, 0, SOCK_MAGIC)),
            Err(SockRefusal::Pulse)
        );
        assert_eq!(
            decode_sock_sample(&sample(1, 1_000_000, 0.0, 0, 0, SOCK_MAGIC)),
            Err(SockRefusal::Time)
        );
        assert_eq!(
            decode_sock_sample(&sample(1, 0, f64::NAN, 0, 0, SOCK_MAGIC)),
            Err(SockRefusal::Time)
        );
        assert_eq!(decode_sock_sample(&[0; 12]), Err(SockRefusal::Length(12)));
    }

    proptest::proptest! {
        /// Any datagram is a reading or a refusal, never a panic; a well-formed one decodes to
        /// what was written.
        #[test]
        fn any_datagram_decodes_or_is_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode_sock_sample(&bytes);
        }

        #[test]
        fn well_formed_samples_decode_exactly(
            sec in 0i64..4_000_000_000,
            usec in 0i64..1_000_000,
            offset in -1e3f64..1e3,
            leap in 0i32..4,
        ) {
            let s = decode_sock_sample(&sample(sec, usec, offset, 0, leap, SOCK_MAGIC)).unwrap();
            proptest::prop_assert_eq!(s.time, sec * 1_000_000_000 + usec * 1000);
            proptest::prop_assert_eq!(s.offset, offset);
            proptest::prop_assert_eq!(s.leap, leap_of(leap));
        }
    }

    #[test]
    fn a_pps_refclock_reads_each_edge_once_and_counts_the_missed() {
        use crate::sys::pps::SimulatedPps;
        let spec = crate::proto::control::refclock::parse_refclock("pps:/dev/pps0").unwrap();
        let device = SimulatedPps::new();
        let mut clock = Refclock::with_pps_device(&spec, Box::new(device.clone()));
        assert_eq!(clock.read_edge(), None, "no edge yet");
        device.pulse(1_000);
        assert_eq!(
            clock.read_edge(),
            Some(Edge {
                time: 1_000,
                missed: 0
            })
        );
        assert_eq!(clock.read_edge(), None, "the same edge again");
        device.pulse(2_000);
        device.pulse(3_000);
        assert_eq!(
            clock.read_edge(),
            Some(Edge {
                time: 3_000,
                missed: 1
            })
        );
        device.fail_next(io::ErrorKind::Other);
        assert_eq!(clock.read_edge(), None);
        assert_eq!(clock.refused, 1);
        let mut out = Vec::new();
        clock.read(&mut out);
        assert!(out.is_empty(), "edges are not readings until numbered");
    }

    #[test]
    fn a_missing_pps_device_is_an_error_at_open() {
        let spec = crate::proto::control::refclock::parse_refclock("pps:/dev/pps-strata-missing").unwrap();
        let e = Refclock::open(&spec).err().expect("no such device");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_phc_refclock_reads_cross_stamps_and_takes_tai_off() {
        use crate::sys::ptp::sim::{SharedPhc, SimConfig};
        let phc = SharedPhc::new(SimConfig {
            offset_ns: 37_000_000_000 + 5_000,
            ppm: 0.0,
            ..SimConfig::default()
        });
        let parse = crate::proto::control::refclock::parse_refclock;
        let mut tai = Refclock::with_phc_source(&parse("phc:/dev/ptp0 tai").unwrap(), Box::new(phc.clone()));
        let mut utc = Refclock::with_phc_source(&parse("phc:/dev/ptp0").unwrap(), Box::new(phc.clone()));
        let mut out = Vec::new();
        // TAI − UTC not known yet: no reading, counted.
        tai.read(&mut out);
        assert!(out.is_empty());
        assert_eq!(tai.refused, 1);
        tai.set_tai_minus_utc(Some(37));
        utc.set_tai_minus_utc(Some(37));
        tai.read(&mut out);
        utc.read(&mut out);
        assert_eq!(out.len(), 2);
        // Within the simulated read jitter (20 ns) of the PHC's offset.
        assert!((out[0].offset - 5e-6).abs() < 3e-8, "{:?}", out[0]);
        assert!((out[1].offset - 37.000_005).abs() < 3e-8, "{:?}", out[1]);
        assert!(out[1].time > out[0].time);
        // A device that fails: counted, nothing read.
        phc.lock().fail(Some(io::ErrorKind::NotFound));
        tai.read(&mut out);
        assert_eq!((out.len(), tai.refused), (2, 2));
    }

    #[test]
    fn a_missing_phc_is_an_error_naming_it() {
        let spec = crate::proto::control::refclock::parse_refclock("phc:/dev/ptp-strata-none").unwrap();
        let e = Refclock::open(&spec).err().unwrap();
        assert!(e.to_string().contains("/dev/ptp-strata-none"), "{e}");
    }

    #[test]
    fn a_sock_refclock_reads_what_a_writer_sends() {
        let dir = std::env::temp_dir().join(format!("strata-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gps.sock");
        let spec =
            crate::proto::control::refclock::parse_refclock(&format!("sock:{}", path.display())).unwrap();
        let mut clock = Refclock::open(&spec).unwrap();
        let writer = UnixDatagram::unbound().unwrap();
        writer
            .send_to(&sample(1_800_000_000, 0, 0.001, 0, 0, SOCK_MAGIC), &path)
            .unwrap();
        writer.send_to(&[1, 2, 3], &path).unwrap();
        writer
            .send_to(&sample(1_800_000_001, 0, 0.002, 0, 0, SOCK_MAGIC), &path)
            .unwrap();
        let mut out = Vec::new();
        clock.read(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].offset, out[1].offset), (0.001, 0.002));
        assert_eq!(clock.refused, 1);
        // Opened again (a restart): the stale socket file is replaced.
        drop(clock);
        assert!(Refclock::open(&spec).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
