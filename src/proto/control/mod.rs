//! The control engine: every source, the clock filter, the regression, selection and
//! combination, the step and panic limits, the discipline of strata's clock model and the
//! served state, as one deterministic state machine that performs no I/O and reads no clock
//! ([`engine::Engine`] over [`source`], [`filter`], [`regress`], [`select`], [`guard`],
//! [`discipline`], [`constraint`]). The thread that drives it is the daemon's (`crate::daemon::control`).

pub mod auth;
pub mod constraint;
pub mod discipline;
pub mod engine;
pub mod events;
pub mod filter;
pub mod guard;
pub mod leapplan;
pub mod leapstate;
pub mod local;
pub mod packet;
pub mod pps;
pub mod refclock;
pub mod refid;
pub mod regress;
pub mod rtc;
pub mod select;
pub mod settings;
pub mod source;
pub mod spec;

pub use settings::{ControlConfig, UpstreamConfig};
