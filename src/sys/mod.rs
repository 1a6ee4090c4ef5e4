//! The systems layer, where the `unsafe` code lives (each block with its `// SAFETY:` reason):
//! reading the kernel's clocks, adjtimex, the socket path, XDP loading and AF_XDP sockets, and
//! the user-space tiers built on them: the per-batch [`pipeline`] every tier shares, the
//! [`pool`] of pinned responder threads, the [`handoff`] of symmetric packets to the control
//! thread. It imports from `crate::proto` only, never from `crate::daemon`.

pub mod adjtimex;
pub mod clock;
pub mod fastpath;
pub mod handoff;
pub mod kernel_leap;
pub mod notify;
pub mod pipeline;
pub mod pool;
pub mod pps;
pub mod privilege;
pub mod ptp;
pub mod random;
pub mod rtc;
pub mod shm;
pub mod socket;
