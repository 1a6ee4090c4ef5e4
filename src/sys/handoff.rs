//! Symmetric packets (modes 1 and 2) reach the server port, where the responders answer client
//! requests; they belong to the control thread. A responder hands each one over with
//! [`SymmetricSender::offer`], which copies the packet (the 48-byte header and a MAC, for
//! peers with a key) into a bounded channel with
//! `try_send`: it never blocks, never allocates, and when the control thread is behind and the
//! channel full the packet is dropped (it is counted as a symmetric-mode drop either way).
//!
//! The socket path calls it from `socket::responder`. The XDP path does the same from its
//! per-queue loop: a frame whose NTP mode is 1 or 2 is offered with the frame's source address
//! and its XDP receive stamp converted to CLOCK_REALTIME nanoseconds, then recycled to the fill
//! ring like any other dropped frame, so the fast path never waits for the slow one either.

use std::net::SocketAddr;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::proto::control::auth::MAX_MAC_LEN;
use crate::proto::wire::ntp::HEADER_LEN;

/// The most of a symmetric packet that is handed over: the header and a MAC. A longer packet
/// (extension fields) is cut there, and then fails a peer's key check, as it should: peers
/// exchange no extension fields.
pub const MAX_PACKET_LEN: usize = HEADER_LEN + MAX_MAC_LEN;

/// Packets in flight to the control thread; peers poll at most once a second each, so this
/// only fills when something floods the server port with symmetric packets.
pub const CAPACITY: usize = 256;

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

/// The responders' end; clone one per responder.
#[derive(Debug, Clone)]
pub struct SymmetricSender(Sender<SymmetricPacket>);

/// The control thread's end.
pub type SymmetricReceiver = Receiver<SymmetricPacket>;

pub fn channel() -> (SymmetricSender, SymmetricReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
    (SymmetricSender(tx), rx)
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
        match self.0.try_send(SymmetricPacket {
            from,
            received_ns,
            packet,
            len,
        }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_never_wait_and_drop_when_full() {
        let (tx, rx) = channel();
        let from: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let payload = [0x0cu8; 60];
        for _ in 0..CAPACITY {
            assert!(tx.offer(from, 7, &payload));
        }
        let start = std::time::Instant::now();
        assert!(!tx.offer(from, 8, &payload), "full: dropped");
        assert!(start.elapsed() < std::time::Duration::from_millis(50));
        assert!(!tx.offer(from, 8, &payload[..47]), "too short");
        let p = rx.recv().unwrap();
        assert_eq!((p.from, p.received_ns, p.bytes()), (from, 7, &[0x0cu8; 60][..]));
        while rx.try_recv().is_ok() {}
        assert!(tx.offer(from, 7, &[0x0c; 100]));
        let p = rx.recv().unwrap();
        assert_eq!(p.bytes().len(), MAX_PACKET_LEN, "cut after the longest MAC");
        drop(rx);
        assert!(!tx.offer(from, 9, &payload), "receiver gone");
    }
}
