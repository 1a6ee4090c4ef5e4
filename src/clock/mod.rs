//! strata's clock: the parameters that turn a kernel clock reading into NTP time, the lock-free
//! snapshot that publishes them, and the clock reads the responders make.

pub mod params;
pub mod precision;
pub mod read;
pub mod seqlock;

pub use params::ClockParams;
pub use read::{Clock, FixedClock, SystemClock};
