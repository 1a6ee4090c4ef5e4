//! The batch buffers of one responder thread for recvmmsg/sendmmsg, and the control messages
//! (receive timestamps, destination addresses) that travel with the datagrams.
//!
//! A [`Batch`] is allocated once per thread. Each received datagram is answered in place in its
//! own buffer and sent back to the address it came from, so a reply needs no copy. The message
//! headers hold pointers into the buffers; the call that hands them to the kernel (receive,
//! send) writes those pointers itself, right before the system call, from borrows of the
//! buffers taken there. So no pointer the kernel sees outlives the borrow it came from, and the
//! safe methods are sound whatever order they are called in.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;
use std::ptr;

use crate::proto::respond::ReplyKind;

/// The largest datagram received whole. NTP requests are 48 bytes, NTS requests with extension
/// fields a few hundred; anything that does not fit is flagged MSG_TRUNC and dropped.
pub const DATAGRAM_CAPACITY: usize = 2048;
/// Room for the receive control messages: SCM_TIMESTAMPING (3 timespecs) and a pktinfo.
const RX_CONTROL_LEN: usize = 256;
/// Room for the control messages of a reply: its source address (pktinfo) and the request for
/// its transmit stamps.
const TX_CONTROL_LEN: usize = 64;
/// The transmit stamps one reply asks for: the kernel's software stamp, and the NIC's where it
/// stamps transmitted packets (reported as the socket's SO_TIMESTAMPING flags say).
const TX_STAMP_REQUEST: libc::c_uint =
    libc::SOF_TIMESTAMPING_TX_SOFTWARE | libc::SOF_TIMESTAMPING_TX_HARDWARE;

/// A control-message buffer aligned as `struct cmsghdr` needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct ControlBuf<const N: usize>(pub(super) [u8; N]);

/// The destination of a request, from IP_PKTINFO / IPV6_PKTINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktInfo {
    V4 {
        ifindex: i32,
        /// The local address the kernel would answer from (the destination, or for a broadcast
        /// the interface's address).
        spec_dst: [u8; 4],
        /// The destination address in the IP header.
        dst: [u8; 4],
    },
    V6 {
        ifindex: u32,
        dst: [u8; 16],
    },
}

impl PktInfo {
    /// The interface the request came in on (None where the kernel gave 0).
    pub fn ifindex(&self) -> Option<u32> {
        let index = match *self {
            PktInfo::V4 { ifindex, .. } => u32::try_from(ifindex).unwrap_or(0),
            PktInfo::V6 { ifindex, .. } => ifindex,
        };
        (index != 0).then_some(index)
    }
}

/// What the control messages of one received datagram said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// The kernel's software receive stamp, CLOCK_REALTIME nanoseconds.
    pub software_ns: Option<i64>,
    /// The raw hardware stamp (the NIC's PHC time, ns), when there was one.
    pub hardware_ns: Option<i64>,
    pub pktinfo: Option<PktInfo>,
    /// SO_RXQ_OVFL: how many datagrams the kernel had dropped on this socket (receive buffer
    /// full) when this one was queued, counted since the socket was made.
    pub kernel_drops: Option<u32>,
}

/// One received datagram.
pub struct Received<'a> {
    /// Bytes received (at most [`DATAGRAM_CAPACITY`]).
    pub len: usize,
    /// The datagram was larger than the buffer.
    pub truncated: bool,
    pub meta: RxMeta,
    /// The buffer, `len` bytes of datagram; the reply is written over it.
    pub payload: &'a mut [u8],
}

/// A reply waiting to be sent: which receive slot holds it, how long it is, what it is.
#[derive(Debug, Clone, Copy)]
struct Pending {
    slot: usize,
    len: usize,
    kind: ReplyKind,
    pktinfo: Option<PktInfo>,
    /// Ask the kernel for this reply's transmit stamps (a SO_TIMESTAMPING control message).
    tx_stamp: bool,
}

/// The buffers and message headers for one thread's receive and send calls.
pub struct Batch {
    capacity: usize,
    data: Box<[[u8; DATAGRAM_CAPACITY]]>,
    names: Box<[libc::sockaddr_storage]>,
    rx_control: Box<[ControlBuf<RX_CONTROL_LEN>]>,
    rx_iov: Box<[libc::iovec]>,
    rx_msgs: Box<[libc::mmsghdr]>,
    received: usize,
    pending: Box<[Pending]>,
    pending_len: usize,
    /// How many of the queued replies have their send headers' lengths and control message
    /// written (by [`Batch::prepare_send`]).
    prepared: usize,
    tx_control: Box<[ControlBuf<TX_CONTROL_LEN>]>,
    tx_iov: Box<[libc::iovec]>,
    tx_msgs: Box<[libc::mmsghdr]>,
}

pub(super) const fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(len as libc::c_uint) as usize }
}

pub(super) const fn cmsg_len(len: usize) -> usize {
    // SAFETY: CMSG_LEN is pure arithmetic on its argument.
    unsafe { libc::CMSG_LEN(len as libc::c_uint) as usize }
}

/// Rounds a control-message length up as CMSG_NXTHDR does.
pub(super) const fn cmsg_align(len: usize) -> usize {
    cmsg_space(len) - cmsg_space(0)
}

const _: () = assert!(
    cmsg_space(size_of::<[libc::timespec; 3]>())
        + cmsg_space(size_of::<libc::in6_pktinfo>())
        + cmsg_space(size_of::<u32>())
        <= RX_CONTROL_LEN
);
const _: () = assert!(
    cmsg_space(size_of::<libc::in6_pktinfo>()) + cmsg_space(size_of::<libc::c_uint>()) <= TX_CONTROL_LEN
);
const _: () = assert!(cmsg_space(size_of::<libc::in_pktinfo>()) <= TX_CONTROL_LEN);

/// Reads a `T` from the start of `bytes`, which must be at least that long.
pub(super) fn read_struct<T: Copy>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>());
    // SAFETY: the bytes are in bounds (checked above), read_unaligned has no alignment
    // requirement, and T is a plain C struct for which any bit pattern is valid.
    unsafe { ptr::read_unaligned(bytes.as_ptr() as *const T) }
}

/// The control messages in `buf` as (level, type, data), in order; a short or overlong header
/// ends the walk. Nothing is copied but each header.
// The casts look redundant on x86-64 glibc, but `cmsg_len` differs across libcs and
// architectures (u32 on musl).
#[allow(clippy::unnecessary_cast)]
pub(super) fn control_messages(buf: &[u8]) -> impl Iterator<Item = (libc::c_int, libc::c_int, &[u8])> {
    let header = cmsg_len(0);
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset + size_of::<libc::cmsghdr>() > buf.len() {
            return None;
        }
        let hdr: libc::cmsghdr = read_struct(&buf[offset..]);
        let len = hdr.cmsg_len as usize;
        if len < header || offset + len > buf.len() {
            return None;
        }
        let data = &buf[offset + header..offset + len];
        offset += cmsg_align(len);
        Some((hdr.cmsg_level, hdr.cmsg_type, data))
    })
}

/// An SCM_TIMESTAMPING message's data (3 timespecs: [0] software, [1] legacy, unused, [2] raw
/// hardware; zero means absent): the software and the hardware stamps in nanoseconds. None
/// when the data is too short.
// `time_t` differs across architectures (i32 on 32-bit targets).
#[allow(clippy::unnecessary_cast)]
pub(super) fn timestamping(data: &[u8]) -> Option<(Option<i64>, Option<i64>)> {
    if data.len() < size_of::<[libc::timespec; 3]>() {
        return None;
    }
    let ts: [libc::timespec; 3] = read_struct(data);
    let ns = |t: &libc::timespec| {
        (t.tv_sec != 0 || t.tv_nsec != 0).then(|| t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64)
    };
    Some((ns(&ts[0]), ns(&ts[2])))
}

/// Decodes the control messages of one received datagram; unknown or short ones are skipped.
pub fn parse_control(buf: &[u8]) -> RxMeta {
    let mut meta = RxMeta::default();
    for (level, kind, data) in control_messages(buf) {
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPING) => {
                if let Some((software, hardware)) = timestamping(data) {
                    if software.is_some() {
                        meta.software_ns = software;
                    }
                    meta.hardware_ns = hardware;
                }
            }
            (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) if data.len() >= size_of::<u32>() => {
                meta.kernel_drops = Some(read_struct(data));
            }
            (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= size_of::<libc::in_pktinfo>() => {
                let info: libc::in_pktinfo = read_struct(data);
                meta.pktinfo = Some(PktInfo::V4 {
                    ifindex: info.ipi_ifindex,
                    spec_dst: info.ipi_spec_dst.s_addr.to_ne_bytes(),
                    dst: info.ipi_addr.s_addr.to_ne_bytes(),
                });
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= size_of::<libc::in6_pktinfo>() => {
                let info: libc::in6_pktinfo = read_struct(data);
                meta.pktinfo = Some(PktInfo::V6 {
                    ifindex: info.ipi6_ifindex,
                    dst: info.ipi6_addr.s6_addr,
                });
            }
            _ => {}
        }
    }
    meta
}

pub(super) fn write_cmsg<T: Copy>(buf: &mut [u8], level: libc::c_int, kind: libc::c_int, value: T) -> usize {
    let space = cmsg_space(size_of::<T>());
    assert!(buf.len() >= space);
    buf[..space].fill(0);
    // SAFETY: an all-zero cmsghdr is valid (it may have private padding fields on some libcs).
    let mut hdr: libc::cmsghdr = unsafe { zeroed() };
    hdr.cmsg_len = cmsg_len(size_of::<T>()) as _;
    hdr.cmsg_level = level;
    hdr.cmsg_type = kind;
    // SAFETY: `buf` holds at least `space` bytes (asserted): the header at 0 and the value at
    // CMSG_LEN(0) both fit, and write_unaligned has no alignment requirement.
    unsafe {
        ptr::write_unaligned(buf.as_mut_ptr() as *mut libc::cmsghdr, hdr);
        ptr::write_unaligned(buf.as_mut_ptr().add(cmsg_len(0)) as *mut T, value);
    }
    space
}

/// Writes the control message that makes a reply leave from the request's destination address;
/// returns its length.
pub fn write_source_pktinfo(buf: &mut [u8], info: &PktInfo) -> usize {
    match *info {
        PktInfo::V4 { spec_dst, .. } => {
            // Interface 0: let routing choose the way out, as for any reply; only the source
            // address is fixed.
            let value = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(spec_dst),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            write_cmsg(buf, libc::IPPROTO_IP, libc::IP_PKTINFO, value)
        }
        PktInfo::V6 { ifindex, dst } => {
            // A link-local source address is only meaningful on its own interface.
            let link_local = dst[0] == 0xfe && dst[1] & 0xc0 == 0x80;
            let value = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr { s6_addr: dst },
                ipi6_ifindex: if link_local { ifindex } else { 0 },
            };
            write_cmsg(buf, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, value)
        }
    }
}

impl Batch {
    /// Allocates the buffers for batches of up to `capacity` datagrams.
    pub fn new(capacity: usize) -> Batch {
        assert!(capacity > 0);
        // The headers and names start all zero; they are filled in before every call.
        // SAFETY: an all-zero iovec is valid: a null base pointer and a length of zero.
        let zero_iov = || unsafe { zeroed::<libc::iovec>() };
        // SAFETY: an all-zero mmsghdr is valid: null pointers and lengths of zero.
        let zero_msg = || unsafe { zeroed::<libc::mmsghdr>() };
        // SAFETY: sockaddr_storage is plain integers, valid all zero (family AF_UNSPEC).
        let zero_name = || unsafe { zeroed::<libc::sockaddr_storage>() };
        let none = Pending {
            slot: 0,
            len: 0,
            kind: ReplyKind::Time,
            pktinfo: None,
            tx_stamp: false,
        };
        Batch {
            capacity,
            data: vec![[0u8; DATAGRAM_CAPACITY]; capacity].into_boxed_slice(),
            names: (0..capacity).map(|_| zero_name()).collect(),
            rx_control: vec![ControlBuf([0; RX_CONTROL_LEN]); capacity].into_boxed_slice(),
            rx_iov: (0..capacity).map(|_| zero_iov()).collect(),
            rx_msgs: (0..capacity).map(|_| zero_msg()).collect(),
            received: 0,
            pending: vec![none; capacity].into_boxed_slice(),
            pending_len: 0,
            prepared: 0,
            tx_control: vec![ControlBuf([0; TX_CONTROL_LEN]); capacity].into_boxed_slice(),
            tx_iov: (0..capacity).map(|_| zero_iov()).collect(),
            tx_msgs: (0..capacity).map(|_| zero_msg()).collect(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// One recvmmsg call on `fd` with `flags`; returns how many datagrams arrived (at least one).
    /// The previous batch's replies are forgotten.
    pub fn receive(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        self.received = 0;
        self.pending_len = 0;
        self.prepared = 0;
        // As in `send`: each buffer's pointers come from one borrow of it taken now.
        let data = self.data.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let control = self.rx_control.as_mut_ptr();
        for i in 0..self.capacity {
            self.rx_iov[i] = libc::iovec {
                iov_base: data.wrapping_add(i).cast(),
                iov_len: DATAGRAM_CAPACITY,
            };
        }
        let iov = self.rx_iov.as_mut_ptr();
        for i in 0..self.capacity {
            let hdr = &mut self.rx_msgs[i].msg_hdr;
            hdr.msg_name = names.wrapping_add(i).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = iov.wrapping_add(i);
            hdr.msg_iovlen = 1;
            hdr.msg_control = control.wrapping_add(i).cast();
            hdr.msg_controllen = RX_CONTROL_LEN as _;
            hdr.msg_flags = 0;
            self.rx_msgs[i].msg_len = 0;
        }
        // SAFETY: every header points into this batch's buffers with the lengths of those buffers
        // (set just above), and `capacity` headers exist. The kernel writes only within them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.rx_msgs.as_mut_ptr(),
                self.capacity as libc::c_uint,
                flags,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// The `i`-th datagram of the last receive.
    #[allow(clippy::unnecessary_cast)] // msg_controllen is usize on glibc, u32 on musl
    pub fn datagram(&mut self, i: usize) -> Received<'_> {
        assert!(i < self.received);
        let msg = &self.rx_msgs[i];
        let len = (msg.msg_len as usize).min(DATAGRAM_CAPACITY);
        let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let control_len = (msg.msg_hdr.msg_controllen as usize).min(RX_CONTROL_LEN);
        let meta = parse_control(&self.rx_control[i].0[..control_len]);
        Received {
            len,
            truncated,
            meta,
            payload: &mut self.data[i][..len],
        }
    }

    /// The sender's address of the `i`-th datagram of the last receive.
    pub fn source(&self, i: usize) -> Option<std::net::SocketAddr> {
        assert!(i < self.received);
        super::bind::sockaddr_to(&self.names[i], self.rx_msgs[i].msg_hdr.msg_namelen)
    }

    /// Queues the reply now in the `slot`-th buffer, `len` bytes long, for [`Batch::send`].
    /// With `pktinfo`, it leaves from that request's destination address.
    pub fn push_reply(&mut self, slot: usize, len: usize, kind: ReplyKind, pktinfo: Option<PktInfo>) {
        assert!(slot < self.received && len <= DATAGRAM_CAPACITY);
        self.pending[self.pending_len] = Pending {
            slot,
            len,
            kind,
            pktinfo,
            tx_stamp: false,
        };
        self.pending_len += 1;
    }

    /// Asks for the transmit stamps of the reply queued last (`super::txstamp` reads them):
    /// only the replies that need one cost the kernel a stamp and an error-queue entry.
    pub fn stamp_last_reply(&mut self) {
        assert!(
            self.pending_len > self.prepared,
            "a reply queued and not yet prepared"
        );
        self.pending[self.pending_len - 1].tx_stamp = true;
    }

    /// How many replies are queued.
    pub fn replies(&self) -> usize {
        self.pending_len
    }

    /// The kind and length of the `j`-th queued reply.
    pub fn reply_info(&self, j: usize) -> (ReplyKind, usize) {
        let p = &self.pending[..self.pending_len][j];
        (p.kind, p.len)
    }

    /// The bytes of the `j`-th queued reply, to re-stamp it.
    pub fn reply_mut(&mut self, j: usize) -> &mut [u8] {
        let p = self.pending[..self.pending_len][j];
        &mut self.data[p.slot][..p.len]
    }

    /// Writes what the send headers of the queued replies hold besides pointers: the lengths,
    /// and the control message that sets a reply's source address. Optional: [`Batch::send`]
    /// does it for any reply that needs it. Calling it before the replies are stamped keeps
    /// that work out of the time between the T3 stamp and the send; replies may still be
    /// rewritten ([`Batch::reply_mut`]) and more queued afterwards.
    pub fn prepare_send(&mut self) {
        for j in self.prepared..self.pending_len {
            let p = self.pending[j];
            let control = &mut self.tx_control[j].0;
            let mut control_len = match &p.pktinfo {
                Some(info) => write_source_pktinfo(control, info),
                None => 0,
            };
            if p.tx_stamp {
                control_len += write_cmsg(
                    &mut control[control_len..],
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPING,
                    TX_STAMP_REQUEST,
                );
            }
            // The kernel set the name's length on receive; never more than the buffer anyway.
            let name_len = self.rx_msgs[p.slot]
                .msg_hdr
                .msg_namelen
                .min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
            self.tx_iov[j].iov_len = p.len;
            let hdr = &mut self.tx_msgs[j].msg_hdr;
            hdr.msg_namelen = name_len;
            hdr.msg_iovlen = 1;
            hdr.msg_controllen = control_len as _;
            hdr.msg_flags = 0;
        }
        self.prepared = self.pending_len;
    }

    /// One sendmmsg call for the queued replies from the `from`-th on; returns how many the
    /// kernel took. An error belongs to the `from`-th reply.
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        assert!(from < self.pending_len);
        self.prepare_send();
        // Every pointer handed to the kernel is made here, each buffer's from one borrow of the
        // whole buffer taken now, after the last use of any other borrow of it (a reply being
        // stamped through `reply_mut`, say) and before the call. So none can have been
        // invalidated by a later borrow, and two replies of one slot (or one reply sent by two
        // calls) share a pointer's provenance rather than invalidate each other's.
        let data = self.data.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let control = self.tx_control.as_mut_ptr();
        for j in from..self.pending_len {
            // In bounds: `slot` < `received` <= `capacity` (push_reply checks it), and so is `j`.
            self.tx_iov[j].iov_base = data.wrapping_add(self.pending[j].slot).cast();
        }
        let iov = self.tx_iov.as_mut_ptr();
        for j in from..self.pending_len {
            let slot = self.pending[j].slot;
            let msg = &mut self.tx_msgs[j];
            msg.msg_len = 0;
            let hdr = &mut msg.msg_hdr;
            hdr.msg_name = names.wrapping_add(slot).cast();
            hdr.msg_iov = iov.wrapping_add(j);
            hdr.msg_control = if hdr.msg_controllen > 0 {
                control.wrapping_add(j).cast()
            } else {
                ptr::null_mut()
            };
        }
        let msgs = self.tx_msgs.as_mut_ptr().wrapping_add(from);
        let count = self.pending_len - from;
        // SAFETY: `msgs` points to headers `from..pending_len` of `tx_msgs` (`count` of them, in
        // bounds), each written completely above or by prepare_send (called above for every
        // queued reply): one iovec (`tx_iov[j]`) of `len` <= DATAGRAM_CAPACITY bytes at the
        // start of the buffer `data[slot]`, a name of at most `sockaddr_storage` bytes at
        // `names[slot]`, and either no control message or one of at most TX_CONTROL_LEN bytes
        // at `tx_control[j]`. Those pointers were derived just above from borrows that nothing
        // has invalidated since, into buffers that `&mut self` keeps alive and unaliased for the
        // whole call. The kernel only reads through them, and writes only the headers' msg_len.
        let n = unsafe { libc::sendmmsg(fd, msgs, count as libc::c_uint, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamping_cmsg(buf: &mut [u8], software: (i64, i64), hardware: (i64, i64)) -> usize {
        // SAFETY: all-zero timespecs are valid.
        let mut ts: [libc::timespec; 3] = unsafe { zeroed() };
        ts[0].tv_sec = software.0;
        ts[0].tv_nsec = software.1;
        ts[2].tv_sec = hardware.0;
        ts[2].tv_nsec = hardware.1;
        write_cmsg(buf, libc::SOL_SOCKET, libc::SCM_TIMESTAMPING, ts)
    }

    #[test]
    fn parses_timestamps_and_pktinfo() {
        let mut buf = [0u8; RX_CONTROL_LEN];
        let mut n = timestamping_cmsg(&mut buf, (1_700_000_000, 123_456_789), (0, 0));
        let info = PktInfo::V4 {
            ifindex: 0,
            spec_dst: [127, 0, 0, 2],
            dst: [0; 4],
        };
        n += write_source_pktinfo(&mut buf[n..], &info);
        let meta = parse_control(&buf[..n]);
        assert_eq!(meta.software_ns, Some(1_700_000_000_123_456_789));
        assert_eq!(meta.hardware_ns, None);
        assert_eq!(meta.pktinfo, Some(info));
    }

    #[test]
    fn a_hardware_stamp_is_seen_and_a_missing_software_stamp_is_none() {
        let mut buf = [0u8; RX_CONTROL_LEN];
        let n = timestamping_cmsg(&mut buf, (0, 0), (5, 6));
        let meta = parse_control(&buf[..n]);
        assert_eq!(meta.software_ns, None);
        assert_eq!(meta.hardware_ns, Some(5_000_000_006));
    }

    #[test]
    fn ipv6_pktinfo_keeps_the_interface_only_for_link_local() {
        let mut buf = [0u8; TX_CONTROL_LEN];
        let global = PktInfo::V6 {
            ifindex: 4,
            dst: "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        };
        let n = write_source_pktinfo(&mut buf, &global);
        assert_eq!(
            parse_control(&buf[..n]).pktinfo,
            Some(PktInfo::V6 {
                ifindex: 0,
                dst: "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
            })
        );
        let local = PktInfo::V6 {
            ifindex: 4,
            dst: "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        };
        let n = write_source_pktinfo(&mut buf, &local);
        assert_eq!(parse_control(&buf[..n]).pktinfo, Some(local));
    }

    #[test]
    fn garbage_control_data_is_ignored() {
        assert_eq!(parse_control(&[]), RxMeta::default());
        assert_eq!(parse_control(&[0xff; 7]), RxMeta::default());
        // A header claiming more bytes than there are.
        let mut buf = [0u8; 32];
        let n = write_cmsg(&mut buf, libc::SOL_SOCKET, libc::SCM_TIMESTAMPING, 0u64);
        buf[..8].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(parse_control(&buf[..n]), RxMeta::default());
        // A header claiming fewer bytes than a header.
        buf[..8].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(parse_control(&buf[..n]), RxMeta::default());
    }

    #[test]
    fn the_kernel_counts_what_a_full_receive_buffer_dropped() {
        let server = crate::sys::socket::bind::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = server.local_addr().port();
        // The smallest receive buffer the kernel allows, then far more than it holds, unread.
        let small: libc::c_int = 1;
        // SAFETY: a live c_int of the size passed; setsockopt only reads it.
        let rc = unsafe {
            libc::setsockopt(
                server.fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &small as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..2000 {
            client.send_to(&[0u8; 48], ("127.0.0.1", port)).unwrap();
        }
        let mut batch = Batch::new(64);
        // What the buffer held was queued before the drops: read it all.
        let mut held = 0;
        while let Ok(n) = batch.receive(server.fd(), libc::MSG_DONTWAIT) {
            held += n;
            if n == 0 {
                break;
            }
        }
        assert!(held > 0 && held < 2000, "{held}");
        // The count rides on each datagram as it is queued: the next one carries the drops.
        client.send_to(&[0u8; 48], ("127.0.0.1", port)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n = batch.receive(server.fd(), libc::MSG_DONTWAIT).unwrap();
        assert_eq!(n, 1);
        let drops = batch.datagram(0).meta.kernel_drops.expect("SO_RXQ_OVFL is on");
        assert_eq!(drops as usize, 2000 - held, "every datagram not held was dropped");
    }

    #[test]
    fn receive_and_send_through_a_real_socket() {
        let server = crate::sys::socket::bind::bind_reuseport("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = server.local_addr().port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut batch = Batch::new(4);
        // The kernel turns receive timestamps on for the whole system a moment after the first
        // socket asks (a deferred static key): when no other socket has them on, datagrams
        // that come sooner have none. Wait for a stamped one before the real ones.
        for attempt in 0.. {
            assert!(attempt < 200, "no receive timestamp within 2 s");
            client.send_to(b"warm", ("127.0.0.2", port)).unwrap();
            assert_eq!(batch.receive(server.fd(), libc::MSG_WAITFORONE).unwrap(), 1);
            if batch.datagram(0).meta.software_ns.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        client.send_to(b"ping", ("127.0.0.2", port)).unwrap();
        client.send_to(&[7u8; OVERSIZE], ("127.0.0.2", port)).unwrap();

        let mut got = 0;
        while got < 2 {
            got += batch.receive(server.fd(), libc::MSG_WAITFORONE).unwrap();
        }
        let first = batch.datagram(0);
        assert_eq!((first.len, first.truncated), (4, false));
        assert_eq!(first.payload, b"ping");
        assert!(first.meta.software_ns.is_some());
        let info = first.meta.pktinfo.expect("pktinfo on a wildcard socket");
        assert!(
            matches!(
                info,
                PktInfo::V4 {
                    dst: [127, 0, 0, 2],
                    ..
                }
            ),
            "{info:?}"
        );
        first.payload.copy_from_slice(b"pong");
        let second = batch.datagram(1);
        assert!(second.truncated);
        assert_eq!(second.len, DATAGRAM_CAPACITY);

        batch.push_reply(0, 4, ReplyKind::Time, Some(info));
        assert_eq!(batch.replies(), 1);
        batch.prepare_send();
        assert_eq!(batch.send(server.fd(), 0).unwrap(), 1);
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
        assert_eq!(from, std::net::SocketAddr::from(([127, 0, 0, 2], port)));
    }

    /// A server socket on 127.0.0.1 and a client that sent it one datagram per payload, and a
    /// batch holding them all, received.
    fn received(payloads: &[&[u8]]) -> (crate::sys::socket::bind::ServerSocket, std::net::UdpSocket, Batch) {
        let server = crate::sys::socket::bind::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        for p in payloads {
            client.send_to(p, server.local_addr()).unwrap();
        }
        let mut batch = Batch::new(payloads.len());
        // Without MSG_WAITFORONE the call waits for all of them (each up to the socket's
        // receive timeout); on loopback they are there already.
        assert_eq!(batch.receive(server.fd(), 0).unwrap(), payloads.len());
        (server, client, batch)
    }

    fn next_datagram(client: &std::net::UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn send_needs_no_prepare_and_sends_what_the_buffers_hold_then() {
        // Room for three replies; the third answers the second request again.
        let (server, client, mut batch) = received(&[b"one", b"two", b"three"]);
        batch.datagram(0).payload.copy_from_slice(b"ONE");
        batch.push_reply(0, 3, ReplyKind::Time, None);
        // No prepare_send: send writes whatever the headers need.
        assert_eq!(batch.send(server.fd(), 0).unwrap(), 1);
        assert_eq!(next_datagram(&client), b"ONE");

        // Prepared first, then rewritten (as T3 is stamped) and another reply queued: what goes
        // out is the buffers as they are at the send, every reply included.
        batch.push_reply(1, 3, ReplyKind::Time, None);
        batch.prepare_send();
        batch.reply_mut(0).copy_from_slice(b"uno");
        batch.reply_mut(1).copy_from_slice(b"dos");
        batch.push_reply(1, 2, ReplyKind::Time, None);
        assert_eq!(batch.replies(), 3);
        assert_eq!(batch.send(server.fd(), 1).unwrap(), 2);
        assert_eq!(next_datagram(&client), b"dos");
        assert_eq!(next_datagram(&client), b"do");
        // A repeated send (as after a refused reply) sends the same bytes again.
        assert_eq!(batch.send(server.fd(), 0).unwrap(), 3);
        assert_eq!(next_datagram(&client), b"uno");
        assert_eq!(next_datagram(&client), b"dos");
        assert_eq!(next_datagram(&client), b"do");
    }

    #[test]
    fn a_new_receive_forgets_the_replies_and_their_headers() {
        let (server, client, mut batch) = received(&[b"abc"]);
        batch.push_reply(0, 3, ReplyKind::Time, None);
        batch.prepare_send();
        client.send_to(b"xyz!", server.local_addr()).unwrap();
        assert_eq!(batch.receive(server.fd(), libc::MSG_WAITFORONE).unwrap(), 1);
        assert_eq!(batch.replies(), 0);
        batch.push_reply(0, 4, ReplyKind::Time, None);
        assert_eq!(batch.send(server.fd(), 0).unwrap(), 1);
        assert_eq!(next_datagram(&client), b"xyz!");
    }

    const OVERSIZE: usize = DATAGRAM_CAPACITY + 1000;
}
