//! What strata's integration tests (`tests/*.rs`), its benches (`bench/*.rs`) and loadgen's
//! tests (`loadgen/tests/`) share, written once:
//!
//! - [`avail`]: "required or skip" for what a test needs (root, a tool), after
//!   `STRATA_REQUIRE_INTEROP`;
//! - [`netns`]: network namespaces removed on every exit path ([`Netns`]), and the three-namespace
//!   lab of `bench/lab` under a prefix of the test's own ([`Lab`]);
//! - [`process`]: the `strata` binary and `strata serve` as a child process ([`Server`]), chronyd
//!   as a server ([`Chronyd`]), an NTP query, scratch files and directories;
//! - [`fixtures`]: the synchronized and unsynchronized [`ServerState`](strata::proto::state::ServerState)
//!   the tests answer with;
//! - [`frames`]: NTP requests and whole request frames of every shape (Ethernet, VLAN, IPv4,
//!   IPv6, UDP), made with strata's own emitters;
//! - [`certs`]: a test CA and a server certificate it signed;
//! - [`chrony_client`]: chronyd as a client for a few seconds, its measurements read back;
//! - [`metrics`]: scraping `/metrics`, reading the text format back, `promtool check metrics`.
//!
//! Everything is re-exported at the top, so that a test says `use strata_test_support::*;`.
//!
//! strata's own unit tests (`src/**`) cannot use this crate: it depends on strata, so a unit
//! test would see its types from a second copy of the crate. The few fixtures they need are
//! kept next to them (`strata::proto::state::test_fixtures`), equal to these.

pub mod avail;
pub mod certs;
pub mod chrony_client;
pub mod exitlog;
pub mod fixtures;
pub mod frames;
pub mod metrics;
pub mod netns;
pub mod process;

pub use avail::*;
pub use certs::*;
pub use chrony_client::*;
pub use exitlog::*;
pub use fixtures::*;
pub use frames::*;
pub use metrics::*;
pub use netns::*;
pub use process::*;

/// The workspace's top directory (strata's package).
pub fn workspace_root() -> std::path::PathBuf {
    let support = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    support
        .ancestors()
        .nth(2)
        .expect("tests/support is two levels down")
        .to_path_buf()
}
