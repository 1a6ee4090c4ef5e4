//! The portable transport: one unprivileged UDP socket per flow, sendmmsg to the target and
//! recvmmsg with the kernel's software receive stamps.
//!
//! Each flow is its own socket bound to an ephemeral port, so the server sees that many clients
//! (and SO_REUSEPORT servers spread them over their threads). The sockets are not connected: a
//! reply that comes from another address or port than the target is still received, and
//! reported as invalid instead of vanishing in the kernel.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;

use strata::sys::clock::read::read_clock_ns;
use strata::sys::socket::bind::{sockaddr_from, sockaddr_to, TIMESTAMPING_FLAGS};
use strata::sys::socket::mmsg::parse_control;

use super::{Reply, Transport};

/// Room for one request: an NTP header now, extension fields (NTS) later.
const TX_CAPACITY: usize = 512;
/// Room for one reply; a larger datagram is truncated and then fails the length checks.
const RX_CAPACITY: usize = 2048;
/// Room for the SCM_TIMESTAMPING control message (three timespecs) with its header.
const RX_CONTROL_LEN: usize = 128;
/// Socket buffers big enough to ride out a scheduling hiccup at a million packets per second.
const SOCKET_BUFFER: libc::c_int = 8 << 20;
/// recvmmsg rounds per socket per receive call, so that a flood cannot starve the sender.
const MAX_RX_ROUNDS: usize = 4;

#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct ControlBuf([u8; RX_CONTROL_LEN]);

/// UDP sockets (one per flow) with the message headers and buffers of one worker.
pub struct SocketTransport {
    sockets: Vec<UdpSocket>,
    target: SocketAddr,
    /// The target as the kernel takes it, boxed so that the send headers can point at it.
    target_name: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    batch: usize,
    timestamping: bool,
    tx_data: Box<[[u8; TX_CAPACITY]]>,
    tx_iov: Box<[libc::iovec]>,
    tx_msgs: Box<[libc::mmsghdr]>,
    rx_data: Box<[[u8; RX_CAPACITY]]>,
    rx_names: Box<[libc::sockaddr_storage]>,
    rx_control: Box<[ControlBuf]>,
    rx_iov: Box<[libc::iovec]>,
    rx_msgs: Box<[libc::mmsghdr]>,
    pollfds: Box<[libc::pollfd]>,
}

// SAFETY: the raw pointers in the message headers only ever point into this transport's own
// boxed buffers (which move with it) and are rewritten before every system call; nothing else
// refers to those buffers, so the transport may move to another thread as a whole.
unsafe impl Send for SocketTransport {}

fn setsockopt(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for big buffers: the FORCE variants (root) go past net.core.[rw]mem_max, the plain ones
/// are capped by it. Neither failing is fatal; the kernel default just loses packets sooner.
fn grow_buffers(fd: libc::c_int) {
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt(fd, libc::SOL_SOCKET, force, SOCKET_BUFFER).is_err() {
            let _ = setsockopt(fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER);
        }
    }
}

fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip() == b.ip()
}

impl SocketTransport {
    /// Opens `flows` sockets on ephemeral ports for requests to `target`, in batches of `batch`.
    pub fn open(target: SocketAddr, flows: usize, batch: usize) -> io::Result<SocketTransport> {
        let any: IpAddr = match target {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let mut sockets = Vec::with_capacity(flows);
        let mut timestamping = true;
        for _ in 0..flows {
            let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
            socket.set_nonblocking(true)?;
            let fd = socket.as_raw_fd();
            grow_buffers(fd);
            timestamping &= setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPING,
                TIMESTAMPING_FLAGS as libc::c_int,
            )
            .is_ok();
            sockets.push(socket);
        }
        let pollfds = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: all-zero iovecs, mmsghdrs and sockaddr_storages are valid values (null
        // pointers, zero lengths); every pointer is set before each system call.
        let (iov, msg, name) = unsafe {
            (
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::sockaddr_storage>(),
            )
        };
        Ok(SocketTransport {
            sockets,
            target,
            target_name: Box::new(sockaddr_from(target)),
            batch,
            timestamping,
            tx_data: vec![[0u8; TX_CAPACITY]; batch].into_boxed_slice(),
            tx_iov: vec![iov; batch].into_boxed_slice(),
            tx_msgs: vec![msg; batch].into_boxed_slice(),
            rx_data: vec![[0u8; RX_CAPACITY]; batch].into_boxed_slice(),
            rx_names: vec![name; batch].into_boxed_slice(),
            rx_control: vec![ControlBuf([0; RX_CONTROL_LEN]); batch].into_boxed_slice(),
            rx_iov: vec![iov; batch].into_boxed_slice(),
            rx_msgs: vec![msg; batch].into_boxed_slice(),
            pollfds,
        })
    }

    /// The local address of each flow's socket.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(|s| s.local_addr()).collect()
    }

    /// Whether every socket delivers kernel receive stamps.
    pub fn timestamping(&self) -> bool {
        self.timestamping
    }

    /// Points the receive headers at their buffers and resets the lengths the kernel overwrites.
    fn prepare_receive(&mut self) {
        for i in 0..self.batch {
            self.rx_iov[i] = libc::iovec {
                iov_base: self.rx_data[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: RX_CAPACITY,
            };
            let hdr = &mut self.rx_msgs[i].msg_hdr;
            hdr.msg_name = &mut self.rx_names[i] as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.rx_iov[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.rx_control[i].0.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = RX_CONTROL_LEN as _;
            hdr.msg_flags = 0;
            self.rx_msgs[i].msg_len = 0;
        }
    }

    /// Drains one socket (a few rounds at most) into `on_reply`.
    fn drain(&mut self, flow: usize, on_reply: &mut dyn FnMut(Reply<'_>)) -> io::Result<usize> {
        let fd = self.sockets[flow].as_raw_fd();
        let mut total = 0;
        for _ in 0..MAX_RX_ROUNDS {
            self.prepare_receive();
            // SAFETY: the headers point into this transport's buffers (set just above), each
            // sized as its header says, and `batch` headers exist.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.rx_msgs.as_mut_ptr(),
                    self.batch as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(total),
                    // An ICMP error queued on the socket (e.g. port unreachable) is not fatal:
                    // the request it answers is simply lost.
                    Some(libc::ECONNREFUSED) | Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => {
                        Ok(total)
                    }
                    _ => Err(e),
                };
            }
            let n = rc as usize;
            let fallback_ns = read_clock_ns(libc::CLOCK_REALTIME);
            for i in 0..n {
                let hdr = &self.rx_msgs[i].msg_hdr;
                let len = (self.rx_msgs[i].msg_len as usize).min(RX_CAPACITY);
                // msg_controllen is usize in glibc but u32 in musl.
                #[allow(clippy::unnecessary_cast)]
                let control_len = (hdr.msg_controllen as usize).min(RX_CONTROL_LEN);
                let rx_ns = parse_control(&self.rx_control[i].0[..control_len])
                    .software_ns
                    .unwrap_or(fallback_ns);
                let from = sockaddr_to(&self.rx_names[i], hdr.msg_namelen);
                on_reply(Reply {
                    flow,
                    from_target: from.is_some_and(|a| same_endpoint(a, self.target)),
                    payload: &self.rx_data[i][..len],
                    rx_ns,
                });
            }
            total += n;
            if n < self.batch {
                break;
            }
        }
        Ok(total)
    }
}

impl Transport for SocketTransport {
    fn flows(&self) -> usize {
        self.sockets.len()
    }

    fn batch_capacity(&self) -> usize {
        self.batch
    }

    fn send(
        &mut self,
        flow: usize,
        count: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        let count = count.min(self.batch);
        if count == 0 {
            return Ok(0);
        }
        for i in 0..count {
            let len = fill(i, &mut self.tx_data[i]).min(TX_CAPACITY);
            self.tx_iov[i] = libc::iovec {
                iov_base: self.tx_data[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: len,
            };
            let hdr = &mut self.tx_msgs[i].msg_hdr;
            hdr.msg_name = &mut self.target_name.0 as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = self.target_name.1;
            hdr.msg_iov = &mut self.tx_iov[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
        }
        let fd = self.sockets[flow].as_raw_fd();
        // SAFETY: the first `count` headers point at the boxed target address and at buffers of
        // this transport holding `len` bytes each (set just above).
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                self.tx_msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // A full socket or device queue: nothing went out this time; the pacer's backlog
                // keeps the requests, and they count against the achieved rate if they stay late.
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(0),
                // An ICMP error from an earlier request, reported on this send: retry later.
                Some(libc::ECONNREFUSED) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(rc as usize)
    }

    fn receive(&mut self, timeout_ns: i64, on_reply: &mut dyn FnMut(Reply<'_>)) -> io::Result<usize> {
        for p in self.pollfds.iter_mut() {
            p.revents = 0;
        }
        let timeout_ns = timeout_ns.max(0);
        let ts = libc::timespec {
            tv_sec: timeout_ns / 1_000_000_000,
            tv_nsec: timeout_ns % 1_000_000_000,
        };
        // SAFETY: `pollfds` is a live array of that many pollfd entries and `ts` a valid timespec;
        // a null signal mask leaves the thread's mask alone.
        let rc = unsafe {
            libc::ppoll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                &ts,
                ptr::null(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let mut total = 0;
        if rc > 0 {
            for flow in 0..self.pollfds.len() {
                if self.pollfds[flow].revents != 0 {
                    total += self.drain(flow, on_reply)?;
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_from_every_flow_and_receives_on_the_right_one() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut t = SocketTransport::open(server.local_addr().unwrap(), 3, 8).unwrap();
        let locals = t.local_addrs().unwrap();
        assert_eq!(locals.len(), 3);
        for flow in 0..3 {
            let sent = t
                .send(flow, 2, &mut |i, buf| {
                    buf[0] = flow as u8;
                    buf[1] = i as u8;
                    48
                })
                .unwrap();
            assert_eq!(sent, 2);
        }
        let mut buf = [0u8; 100];
        for _ in 0..6 {
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(n, 48);
            assert_eq!(from.port(), locals[buf[0] as usize].port());
            server.send_to(&buf[..n], from).unwrap();
        }
        // An impostor on another port is received but marked as not from the target.
        let impostor = UdpSocket::bind("127.0.0.1:0").unwrap();
        impostor.send_to(&[9u8; 48], locals[1]).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < 7 && std::time::Instant::now() < deadline {
            t.receive(100_000_000, &mut |r| {
                got.push((r.flow, r.from_target, r.payload[0], r.rx_ns))
            })
            .unwrap();
        }
        assert_eq!(got.len(), 7);
        let now = read_clock_ns(libc::CLOCK_REALTIME);
        for (flow, from_target, first, rx_ns) in got {
            if from_target {
                assert_eq!(flow, first as usize);
            } else {
                assert_eq!((flow, first), (1, 9));
            }
            assert!(rx_ns <= now && rx_ns > now - 5_000_000_000);
        }
    }
}
