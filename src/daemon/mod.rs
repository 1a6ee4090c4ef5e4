//! The daemon: the configuration (file and flags), the control thread that drives the engine,
//! the observers (`/metrics`, `strata status`) and the orchestration of `strata serve`
//! ([`server`]). It builds on `crate::proto` and `crate::sys`; nothing imports from it but the
//! `strata` binary.

pub mod cli;
pub mod config;
pub mod control;
pub mod logging;
pub mod nts;
pub mod observe;
pub mod phc_view;
pub mod reload;
pub mod run_as;
pub mod server;
pub mod service_status;
pub mod signals;
