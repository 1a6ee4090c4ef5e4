//! Symmetric packets (modes 1 and 2) reach the server port, where the responders answer client
//! requests; they belong to the control thread. A responder hands each one over with
//! [`SymmetricSender::offer`], which copies the 48-byte header into a bounded channel with
//! `try_send`: it never blocks, never allocates, and when the control thread is behind and the
//! channel full the packet is dropped (it is counted as a symmetric-mode drop either way).
//!
//! The socket path calls it from `socket::responder`. The XDP path does the same from its
//! per-queue loop: a frame whose NTP mode is 1 or 2 is offered with the frame's source address
//! and its XDP receive stamp converted to CLOCK_REALTIME nanoseconds, then recycled to the fill
//! ring like any other dropped frame, so the fast path never waits for the slow one either.

use std::net::SocketAddr;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::proto::wire::ntp::HEADER_LEN;

/// Packets in flight to the control thread; peers poll at most once a second each, so this
/// only fills when something floods the server port with symmetric packets.
pub const CAPACITY: usize = 256;

/// One symmetric packet as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymmetricPacket {
    pub from: SocketAddr,
    /// Receive time, CLOCK_REALTIME nanoseconds (the kernel's stamp when there is one).
    pub received_ns: i64,
    pub header: [u8; HEADER_LEN],
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
        let Some(bytes) = payload.get(..HEADER_LEN) else {
            return false;
        };
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(bytes);
        match self.0.try_send(SymmetricPacket {
            from,
            received_ns,
            header,
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
        assert_eq!((p.from, p.received_ns, p.header), (from, 7, [0x0c; 48]));
        drop(rx);
        assert!(!tx.offer(from, 9, &payload), "receiver gone");
    }
}
