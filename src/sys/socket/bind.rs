//! Creating and binding the UDP sockets of the socket path.
//!
//! Every responder thread has its own socket per listen address, all bound to the same address
//! with SO_REUSEPORT so that the kernel spreads clients over the threads. IPv6 sockets are
//! IPv6-only, so that `0.0.0.0:123` and `[::]:123` are two independent sockets. Each socket asks
//! for kernel receive timestamps (SO_TIMESTAMPING), software and hardware, and for each
//! request's destination address and ingress interface (IP_PKTINFO / IPV6_RECVPKTINFO): the
//! interface picks the PHC line a hardware stamp maps through, and on a socket bound to a wildcard
//! address the destination is the source its reply leaves from.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// How long a blocking receive (or send) waits, so that a thread notices shutdown in time.
pub const IO_TIMEOUT: Duration = Duration::from_millis(100);

/// The kernel receive timestamps asked for. The software stamp (CLOCK_REALTIME, taken as the
/// packet enters the stack) is what the responders use. Hardware stamps are asked for too: when a
/// NIC has hardware timestamping enabled they arrive as raw PHC time, which cannot be turned into
/// NTP time until the control thread publishes a PHC-to-TAI mapping (a later change), so for now
/// they are only counted as seen and the software stamp is used.
pub const TIMESTAMPING_FLAGS: libc::c_uint = libc::SOF_TIMESTAMPING_RX_SOFTWARE
    | libc::SOF_TIMESTAMPING_SOFTWARE
    | libc::SOF_TIMESTAMPING_RX_HARDWARE
    | libc::SOF_TIMESTAMPING_RAW_HARDWARE;

/// What a socket whose replies may ask for transmit stamps needs besides: both the software and
/// the NIC's stamp of a reply when the NIC stamps transmitted packets (OPT_TX_SWHW), so that the
/// software stamp is there while the NIC's clock is not mapped to the served time. The replies
/// that need a stamp ask for it one by one (`mmsg::Batch::stamp_last_reply`): asking on the
/// socket would cost every reply a stamp and an error-queue entry. Each stamp comes back with
/// its reply (no OPT_TSONLY), which says which exchange it belongs to (`super::txstamp`).
pub const TX_TIMESTAMPING_FLAGS: libc::c_uint = libc::SOF_TIMESTAMPING_OPT_TX_SWHW;

/// One bound UDP socket of one responder.
#[derive(Debug)]
pub struct ServerSocket {
    fd: OwnedFd,
    local: SocketAddr,
    pktinfo: bool,
    timestamping: bool,
    tx_timestamping: bool,
}

impl ServerSocket {
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The descriptor itself (to duplicate it).
    pub fn owned_fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The address it is bound to (with the port the kernel chose, if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether replies must name their source (the socket is bound to a wildcard address).
    pub fn pktinfo(&self) -> bool {
        self.pktinfo
    }

    /// Whether the kernel accepted SO_TIMESTAMPING (otherwise every stamp is taken in user space).
    pub fn timestamping(&self) -> bool {
        self.timestamping
    }

    /// Whether the kernel reports the transmit time of each reply on the error queue.
    pub fn tx_timestamping(&self) -> bool {
        self.tx_timestamping
    }

    /// Readies the socket for replies that ask for their transmit stamps
    /// ([`TX_TIMESTAMPING_FLAGS`]); returns whether the kernel took it. Whoever sends such
    /// replies must read the error queue (`super::txstamp`): the stamps are charged to the
    /// socket's receive buffer until then.
    pub fn enable_tx_timestamping(&mut self) -> bool {
        if !self.timestamping {
            return false;
        }
        let flags = TIMESTAMPING_FLAGS | TX_TIMESTAMPING_FLAGS;
        match setsockopt(self.fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &flags) {
            Ok(()) => self.tx_timestamping = true,
            Err(e) => log::warn!(
                "{}: transmit timestamps refused ({}); replies are answered in basic mode only",
                self.local,
                os_error_text(&e)
            ),
        }
        self.tx_timestamping
    }
}

/// An OS error's text without Rust's " (os error N)" suffix, for messages like
/// "cannot bind 127.0.0.1:123: Address already in use".
pub fn os_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_string)
            .unwrap_or(text),
        None => text,
    }
}

/// Wraps `e` as "cannot bind ADDR: reason", keeping its kind.
pub fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot bind {addr}: {}", os_error_text(&e)))
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed; setsockopt only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn option_error(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {}", os_error_text(&e)))
}

fn new_udp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket() has no memory-safety preconditions.
    let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::IPPROTO_UDP) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if addr.is_ipv6() {
        setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            &1 as &libc::c_int,
        )
        .map_err(|e| option_error("IPV6_V6ONLY", e))?;
    }
    Ok(fd)
}

fn bind_fd(fd: RawFd, addr: SocketAddr) -> io::Result<()> {
    let (storage, len) = sockaddr_from(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    let rc = unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

/// A plain UDP socket bound to `addr` (IPv6 sockets IPv6-only, as the responders' are).
pub fn bind_plain(addr: SocketAddr) -> io::Result<OwnedFd> {
    let fd = new_udp_socket(addr)?;
    bind_fd(fd.as_raw_fd(), addr)?;
    Ok(fd)
}

/// Checks that nobody else holds `addr` by binding it once without SO_REUSEPORT and closing it.
///
/// SO_REUSEPORT lets any socket of the same user with the same option join the group, so without
/// this check a second strata (or another server using SO_REUSEPORT) on the same port would
/// start without an error and silently take a share of the clients.
pub fn check_not_in_use(addr: SocketAddr) -> io::Result<()> {
    let fd = new_udp_socket(addr)?;
    bind_fd(fd.as_raw_fd(), addr)
}

/// Creates a socket for `addr` with SO_REUSEPORT, timestamping, pktinfo (for wildcard addresses)
/// and the I/O timeouts, and binds it.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<ServerSocket> {
    let fd = new_udp_socket(addr)?;
    let raw = fd.as_raw_fd();
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, &1 as &libc::c_int)
        .map_err(|e| option_error("SO_REUSEPORT", e))?;
    let timestamping = match setsockopt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &TIMESTAMPING_FLAGS) {
        Ok(()) => true,
        Err(e) => {
            log::warn!(
                "{addr}: SO_TIMESTAMPING refused ({}); receive times will be read in user space",
                os_error_text(&e)
            );
            false
        }
    };
    let pktinfo = addr.ip().is_unspecified();
    let (level, name, what) = match addr {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO, "IP_PKTINFO"),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO"),
    };
    match setsockopt(raw, level, name, &1 as &libc::c_int) {
        Ok(()) => {}
        // A wildcard socket's replies cannot leave from the right address without it.
        Err(e) if pktinfo => return Err(option_error(what, e)),
        // A bound socket only loses the ingress interface: hardware stamps stay unused.
        Err(e) => log::warn!(
            "{addr}: {what} refused ({}); hardware receive stamps will not be used",
            os_error_text(&e)
        ),
    }
    // The kernel's count of datagrams it dropped on this socket, with each datagram: metrics only,
    // so a kernel without it costs nothing but that count.
    if let Err(e) = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &1 as &libc::c_int) {
        log::debug!("{addr}: SO_RXQ_OVFL refused ({e}); receive-buffer drops will not be counted");
    }
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeval(IO_TIMEOUT))
        .map_err(|e| option_error("SO_RCVTIMEO", e))?;
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeval(IO_TIMEOUT))
        .map_err(|e| option_error("SO_SNDTIMEO", e))?;
    bind_fd(raw, addr)?;
    let local = local_addr_of(raw)?;
    Ok(ServerSocket {
        fd,
        local,
        pktinfo,
        timestamping,
        tx_timestamping: false,
    })
}

pub fn local_addr_of(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes, and `len` is a valid in/out length.
    let rc = unsafe { libc::getsockname(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    sockaddr_to(&storage, len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "getsockname: not an IP address"))
}

/// A socket address as the kernel takes it.
pub fn sockaddr_from(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The socket address in `storage`, if it is IPv4 or IPv6 and `len` covers it.
pub fn sockaddr_to(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is aligned for.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which it is aligned for.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        let scoped = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 7, 3));
        for addr in ["127.0.0.1:123", "0.0.0.0:65535", "[::1]:123"]
            .map(|s| s.parse::<SocketAddr>().unwrap())
            .into_iter()
            .chain([scoped])
        {
            let (storage, len) = sockaddr_from(addr);
            assert_eq!(sockaddr_to(&storage, len), Some(addr));
        }
    }

    #[test]
    fn reuseport_sockets_share_a_port_and_v4_v6_coexist() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = first.local_addr().port();
        assert_ne!(port, 0);
        let second = bind_reuseport(first.local_addr()).unwrap();
        assert_eq!(second.local_addr(), first.local_addr());
        assert!(first.timestamping() && !first.pktinfo());
        // Someone already holds the port: the exclusive check says so.
        let e = check_not_in_use(first.local_addr()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);

        // Wildcard IPv4 and IPv6-only wildcard on one port.
        let v4 = bind_reuseport("0.0.0.0:0".parse().unwrap()).unwrap();
        let v6 = bind_reuseport(SocketAddr::new("::".parse().unwrap(), v4.local_addr().port())).unwrap();
        assert!(v4.pktinfo() && v6.pktinfo());
    }

    #[test]
    fn bind_errors_name_the_address_and_the_os_reason() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind_reuseport(addr).map_err(|e| bind_error(addr, e)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot bind {addr}: Address already in use")
        );
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }
}
