//! Packets that reach the server port but belong to the control thread: symmetric packets
//! (modes 1 and 2) from peers, and mode-6 queries from monitoring tools (`ntpq`,
//! `check_ntp_peer`). A responder hands each one over with [`SymmetricSender::offer`] or
//! [`SymmetricSender::offer_query`], which copy the packet (a symmetric one: its 48-byte header
//! and a MAC, for peers with a key) into a bounded channel with `try_send`: they never block,
//! never allocate, and when the control thread is behind and a channel full the packet is
//! dropped (it is counted as a symmetric-mode or control-mode drop either way). Each kind has its own channel, so a flood of one cannot crowd out the other.
//!
//! Mode-6 queries are handed over only from loopback and the operator's `monitor` prefixes:
//! a reply is many times the size of its query, and the public never gets one.
//!
//! The socket path calls it from `socket::responder`. The XDP path does the same from its
//! per-queue loop: a frame whose NTP mode is 1, 2 or 6 is offered with the frame's source
//! address and (symmetric) its XDP receive stamp converted to CLOCK_REALTIME nanoseconds, then
//! recycled to the fill ring like any other dropped frame, so the fast path never waits for the
//! slow one either.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::proto::admission::acl::Prefix;
use crate::proto::control::auth::MAX_MAC_LEN;
use crate::proto::wire::ntp::HEADER_LEN;

/// The most of a symmetric packet that is handed over: the header and a MAC. A longer packet
/// (extension fields) is cut there, and then fails a peer's key check, as it should: peers
/// exchange no extension fields.
pub const MAX_PACKET_LEN: usize = HEADER_LEN + MAX_MAC_LEN;

/// Packets in flight to the control thread; peers poll at most once a second each, so this
/// only fills when something floods the server port with symmetric packets.
pub const CAPACITY: usize = 256;
/// Mode-6 queries in flight: monitoring polls now and then.
pub const QUERY_CAPACITY: usize = 64;
/// The longest mode-6 query handed over (a READVAR naming a few dozen variables).
pub const QUERY_MAX: usize = 256;

/// One symmetric packet as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymmetricPacket {
    pub from: SocketAddr,
    /// Receive time, CLOCK_REALTIME nanoseconds (the kernel's stamp when there is one).
    pub received_ns: i64,
    packet: [u8; MAX_PACKET_LEN],
    len: usize,
}

impl SymmetricPacket {
    /// The packet as received (at most [`MAX_PACKET_LEN`] bytes of it).
    pub fn bytes(&self) -> &[u8] {
        &self.packet[..self.len]
    }
}

/// One mode-6 query as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlQuery {
    pub from: SocketAddr,
    len: u16,
    bytes: [u8; QUERY_MAX],
}

impl ControlQuery {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The responders' end; clone one per responder.
#[derive(Debug, Clone)]
pub struct SymmetricSender {
    packets: Sender<SymmetricPacket>,
    queries: Sender<ControlQuery>,
    monitors: Arc<[Prefix]>,
}

/// The control thread's end.
#[derive(Debug)]
pub struct SymmetricReceiver {
    pub packets: Receiver<SymmetricPacket>,
    pub queries: Receiver<ControlQuery>,
}

/// Whether mode-6 queries from `from` are answered: loopback and the `monitor` prefixes.
#[inline]
pub fn monitors_allow(monitors: &[Prefix], from: SocketAddr) -> bool {
    let ip = match from.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(from.ip(), std::net::IpAddr::V4),
        ip => ip,
    };
    ip.is_loopback() || monitors.iter().any(|p| p.contains(ip))
}

/// The two ends; mode-6 queries are taken from loopback and from `monitors`.
pub fn channel(monitors: &[Prefix]) -> (SymmetricSender, SymmetricReceiver) {
    let (packets_tx, packets) = crossbeam_channel::bounded(CAPACITY);
    let (queries_tx, queries) = crossbeam_channel::bounded(QUERY_CAPACITY);
    (
        SymmetricSender {
            packets: packets_tx,
            queries: queries_tx,
            monitors: monitors.into(),
        },
        SymmetricReceiver { packets, queries },
    )
}

impl SymmetricSender {
    /// Hands a packet over without waiting. Returns false when it was dropped (channel full, or
    /// the control thread gone) or is too short to be NTP.
    #[inline]
    pub fn offer(&self, from: SocketAddr, received_ns: i64, payload: &[u8]) -> bool {
        if payload.len() < HEADER_LEN {
            return false;
        }
        let len = payload.len().min(MAX_PACKET_LEN);
        let mut packet = [0u8; MAX_PACKET_LEN];
        packet[..len].copy_from_slice(&payload[..len]);
        match self.packets.try_send(SymmetricPacket {
            from,
            received_ns,
            packet,
            len,
        }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Hands a mode-6 query over without waiting, if it comes from a monitoring address and is
    /// no longer than [`QUERY_MAX`]. Returns whether it was handed over.
    #[inline]
    pub fn offer_query(&self, from: SocketAddr, payload: &[u8]) -> bool {
        if payload.len() > QUERY_MAX || !monitors_allow(&self.monitors, from) {
            return false;
        }
        let mut bytes = [0u8; QUERY_MAX];
        bytes[..payload.len()].copy_from_slice(payload);
        self.queries
            .try_send(ControlQuery {
                from,
                len: payload.len() as u16,
                bytes,
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_never_wait_and_drop_when_full() {
        let (tx, rx) = channel(&[]);
        let from: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let payload = [0x0cu8; 60];
        for _ in 0..CAPACITY {
            assert!(tx.offer(from, 7, &payload));
        }
        let start = std::time::Instant::now();
        assert!(!tx.offer(from, 8, &payload), "full: dropped");
        assert!(start.elapsed() < std::time::Duration::from_millis(50));
        assert!(!tx.offer(from, 8, &payload[..47]), "too short");
        let p = rx.packets.recv().unwrap();
        assert_eq!((p.from, p.received_ns, p.bytes()), (from, 7, &[0x0cu8; 60][..]));
        while rx.packets.try_recv().is_ok() {}
        assert!(tx.offer(from, 7, &[0x0c; 100]));
        let p = rx.packets.recv().unwrap();
        assert_eq!(p.bytes().len(), MAX_PACKET_LEN, "cut after the longest MAC");
        drop(rx);
        assert!(!tx.offer(from, 9, &payload), "receiver gone");
    }

    #[test]
    fn queries_come_from_loopback_and_monitors_only() {
        let (tx, rx) = channel(&["192.0.2.0/24".parse().unwrap()]);
        let query = [0x16u8, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        for ok in [
            "127.0.0.1:5000",
            "[::1]:5000",
            "192.0.2.9:5000",
            "[::ffff:192.0.2.9]:5000",
        ] {
            assert!(tx.offer_query(ok.parse().unwrap(), &query), "{ok}");
        }
        for public in ["198.51.100.1:5000", "[2001:db8::1]:5000"] {
            assert!(!tx.offer_query(public.parse().unwrap(), &query), "{public}");
        }
        assert!(
            !tx.offer_query("127.0.0.1:5000".parse().unwrap(), &[0; QUERY_MAX + 1]),
            "too long"
        );
        assert_eq!(rx.queries.try_iter().count(), 4);
        assert_eq!(rx.packets.try_iter().count(), 0, "a query is not a peer's packet");
        for _ in 0..QUERY_CAPACITY {
            tx.offer_query("127.0.0.1:5000".parse().unwrap(), &query);
        }
        assert!(
            !tx.offer_query("127.0.0.1:5000".parse().unwrap(), &query),
            "full: dropped"
        );
    }
}
