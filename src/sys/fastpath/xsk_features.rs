//! Whether an interface's driver can stamp AF_XDP transmissions: the kernel's netlink answer
//! (`xsk-features`, through [`crate::proto::wire::netdev`]), asked once per served interface at
//! start, logged, and shown in `strata status` and /metrics.
//!
//! With `tx-timestamp` the driver writes the NIC's transmit stamp into a frame's TX metadata
//! when the frame asks for it (XDP_TXMD_FLAGS_TIMESTAMP). Without it (veth, virtio, most
//! drivers) AF_XDP replies carry software transmit stamps, taken by strata after the kernel
//! sent the frame (see `crate::sys::fastpath::responder`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::proto::wire::netdev::{self, DevFeatures, REQUEST_CAPACITY};

/// Room for one reply: a DEV_GET answer is under 100 bytes, a GETFAMILY answer (with the
/// family's operations and groups) under 2 KiB.
const REPLY_CAPACITY: usize = 8192;
/// How long the kernel may take to answer (it answers at once; this bounds a broken one).
const REPLY_TIMEOUT_MS: libc::suseconds_t = 500;

/// What the kernel says of one interface's AF_XDP transmit timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskTxSupport {
    pub interface: String,
    /// The driver's name (ETHTOOL_GDRVINFO), when it says.
    pub driver: Option<String>,
    /// The netlink answer, or why there is none.
    pub features: Result<DevFeatures, String>,
}

impl XskTxSupport {
    /// Whether AF_XDP transmit timestamps are supported (false also when the kernel does not say).
    pub fn supported(&self) -> bool {
        matches!(&self.features, Ok(f) if f.tx_timestamp() == Some(true))
    }

    /// The sentence for the log and `strata status`.
    pub fn describe(&self) -> String {
        let driver = self.driver.as_deref().unwrap_or("driver unknown");
        match &self.features {
            Ok(f) => match f.tx_timestamp() {
                Some(true) => format!(
                    "AF_XDP transmit timestamps supported by the driver ({driver}; xsk-features {})",
                    f.xsk_feature_names().unwrap_or_default()
                ),
                Some(false) => format!(
                    "AF_XDP transmit timestamps not supported by the driver ({driver}): AF_XDP replies carry \
                     software transmit stamps (xsk-features {}, xdp-features {})",
                    f.xsk_feature_names().unwrap_or_default(),
                    f.xdp_feature_names().unwrap_or_else(|| "not reported".into())
                ),
                None => format!(
                    "AF_XDP transmit timestamps unknown ({driver}): the kernel does not report xsk-features \
                     (Linux 6.8 and later do): AF_XDP replies carry software transmit stamps"
                ),
            },
            Err(why) => format!(
                "AF_XDP transmit timestamps unknown ({driver}): the netdev netlink query failed ({why}): AF_XDP \
                 replies carry software transmit stamps"
            ),
        }
    }
}

/// Asks the kernel about `interface` (index `ifindex`).
pub fn query(interface: &str, ifindex: u32) -> XskTxSupport {
    XskTxSupport {
        interface: interface.to_string(),
        driver: driver_name(interface).ok(),
        features: dev_features(ifindex).map_err(|e| e.to_string()),
    }
}

/// The kernel's netdev-family answer for `ifindex`: two request/reply exchanges on a generic
/// netlink socket (the family id, then the device).
pub fn dev_features(ifindex: u32) -> io::Result<DevFeatures> {
    let sock = open()?;
    let mut request = [0u8; REQUEST_CAPACITY];
    let mut reply = vec![0u8; REPLY_CAPACITY];
    let n = netdev::family_request(&mut request, 1);
    let got = exchange(&sock, &request[..n], &mut reply)?;
    let family = netdev::parse_family_id(&reply[..got], 1).map_err(netlink_error)?;
    let n = netdev::dev_get_request(&mut request, family, 2, ifindex);
    let got = exchange(&sock, &request[..n], &mut reply)?;
    netdev::parse_dev(&reply[..got], 2).map_err(netlink_error)
}

fn netlink_error(e: netdev::NetlinkError) -> io::Error {
    match e {
        netdev::NetlinkError::Kernel(errno) => io::Error::from_raw_os_error(errno),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: socket() has no memory preconditions.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: REPLY_TIMEOUT_MS * 1000,
    };
    // SAFETY: `timeout` is a live timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Sends `request` to the kernel and reads its answer: every datagram up to the
/// acknowledgement (the request asks for one), concatenated into `reply`.
fn exchange(sock: &OwnedFd, request: &[u8], reply: &mut [u8]) -> io::Result<usize> {
    // SAFETY: an all-zero sockaddr_nl is valid; family set below, pid 0 is the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `request` and `kernel` are live for the call, with the lengths given.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut len = 0;
    // The answer and the acknowledgement may come in one datagram or two: read until the
    // acknowledgement (or an error, which is one) is there, a few datagrams at most.
    for _ in 0..4 {
        let rest = &mut reply[len..];
        // SAFETY: `rest` is writable for its length.
        let got = unsafe { libc::recv(sock.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        let acked = has_error_message(&rest[..got]);
        len += got;
        if acked || len >= reply.len() {
            break;
        }
    }
    Ok(len)
}

/// Whether the datagram holds an NLMSG_ERROR message (an acknowledgement or an error).
fn has_error_message(datagram: &[u8]) -> bool {
    let mut at = 0;
    while at + netdev::NLMSG_HDRLEN <= datagram.len() {
        let len = u32::from_ne_bytes(datagram[at..at + 4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes(datagram[at + 4..at + 6].try_into().unwrap_or_default());
        if kind == libc::NLMSG_ERROR as u16 {
            return true;
        }
        if len < netdev::NLMSG_HDRLEN {
            return false;
        }
        at += (len + 3) & !3;
    }
    false
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

/// The interface's driver, as ethtool names it ("veth", "mlx5_core", "ice").
pub fn driver_name(interface: &str) -> io::Result<String> {
    let name = CString::new(interface).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: an all-zero ethtool_drvinfo is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: socket() has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is a valid ifreq whose data points to a live ethtool_drvinfo, which is
    // what ETHTOOL_GDRVINFO writes.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = info
        .driver
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drvinfo_is_the_kernels_size() {
        assert_eq!(std::mem::size_of::<DrvInfo>(), 196);
    }

    /// Loopback, which every network namespace has: the kernel answers the netdev family for
    /// it (Linux 6.3+, where the family appeared) with its index, and loopback has no
    /// AF_XDP transmit metadata.
    #[test]
    fn the_kernel_answers_for_loopback() {
        let lo = 1;
        match dev_features(lo) {
            Ok(f) => {
                assert_eq!(f.ifindex, lo);
                assert_ne!(f.tx_timestamp(), Some(true), "{f:?}");
            }
            // A kernel without the family (before 6.3): ENOENT from the controller.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}"),
        }
        let unknown = query("lo", 0);
        assert!(!unknown.supported());
        assert!(unknown.features.is_err(), "ifindex 0 is no device: {unknown:?}");
    }
}
