//! Hardware receive timestamps: does the NIC have them, and turning them on.
//!
//! The device-bound program reads the NIC's stamp of each frame (`bpf_xdp_metadata_rx_timestamp`)
//! only when the driver stamps received frames, which SIOCSHWTSTAMP switches on (filter
//! NTP_ALL, else ALL). The stamp is in the NIC's clock (its PHC), so using it as T2 needs a
//! PHC-to-TAI mapping (PTP_SYS_OFFSET_EXTENDED) kept current by the control side and published
//! per interface (`crate::sys::ptp`); [`phc_index`] names the interface's PHC for it.
//!
//! What could be exercised here: only the "no hardware stamps" answer (veth reports software
//! stamping only). The enabling path follows timestamping.rst and has not run against a NIC.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const SIOCGHWTSTAMP: libc::c_ulong = 0x89b1;
const SIOCSHWTSTAMP: libc::c_ulong = 0x89b0;
const ETHTOOL_GET_TS_INFO: u32 = 0x41;
const SOF_TIMESTAMPING_RX_HARDWARE: u32 = 1 << 2;
const SOF_TIMESTAMPING_RAW_HARDWARE: u32 = 1 << 6;
const HWTSTAMP_FILTER_NONE: i32 = 0;
const HWTSTAMP_FILTER_ALL: i32 = 1;
const HWTSTAMP_FILTER_NTP_ALL: i32 = 15;

/// `struct ethtool_ts_info`.
#[repr(C)]
#[derive(Default)]
struct TsInfo {
    cmd: u32,
    so_timestamping: u32,
    phc_index: i32,
    tx_types: u32,
    tx_reserved: [u32; 3],
    rx_filters: u32,
    rx_reserved: [u32; 3],
}

/// `struct hwtstamp_config`.
#[repr(C)]
#[derive(Default)]
struct HwtstampConfig {
    flags: i32,
    tx_type: i32,
    rx_filter: i32,
}

/// What the NIC offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HwStamps {
    /// No hardware receive stamps (veth, most virtual NICs), or the query failed.
    Unsupported(String),
    /// Receive stamping is on with this filter; the PHC is /dev/ptpN.
    Enabled { phc_index: i32, rx_filter: i32 },
    /// The NIC has them but they could not be turned on (permissions, another owner).
    NotEnabled { phc_index: i32, reason: String },
}

impl std::fmt::Display for HwStamps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HwStamps::Unsupported(why) => write!(f, "no hardware stamps ({why})"),
            HwStamps::Enabled { phc_index, rx_filter } => write!(
                f,
                "hardware receive stamps on (filter {}, PHC /dev/ptp{phc_index})",
                if *rx_filter == HWTSTAMP_FILTER_NTP_ALL { "NTP_ALL" } else { "ALL" }
            ),
            HwStamps::NotEnabled { phc_index, reason } => write!(
                f,
                "the NIC has hardware stamps (PHC /dev/ptp{phc_index}) but they could not be turned on: {reason}"
            ),
        }
    }
}

fn ifreq(name: &str, data: *mut libc::c_void) -> io::Result<libc::ifreq> {
    let c_name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = c_name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = data.cast();
    Ok(req)
}

fn ioctl(sock: &OwnedFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq whose data pointer (if any) points to a live struct of the
    // type this request expects.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ts_info(sock: &OwnedFd, name: &str) -> io::Result<TsInfo> {
    let mut info = TsInfo {
        cmd: ETHTOOL_GET_TS_INFO,
        ..Default::default()
    };
    ifreq(name, (&mut info as *mut TsInfo).cast()).and_then(|mut req| ioctl(sock, SIOCETHTOOL, &mut req))?;
    Ok(info)
}

/// The index N of the interface's PHC, /dev/ptpN (ETHTOOL_GET_TS_INFO's `phc_index`; None when
/// the driver reports none, as veth does).
pub fn phc_index(name: &str) -> io::Result<Option<u32>> {
    let info = ts_info(&control_socket()?, name)?;
    Ok(u32::try_from(info.phc_index).ok())
}

/// Asks the driver what it can stamp and, if it can stamp received frames in hardware, turns
/// that on, unless someone (ptp4l, another program) already chose a receive filter.
pub fn detect_and_enable(name: &str) -> HwStamps {
    let sock = match control_socket() {
        Ok(sock) => sock,
        Err(e) => return HwStamps::Unsupported(format!("socket: {e}")),
    };
    let info = match ts_info(&sock, name) {
        Ok(info) => info,
        Err(e) => return HwStamps::Unsupported(format!("ETHTOOL_GET_TS_INFO: {e}")),
    };
    let hw = SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE;
    if info.so_timestamping & hw != hw || info.phc_index < 0 {
        return HwStamps::Unsupported("the driver reports no hardware receive stamping".into());
    }
    let filter = if info.rx_filters & (1 << HWTSTAMP_FILTER_NTP_ALL) != 0 {
        HWTSTAMP_FILTER_NTP_ALL
    } else if info.rx_filters & (1 << HWTSTAMP_FILTER_ALL) != 0 {
        HWTSTAMP_FILTER_ALL
    } else {
        return HwStamps::Unsupported(
            "the driver stamps no filter that covers NTP (neither NTP_ALL nor ALL)".into(),
        );
    };

    let mut current = HwtstampConfig::default();
    let got = ifreq(name, (&mut current as *mut HwtstampConfig).cast())
        .and_then(|mut req| ioctl(&sock, SIOCGHWTSTAMP, &mut req));
    if got.is_ok() && current.rx_filter != HWTSTAMP_FILTER_NONE {
        // Someone configured stamping already; keep theirs if it covers every frame.
        return if current.rx_filter == HWTSTAMP_FILTER_ALL || current.rx_filter == HWTSTAMP_FILTER_NTP_ALL {
            HwStamps::Enabled {
                phc_index: info.phc_index,
                rx_filter: current.rx_filter,
            }
        } else {
            HwStamps::NotEnabled {
                phc_index: info.phc_index,
                reason: format!("receive filter {} is set by someone else", current.rx_filter),
            }
        };
    }
    let mut config = HwtstampConfig {
        flags: 0,
        tx_type: current.tx_type,
        rx_filter: filter,
    };
    match ifreq(name, (&mut config as *mut HwtstampConfig).cast())
        .and_then(|mut req| ioctl(&sock, SIOCSHWTSTAMP, &mut req))
    {
        // The driver may widen the filter (NTP_ALL to ALL); it writes back what it chose.
        Ok(()) => HwStamps::Enabled {
            phc_index: info.phc_index,
            rx_filter: config.rx_filter,
        },
        Err(e) => HwStamps::NotEnabled {
            phc_index: info.phc_index,
            reason: format!("SIOCSHWTSTAMP: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<TsInfo>(), 44);
        assert_eq!(std::mem::offset_of!(TsInfo, phc_index), 8);
        assert_eq!(std::mem::size_of::<HwtstampConfig>(), 12);
        assert_eq!(std::mem::offset_of!(HwtstampConfig, tx_type), 4);
        assert_eq!(std::mem::offset_of!(HwtstampConfig, rx_filter), 8);
    }

    /// The request numbers and flags as the kernel headers (through the libc crate) define them.
    #[test]
    fn ioctl_numbers_and_flags_match_the_kernel() {
        assert_eq!(SIOCGHWTSTAMP, libc::SIOCGHWTSTAMP);
        assert_eq!(SIOCSHWTSTAMP, libc::SIOCSHWTSTAMP);
        assert_eq!(SIOCETHTOOL, libc::SIOCETHTOOL);
        assert_eq!(SOF_TIMESTAMPING_RX_HARDWARE, libc::SOF_TIMESTAMPING_RX_HARDWARE);
        assert_eq!(SOF_TIMESTAMPING_RAW_HARDWARE, libc::SOF_TIMESTAMPING_RAW_HARDWARE);
        assert_eq!(HWTSTAMP_FILTER_NONE, libc::HWTSTAMP_FILTER_NONE as i32);
        assert_eq!(HWTSTAMP_FILTER_ALL, libc::HWTSTAMP_FILTER_ALL as i32);
        assert_eq!(HWTSTAMP_FILTER_NTP_ALL, libc::HWTSTAMP_FILTER_NTP_ALL as i32);
    }

    #[test]
    fn loopback_has_no_hardware_stamps() {
        assert!(matches!(detect_and_enable("lo"), HwStamps::Unsupported(_)));
        // Loopback answers ETHTOOL_GET_TS_INFO with software stamping only and no PHC.
        assert_eq!(phc_index("lo").unwrap(), None);
        assert!(phc_index("no-such-if0").is_err());
    }
}
