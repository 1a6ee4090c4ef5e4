//! What the control thread is configured with: the upstream part of the server configuration
//! (`server`/`pool`/`peer` entries, `--upstream`, `max_distance`, `minsources`,
//! `--discipline-system`, `--log-dir`) and the local reference.

use std::path::PathBuf;
use std::time::Duration;

use super::constraint::ConstraintUrl;
use super::guard::{self, StepLimits};
use super::leapplan::LeapSettings;
use super::refclock::RefclockSpec;
use super::spec::{SourceKind, SourceSpec};
use crate::proto::state::UnsyncPolicy;

/// Agreeing sources needed by default: the fewest for which no single source decides the time
/// that thousands of clients receive. (ntpd-rs asks for 3; chrony and ntpd for 1.)
pub const DEFAULT_MINSOURCES: usize = 2;

/// RFC 5905's MAXDIST, the default `max_distance`.
pub const DEFAULT_MAX_DISTANCE: Duration = Duration::from_millis(1500);

/// The upstream settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Servers, pools and peers, in the order given.
    pub sources: Vec<SourceSpec>,
    /// The key file's keys, for sources with `key N` (every such key is in it).
    pub keys: Option<std::sync::Arc<crate::proto::auth::KeyTable>>,
    /// Reference clocks, in the order given.
    pub refclocks: Vec<RefclockSpec>,
    /// Largest root distance of a usable source and of the time served as synchronized.
    pub max_distance: Duration,
    /// Agreeing sources needed to synchronize.
    pub minsources: usize,
    /// The step and panic limits (see `control::guard`).
    pub max_startup_step_forward: Duration,
    pub max_startup_step_backward: Duration,
    pub max_correction: Duration,
    /// Accept the first correction whatever its size (`--allow-step`, once).
    pub allow_step: bool,
    /// Also discipline the system clock (adjtimex).
    pub discipline_system: bool,
    /// Keep the RTC in step while synchronized (`rtc_sync`, see `super::rtc`).
    pub rtc_sync: bool,
    /// Where to write the measurements and statistics logs.
    pub log_dir: Option<PathBuf>,
    /// The leap-seconds.list to check against (`None`: off).
    pub leap_seconds_list: Option<PathBuf>,
    /// The `leap` override and the leap smear.
    pub leap: LeapSettings,
    /// NTS sources: the CA certificates (PEM) their NTS-KE servers' certificates must chain to
    /// (`None`: the system's trust store); the HTTPS servers of `constraints` too.
    pub nts_trusted_certs: Option<PathBuf>,
    /// HTTPS servers whose Date headers bound the true time (see [`super::constraint`]).
    pub constraints: Vec<ConstraintUrl>,
}

/// Where tzdata puts its copy of the IERS/IETF list.
pub const DEFAULT_LEAP_SECONDS_LIST: &str = "/usr/share/zoneinfo/leap-seconds.list";

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            sources: Vec::new(),
            keys: None,
            refclocks: Vec::new(),
            max_distance: DEFAULT_MAX_DISTANCE,
            minsources: DEFAULT_MINSOURCES,
            max_startup_step_forward: Duration::from_secs_f64(guard::DEFAULT_STARTUP_FORWARD),
            max_startup_step_backward: Duration::from_secs_f64(guard::DEFAULT_STARTUP_BACKWARD),
            max_correction: Duration::from_secs_f64(guard::DEFAULT_MAX_CORRECTION),
            allow_step: false,
            leap_seconds_list: Some(PathBuf::from(DEFAULT_LEAP_SECONDS_LIST)),
            discipline_system: false,
            rtc_sync: false,
            log_dir: None,
            leap: LeapSettings::default(),
            nts_trusted_certs: None,
            constraints: Vec::new(),
        }
    }
}

impl UpstreamConfig {
    /// The step and panic limits as the engine takes them.
    pub fn step_limits(&self) -> StepLimits {
        StepLimits {
            startup_forward: self.max_startup_step_forward.as_secs_f64(),
            startup_backward: self.max_startup_step_backward.as_secs_f64(),
            max_correction: self.max_correction.as_secs_f64(),
            allow_once: self.allow_step,
        }
    }

    /// How many sources can take part in selection at most: servers and peers, and each pool's
    /// `maxsources`, less those marked `noselect`.
    pub fn selectable_sources(&self) -> usize {
        self.sources
            .iter()
            .filter(|s| !s.options.noselect)
            .map(|s| match s.kind {
                SourceKind::Pool => s.options.max_sources,
                _ => 1,
            })
            .sum::<usize>()
            + self.refclocks.iter().filter(|r| !r.options.noselect).count()
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
    /// Mode-6 queries (`ntpq`, `check_ntp_peer`) are answered from loopback and these.
    pub monitor: Vec<crate::proto::admission::acl::Prefix>,
}

impl ControlConfig {
    /// A local reference (or nothing) and no upstream.
    pub fn local(local_stratum: Option<u8>, unsync_policy: UnsyncPolicy) -> Self {
        ControlConfig {
            local_stratum,
            unsync_policy,
            upstream: UpstreamConfig::default(),
            monitor: Vec::new(),
        }
    }
}
