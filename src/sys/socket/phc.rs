//! The socket path's hardware clocks: the interfaces its sockets serve, hardware receive
//! stamping asked of each (SIOCSHWTSTAMP, as chrony's ntp_io_linux.c does), and each one's PHC
//! followed by the PHC thread (`crate::sys::ptp::tracker`), whose line the responders map that
//! interface's hardware stamps through (`crate::sys::pipeline::phc_lines`).
//!
//! One socket bound to the wildcard address serves every interface, so every interface with an
//! address is watched; a socket bound to an address serves the interface that has it. The
//! interfaces are those present at start: one added later is served with software stamps.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::proto::clock::phc::{PhcLine, PhcLineReader};
use crate::proto::clock::seqlock::seqlock;
use crate::sys::fastpath::hwstamp::{self, HwStamps};
use crate::sys::ptp::tracker::PhcWatch;

/// A served interface: its name and index (the pktinfo ifindex of what it receives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedInterface {
    pub name: String,
    pub index: u32,
}

/// The interfaces that `listen` serves: with a wildcard address, every interface with an
/// address but loopback (whose driver has no PHC); else those that have a listen address.
pub fn served_interfaces(listen: &[SocketAddr]) -> io::Result<Vec<ServedInterface>> {
    let wildcard = listen.iter().any(|a| a.ip().is_unspecified());
    let mut out: Vec<ServedInterface> = Vec::new();
    for (name, flags, addr) in interface_addresses()? {
        let served = if wildcard {
            flags & libc::IFF_LOOPBACK as u32 == 0
        } else {
            listen.iter().any(|l| l.ip() == addr)
        };
        if !served || out.iter().any(|i| i.name == name) {
            continue;
        }
        let c_name =
            std::ffi::CString::new(name.clone()).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        // SAFETY: `c_name` is a NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index != 0 {
            out.push(ServedInterface { name, index });
        }
    }
    Ok(out)
}

/// Every (interface name, flags, address) getifaddrs lists, IPv4 and IPv6 only.
fn interface_addresses() -> io::Result<Vec<(String, u32, IpAddr)>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid out-pointer; on success it owns a list freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose family says its type.
        let addr = match unsafe { (*entry.ifa_addr).sa_family } as libc::c_int {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push((name, entry.ifa_flags, addr));
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

/// What the socket path's start sets up for its interfaces' hardware stamps.
pub struct SocketPhcs {
    /// One per served interface, for the PHC thread and `strata status`.
    pub watches: Vec<PhcWatch>,
    /// (ifindex, line) of each served interface with a PHC, for every responder.
    pub lines: Vec<(u32, PhcLineReader)>,
}

/// For each served interface: hardware receive stamping is asked for (kept as it is when
/// someone already chose a filter that covers NTP; on failure, said once here and software
/// stamps stay), and its PHC is opened for the PHC thread.
pub fn watch(interfaces: &[ServedInterface]) -> SocketPhcs {
    let mut phcs = SocketPhcs {
        watches: Vec::with_capacity(interfaces.len()),
        lines: Vec::new(),
    };
    for interface in interfaces {
        let name = &interface.name;
        match hwstamp::detect_and_enable(name) {
            stamps @ HwStamps::Enabled { .. } => log::info!("{name}: {stamps}"),
            stamps => log::info!("{name}: {stamps}; its receive stamps are software"),
        }
        let (writer, reader) = seqlock(PhcLine::NONE);
        let watch = PhcWatch::for_interface(name, hwstamp::phc_index(name), writer);
        if watch.phc.is_ok() {
            log::info!(
                "{name}: its PHC is followed; hardware receive stamps become T2 once the mapping is good"
            );
            phcs.lines.push((interface.index, reader));
        }
        phcs.watches.push(watch);
    }
    phcs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_served_by_its_address_and_not_by_the_wildcard() {
        let on_lo = served_interfaces(&["127.0.0.1:123".parse().unwrap()]).unwrap();
        assert_eq!(on_lo.len(), 1, "{on_lo:?}");
        assert_eq!(on_lo[0].name, "lo");
        assert!(on_lo[0].index > 0);
        let all = served_interfaces(&["0.0.0.0:123".parse().unwrap()]).unwrap();
        assert!(all.iter().all(|i| i.name != "lo"), "{all:?}");
        // An address no interface has serves none.
        assert_eq!(
            served_interfaces(&["192.0.2.77:123".parse().unwrap()]).unwrap(),
            []
        );
    }

    #[test]
    fn loopback_has_no_phc_and_no_line() {
        let lo = served_interfaces(&["127.0.0.1:123".parse().unwrap()]).unwrap();
        let phcs = watch(&lo);
        assert!(phcs.lines.is_empty());
        assert_eq!(phcs.watches.len(), 1);
        let status = phcs.watches[0].status();
        assert_eq!(status.interface, "lo");
        assert_eq!(status.device, None);
        assert!(!status.usable);
    }
}
