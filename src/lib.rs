//! strata: a kernel-bypass NTP server. The protocol core is pure and sans-IO (`wire`, `respond`,
//! `clock`, `state`); the I/O paths (`socket`, later `fastpath`) are thin rooms around it.

pub mod clock;
pub mod config;
pub mod control;
pub mod fastpath;
pub mod frame;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod respond;
pub mod server;
pub mod socket;
pub mod state;
pub mod wire;
