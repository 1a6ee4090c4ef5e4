//! strata's clock model: the parameters that turn a kernel clock reading into NTP time, the
//! lock-free snapshot that publishes them, and the [`Clock`] abstraction (reading a real kernel
//! clock is the systems layer's: `crate::sys::clock`).

pub mod linear;
pub mod params;
pub mod phc;
pub mod scale;
pub mod seqlock;

pub use linear::LinearNtp;
pub use params::ClockParams;
pub use scale::LeapScale;

use crate::proto::wire::NtpTimestamp;

/// A source of "now" in NTP time.
pub trait Clock {
    fn now(&self) -> NtpTimestamp;
}

/// A clock that always reads the same time: for tests and benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub NtpTimestamp);

impl Clock for FixedClock {
    fn now(&self) -> NtpTimestamp {
        self.0
    }
}
