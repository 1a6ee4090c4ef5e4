//! How requests leave and replies arrive. A transport knows nothing of NTP: it sends payloads
//! that the worker writes in place into its own buffers, and hands received payloads back with
//! the flow they arrived on and a receive time.

pub mod displaced;
pub mod frame;
pub mod socket;
pub mod xdp;
pub mod xdp_prog;

use std::io;

/// One received datagram, borrowed from the transport's buffers for the duration of a callback.
pub struct Reply<'a> {
    /// The flow (source address and port of the requests) this reply was addressed to.
    pub flow: usize,
    /// Whether it came from the target's address and port; a reply from elsewhere is invalid.
    pub from_target: bool,
    /// The UDP payload.
    pub payload: &'a [u8],
    /// When it arrived, CLOCK_REALTIME nanoseconds (the kernel's stamp where there is one).
    pub rx_ns: i64,
}

/// A way of sending requests and receiving replies, owned by one worker thread.
pub trait Transport {
    /// How many flows (distinct client address/port pairs) the transport sends from.
    fn flows(&self) -> usize;

    /// The most requests one [`Transport::send`] call takes.
    fn batch_capacity(&self) -> usize;

    /// Sends up to `count` requests from `flow`. `fill(i, buf)` writes the payload of request `i`
    /// into `buf` and returns its length. Returns how many were taken by the kernel (requests
    /// after that were not sent and may be written again next time).
    fn send(
        &mut self,
        flow: usize,
        count: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize>;

    /// Waits up to `timeout_ns` for replies (0: only what is already there), then hands every
    /// available one to `on_reply`. Returns how many it handed over.
    fn receive(&mut self, timeout_ns: i64, on_reply: &mut dyn FnMut(Reply<'_>)) -> io::Result<usize>;
}

/// Workers hold their transport boxed, whichever kind it is; the dynamic call is per batch.
impl<T: Transport + ?Sized> Transport for Box<T> {
    fn flows(&self) -> usize {
        (**self).flows()
    }

    fn batch_capacity(&self) -> usize {
        (**self).batch_capacity()
    }

    fn send(
        &mut self,
        flow: usize,
        count: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        (**self).send(flow, count, fill)
    }

    fn receive(&mut self, timeout_ns: i64, on_reply: &mut dyn FnMut(Reply<'_>)) -> io::Result<usize> {
        (**self).receive(timeout_ns, on_reply)
    }
}
