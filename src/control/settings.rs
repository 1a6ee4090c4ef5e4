//! What the control thread is configured with: the upstream part of the server configuration
//! (`server`/`pool`/`peer` entries, `--upstream`, `max_distance`, `minsources`,
//! `--discipline-system`, `--log-dir`) and the local reference.

use std::path::PathBuf;
use std::time::Duration;

use super::spec::SourceSpec;
use crate::state::UnsyncPolicy;

/// RFC 5905's MAXDIST, the default `max_distance`.
pub const DEFAULT_MAX_DISTANCE: Duration = Duration::from_millis(1500);

/// The upstream settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Servers, pools and peers, in the order given.
    pub sources: Vec<SourceSpec>,
    /// Largest root distance of a usable source and of the time served as synchronized.
    pub max_distance: Duration,
    /// Agreeing sources needed to synchronize.
    pub minsources: usize,
    /// Also discipline the system clock (adjtimex).
    pub discipline_system: bool,
    /// Where to write the measurements and statistics logs.
    pub log_dir: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            sources: Vec::new(),
            max_distance: DEFAULT_MAX_DISTANCE,
            minsources: 1,
            discipline_system: false,
            log_dir: None,
        }
    }
}

/// Everything the control thread needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Serve the local clock at this stratum (1..=15) when no source is usable.
    pub local_stratum: Option<u8>,
    /// What responders do with requests while unsynchronized.
    pub unsync_policy: UnsyncPolicy,
    pub upstream: UpstreamConfig,
}

impl ControlConfig {
    /// A local reference (or nothing) and no upstream.
    pub fn local(local_stratum: Option<u8>, unsync_policy: UnsyncPolicy) -> Self {
        ControlConfig {
            local_stratum,
            unsync_policy,
            upstream: UpstreamConfig::default(),
        }
    }
}

impl From<&crate::config::ServerConfig> for ControlConfig {
    fn from(c: &crate::config::ServerConfig) -> Self {
        ControlConfig {
            local_stratum: c.local_stratum,
            unsync_policy: c.unsynchronized,
            upstream: c.upstream.clone(),
        }
    }
}
