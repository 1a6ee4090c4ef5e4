//! strata: a kernel-bypass NTP server, in three layers, each importing only from those before it:
//!
//! - [`proto`]: the pure core (wire formats, `respond()`, the frame rewrite, the clock model and
//!   published state, the control engine, the counters), `#![forbid(unsafe_code)]`;
//! - [`sys`]: the systems layer (clock reads, adjtimex, sockets, XDP and AF_XDP, the shared
//!   responder pipeline and thread pool), where the `unsafe` code lives;
//! - [`daemon`]: configuration, the control thread, the observers and the orchestration of
//!   `strata serve`.

pub mod daemon;
pub mod proto;
pub mod sys;
