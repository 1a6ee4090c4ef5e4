//! A whole received Ethernet frame rewritten in place into its reply: the AF_XDP path's per-packet
//! work around [`respond()`]. Pure like `respond()`: no I/O, no allocation, no locks.
//!
//! The frame is parsed down to the NTP payload (Ethernet with up to two VLAN tags, IPv4 with any
//! options or IPv6, UDP to the NTP port), every header is checked, `respond()` writes the NTP
//! reply over the request, and then the headers are turned around: MAC and IP addresses and UDP
//! ports swapped, TTL or hop limit reset, lengths shortened when the reply is shorter than the
//! request (a request with extension fields or a MAC gets a plain 48-byte reply), checksums fixed.
//! VLAN tags and IPv4 options stay as they were, so the reply goes back the way it came.
//!
//! Checksums: swapping addresses or ports does not change a ones' complement sum, so the IPv4
//! header checksum is updated incrementally (RFC 1624) for just the words that change (ECN,
//! total length, TTL). The UDP checksum is computed afresh over the 56-byte datagram: the NTP
//! payload was rewritten whole, so an incremental update would read as many bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::proto::respond::{respond, Admission, DropReason, ReplyKind};
use crate::proto::state::ServerState;
use crate::proto::wire::ethernet::{self, EtherType};
use crate::proto::wire::ipv4::{self, IpProtocol};
use crate::proto::wire::ntp;
use crate::proto::wire::{checksum, ipv6, udp, Error, NtpTimestamp};

/// The TTL (IPv4) or hop limit (IPv6) of every reply: the common default of Linux and most
/// hosts, so that replies do not stand out, and enough for any path on the Internet.
pub const REPLY_HOP_LIMIT: u8 = 64;

/// Why a frame got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameDrop {
    /// Shorter than its Ethernet header, VLAN tags or IP header, or than the IP length says.
    Truncated,
    /// Neither IPv4 nor IPv6 (ARP, LLDP...), or more VLAN tags than two.
    NotIp,
    /// An IP header that is not valid: wrong version, IHL below 5, total length below the header.
    BadIpHeader,
    /// An IPv4 header checksum that does not verify.
    BadIpChecksum,
    /// An IPv4 fragment, or an IPv6 packet with a Fragment header: never reassembled.
    Fragment,
    /// Not UDP (or, for IPv6, UDP behind extension headers, which are not walked).
    NotUdp,
    /// UDP, but not to the NTP port.
    NotNtpPort,
    /// A UDP length below 8 or beyond the IP payload.
    BadUdpLength,
    /// A UDP checksum that does not verify (or is zero over IPv6).
    BadUdpChecksum,
    /// A source a reply cannot go to or a destination a reply cannot come from: a multicast,
    /// broadcast, unspecified or loopback address (MAC or IP), or source port 0. Answering these
    /// would send replies to groups (amplification) or from addresses that are not ours.
    BadAddress,
    /// The NTP payload itself is not answered.
    Ntp(DropReason),
}

impl FrameDrop {
    /// The frame-level reasons in [`FrameDrop::index`] order; `respond()`'s reasons follow them.
    pub const FRAME_LEVEL: [FrameDrop; 10] = [
        FrameDrop::Truncated,
        FrameDrop::NotIp,
        FrameDrop::BadIpHeader,
        FrameDrop::BadIpChecksum,
        FrameDrop::Fragment,
        FrameDrop::NotUdp,
        FrameDrop::NotNtpPort,
        FrameDrop::BadUdpLength,
        FrameDrop::BadUdpChecksum,
        FrameDrop::BadAddress,
    ];

    /// How many distinct reasons there are, for counter arrays.
    pub const COUNT: usize = Self::FRAME_LEVEL.len() + DropReason::ALL.len();

    /// Every reason, in [`FrameDrop::index`] order.
    pub const ALL: [FrameDrop; Self::COUNT] = {
        let mut all = [FrameDrop::Truncated; Self::COUNT];
        let mut i = 0;
        while i < Self::FRAME_LEVEL.len() {
            all[i] = Self::FRAME_LEVEL[i];
            i += 1;
        }
        let mut j = 0;
        while j < DropReason::ALL.len() {
            all[Self::FRAME_LEVEL.len() + j] = FrameDrop::Ntp(DropReason::ALL[j]);
            j += 1;
        }
        all
    };

    /// A stable, low-cardinality label for logs and metrics; `Ntp` reasons keep `respond()`'s.
    pub const fn label(self) -> &'static str {
        match self {
            FrameDrop::Truncated => "truncated",
            FrameDrop::NotIp => "not_ip",
            FrameDrop::BadIpHeader => "bad_ip_header",
            FrameDrop::BadIpChecksum => "bad_ip_checksum",
            FrameDrop::Fragment => "ip_fragment",
            FrameDrop::NotUdp => "not_udp",
            FrameDrop::NotNtpPort => "not_ntp_port",
            FrameDrop::BadUdpLength => "bad_udp_length",
            FrameDrop::BadUdpChecksum => "bad_udp_checksum",
            FrameDrop::BadAddress => "bad_address",
            FrameDrop::Ntp(reason) => reason.label(),
        }
    }

    /// Position in [`FrameDrop::ALL`], for counter arrays.
    pub const fn index(self) -> usize {
        match self {
            FrameDrop::Truncated => 0,
            FrameDrop::NotIp => 1,
            FrameDrop::BadIpHeader => 2,
            FrameDrop::BadIpChecksum => 3,
            FrameDrop::Fragment => 4,
            FrameDrop::NotUdp => 5,
            FrameDrop::NotNtpPort => 6,
            FrameDrop::BadUdpLength => 7,
            FrameDrop::BadUdpChecksum => 8,
            FrameDrop::BadAddress => 9,
            FrameDrop::Ntp(reason) => Self::FRAME_LEVEL.len() + reason.index(),
        }
    }
}

impl From<DropReason> for FrameDrop {
    fn from(reason: DropReason) -> Self {
        FrameDrop::Ntp(reason)
    }
}

/// A reply frame now occupying the first `len` bytes of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameReply {
    /// The reply frame's length; never more than the request's.
    pub len: usize,
    /// What `respond()` wrote (for counters, and whether T3 may be re-stamped).
    pub kind: ReplyKind,
    /// Where the NTP header starts in the frame.
    pub ntp_offset: usize,
}

/// Answers the NTP request in the Ethernet frame `frame`, rewriting it into the reply frame.
///
/// `rx_time` is T2 and `tx_time` the T3 to write (re-stamp it later with
/// [`stamp_transmit_in_frame`]). `ntp_port` is the UDP port requests must be sent to (123).
/// `frame` is exactly the received bytes (no FCS). On `Err` the frame is left as it was.
#[inline]
pub fn reply_in_place(
    frame: &mut [u8],
    rx_time: NtpTimestamp,
    tx_time: NtpTimestamp,
    admission: Admission,
    state: &ServerState,
    ntp_port: u16,
) -> Result<FrameReply, FrameDrop> {
    reply_in_place_with(frame, ntp_port, |ntp| {
        respond(ntp, rx_time, tx_time, admission, state)
    })
}

/// [`reply_in_place`] with `answer` writing the NTP reply over the request's NTP bytes (the
/// whole UDP payload) in place of `respond()`: the NTS answer uses it. `answer` must not return
/// a reply longer than what it was given.
#[inline]
pub fn reply_in_place_with(
    frame: &mut [u8],
    ntp_port: u16,
    answer: impl FnOnce(&mut [u8]) -> Result<crate::proto::respond::Reply, DropReason>,
) -> Result<FrameReply, FrameDrop> {
    let Located { l3, is_ipv4, request } = locate(frame, ntp_port)?;
    // Everything is checked; from here on the frame becomes the reply.
    let ntp_offset = l3 + request.ip_header_len + udp::HEADER_LEN;
    let ntp_end = l3 + request.ip_header_len + request.udp_len;
    let reply = answer(&mut frame[ntp_offset..ntp_end]).map_err(FrameDrop::Ntp)?;
    if reply.len > ntp_end - ntp_offset {
        return Err(FrameDrop::Ntp(DropReason::MalformedExtension));
    }
    debug_assert!(reply.len <= ntp_end - ntp_offset);
    let udp_len = udp::HEADER_LEN + reply.len;
    let ip_len = request.ip_header_len + udp_len;
    let packet = &mut frame[l3..l3 + ip_len];
    if is_ipv4 {
        turn_ipv4(packet, request.ip_header_len, udp_len);
    } else {
        turn_ipv6(packet, udp_len);
    }
    ethernet::Frame::new_unchecked(&mut *frame).swap_addrs();
    Ok(FrameReply {
        len: l3 + ip_len,
        kind: reply.kind,
        ntp_offset,
    })
}

/// Re-stamps T3 in a reply frame that [`reply_in_place`] wrote, just before it is sent, and
/// updates the UDP checksum for the 8 changed bytes (RFC 1624) instead of summing the datagram
/// again. Kiss-o'-Death replies carry no time of ours and are left alone.
///
/// # Panics
/// If `frame` is shorter than `reply` says: `reply` must be what `reply_in_place` returned for it.
#[inline]
pub fn stamp_transmit_in_frame(frame: &mut [u8], reply: &FrameReply, transmit: NtpTimestamp) {
    if !reply.kind.restampable() {
        return;
    }
    let ntp = &mut frame[reply.ntp_offset..reply.ntp_offset + ntp::HEADER_LEN];
    let old = ntp::Packet::new_unchecked(&*ntp).transmit_timestamp();
    ntp::Packet::new_unchecked(&mut *ntp).set_transmit_timestamp(transmit);
    let udp_start = reply.ntp_offset - udp::HEADER_LEN;
    let mut datagram = udp::Packet::new_unchecked(&mut frame[udp_start..reply.len]);
    // T3 starts 48 bytes (an even offset) into the datagram, as `update` needs.
    let sum = checksum::update(
        datagram.checksum(),
        &old.0.to_be_bytes(),
        &transmit.0.to_be_bytes(),
    );
    datagram.set_checksum(if sum == 0 { 0xffff } else { sum });
}

/// Rewrites the NTP header of a reply frame that [`reply_in_place`] wrote with `edit` (which
/// must keep its length: it gets the 48 header bytes), and updates the UDP checksum for what
/// changed (RFC 1624). Interleaved mode uses it: its marks and the previous exchange's stamps go
/// in after the frame was answered.
///
/// # Panics
/// If `frame` is shorter than `reply` says: `reply` must be what `reply_in_place` returned for it.
#[inline]
pub fn edit_ntp_in_frame<T>(frame: &mut [u8], reply: &FrameReply, edit: impl FnOnce(&mut [u8]) -> T) -> T {
    let header = reply.ntp_offset..reply.ntp_offset + ntp::HEADER_LEN;
    let mut old = [0u8; ntp::HEADER_LEN];
    old.copy_from_slice(&frame[header.clone()]);
    let out = edit(&mut frame[header.clone()]);
    let udp_start = reply.ntp_offset - udp::HEADER_LEN;
    let mut datagram = udp::Packet::new_unchecked(&mut frame[udp_start..reply.len]);
    // The NTP header starts 8 bytes (an even offset) into the datagram, as `update` needs.
    let sum = checksum::update(datagram.checksum(), &old, &frame_header(&datagram));
    datagram.set_checksum(if sum == 0 { 0xffff } else { sum });
    out
}

/// The NTP header of a reply datagram, copied out (for the checksum update beside it).
fn frame_header<T: AsRef<[u8]>>(datagram: &udp::Packet<T>) -> [u8; ntp::HEADER_LEN] {
    let mut header = [0u8; ntp::HEADER_LEN];
    header.copy_from_slice(&datagram.payload()[..ntp::HEADER_LEN]);
    header
}

/// Where the parts of a request that passed every frame-level check are.
struct Located {
    /// Offset of the IP header.
    l3: usize,
    is_ipv4: bool,
    request: Request,
}

/// Every frame-level check of a request; the frame is only read.
#[inline]
fn locate(frame: &[u8], ntp_port: u16) -> Result<Located, FrameDrop> {
    let encapsulation = ethernet::Frame::new_checked(frame)
        .and_then(|eth| eth.encapsulation())
        .map_err(|e| match e {
            Error::Truncated => FrameDrop::Truncated,
            _ => FrameDrop::NotIp,
        })?;
    let l3 = encapsulation.payload_offset;
    let is_ipv4 = match encapsulation.ethertype {
        EtherType::IPV4 => true,
        EtherType::IPV6 => false,
        _ => return Err(FrameDrop::NotIp),
    };

    let request = if is_ipv4 {
        check_ipv4(&frame[l3..], ntp_port)?
    } else {
        check_ipv6(&frame[l3..], ntp_port)?
    };
    let eth = ethernet::Frame::new_unchecked(frame);
    if !eth.src_addr().is_unicast() || !eth.dst_addr().is_unicast() {
        return Err(FrameDrop::BadAddress);
    }
    Ok(Located { l3, is_ipv4, request })
}

/// The sender and the NTP payload of a request frame that passes every frame-level check.
/// For the frames `reply_in_place` leaves to the control thread (symmetric modes 1 and 2, which
/// it drops as `DropReason::Symmetric`): rare, so the second parse costs nothing that matters.
pub fn request_source(frame: &[u8], ntp_port: u16) -> Option<(SocketAddr, &[u8])> {
    let Located { l3, is_ipv4, request } = locate(frame, ntp_port).ok()?;
    let l4 = l3 + request.ip_header_len;
    let src_ip = if is_ipv4 {
        IpAddr::V4(ipv4::Packet::new_unchecked(&frame[l3..]).src_addr())
    } else {
        IpAddr::V6(ipv6::Packet::new_unchecked(&frame[l3..]).src_addr())
    };
    let src_port = udp::Packet::new_unchecked(&frame[l4..]).src_port();
    let payload = &frame[l4 + udp::HEADER_LEN..l4 + request.udp_len];
    Some((SocketAddr::new(src_ip, src_port), payload))
}

/// Where the headers of a request that passed every check end.
struct Request {
    ip_header_len: usize,
    /// The UDP length field: header and NTP payload.
    udp_len: usize,
}

/// An IPv4 address a reply can be sent to or from.
fn usable_v4(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback())
}

/// An IPv6 address a reply can be sent to or from. IPv4-mapped addresses never appear on the
/// wire (RFC 4291 section 2.5.5.2).
fn usable_v6(addr: &Ipv6Addr) -> bool {
    !(addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || addr.to_ipv4_mapped().is_some())
}

#[inline]
fn check_ipv4(packet: &[u8], ntp_port: u16) -> Result<Request, FrameDrop> {
    let ip = ipv4::Packet::new_checked(packet).map_err(|e| match e {
        Error::Truncated => FrameDrop::Truncated,
        _ => FrameDrop::BadIpHeader,
    })?;
    if ip.version() != 4 {
        return Err(FrameDrop::BadIpHeader);
    }
    if !ip.verify_checksum() {
        return Err(FrameDrop::BadIpChecksum);
    }
    if ip.is_fragment() {
        return Err(FrameDrop::Fragment);
    }
    if ip.protocol() != IpProtocol::UDP {
        return Err(FrameDrop::NotUdp);
    }
    let datagram = udp::Packet::new_checked(ip.payload()).map_err(|_| FrameDrop::BadUdpLength)?;
    if datagram.dst_port() != ntp_port {
        return Err(FrameDrop::NotNtpPort);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !usable_v4(src) || !usable_v4(dst) || datagram.src_port() == 0 {
        return Err(FrameDrop::BadAddress);
    }
    // A checksum left to an offload (the field holds the pseudo-header sum) is accepted: a
    // local sender over veth sends exactly that, and the reply gets a complete checksum.
    if !datagram.verify_checksum_v4(src, dst) && !datagram.is_partial_checksum_v4(src, dst) {
        return Err(FrameDrop::BadUdpChecksum);
    }
    Ok(Request {
        ip_header_len: ip.header_len() as usize,
        udp_len: datagram.len() as usize,
    })
}

#[inline]
fn check_ipv6(packet: &[u8], ntp_port: u16) -> Result<Request, FrameDrop> {
    let ip = ipv6::Packet::new_checked(packet).map_err(|_| FrameDrop::Truncated)?;
    if ip.version() != 6 {
        return Err(FrameDrop::BadIpHeader);
    }
    match ip.next_header() {
        IpProtocol::UDP => {}
        IpProtocol::IPV6_FRAG => return Err(FrameDrop::Fragment),
        _ => return Err(FrameDrop::NotUdp),
    }
    let datagram = udp::Packet::new_checked(ip.payload()).map_err(|_| FrameDrop::BadUdpLength)?;
    if datagram.dst_port() != ntp_port {
        return Err(FrameDrop::NotNtpPort);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !usable_v6(&src) || !usable_v6(&dst) || datagram.src_port() == 0 {
        return Err(FrameDrop::BadAddress);
    }
    if !datagram.verify_checksum_v6(&src, &dst) && !datagram.is_partial_checksum_v6(&src, &dst) {
        return Err(FrameDrop::BadUdpChecksum);
    }
    Ok(Request {
        ip_header_len: ipv6::HEADER_LEN,
        udp_len: datagram.len() as usize,
    })
}

/// Turns a checked IPv4 request, whose NTP payload is now the reply, around. `packet` ends
/// where the reply does.
///
/// Every field is read before any is written, and the header checksum is updated from those
/// values: reading a word back after writing one of its bytes would straddle a store still in the
/// store buffer, which cannot be forwarded and stalls (it was half the cost of this function).
#[inline]
fn turn_ipv4(packet: &mut [u8], header_len: usize, udp_len: usize) {
    let mut ip = ipv4::Packet::new_unchecked(&mut *packet);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let total_len = (header_len + udp_len) as u16;
    // The words that change, as RFC 1624 wants them: version/IHL/DSCP/ECN, total length,
    // TTL/protocol. ECN is cleared: a CE mark on the request says nothing about the way back,
    // and this reply is not from an ECN-capable transport. DSCP, ident, DF and options are echoed.
    let ver_ihl = (ip.version() << 4) | (ip.header_len() / 4);
    let before = [
        u16::from_be_bytes([ver_ihl, (ip.dscp() << 2) | ip.ecn()]),
        ip.total_len(),
        u16::from_be_bytes([ip.ttl(), ip.protocol().0]),
    ];
    let after = [
        u16::from_be_bytes([ver_ihl, ip.dscp() << 2]),
        total_len,
        u16::from_be_bytes([REPLY_HOP_LIMIT, ip.protocol().0]),
    ];
    let mut sum = ip.checksum();
    for (old, new) in before.into_iter().zip(after) {
        sum = checksum::update_word(sum, old, new);
    }
    ip.set_ecn(0);
    ip.set_total_len(total_len);
    ip.set_ttl(REPLY_HOP_LIMIT);
    ip.swap_addrs();
    ip.set_checksum(sum);

    let mut datagram = udp::Packet::new_unchecked(&mut packet[header_len..]);
    datagram.swap_ports();
    datagram.set_len(udp_len as u16);
    datagram.fill_checksum_v4(dst, src);
}

/// Turns a checked IPv6 request, whose NTP payload is now the reply, around. `packet` ends
/// where the reply does.
#[inline]
fn turn_ipv6(packet: &mut [u8], udp_len: usize) {
    let mut ip = ipv6::Packet::new_unchecked(&mut *packet);
    // Read before writing, as for IPv4.
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    // As for IPv4: ECN cleared, DSCP and flow label echoed (RFC 6437 allows a reflected label).
    ip.set_ecn(0);
    ip.set_payload_len(udp_len as u16);
    ip.set_hop_limit(REPLY_HOP_LIMIT);
    ip.swap_addrs();

    let mut datagram = udp::Packet::new_unchecked(&mut packet[ipv6::HEADER_LEN..]);
    datagram.swap_ports();
    datagram.set_len(udp_len as u16);
    datagram.fill_checksum_v6(&dst, &src);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::respond::KissCode;
    use crate::proto::state::test_fixtures::synced;
    use crate::proto::wire::ethernet::{EthernetAddress, Vlan, VlanTag};
    use crate::proto::wire::extension::ExtensionField;
    use crate::proto::wire::ntp::{Leap, Mode};
    use proptest::prelude::*;

    const T1: NtpTimestamp = NtpTimestamp(0xe98a_1b2c_1234_5678);
    const T2: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_0000);
    const T3: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_1000);
    const PORT: u16 = 123;

    const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x10]);
    const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
    const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 1, 0, 0, 0, 0x10);
    const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 0, 0, 0, 0, 1);

    /// An NTPv4 client request with transmit timestamp T1.
    fn ntp_request() -> Vec<u8> {
        let mut buf = vec![0u8; ntp::HEADER_LEN];
        let mut p = ntp::Packet::new_unchecked(&mut buf[..]);
        p.set_leap_version_mode(Leap::Unsynchronized, 4, Mode::Client);
        p.set_poll(6);
        p.set_precision(-20);
        p.set_transmit_timestamp(T1);
        buf
    }

    /// A request followed by an unknown 24-byte extension field.
    fn ntp_request_with_extension() -> Vec<u8> {
        let mut buf = ntp_request();
        let mut field = vec![0u8; ExtensionField::buffer_len(20)];
        ExtensionField::emit(0x7777, &[0xab; 20], &mut field).unwrap();
        assert_eq!(field.len(), 24);
        buf.extend_from_slice(&field);
        buf
    }

    #[derive(Debug, Clone)]
    enum Ip {
        V4 {
            src: Ipv4Addr,
            dst: Ipv4Addr,
            options: Vec<u8>,
            ecn: u8,
        },
        V6 {
            src: Ipv6Addr,
            dst: Ipv6Addr,
            ecn: u8,
        },
    }

    /// What a test request frame is made of. The integration tests and benches build theirs
    /// with `RequestFrame` of strata-test-support (tests/support/), which these unit tests cannot
    /// use: it depends on strata, so its `Vlan` and the rest would be a second copy of this
    /// crate's types. Hence this local builder.
    #[derive(Debug, Clone)]
    struct Spec {
        vlan: Vlan,
        ip: Ip,
        src_port: u16,
        dst_port: u16,
        payload: Vec<u8>,
        /// Bytes after the IP packet (Ethernet padding).
        padding: usize,
    }

    impl Spec {
        fn v4() -> Spec {
            Spec {
                vlan: Vlan::Untagged,
                ip: Ip::V4 {
                    src: CLIENT4,
                    dst: SERVER4,
                    options: Vec::new(),
                    ecn: 0,
                },
                src_port: 50123,
                dst_port: PORT,
                payload: ntp_request(),
                padding: 0,
            }
        }

        fn v6() -> Spec {
            Spec {
                ip: Ip::V6 {
                    src: CLIENT6,
                    dst: SERVER6,
                    ecn: 0,
                },
                ..Spec::v4()
            }
        }

        fn build(&self) -> Vec<u8> {
            let eth = ethernet::Repr {
                src_addr: CLIENT_MAC,
                dst_addr: SERVER_MAC,
                vlan: self.vlan,
                ethertype: match self.ip {
                    Ip::V4 { .. } => EtherType::IPV4,
                    Ip::V6 { .. } => EtherType::IPV6,
                },
            };
            let udp_repr = udp::Repr {
                src_port: self.src_port,
                dst_port: self.dst_port,
                payload_len: self.payload.len(),
            };
            let udp_len = udp::HEADER_LEN + self.payload.len();
            let l3 = eth.buffer_len();
            let ip_header_len = match &self.ip {
                Ip::V4 { options, .. } => ipv4::HEADER_LEN + options.len(),
                Ip::V6 { .. } => ipv6::HEADER_LEN,
            };
            let l4 = l3 + ip_header_len;
            let mut frame = vec![0u8; l4 + udp_len + self.padding];
            eth.emit(&mut ethernet::Frame::new_unchecked(&mut frame[..]));
            let mut datagram = udp::Packet::new_unchecked(&mut frame[l4..l4 + udp_len]);
            udp_repr.emit(&mut datagram);
            datagram.payload_mut().copy_from_slice(&self.payload);
            match &self.ip {
                Ip::V4 {
                    src,
                    dst,
                    options,
                    ecn,
                } => {
                    datagram.fill_checksum_v4(*src, *dst);
                    let repr = ipv4::Repr {
                        src_addr: *src,
                        dst_addr: *dst,
                        protocol: IpProtocol::UDP,
                        ttl: 57,
                        dscp: 46,
                        ecn: *ecn,
                        ident: 0x4242,
                        dont_frag: true,
                        more_frags: false,
                        frag_offset: 0,
                        options,
                        payload_len: udp_len,
                    };
                    repr.emit(&mut ipv4::Packet::new_unchecked(&mut frame[l3..]));
                }
                Ip::V6 { src, dst, ecn } => {
                    datagram.fill_checksum_v6(src, dst);
                    let repr = ipv6::Repr {
                        src_addr: *src,
                        dst_addr: *dst,
                        next_header: IpProtocol::UDP,
                        payload_len: udp_len,
                        hop_limit: 57,
                        traffic_class: (46 << 2) | ecn,
                        flow_label: 0x12345,
                    };
                    repr.emit(&mut ipv6::Packet::new_unchecked(&mut frame[l3..]));
                }
            }
            frame
        }
    }

    fn answer(frame: &mut [u8]) -> Result<FrameReply, FrameDrop> {
        reply_in_place(frame, T2, T3, Admission::Serve, &synced(), PORT)
    }

    /// The NTP reply `respond()` alone makes of `payload`.
    fn expected_ntp(payload: &[u8], admission: Admission) -> Vec<u8> {
        let mut buf = payload.to_vec();
        let reply = respond(&mut buf, T2, T3, admission, &synced()).unwrap();
        buf.truncate(reply.len);
        buf
    }

    /// Checks every header of `reply` (the first `len` bytes) against the request it came from,
    /// with full checksum computations.
    fn assert_is_reply(spec: &Spec, reply: &[u8], admission: Admission) {
        let eth = ethernet::Frame::new_checked(reply).unwrap();
        let repr = ethernet::Repr::parse(&eth).unwrap();
        assert_eq!(repr.src_addr, SERVER_MAC);
        assert_eq!(repr.dst_addr, CLIENT_MAC);
        assert_eq!(repr.vlan, spec.vlan);
        let l3 = repr.buffer_len();
        let ntp_expected = expected_ntp(&spec.payload, admission);
        let udp_len = udp::HEADER_LEN + ntp_expected.len();
        let ntp_payload = match &spec.ip {
            Ip::V4 {
                src, dst, options, ..
            } => {
                assert_eq!(repr.ethertype, EtherType::IPV4);
                let ip = ipv4::Packet::new_checked(&reply[l3..]).unwrap();
                assert!(ip.verify_checksum(), "IPv4 header checksum");
                let mut refilled = reply[l3..l3 + ip.header_len() as usize].to_vec();
                ipv4::Packet::new_unchecked(&mut refilled[..]).fill_checksum();
                assert_eq!(
                    ip.checksum(),
                    ipv4::Packet::new_unchecked(&refilled[..]).checksum()
                );
                let r = ipv4::Repr::parse(&ip).unwrap();
                assert_eq!((r.src_addr, r.dst_addr), (*dst, *src));
                assert_eq!(r.ttl, REPLY_HOP_LIMIT);
                assert_eq!((r.dscp, r.ecn, r.ident, r.dont_frag), (46, 0, 0x4242, true));
                assert_eq!(r.options, &options[..]);
                assert_eq!(r.payload_len, udp_len);
                assert_eq!(reply.len(), l3 + ip.total_len() as usize);
                let datagram = udp::Packet::new_checked(ip.payload()).unwrap();
                assert!(datagram.verify_checksum_v4(*dst, *src), "UDP checksum");
                assert_ne!(datagram.checksum(), 0);
                datagram.payload().to_vec()
            }
            Ip::V6 { src, dst, .. } => {
                assert_eq!(repr.ethertype, EtherType::IPV6);
                let ip = ipv6::Packet::new_checked(&reply[l3..]).unwrap();
                let r = ipv6::Repr::parse(&ip).unwrap();
                assert_eq!((r.src_addr, r.dst_addr), (*dst, *src));
                assert_eq!(r.hop_limit, REPLY_HOP_LIMIT);
                assert_eq!((r.traffic_class, r.flow_label), (46 << 2, 0x12345));
                assert_eq!(r.payload_len, udp_len);
                assert_eq!(reply.len(), l3 + ipv6::HEADER_LEN + udp_len);
                let datagram = udp::Packet::new_checked(ip.payload()).unwrap();
                assert!(datagram.verify_checksum_v6(dst, src), "UDP checksum");
                datagram.payload().to_vec()
            }
        };
        let udp_start = reply.len() - udp_len;
        let datagram = udp::Packet::new_checked(&reply[udp_start..]).unwrap();
        assert_eq!(
            (datagram.src_port(), datagram.dst_port()),
            (spec.dst_port, spec.src_port)
        );
        assert_eq!(datagram.len() as usize, udp_len);
        assert_eq!(datagram.payload(), &ntp_expected[..]);
        assert_eq!(ntp_payload, ntp_expected);
        let ntp = ntp::Packet::new_checked(&ntp_expected[..]).unwrap();
        assert_eq!(ntp.mode(), Mode::Server);
        assert_eq!(ntp.origin_timestamp(), T1);
    }

    fn check_round(spec: &Spec) -> FrameReply {
        let mut frame = spec.build();
        let request_len = frame.len();
        let reply = answer(&mut frame).unwrap();
        assert!(reply.len <= request_len);
        assert_eq!(reply.kind, ReplyKind::Time);
        assert_eq!(reply.ntp_offset + ntp::HEADER_LEN, reply.len);
        assert_is_reply(spec, &frame[..reply.len], Admission::Serve);
        reply
    }

    #[test]
    fn symmetric_requests_are_left_whole_with_their_source_found() {
        for spec in [Spec::v4(), Spec::v6()] {
            let mut payload = ntp_request();
            payload[0] = (4 << 3) | Mode::SymmetricActive as u8;
            let spec = Spec {
                payload: payload.clone(),
                ..spec
            };
            let mut frame = spec.build();
            let before = frame.clone();
            let got = reply_in_place(&mut frame, T2, T3, Admission::Serve, &synced(), PORT);
            assert_eq!(got.unwrap_err(), FrameDrop::Ntp(DropReason::Symmetric));
            assert_eq!(frame, before);
            let (from, ntp) = request_source(&frame, PORT).expect("a checked request");
            let ip: IpAddr = match spec.ip {
                Ip::V4 { src, .. } => src.into(),
                Ip::V6 { src, .. } => src.into(),
            };
            assert_eq!(from, SocketAddr::new(ip, spec.src_port));
            assert_eq!(ntp, &payload[..]);
        }
        assert_eq!(
            request_source(
                &Spec {
                    dst_port: 9,
                    ..Spec::v4()
                }
                .build(),
                PORT
            ),
            None
        );
    }

    #[test]
    fn ipv4_request_becomes_its_reply() {
        let reply = check_round(&Spec::v4());
        assert_eq!(reply.len, 90);
        assert_eq!(reply.ntp_offset, 42);
    }

    #[test]
    fn ipv6_request_becomes_its_reply() {
        let reply = check_round(&Spec::v6());
        assert_eq!(reply.len, 110);
        assert_eq!(reply.ntp_offset, 62);
    }

    #[test]
    fn single_tagged_requests_keep_their_tag() {
        let vlan = Vlan::Single(VlanTag::new(EtherType::VLAN, 3, false, 100));
        assert_eq!(check_round(&Spec { vlan, ..Spec::v4() }).len, 94);
        assert_eq!(check_round(&Spec { vlan, ..Spec::v6() }).len, 114);
    }

    #[test]
    fn double_tagged_requests_keep_both_tags() {
        let vlan = Vlan::Double {
            outer: VlanTag::new(EtherType::QINQ, 0, false, 10),
            inner: VlanTag::new(EtherType::VLAN, 5, true, 20),
        };
        assert_eq!(check_round(&Spec { vlan, ..Spec::v4() }).len, 98);
        assert_eq!(check_round(&Spec { vlan, ..Spec::v6() }).len, 118);
    }

    #[test]
    fn ipv4_options_are_kept() {
        let options = vec![0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00];
        let spec = Spec {
            ip: Ip::V4 {
                src: CLIENT4,
                dst: SERVER4,
                options,
                ecn: 0,
            },
            ..Spec::v4()
        };
        assert_eq!(check_round(&spec).len, 98);
    }

    #[test]
    fn ecn_marks_are_cleared() {
        let spec = Spec {
            ip: Ip::V4 {
                src: CLIENT4,
                dst: SERVER4,
                options: vec![],
                ecn: 3,
            },
            ..Spec::v4()
        };
        check_round(&spec);
        check_round(&Spec {
            ip: Ip::V6 {
                src: CLIENT6,
                dst: SERVER6,
                ecn: 2,
            },
            ..Spec::v4()
        });
    }

    #[test]
    fn a_longer_request_gets_a_shorter_reply_with_consistent_lengths() {
        for base in [Spec::v4(), Spec::v6()] {
            let spec = Spec {
                payload: ntp_request_with_extension(),
                ..base.clone()
            };
            let request_len = spec.build().len();
            let reply = check_round(&spec);
            assert_eq!(reply.len, request_len - 24);
            // A legacy MAC (key ID and a 16-byte digest) likewise.
            let mut payload = ntp_request();
            payload.extend_from_slice(&[0x5a; 20]);
            let spec = Spec { payload, ..base };
            let request_len = spec.build().len();
            assert_eq!(check_round(&spec).len, request_len - 20);
        }
    }

    #[test]
    fn ethernet_padding_is_left_out_of_the_reply() {
        let spec = Spec {
            padding: 6,
            ..Spec::v4()
        };
        let mut frame = spec.build();
        assert_eq!(frame.len(), 96);
        let reply = answer(&mut frame).unwrap();
        assert_eq!(reply.len, 90);
        assert_is_reply(&spec, &frame[..reply.len], Admission::Serve);
    }

    #[test]
    fn ipv4_request_without_udp_checksum_gets_a_checksummed_reply() {
        let spec = Spec::v4();
        let mut frame = spec.build();
        frame[14 + 20 + 6..14 + 20 + 8].fill(0);
        let reply = answer(&mut frame).unwrap();
        assert_is_reply(&spec, &frame[..reply.len], Admission::Serve);
    }

    #[test]
    fn kiss_o_death_is_a_proper_reply_frame() {
        for base in [Spec::v4(), Spec::v6()] {
            let mut frame = base.build();
            let admission = Admission::Kiss(KissCode::Rate);
            let reply = reply_in_place(&mut frame, T2, T3, admission, &synced(), PORT).unwrap();
            assert_eq!(reply.kind, ReplyKind::Kiss(KissCode::Rate));
            assert_is_reply(&base, &frame[..reply.len], admission);
        }
    }

    #[test]
    fn restamping_t3_keeps_the_udp_checksum_valid() {
        for base in [Spec::v4(), Spec::v6()] {
            let mut frame = base.build();
            let reply = answer(&mut frame).unwrap();
            let later = NtpTimestamp(T3.0 + 0x1_2345);
            stamp_transmit_in_frame(&mut frame, &reply, later);
            let ntp = ntp::Packet::new_checked(&frame[reply.ntp_offset..reply.len]).unwrap();
            assert_eq!(ntp.transmit_timestamp(), later);
            let mut recomputed = frame[..reply.len].to_vec();
            let udp_start = reply.ntp_offset - udp::HEADER_LEN;
            let l3 = 14;
            match base.ip {
                Ip::V4 { src, dst, .. } => {
                    let datagram = udp::Packet::new_unchecked(&frame[udp_start..reply.len]);
                    assert!(datagram.verify_checksum_v4(dst, src));
                    let mut d = udp::Packet::new_unchecked(&mut recomputed[udp_start..]);
                    d.fill_checksum_v4(dst, src);
                    assert_eq!(d.checksum(), datagram.checksum());
                    assert!(ipv4::Packet::new_checked(&frame[l3..reply.len])
                        .unwrap()
                        .verify_checksum());
                }
                Ip::V6 { src, dst, .. } => {
                    let datagram = udp::Packet::new_unchecked(&frame[udp_start..reply.len]);
                    assert!(datagram.verify_checksum_v6(&dst, &src));
                    let mut d = udp::Packet::new_unchecked(&mut recomputed[udp_start..]);
                    d.fill_checksum_v6(&dst, &src);
                    assert_eq!(d.checksum(), datagram.checksum());
                }
            }
        }
    }

    #[test]
    fn editing_the_ntp_header_keeps_the_udp_checksum_valid() {
        for base in [Spec::v4(), Spec::v6()] {
            let mut frame = base.build();
            let reply = answer(&mut frame).unwrap();
            let origin = edit_ntp_in_frame(&mut frame, &reply, |ntp| {
                let mut p = ntp::Packet::new_unchecked(ntp);
                p.set_receive_timestamp(NtpTimestamp(p.receive_timestamp().0 | 1));
                p.set_origin_timestamp(NtpTimestamp(0x0123_4567_89ab_cdef));
                p.origin_timestamp()
            });
            assert_eq!(origin, NtpTimestamp(0x0123_4567_89ab_cdef));
            let udp_start = reply.ntp_offset - udp::HEADER_LEN;
            let datagram = udp::Packet::new_unchecked(&frame[udp_start..reply.len]);
            match base.ip {
                Ip::V4 { src, dst, .. } => assert!(datagram.verify_checksum_v4(dst, src)),
                Ip::V6 { src, dst, .. } => assert!(datagram.verify_checksum_v6(&dst, &src)),
            }
            let p = ntp::Packet::new_checked(&frame[reply.ntp_offset..reply.len]).unwrap();
            assert_eq!(p.receive_timestamp().0 & 1, 1);
        }
    }

    #[test]
    fn kiss_o_death_is_never_restamped() {
        let mut frame = Spec::v4().build();
        let admission = Admission::Kiss(KissCode::Deny);
        let reply = reply_in_place(&mut frame, T2, T3, admission, &synced(), PORT).unwrap();
        let before = frame.clone();
        stamp_transmit_in_frame(&mut frame, &reply, NtpTimestamp(1));
        assert_eq!(frame, before);
    }

    /// Runs a request built from `spec`, edited by `edit`, and expects `drop`, with the frame
    /// left as it was.
    fn assert_drop(spec: &Spec, edit: impl FnOnce(&mut Vec<u8>), drop: FrameDrop) {
        let mut frame = spec.build();
        edit(&mut frame);
        let before = frame.clone();
        assert_eq!(answer(&mut frame), Err(drop), "{spec:?}");
        assert_eq!(frame, before, "a dropped frame is left as it was");
    }

    /// Refills the IPv4 header checksum after an edit (for frames with no VLAN tag).
    fn refill_ipv4(frame: &mut [u8]) {
        ipv4::Packet::new_unchecked(&mut frame[14..]).fill_checksum();
    }

    #[test]
    fn truncated_frames_are_dropped() {
        let v4 = Spec::v4();
        assert_drop(&v4, |f| f.truncate(13), FrameDrop::Truncated);
        assert_drop(&v4, |f| f.truncate(14 + 19), FrameDrop::Truncated);
        assert_drop(&v4, |f| f.truncate(89), FrameDrop::Truncated);
        let tagged = Spec {
            vlan: Vlan::Single(VlanTag::new(EtherType::VLAN, 0, false, 1)),
            ..v4
        };
        assert_drop(&tagged, |f| f.truncate(16), FrameDrop::Truncated);
        assert_drop(&Spec::v6(), |f| f.truncate(14 + 39), FrameDrop::Truncated);
        assert_drop(&Spec::v6(), |f| f.truncate(109), FrameDrop::Truncated);
    }

    #[test]
    fn non_ip_frames_are_dropped() {
        assert_drop(
            &Spec::v4(),
            |f| f[12..14].copy_from_slice(&[0x08, 0x06]),
            FrameDrop::NotIp,
        );
        let two = Spec {
            vlan: Vlan::Double {
                outer: VlanTag::new(EtherType::QINQ, 0, false, 1),
                inner: VlanTag::new(EtherType::VLAN, 0, false, 2),
            },
            ..Spec::v4()
        };
        // A third tag where the EtherType should be.
        assert_drop(
            &two,
            |f| f[20..22].copy_from_slice(&[0x81, 0x00]),
            FrameDrop::NotIp,
        );
    }

    #[test]
    fn bad_ip_headers_are_dropped() {
        let v4 = Spec::v4();
        // IHL 4.
        assert_drop(&v4, |f| f[14] = 0x44, FrameDrop::BadIpHeader);
        // Version 6 under the IPv4 EtherType (checksum made valid).
        assert_drop(
            &v4,
            |f| {
                f[14] = 0x65;
                refill_ipv4(f);
            },
            FrameDrop::BadIpHeader,
        );
        // Total length shorter than the header.
        assert_drop(
            &v4,
            |f| f[16..18].copy_from_slice(&19u16.to_be_bytes()),
            FrameDrop::BadIpHeader,
        );
        // Version 4 under the IPv6 EtherType.
        assert_drop(&Spec::v6(), |f| f[14] = 0x40, FrameDrop::BadIpHeader);
    }

    #[test]
    fn bad_ip_checksums_are_dropped() {
        assert_drop(&Spec::v4(), |f| f[14 + 10] ^= 0x01, FrameDrop::BadIpChecksum);
        assert_drop(&Spec::v4(), |f| f[14 + 8] = 1, FrameDrop::BadIpChecksum);
    }

    #[test]
    fn fragments_are_dropped() {
        let v4 = Spec::v4();
        for flags in [[0x20, 0x00], [0x00, 0x01], [0x20, 0x10]] {
            assert_drop(
                &v4,
                |f| {
                    f[14 + 6..14 + 8].copy_from_slice(&flags);
                    refill_ipv4(f);
                },
                FrameDrop::Fragment,
            );
        }
        assert_drop(&Spec::v6(), |f| f[14 + 6] = 44, FrameDrop::Fragment);
    }

    #[test]
    fn non_udp_is_dropped() {
        assert_drop(
            &Spec::v4(),
            |f| {
                f[14 + 9] = 6;
                refill_ipv4(f);
            },
            FrameDrop::NotUdp,
        );
        assert_drop(&Spec::v6(), |f| f[14 + 6] = 58, FrameDrop::NotUdp);
        assert_drop(&Spec::v6(), |f| f[14 + 6] = 0, FrameDrop::NotUdp);
    }

    #[test]
    fn other_ports_are_dropped() {
        assert_drop(
            &Spec {
                dst_port: 124,
                ..Spec::v4()
            },
            |_| {},
            FrameDrop::NotNtpPort,
        );
        assert_drop(
            &Spec {
                dst_port: 53,
                ..Spec::v6()
            },
            |_| {},
            FrameDrop::NotNtpPort,
        );
    }

    #[test]
    fn bad_udp_lengths_are_dropped() {
        let at = 14 + 20 + 4;
        assert_drop(
            &Spec::v4(),
            |f| f[at..at + 2].copy_from_slice(&7u16.to_be_bytes()),
            FrameDrop::BadUdpLength,
        );
        assert_drop(
            &Spec::v4(),
            |f| f[at..at + 2].copy_from_slice(&57u16.to_be_bytes()),
            FrameDrop::BadUdpLength,
        );
        let at = 14 + 40 + 4;
        assert_drop(
            &Spec::v6(),
            |f| f[at..at + 2].copy_from_slice(&57u16.to_be_bytes()),
            FrameDrop::BadUdpLength,
        );
        // An IP payload too short for a UDP header.
        assert_drop(
            &Spec::v4(),
            |f| {
                f[16..18].copy_from_slice(&27u16.to_be_bytes());
                refill_ipv4(f);
            },
            FrameDrop::BadUdpLength,
        );
    }

    #[test]
    fn bad_udp_checksums_are_dropped() {
        assert_drop(
            &Spec::v4(),
            |f| f[14 + 20 + 8 + 40] ^= 0x01,
            FrameDrop::BadUdpChecksum,
        );
        assert_drop(
            &Spec::v6(),
            |f| f[14 + 40 + 8 + 40] ^= 0x01,
            FrameDrop::BadUdpChecksum,
        );
        // Zero is "none" over IPv4 but invalid over IPv6.
        assert_drop(
            &Spec::v6(),
            |f| f[14 + 40 + 6..14 + 40 + 8].fill(0),
            FrameDrop::BadUdpChecksum,
        );
    }

    /// What a local sender over veth leaves in the checksum field when it hands the checksum
    /// to an offload (CHECKSUM_PARTIAL): the pseudo-header sum alone.
    fn make_partial(frame: &mut [u8], spec: &Spec) {
        let (l4, udp_len) = match spec.ip {
            Ip::V4 { ref options, .. } => (14 + 20 + options.len(), 8 + spec.payload.len()),
            Ip::V6 { .. } => (14 + 40, 8 + spec.payload.len()),
        };
        let sum = match spec.ip {
            Ip::V4 { src, dst, .. } => checksum::pseudo_header_v4(src, dst, 17, udp_len as u16),
            Ip::V6 { src, dst, .. } => checksum::pseudo_header_v6(&src, &dst, 17, udp_len as u32),
        };
        frame[l4 + 6..l4 + 8].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn a_checksum_left_to_an_offload_is_answered_with_a_complete_one() {
        for spec in [Spec::v4(), Spec::v6()] {
            let mut frame = spec.build();
            make_partial(&mut frame, &spec);
            let reply = answer(&mut frame).expect("a partial checksum is accepted");
            // assert_is_reply verifies every checksum of the reply in full.
            assert_is_reply(&spec, &frame[..reply.len], Admission::Serve);
            // A field that is neither the full checksum nor this datagram's pseudo-header sum is
            // still a bad checksum.
            let l4 = frame.len() - spec.payload.len() - 8;
            assert_drop(
                &spec,
                |f| {
                    make_partial(f, &spec);
                    f[l4 + 7] ^= 0x01;
                },
                FrameDrop::BadUdpChecksum,
            );
        }
    }

    #[test]
    fn unusable_addresses_are_dropped() {
        let v4 = |src: Ipv4Addr, dst: Ipv4Addr| Spec {
            ip: Ip::V4 {
                src,
                dst,
                options: vec![],
                ecn: 0,
            },
            ..Spec::v4()
        };
        let v6 = |src: Ipv6Addr, dst: Ipv6Addr| Spec {
            ip: Ip::V6 { src, dst, ecn: 0 },
            ..Spec::v4()
        };
        for spec in [
            v4(Ipv4Addr::BROADCAST, SERVER4),
            v4(Ipv4Addr::UNSPECIFIED, SERVER4),
            v4(Ipv4Addr::new(224, 0, 1, 1), SERVER4),
            v4(Ipv4Addr::LOCALHOST, SERVER4),
            v4(CLIENT4, Ipv4Addr::BROADCAST),
            v4(CLIENT4, Ipv4Addr::new(224, 0, 1, 1)),
            v6(Ipv6Addr::UNSPECIFIED, SERVER6),
            v6("ff02::1".parse().unwrap(), SERVER6),
            v6(Ipv6Addr::LOCALHOST, SERVER6),
            v6("::ffff:198.19.1.2".parse().unwrap(), SERVER6),
            v6(CLIENT6, "ff05::101".parse().unwrap()),
            Spec {
                src_port: 0,
                ..Spec::v4()
            },
            Spec {
                src_port: 0,
                ..Spec::v6()
            },
        ] {
            assert_drop(&spec, |_| {}, FrameDrop::BadAddress);
        }
        assert_drop(&Spec::v4(), |f| f[..6].fill(0xff), FrameDrop::BadAddress);
        assert_drop(&Spec::v4(), |f| f[6] = 0x01, FrameDrop::BadAddress);
        assert_drop(
            &Spec::v6(),
            |f| f[..3].copy_from_slice(&[0x33, 0x33, 0]),
            FrameDrop::BadAddress,
        );
    }

    #[test]
    fn ntp_drops_are_wrapped() {
        let mut server = ntp_request();
        server[0] = (4 << 3) | 4;
        assert_drop(
            &Spec {
                payload: server,
                ..Spec::v4()
            },
            |_| {},
            FrameDrop::Ntp(DropReason::ServerMode),
        );
        let short = ntp_request()[..47].to_vec();
        assert_drop(
            &Spec {
                payload: short,
                ..Spec::v6()
            },
            |_| {},
            FrameDrop::Ntp(DropReason::TooShort),
        );
        let mut garbage = ntp_request();
        garbage.extend_from_slice(&[1, 2, 3]);
        assert_drop(
            &Spec {
                payload: garbage,
                ..Spec::v4()
            },
            |_| {},
            FrameDrop::Ntp(DropReason::MalformedExtension),
        );
    }

    #[test]
    fn every_drop_has_a_distinct_label_and_index() {
        let mut labels = std::collections::HashSet::new();
        for (i, drop) in FrameDrop::ALL.iter().enumerate() {
            assert_eq!(drop.index(), i);
            assert!(labels.insert(drop.label()), "duplicate label {}", drop.label());
        }
        assert_eq!(FrameDrop::ALL.len(), FrameDrop::COUNT);
        assert_eq!(
            FrameDrop::from(DropReason::Private),
            FrameDrop::Ntp(DropReason::Private)
        );
        assert_eq!(FrameDrop::Ntp(DropReason::Control).label(), "control_mode");
    }

    fn any_vlan() -> impl Strategy<Value = Vlan> {
        prop_oneof![
            Just(Vlan::Untagged),
            any::<u16>().prop_map(|tci| Vlan::Single(VlanTag {
                tpid: EtherType::VLAN,
                tci
            })),
            (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Vlan::Double {
                outer: VlanTag {
                    tpid: EtherType::QINQ,
                    tci: a
                },
                inner: VlanTag {
                    tpid: EtherType::VLAN,
                    tci: b
                },
            }),
        ]
    }

    fn any_ip() -> impl Strategy<Value = Ip> {
        let v4 = (1u32..0xdfff_ffff, 1u32..0xdfff_ffff, 0usize..=10, 0u8..4)
            .prop_filter("usable", |(s, d, _, _)| {
                usable_v4(Ipv4Addr::from(*s)) && usable_v4(Ipv4Addr::from(*d))
            })
            .prop_map(|(s, d, words, ecn)| Ip::V4 {
                src: Ipv4Addr::from(s),
                dst: Ipv4Addr::from(d),
                options: (0..words * 4).map(|i| i as u8).collect(),
                ecn,
            });
        let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>(), 0u8..4)
            .prop_filter("usable", |(s, d, _)| {
                usable_v6(&Ipv6Addr::from(*s)) && usable_v6(&Ipv6Addr::from(*d))
            })
            .prop_map(|(s, d, ecn)| Ip::V6 {
                src: Ipv6Addr::from(s),
                dst: Ipv6Addr::from(d),
                ecn,
            });
        prop_oneof![v4, v6]
    }

    fn any_payload() -> impl Strategy<Value = Vec<u8>> {
        (any::<u64>(), any::<u8>(), 0usize..3).prop_map(|(t1, poll, extra)| {
            let mut p = match extra {
                0 => ntp_request(),
                1 => ntp_request_with_extension(),
                _ => {
                    let mut p = ntp_request();
                    p.extend_from_slice(&[0x11; 24]);
                    p
                }
            };
            let mut view = ntp::Packet::new_unchecked(&mut p[..ntp::HEADER_LEN]);
            view.set_transmit_timestamp(NtpTimestamp(t1 | 1));
            view.set_poll(poll as i8);
            p
        })
    }

    fn any_spec() -> impl Strategy<Value = Spec> {
        (any_vlan(), any_ip(), 1u16.., any_payload(), 0usize..8).prop_map(
            |(vlan, ip, src_port, payload, padding)| Spec {
                vlan,
                ip,
                src_port,
                dst_port: PORT,
                payload,
                padding,
            },
        )
    }

    proptest! {
        #[test]
        fn every_valid_request_becomes_a_verifying_reply(spec in any_spec()) {
            let mut frame = spec.build();
            let request_len = frame.len();
            let reply = answer(&mut frame).unwrap();
            prop_assert!(reply.len <= request_len);
            // The origin timestamp is the request's own, not T1: compare with respond() itself.
            let mut expected = spec.payload.clone();
            let r = respond(&mut expected, T2, T3, Admission::Serve, &synced()).unwrap();
            prop_assert_eq!(&frame[reply.ntp_offset..reply.len], &expected[..r.len]);
            let eth = ethernet::Frame::new_checked(&frame[..reply.len]).unwrap();
            let l3 = eth.encapsulation().unwrap().payload_offset;
            match spec.ip {
                Ip::V4 { src, dst, .. } => {
                    let ip = ipv4::Packet::new_checked(&frame[l3..reply.len]).unwrap();
                    prop_assert!(ip.verify_checksum());
                    prop_assert_eq!(l3 + ip.total_len() as usize, reply.len);
                    let d = udp::Packet::new_checked(ip.payload()).unwrap();
                    prop_assert!(d.verify_checksum_v4(dst, src));
                    prop_assert_eq!(d.len() as usize, udp::HEADER_LEN + r.len);
                }
                Ip::V6 { src, dst, .. } => {
                    let ip = ipv6::Packet::new_checked(&frame[l3..reply.len]).unwrap();
                    prop_assert_eq!(l3 + ipv6::HEADER_LEN + ip.payload_len() as usize, reply.len);
                    let d = udp::Packet::new_checked(ip.payload()).unwrap();
                    prop_assert!(d.verify_checksum_v6(&dst, &src));
                    prop_assert_eq!(d.len() as usize, udp::HEADER_LEN + r.len);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_grow(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut frame = bytes.clone();
            if let Ok(reply) = answer(&mut frame) {
                prop_assert!(reply.len <= bytes.len());
            } else {
                prop_assert_eq!(frame, bytes);
            }
        }

        #[test]
        fn damaged_requests_never_panic_or_grow(
            spec in any_spec(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            // Valid frames with a few bytes changed and perhaps cut short reach every check.
            let mut frame = spec.build();
            for (at, value) in edits {
                let at = at % frame.len();
                frame[at] = value;
            }
            frame.truncate(frame.len() - cut % 4);
            let len = frame.len();
            if let Ok(reply) = answer(&mut frame) {
                prop_assert!(reply.len <= len);
                stamp_transmit_in_frame(&mut frame, &reply, NtpTimestamp(5));
            }
        }
    }
}
