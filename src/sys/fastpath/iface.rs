//! What the fast path needs to know about a network interface: its index, how many receive
//! queues it has (one AF_XDP socket and responder each) and its addresses (the program's
//! destination check, and the socket path's listen addresses when `--mode auto` falls back).

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// Receive queues, from `/sys/class/net/NAME/queues/rx-*` (at least 1).
    pub rx_queues: u32,
    /// The addresses requests may be sent to: the interface's own and those of the devices
    /// stacked on it (VLAN subinterfaces: their tagged frames pass through this interface's
    /// XDP hook before the kernel strips the tag).
    pub addrs: Vec<IpAddr>,
}

impl Interface {
    pub fn lookup(name: &str) -> io::Result<Interface> {
        let index = index_of(name)?;
        Ok(Interface {
            name: name.to_string(),
            index,
            rx_queues: rx_queue_count(name),
            addrs: addresses(&with_uppers(name))?,
        })
    }

    pub fn ipv4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.addrs.iter().filter_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    pub fn ipv6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.addrs.iter().filter_map(|a| match a {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
    }
}

/// The number of `rx-N` directories sysfs shows for the interface: the queues the driver
/// created, which is what AF_XDP binds to. 1 when sysfs says nothing (a single-queue device).
fn rx_queue_count(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(0)
        .max(1)
}

/// `name` and the devices stacked on it (sysfs `upper_*` links), two levels deep (QinQ).
fn with_uppers(name: &str) -> Vec<String> {
    let mut names = vec![name.to_string()];
    let mut i = 0;
    while i < names.len() && names.len() < 64 {
        if let Ok(dir) = std::fs::read_dir(format!("/sys/class/net/{}", names[i])) {
            for entry in dir.filter_map(Result::ok) {
                if let Some(upper) = entry.file_name().to_string_lossy().strip_prefix("upper_") {
                    if !names.iter().any(|n| n == upper) {
                        names.push(upper.to_string());
                    }
                }
            }
        }
        i += 1;
    }
    names
}

/// The index of the interface `name` (if_nametoindex).
pub fn index_of(name: &str) -> io::Result<u32> {
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains a NUL byte"))?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?}"),
        ));
    }
    Ok(index)
}

/// The IPv4 and IPv6 addresses of the interfaces `names`.
fn addresses(names: &[String]) -> io::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for entry in interface_addresses()? {
        if names.contains(&entry.name) && !out.contains(&entry.addr) {
            out.push(entry.addr);
        }
    }
    Ok(out)
}

/// One IPv4 or IPv6 address getifaddrs lists, with its interface's name and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub name: String,
    /// `IFF_*` flags of the interface.
    pub flags: u32,
    pub addr: IpAddr,
}

/// Every IPv4 and IPv6 address of every interface, from getifaddrs.
pub fn interface_addresses() -> io::Result<Vec<InterfaceAddress>> {
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
        out.push(InterfaceAddress {
            name,
            flags: entry.ifa_flags,
            addr,
        });
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_addresses_and_a_queue() {
        let lo = Interface::lookup("lo").unwrap();
        assert!(lo.index > 0);
        assert!(lo.rx_queues >= 1);
        assert!(lo.ipv4().any(|a| a == Ipv4Addr::LOCALHOST), "{:?}", lo.addrs);
    }

    #[test]
    fn a_missing_interface_is_named() {
        let e = Interface::lookup("strata-none0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("strata-none0"));
    }
}
