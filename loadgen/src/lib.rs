//! strata-loadgen: strata's own NTP load generator.
//!
//! The run is a list of steps (one fixed rate, or a geometric sweep). Each worker thread owns a
//! transport (UDP sockets, or AF_XDP sockets), a pacer that releases requests against
//! CLOCK_MONOTONIC, and a matcher that pairs every reply with the request it answers. At the end
//! of a step the workers hand their counters and histograms to the main thread, which merges
//! them into one report line (or one JSON object for the whole run).
//!
//! Live mode ([`live`]) has no workers: an XDP program made to run by BPF_PROG_RUN writes, paces
//! and sends the requests from one core, and another on the interface judges and counts the
//! replies; the main thread hands it each step and reads its counters into the same report.
//!
//! The protocol work is strata's: requests are written and replies read with `strata::proto::wire`,
//! kiss codes come from `strata::proto::respond`; this crate adds only pacing, matching and statistics.

pub mod affinity;
pub mod classify;
pub mod cli;
pub mod ke;
pub mod live;
pub mod matcher;
pub mod pacing;
pub mod progress;
pub mod report;
pub mod request;
pub mod run;
pub mod setup;
pub mod stats;
pub mod transport;
pub mod worker;
