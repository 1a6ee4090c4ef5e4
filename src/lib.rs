//! strata: a kernel-bypass NTP server. The protocol core is pure and sans-IO (`wire`, `respond`,
//! `clock`, `state`); the I/O paths (`socket`, later `fastpath`) are thin rooms around it.

pub mod clock;
pub mod frame;
pub mod respond;
pub mod state;
pub mod wire;
