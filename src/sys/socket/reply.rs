//! The sockets the control thread answers mode-6 queries through. A query's reply must come
//! from the port the query went to (ntpq and check_ntp_peer use connected sockets), and only
//! the server's own sockets hold that port:
//!
//! - on the socket path, a duplicate of one responder's socket per address: the control thread
//!   only sends on it, never receives (the responders do, and hand queries over);
//! - on the XDP path, where no responder socket exists, a plain socket per address of its own,
//!   bound at start-up: it sends the replies to queries the AF_XDP responders hand over, and
//!   receives what reaches the port through the kernel (loopback queries; the NIC's traffic
//!   goes to XDP).
//!
//! Replies are sent with a per-message SO_TIMESTAMPING control message of no flags: a
//! responder socket may ask for transmit timestamps of its own replies, and a mode-6 reply must
//! neither get one nor move the socket's timestamp key (SOF_TIMESTAMPING_OPT_ID), which counts
//! only datagrams that are stamped.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use super::bind::{bind_plain, local_addr_of, sockaddr_from, ServerSocket};

/// One socket of the server port that mode-6 replies leave from.
#[derive(Debug)]
pub struct ReplySocket {
    socket: UdpSocket,
    local: SocketAddr,
    receives: bool,
}

impl ReplySocket {
    /// A duplicate of a responder's socket, to send on only.
    pub fn duplicate(of: &ServerSocket) -> io::Result<ReplySocket> {
        let fd: OwnedFd = of.owned_fd().try_clone()?;
        Ok(ReplySocket {
            socket: UdpSocket::from(fd),
            local: of.local_addr(),
            receives: false,
        })
    }

    /// A socket of its own on `addr` (the XDP path), non-blocking, that also receives.
    pub fn bind(addr: SocketAddr) -> io::Result<ReplySocket> {
        let fd = bind_plain(addr)?;
        let local = local_addr_of(fd.as_raw_fd())?;
        let socket = UdpSocket::from(fd);
        socket.set_nonblocking(true)?;
        Ok(ReplySocket {
            socket,
            local,
            receives: true,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether queries are read from this socket (else they come from the responders).
    pub fn receives(&self) -> bool {
        self.receives
    }

    /// A datagram waiting on a receiving socket, if any.
    pub fn try_recv(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        if !self.receives {
            return None;
        }
        self.socket.recv_from(buf).ok()
    }

    /// Sends `reply` to `to` without a transmit timestamp.
    pub fn send_unstamped(&self, reply: &[u8], to: SocketAddr) -> io::Result<()> {
        let (mut addr, addr_len) = sockaddr_from(to);
        let mut iov = libc::iovec {
            iov_base: reply.as_ptr() as *mut libc::c_void,
            iov_len: reply.len(),
        };
        // SAFETY: CMSG_SPACE only computes a size.
        const SPACE: usize = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u32>() as u32) } as usize;
        let mut control = [0u64; SPACE.div_ceil(8)];
        // SAFETY: an all-zero msghdr is a valid value; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut addr as *mut _ as *mut libc::c_void;
        msg.msg_namelen = addr_len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = SPACE;
        // SAFETY: msg_control points at SPACE bytes, room for one control message of a u32, so
        // CMSG_FIRSTHDR is that buffer and CMSG_DATA lies within it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SO_TIMESTAMPING;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u32>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u32, 0);
        }
        // SAFETY: `msg` describes live buffers: the address, one iovec over `reply`, `control`.
        let sent = unsafe { libc::sendmsg(self.socket.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Of `sockets`, the one to answer `to` from: same family; for a loopback client one bound to
/// loopback or the wildcard, for any other client one not bound to loopback.
pub fn reply_socket_for(sockets: &[ReplySocket], to: SocketAddr) -> Option<&ReplySocket> {
    let family = |s: &&ReplySocket| s.local.is_ipv4() == to.is_ipv4();
    let loopback = to.ip().is_loopback();
    sockets
        .iter()
        .filter(family)
        .find(|s| s.local.ip().is_loopback() == loopback && !s.local.ip().is_unspecified())
        .or_else(|| {
            sockets
                .iter()
                .filter(family)
                .find(|s| s.local.ip().is_unspecified())
        })
        .or_else(|| {
            sockets
                .iter()
                .find(|s| s.local.is_ipv4() == to.is_ipv4() && !loopback && !s.local.ip().is_loopback())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket::bind::bind_reuseport;
    use std::time::Duration;

    #[test]
    fn a_duplicate_sends_from_the_servers_port_without_receiving() {
        let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let reply = ReplySocket::duplicate(&server).unwrap();
        assert_eq!(reply.local_addr(), server.local_addr());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        client.send(b"query").unwrap();
        let mut buf = [0u8; 64];
        assert!(reply.try_recv(&mut buf).is_none(), "only the responder receives");
        reply
            .send_unstamped(b"answer", client.local_addr().unwrap())
            .unwrap();
        // A connected client takes it: it came from the server's own address and port.
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"answer");
    }

    #[test]
    fn an_own_socket_receives_and_replies() {
        let reply = ReplySocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(reply.local_addr()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        client.send(b"query").unwrap();
        let mut buf = [0u8; 64];
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let (n, from) = loop {
            if let Some(got) = reply.try_recv(&mut buf) {
                break got;
            }
            assert!(std::time::Instant::now() < deadline, "nothing received");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!((&buf[..n], from), (&b"query"[..], client.local_addr().unwrap()));
        reply.send_unstamped(b"answer", from).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"answer");
    }

    #[test]
    fn replies_leave_from_a_socket_that_can_reach_the_client() {
        let v4 = ReplySocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let any6 = ReplySocket::bind("[::]:0".parse().unwrap()).unwrap();
        let sockets = [v4, any6];
        let pick = |to: &str| reply_socket_for(&sockets, to.parse().unwrap()).map(|s| s.local_addr());
        assert_eq!(pick("127.0.0.1:5000"), Some(sockets[0].local_addr()));
        assert_eq!(pick("[::1]:5000"), Some(sockets[1].local_addr()));
        assert_eq!(pick("[2001:db8::1]:5000"), Some(sockets[1].local_addr()));
        assert_eq!(pick("192.0.2.1:5000"), None, "a loopback socket cannot reach it");
    }
}
