//! Interleaved mode (`crate::proto::interleave`) as every user-space path does it, once: the
//! shared table, and per batch the exchanges of the replies to interleaving clients, to be
//! remembered with the transmit time written into them and updated when the real transmit time
//! is known. How that time is learnt is the path's: the socket path reads the kernel's stamp from
//! the error queue (`crate::sys::socket::txstamp`), the AF_XDP path the completion ring
//! (`crate::sys::fastpath::responder`).

use std::net::IpAddr;
use std::sync::Arc;

use crate::proto::interleave::XleaveTable;
use crate::proto::wire::NtpTimestamp;

/// An exchange to remember: the client, and our (marked) receive stamp in the reply to it.
pub type Exchange = (IpAddr, NtpTimestamp);

/// The table and the current batch's exchanges, by reply.
pub(super) struct Interleaving {
    pub(super) table: Arc<XleaveTable>,
    /// The exchange of the batch's k-th reply (None: not a reply to an interleaving client).
    exchanges: Box<[Option<Exchange>]>,
    /// Replies of the batch so far.
    replies: usize,
}

impl Interleaving {
    pub(super) fn new(table: Arc<XleaveTable>, batch_size: usize) -> Interleaving {
        Interleaving {
            table,
            exchanges: vec![None; batch_size].into_boxed_slice(),
            replies: 0,
        }
    }

    pub(super) fn begin(&mut self) {
        self.replies = 0;
    }

    /// The next reply of the batch goes out with `exchange`.
    pub(super) fn push(&mut self, exchange: Option<Exchange>) {
        if let Some(slot) = self.exchanges.get_mut(self.replies) {
            *slot = exchange;
        }
        self.replies += 1;
    }

    /// The exchange of the batch's `k`-th reply.
    pub(super) fn exchange(&self, k: usize) -> Option<Exchange> {
        self.exchanges
            .get(k..self.replies.min(self.exchanges.len()))?
            .first()
            .copied()
            .flatten()
    }
}
