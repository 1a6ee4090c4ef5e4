//! Transmit timestamps on the socket path: the kernel reports when each reply went to the driver
//! (and, where the NIC stamps transmitted packets, when it left the NIC) on the socket's error
//! queue (MSG_ERRQUEUE), with the reply itself. The responder reads them right after each send
//! and whenever poll() says the queue has some, without waiting and without allocating (the
//! buffers are made once per socket). Each stamp goes to the interleaved-mode table as the real
//! transmit time of its exchange (`crate::proto::interleave`).
//!
//! An unread error queue holds memory the socket's receive buffer is charged for, so it must be
//! drained: requests would otherwise be dropped once it is full.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr;

use crate::proto::interleave::sent_reply;
use crate::proto::wire::NtpTimestamp;

use super::mmsg::{cmsg_space, control_messages, read_struct, timestamping, ControlBuf};

/// Room for a looped-back reply: Ethernet with two VLAN tags, IPv6, UDP and a 48-byte NTP
/// reply fit; longer replies (NTS) are cut (MSG_TRUNC), which only matters for matching, and
/// those are never interleaved.
const FRAME_CAPACITY: usize = 160;
/// Room for SCM_TIMESTAMPING and the sock_extended_err of IP(V6)_RECVERR.
const CONTROL_LEN: usize = 192;

const _: () = assert!(
    cmsg_space(size_of::<[libc::timespec; 3]>())
        + cmsg_space(size_of::<libc::sock_extended_err>() + size_of::<libc::sockaddr_in6>())
        <= CONTROL_LEN
);

/// SCM_TSTAMP_SND: the stamp of a packet sent (as opposed to scheduled or acknowledged).
const SCM_TSTAMP_SND: u32 = 0;

/// One transmit stamp from the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxStamp {
    /// The exchange the reply answered: its client and our receive stamp in it (None: the
    /// returned bytes were not a UDP reply the parser knows).
    pub reply: Option<(SocketAddr, NtpTimestamp)>,
    /// The kernel's software stamp, CLOCK_REALTIME nanoseconds.
    pub software_ns: Option<i64>,
    /// A NIC (PHC) stamp was there.
    pub hardware: bool,
}

/// What the control messages of one error-queue message say: the stamp, if it is a transmit
/// stamp.
pub fn parse_tx_control(buf: &[u8]) -> Option<(Option<i64>, bool)> {
    let mut stamp = None;
    let mut sent = false;
    for (level, kind, data) in control_messages(buf) {
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPING) => {
                if let Some((software, hardware)) = timestamping(data) {
                    stamp = Some((software, hardware.is_some()));
                }
            }
            (libc::IPPROTO_IP, libc::IP_RECVERR) | (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
                if data.len() >= size_of::<libc::sock_extended_err>() =>
            {
                let err: libc::sock_extended_err = read_struct(data);
                sent = err.ee_errno == libc::ENOMSG as u32
                    && err.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING
                    && err.ee_info == SCM_TSTAMP_SND;
            }
            _ => {}
        }
    }
    stamp.filter(|_| sent)
}

/// The buffers to read one socket's error queue with, allocated once.
pub struct ErrorQueue {
    capacity: usize,
    data: Box<[[u8; FRAME_CAPACITY]]>,
    control: Box<[ControlBuf<CONTROL_LEN>]>,
    iov: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
}

impl ErrorQueue {
    /// Buffers for up to `capacity` stamps per call.
    pub fn new(capacity: usize) -> ErrorQueue {
        assert!(capacity > 0);
        // SAFETY: an all-zero iovec is valid: a null base pointer and a length of zero.
        let zero_iov = || unsafe { zeroed::<libc::iovec>() };
        // SAFETY: an all-zero mmsghdr is valid: null pointers and lengths of zero.
        let zero_msg = || unsafe { zeroed::<libc::mmsghdr>() };
        ErrorQueue {
            capacity,
            data: vec![[0u8; FRAME_CAPACITY]; capacity].into_boxed_slice(),
            control: vec![ControlBuf([0; CONTROL_LEN]); capacity].into_boxed_slice(),
            iov: (0..capacity).map(|_| zero_iov()).collect(),
            msgs: (0..capacity).map(|_| zero_msg()).collect(),
        }
    }

    /// One non-blocking read of the error queue of `fd`: how many messages it held (up to the
    /// capacity), each transmit stamp among them given to `each`.
    #[allow(clippy::unnecessary_cast)] // msg_controllen is usize on glibc, u32 on musl
    pub fn read(&mut self, fd: RawFd, mut each: impl FnMut(TxStamp)) -> io::Result<usize> {
        // As in `mmsg::Batch`: every pointer is made here from one borrow of its buffer.
        let data = self.data.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        for i in 0..self.capacity {
            self.iov[i] = libc::iovec {
                iov_base: data.wrapping_add(i).cast(),
                iov_len: FRAME_CAPACITY,
            };
        }
        let iov = self.iov.as_mut_ptr();
        for i in 0..self.capacity {
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = ptr::null_mut();
            hdr.msg_namelen = 0;
            hdr.msg_iov = iov.wrapping_add(i);
            hdr.msg_iovlen = 1;
            hdr.msg_control = control.wrapping_add(i).cast();
            hdr.msg_controllen = CONTROL_LEN as _;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every header points into this queue's buffers with their lengths (set just
        // above), and `capacity` headers exist. The kernel writes only within them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                self.capacity as libc::c_uint,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            let msg = &self.msgs[i];
            let control_len = (msg.msg_hdr.msg_controllen as usize).min(CONTROL_LEN);
            let Some((software_ns, hardware)) = parse_tx_control(&self.control[i].0[..control_len]) else {
                continue;
            };
            let len = (msg.msg_len as usize).min(FRAME_CAPACITY);
            each(TxStamp {
                reply: sent_reply(&self.data[i][..len]),
                software_ns,
                hardware,
            });
        }
        Ok(n)
    }

    /// Reads until the queue is empty, at most `rounds` calls (bounded work per batch: what is
    /// left is read next time). Returns the first error.
    pub fn drain(&mut self, fd: RawFd, rounds: usize, mut each: impl FnMut(TxStamp)) -> io::Result<()> {
        for _ in 0..rounds {
            if self.read(fd, &mut each)? < self.capacity {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::ntp::{Leap, Mode, Packet};
    use crate::sys::socket::bind::bind_reuseport;
    use crate::sys::socket::mmsg::write_cmsg;

    #[test]
    fn only_sent_stamps_with_their_error_record_are_taken() {
        let mut buf = [0u8; CONTROL_LEN];
        // SAFETY: all-zero timespecs are valid.
        let mut ts: [libc::timespec; 3] = unsafe { zeroed() };
        ts[0].tv_sec = 1_700_000_000;
        ts[0].tv_nsec = 5;
        let n = write_cmsg(&mut buf, libc::SOL_SOCKET, libc::SCM_TIMESTAMPING, ts);
        assert_eq!(
            parse_tx_control(&buf[..n]),
            None,
            "no error record: not a transmit stamp"
        );
        // SAFETY: an all-zero sock_extended_err is valid.
        let mut err: libc::sock_extended_err = unsafe { zeroed() };
        err.ee_errno = libc::ENOMSG as u32;
        err.ee_origin = libc::SO_EE_ORIGIN_TIMESTAMPING;
        let m = write_cmsg(&mut buf[n..], libc::IPPROTO_IP, libc::IP_RECVERR, err);
        assert_eq!(
            parse_tx_control(&buf[..n + m]),
            Some((Some(1_700_000_000_000_000_005), false))
        );
        // An ICMP error is not a stamp.
        err.ee_origin = libc::SO_EE_ORIGIN_ICMP;
        let m = write_cmsg(&mut buf[n..], libc::IPPROTO_IP, libc::IP_RECVERR, err);
        assert_eq!(parse_tx_control(&buf[..n + m]), None);
        // Scheduled, not sent.
        err.ee_origin = libc::SO_EE_ORIGIN_TIMESTAMPING;
        err.ee_info = 1;
        let m = write_cmsg(&mut buf[n..], libc::IPPROTO_IP, libc::IP_RECVERR, err);
        assert_eq!(parse_tx_control(&buf[..n + m]), None);
        assert_eq!(parse_tx_control(&[0xff; 9]), None);
    }

    /// Through loopback, which stamps in software as veth does: each reply that asked for it
    /// comes back on the error queue with a software stamp taken after the send began, and says
    /// which exchange it was; the others cost nothing there.
    #[test]
    fn a_sent_reply_comes_back_with_its_software_stamp_and_exchange() {
        sent_replies_come_back("127.0.0.1:0");
        sent_replies_come_back("[::1]:0");
    }

    fn sent_replies_come_back(bind: &str) {
        let mut server = bind_reuseport(bind.parse().unwrap()).unwrap();
        assert!(!server.tx_timestamping(), "only when asked for");
        assert!(server.enable_tx_timestamping());
        let client = std::net::UdpSocket::bind(bind).unwrap();
        let client_addr = client.local_addr().unwrap();
        let (name, name_len) = crate::sys::socket::bind::sockaddr_from(client_addr);
        let mut replies = Vec::new();
        let before = crate::sys::clock::read::read_clock_ns(libc::CLOCK_REALTIME);
        for i in 0..4u64 {
            let mut ntp = [0u8; 48];
            let mut p = Packet::new_unchecked(&mut ntp[..]);
            p.set_leap_version_mode(Leap::NoWarning, 4, Mode::Server);
            let rx = NtpTimestamp(0x1234_5678_0000_0001 + (i << 8));
            p.set_receive_timestamp(rx);
            // Every other reply asks for its stamp, as a reply for an interleaved client does.
            let ask = i % 2 == 0;
            if ask {
                replies.push(rx);
            }
            let mut control = [0u64; 4];
            // SAFETY: `control` is 4 u64s, 32 live bytes aligned as a cmsghdr needs, borrowed
            // only through this slice until the send below.
            let control_bytes =
                unsafe { std::slice::from_raw_parts_mut(control.as_mut_ptr().cast::<u8>(), 32) };
            let control_len = if ask {
                write_cmsg(
                    control_bytes,
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPING,
                    libc::SOF_TIMESTAMPING_TX_SOFTWARE,
                )
            } else {
                0
            };
            let mut iov = libc::iovec {
                iov_base: ntp.as_mut_ptr().cast(),
                iov_len: ntp.len(),
            };
            let mut name = name;
            // SAFETY: an all-zero msghdr is valid; its pointers are set just below.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msg.msg_namelen = name_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if control_len > 0 {
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = control_len as _;
            }
            // SAFETY: `msg` points to live buffers of the lengths given; sendmsg only reads them.
            let rc = unsafe { libc::sendmsg(server.fd(), &msg, 0) };
            assert_eq!(rc, 48, "{}", std::io::Error::last_os_error());
        }
        let mut queue = ErrorQueue::new(2);
        let mut stamps = Vec::new();
        queue.drain(server.fd(), 4, |s| stamps.push(s)).unwrap();
        // Only the replies that asked.
        assert_eq!(stamps.len(), 2, "{stamps:?}");
        for (stamp, rx) in stamps.iter().zip(&replies) {
            assert_eq!(stamp.reply, Some((client_addr, *rx)));
            let ns = stamp.software_ns.expect("a software stamp");
            assert!(ns >= before, "{ns} < {before}");
            assert!(!stamp.hardware);
        }
        // Empty now: a read returns nothing, and does not wait.
        assert_eq!(queue.read(server.fd(), |_| panic!("no more")).unwrap(), 0);
    }
}
