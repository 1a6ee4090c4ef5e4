//! Mode 6, NTP's control messages (RFC 9327), read-only: what `ntpq -c rv`, `ntpq -p` and the
//! monitoring plugins `check_ntp_peer` ask (READSTAT, READVAR). Everything else is refused with
//! an error reply.
//!
//! A reply is much longer than its request (up to [`MAX_DATA`] bytes of text for 12), so mode 6
//! is an amplifier: strata answers it only from loopback and the operator's `monitor`
//! prefixes (the daemon checks before anything is built), one datagram per request, never more
//! than [`MAX_REPLY`] bytes.
//!
//! The answers are made from a [`View`] the control thread takes of its own state at the time
//! of the query; this module only encodes, so the whole exchange is tested without sockets.

mod answer;
mod view;
mod wire;

pub use answer::answer;
pub use view::{PeerView, Selection, SystemView, View};
pub use wire::{ErrorCode, Header, Opcode, HEADER_LEN, MAX_DATA, MAX_REPLY};
