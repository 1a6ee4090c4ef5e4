//! The pure core: NTP on the wire, `respond()` and the frame rewrite around it, the clock model
//! and the published state, the control engine's algorithms and the responders' counters. No
//! I/O, no clock reads, no `unsafe`; every part is tested without sockets, clocks or threads.
//! Nothing here imports from `crate::sys` or `crate::daemon` (tests/layering.rs checks).
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod clock;
pub mod control;
pub mod frame;
pub mod interleave;
pub mod leap;
pub mod metrics;
pub mod mode6;
pub mod nts;
pub mod respond;
pub mod state;
pub mod wire;
