//! Reading the kernel's clocks (the vDSO, adjtimex's TAI offset) and measuring their precision.

pub mod precision;
pub mod read;

pub use read::{kernel_tai_offset, read_clock_ns, SystemClock};
