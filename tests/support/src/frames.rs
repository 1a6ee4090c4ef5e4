//! NTP requests and whole request frames (Ethernet, optional VLAN tags, IPv4 or IPv6, UDP) as
//! clients send them, made with strata's own wire emitters, checksums valid.
//!
//! strata's unit tests of `proto::frame` build theirs with a local builder of the same kind
//! (`Spec`): they cannot use this crate (see the crate's documentation).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use strata::proto::wire::ethernet::{self, EtherType, EthernetAddress, Vlan};
use strata::proto::wire::ipv4::{self, IpProtocol};
use strata::proto::wire::ntp::{self, Leap, Mode};
use strata::proto::wire::{ipv6, udp, NtpTimestamp};

/// The transmit timestamp of [`client_request`]: a reply's origin timestamp must be this.
pub const QUERY_TRANSMIT: u64 = 0x0123_4567_89ab_cdef;

/// A client request of `len` bytes with `first` as its first byte (LI/VN/mode: 0x23 is LI 0,
/// NTPv4, mode 3) and, when `len` is at least 48, [`QUERY_TRANSMIT`] as its transmit timestamp;
/// the rest zero.
pub fn client_request(first: u8, len: usize) -> Vec<u8> {
    let mut req = vec![0u8; len];
    req[0] = first;
    if len >= ntp::HEADER_LEN {
        req[40..48].copy_from_slice(&QUERY_TRANSMIT.to_be_bytes());
    }
    req
}

/// The transmit timestamp of [`ntp_request`].
pub const T1: NtpTimestamp = NtpTimestamp(0xe98a_1b2c_1234_5678);

/// An NTPv4 client request as ntpdig or chrony send it: LI 3, poll 6, precision -20, transmit
/// timestamp [`T1`].
pub fn ntp_request() -> [u8; ntp::HEADER_LEN] {
    let mut buf = [0u8; ntp::HEADER_LEN];
    let mut p = ntp::Packet::new_unchecked(&mut buf[..]);
    p.set_leap_version_mode(Leap::Unsynchronized, 4, Mode::Client);
    p.set_poll(6);
    p.set_precision(-20);
    p.set_transmit_timestamp(T1);
    buf
}

pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x10]);
pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 1, 0, 0, 0, 0x10);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 0, 0, 0, 0, 1);
/// The UDP source port of [`RequestFrame::v4`] and [`RequestFrame::v6`].
pub const CLIENT_PORT: u16 = 50123;

/// The network layer of a [`RequestFrame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ip {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// IPv4 options: a multiple of 4 bytes, at most 40.
        options: Vec<u8>,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
}

impl Ip {
    /// The client's address.
    pub fn src(&self) -> IpAddr {
        match self {
            Ip::V4 { src, .. } => (*src).into(),
            Ip::V6 { src, .. } => (*src).into(),
        }
    }
}

/// What a request frame is made of; [`RequestFrame::build`] makes its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub vlan: Vlan,
    pub ip: Ip,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    /// DSCP and ECN: IPv4's, or IPv6's traffic class (`dscp << 2 | ecn`).
    pub dscp: u8,
    pub ecn: u8,
    /// IPv4 identification (the don't-fragment flag is always set).
    pub ident: u16,
    /// IPv6 flow label.
    pub flow_label: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// The UDP payload.
    pub payload: Vec<u8>,
    /// Bytes after the IP packet (Ethernet padding).
    pub padding: usize,
}

impl RequestFrame {
    /// [`ntp_request`] from [`CLIENT4`]:[`CLIENT_PORT`] to [`SERVER4`]:123, untagged: 14 + 20 +
    /// 8 + 48 = 90 bytes (TTL 64, DSCP 0, ident 0x1234, don't fragment).
    pub fn v4() -> RequestFrame {
        RequestFrame {
            src_mac: CLIENT_MAC,
            dst_mac: SERVER_MAC,
            vlan: Vlan::Untagged,
            ip: Ip::V4 {
                src: CLIENT4,
                dst: SERVER4,
                options: Vec::new(),
            },
            hop_limit: 64,
            dscp: 0,
            ecn: 0,
            ident: 0x1234,
            flow_label: 0,
            src_port: CLIENT_PORT,
            dst_port: 123,
            payload: ntp_request().to_vec(),
            padding: 0,
        }
    }

    /// The same from [`CLIENT6`] to [`SERVER6`]: 14 + 40 + 8 + 48 = 110 bytes.
    pub fn v6() -> RequestFrame {
        RequestFrame {
            ip: Ip::V6 {
                src: CLIENT6,
                dst: SERVER6,
            },
            ..RequestFrame::v4()
        }
    }

    /// The frame's bytes, with valid IPv4 header and UDP checksums.
    pub fn build(&self) -> Vec<u8> {
        let eth = ethernet::Repr {
            src_addr: self.src_mac,
            dst_addr: self.dst_mac,
            vlan: self.vlan,
            ethertype: match self.ip {
                Ip::V4 { .. } => EtherType::IPV4,
                Ip::V6 { .. } => EtherType::IPV6,
            },
        };
        let udp_len = udp::HEADER_LEN + self.payload.len();
        let l3 = eth.buffer_len();
        let l4 = l3
            + match &self.ip {
                Ip::V4 { options, .. } => ipv4::HEADER_LEN + options.len(),
                Ip::V6 { .. } => ipv6::HEADER_LEN,
            };
        let mut frame = vec![0u8; l4 + udp_len + self.padding];
        eth.emit(&mut ethernet::Frame::new_unchecked(&mut frame[..]));
        let mut datagram = udp::Packet::new_unchecked(&mut frame[l4..l4 + udp_len]);
        udp::Repr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            payload_len: self.payload.len(),
        }
        .emit(&mut datagram);
        datagram.payload_mut().copy_from_slice(&self.payload);
        match &self.ip {
            Ip::V4 { src, dst, options } => {
                datagram.fill_checksum_v4(*src, *dst);
                ipv4::Repr {
                    src_addr: *src,
                    dst_addr: *dst,
                    protocol: IpProtocol::UDP,
                    ttl: self.hop_limit,
                    dscp: self.dscp,
                    ecn: self.ecn,
                    ident: self.ident,
                    dont_frag: true,
                    more_frags: false,
                    frag_offset: 0,
                    options,
                    payload_len: udp_len,
                }
                .emit(&mut ipv4::Packet::new_unchecked(&mut frame[l3..]));
            }
            Ip::V6 { src, dst } => {
                datagram.fill_checksum_v6(src, dst);
                ipv6::Repr {
                    src_addr: *src,
                    dst_addr: *dst,
                    next_header: IpProtocol::UDP,
                    payload_len: udp_len,
                    hop_limit: self.hop_limit,
                    traffic_class: (self.dscp << 2) | self.ecn,
                    flow_label: self.flow_label,
                }
                .emit(&mut ipv6::Packet::new_unchecked(&mut frame[l3..]));
            }
        }
        frame
    }
}
