//! The socket path's hardware clocks: the interfaces its sockets serve, hardware receive
//! stamping asked of each (SIOCSHWTSTAMP, as chrony's ntp_io_linux.c does), and each one's PHC
//! followed by the PHC thread (`crate::sys::ptp::tracker`), whose line the responders map that
//! interface's hardware stamps through (`crate::sys::pipeline::phc_lines`).
//!
//! One socket bound to the wildcard address serves every interface, so every interface with an
//! address is watched; a socket bound to an address serves the interface that has it. The
//! interfaces are those present at start: one added later is served with software stamps.

use std::io;
use std::net::SocketAddr;

use crate::proto::clock::phc::{PhcLine, PhcLineReader};
use crate::proto::clock::seqlock::seqlock;
use crate::sys::fastpath::hwstamp::{self, HwStamps};
use crate::sys::fastpath::iface::{index_of, interface_addresses, InterfaceAddress};
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
    for InterfaceAddress { name, flags, addr } in interface_addresses()? {
        let served = if wildcard {
            flags & libc::IFF_LOOPBACK as u32 == 0
        } else {
            listen.iter().any(|l| l.ip() == addr)
        };
        if !served || out.iter().any(|i| i.name == name) {
            continue;
        }
        if let Ok(index) = index_of(&name) {
            out.push(ServedInterface { name, index });
        }
    }
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
