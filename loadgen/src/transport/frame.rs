//! Raw frames for AF_XDP mode, built and read with strata's own wire code: per-flow
//! Ethernet/IPv4/UDP headers prepared once, a request payload written behind them, lengths and
//! checksums completed per frame; and replies parsed back to their flow.

use std::net::{Ipv4Addr, SocketAddrV4};

use strata::proto::wire::ethernet::{self, EtherType, EthernetAddress, Frame, Vlan};
use strata::proto::wire::ipv4::{self, IpProtocol};
use strata::proto::wire::udp;

/// Ethernet + IPv4 (no options) + UDP.
pub const HEADERS_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;
const IP_AT: usize = ethernet::HEADER_LEN;
const UDP_AT: usize = IP_AT + ipv4::HEADER_LEN;

/// The simulated client network: flows take its host addresses in order, each with its own port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrcNet {
    base: u32,
    hosts: u32,
}

impl SrcNet {
    /// Parses `A.B.C.D/N` (N from 8 to 30).
    pub fn parse(s: &str) -> Result<SrcNet, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not ADDR/LEN"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let len: u32 = len
            .parse()
            .map_err(|_| format!("`{len}` is not a prefix length"))?;
        if !(8..=30).contains(&len) {
            return Err(format!("prefix length {len} is out of range 8..=30"));
        }
        let mask = u32::MAX << (32 - len);
        Ok(SrcNet {
            base: u32::from(addr) & mask,
            // Neither the network nor the broadcast address.
            hosts: (1u32 << (32 - len)) - 2,
        })
    }

    pub fn hosts(&self) -> u32 {
        self.hosts
    }

    /// The source address and port of global flow `g` (g < hosts): one address per flow, and
    /// ports spread over 1024..65024 so that RSS hashing on ports sees variety too.
    pub fn flow(&self, g: u32) -> SocketAddrV4 {
        let addr = Ipv4Addr::from(self.base + 1 + g % self.hosts);
        let port = 1024 + ((g as u64 * 40_503) % 64_000) as u16;
        SocketAddrV4::new(addr, port)
    }

    /// The global flow a reply to `dst` belongs to, if any.
    pub fn flow_of(&self, dst: SocketAddrV4) -> Option<u32> {
        let g = u32::from(*dst.ip()).wrapping_sub(self.base + 1);
        (g < self.hosts && self.flow(g) == dst).then_some(g)
    }
}

/// Writes the headers of a frame from `src` to `dst` for a payload of `payload_len` bytes into
/// `buf` (at least [`HEADERS_LEN`]), checksums included.
pub fn write_headers(
    buf: &mut [u8],
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
) {
    ethernet::Repr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        vlan: Vlan::Untagged,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut Frame::new_unchecked(&mut buf[..IP_AT]));
    ipv4::Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        protocol: IpProtocol::UDP,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        options: &[],
        payload_len: udp::HEADER_LEN + payload_len,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut buf[IP_AT..UDP_AT]));
    udp::Repr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload_len,
    }
    .emit(&mut udp::Packet::new_unchecked(&mut buf[UDP_AT..HEADERS_LEN]));
}

/// Fills the UDP checksum of a frame whose headers and payload are in place; returns the
/// frame's length.
#[inline]
pub fn finish(frame: &mut [u8], src: &SocketAddrV4, dst: &SocketAddrV4, payload_len: usize) -> usize {
    let end = HEADERS_LEN + payload_len;
    udp::Packet::new_unchecked(&mut frame[UDP_AT..end]).fill_checksum_v4(*src.ip(), *dst.ip());
    end
}

/// A received IPv4/UDP frame's addresses and where its payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: core::ops::Range<usize>,
}

/// Reads a frame as an IPv4 UDP datagram (VLAN tags allowed); None for anything else, or when the
/// IPv4 header checksum fails.
///
/// The UDP checksum is not verified: a server on the same host (a veth lab, with the default TX
/// checksum offload) hands its replies over with only the pseudo-header sum in that field
/// (CHECKSUM_PARTIAL), which XDP sees as is. The IPv4 header checksum is always computed in
/// software, so it is still checked.
#[inline]
pub fn parse(frame: &[u8]) -> Option<Datagram> {
    let enc = Frame::new_checked(frame).ok()?.encapsulation().ok()?;
    if enc.ethertype != EtherType::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(&frame[enc.payload_offset..]).ok()?;
    if ip.protocol() != IpProtocol::UDP || ip.is_fragment() || !ip.verify_checksum() {
        return None;
    }
    let ip_header = ip.header_len() as usize;
    let udp_at = enc.payload_offset + ip_header;
    let ip_end = enc.payload_offset + ip.total_len() as usize;
    let datagram = udp::Packet::new_checked(&frame[udp_at..ip_end]).ok()?;
    let payload_at = udp_at + udp::HEADER_LEN;
    Some(Datagram {
        src: SocketAddrV4::new(ip.src_addr(), datagram.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), datagram.dst_port()),
        payload: payload_at..udp_at + datagram.len() as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_map_to_addresses_and_back() {
        let net = SrcNet::parse("198.19.0.0/16").unwrap();
        assert_eq!(net.hosts(), 65534);
        let f0 = net.flow(0);
        assert_eq!(*f0.ip(), Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(*net.flow(300).ip(), Ipv4Addr::new(198, 19, 1, 45));
        for g in [0, 1, 255, 1000, 65533] {
            assert_eq!(net.flow_of(net.flow(g)), Some(g));
        }
        let wrong_port = SocketAddrV4::new(*f0.ip(), f0.port() + 1);
        assert_eq!(net.flow_of(wrong_port), None);
        assert_eq!(net.flow_of("10.0.0.1:5".parse().unwrap()), None);
        assert!(SrcNet::parse("198.19.0.0/31").is_err());
        assert!(SrcNet::parse("198.19.0.0").is_err());
    }

    #[test]
    fn a_built_frame_parses_back_with_valid_checksums() {
        let src: SocketAddrV4 = "198.19.0.7:4242".parse().unwrap();
        let dst: SocketAddrV4 = "198.18.0.2:123".parse().unwrap();
        let mut buf = [0u8; 128];
        write_headers(
            &mut buf,
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            src,
            dst,
            48,
        );
        buf[HEADERS_LEN..HEADERS_LEN + 48].fill(0x23);
        let len = finish(&mut buf, &src, &dst, 48);
        assert_eq!(len, 90);
        {
            let d = udp::Packet::new_checked(&buf[UDP_AT..len]).unwrap();
            assert!(d.verify_checksum_v4(*src.ip(), *dst.ip()));
        }
        let d = parse(&buf[..len]).unwrap();
        assert_eq!((d.src, d.dst, d.payload), (src, dst, 42..90));
        // A flipped bit in the IPv4 header fails its checksum.
        buf[IP_AT + 8] ^= 1;
        assert_eq!(parse(&buf[..len]), None);
    }
}
