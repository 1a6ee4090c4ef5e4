//! What the control thread tells the observers (`/metrics`, `strata status`) about itself: its
//! synchronization state and each upstream source.
//!
//! The control thread is not the hot path, and it publishes a few times a second at most, so
//! a mutex around a plain value is enough: the writer replaces the whole value, a reader
//! clones it. Nothing here is read by the responders.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::proto::control::engine::{Engine, SyncState};

/// Where the server stands, as the status output names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// No usable source (and no local reference): replies say leap 3, stratum 16.
    #[default]
    Unsynchronized,
    /// Following the selected upstream source.
    Synchronized,
    /// Sources were lost: serving on the last frequency while the error bound grows.
    Holdover,
    /// Serving the local clock as a reference (`--local-stratum`).
    Local,
}

impl SyncStatus {
    pub const ALL: [SyncStatus; 4] = [
        SyncStatus::Unsynchronized,
        SyncStatus::Synchronized,
        SyncStatus::Holdover,
        SyncStatus::Local,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            SyncStatus::Unsynchronized => "unsynchronized",
            SyncStatus::Synchronized => "synchronized",
            SyncStatus::Holdover => "holdover",
            SyncStatus::Local => "local",
        }
    }
}

/// What selection made of a source (chrony's `*`, `+`, `x`, `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// The system peer: the served time follows it.
    Selected,
    /// A truechimer that survived selection, not the system peer.
    Candidate,
    /// Rejected by the intersection algorithm.
    Falseticker,
    /// Not a candidate: unreachable, no data yet, unsynchronized, too far, noselect...
    Unused,
}

impl SourceState {
    pub const ALL: [SourceState; 4] = [
        SourceState::Selected,
        SourceState::Candidate,
        SourceState::Falseticker,
        SourceState::Unused,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            SourceState::Selected => "selected",
            SourceState::Candidate => "candidate",
            SourceState::Falseticker => "falseticker",
            SourceState::Unused => "unused",
        }
    }

    /// chrony's one-character mark for `sources`.
    pub const fn mark(self) -> char {
        match self {
            SourceState::Selected => '*',
            SourceState::Candidate => '+',
            SourceState::Falseticker => 'x',
            SourceState::Unused => '?',
        }
    }
}

/// What kind of source it is, as chrony's `sources` marks it in its first column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceMode {
    /// A server (client mode): `^`.
    #[default]
    Server,
    /// A symmetric peer: `=`.
    Peer,
    /// A reference clock: `#`.
    Refclock,
}

impl SourceMode {
    pub const fn mark(self) -> char {
        match self {
            SourceMode::Server => '^',
            SourceMode::Peer => '=',
            SourceMode::Refclock => '#',
        }
    }
}

/// One upstream source. Times in seconds; `None` where nothing was measured yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// The source's address (`ADDR:PORT`): the `source` label of its metrics.
    pub name: String,
    pub state: SourceState,
    /// Why it is unused, when it is (free text for people, not a label).
    pub reason: Option<String>,
    pub stratum: Option<u8>,
    /// The reachability register: one bit per poll, newest in bit 0.
    pub reach: u8,
    /// Poll interval, log2 seconds.
    pub poll: i8,
    /// Source time minus served time.
    pub offset: Option<f64>,
    /// Round-trip delay of the sample in use.
    pub delay: Option<f64>,
    pub jitter: Option<f64>,
    /// How its replies are authenticated, when they are (e.g. `NTS: 7 cookies, ...`), or why
    /// it cannot be used (`NTS-KE failed: ...`).
    #[serde(default)]
    pub auth: Option<String>,
    /// Server, peer or reference clock.
    #[serde(default)]
    pub mode: SourceMode,
    /// A PPS refclock's edges: how many were numbered, missed, and dropped by reason.
    #[serde(default)]
    pub pulses: Option<PulseStatus>,
}

/// What became of a PPS refclock's edges since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PulseStatus {
    pub numbered: u64,
    pub missed: u64,
    /// Edges that could not be numbered, by reason (`no_lock_reading`, `lock_too_old`,
    /// `lock_disagrees`, `not_synchronized`); reasons never seen are left out.
    pub dropped: std::collections::BTreeMap<String, u64>,
}

impl PulseStatus {
    pub fn from_counts(c: &crate::proto::control::pps::PulseCounts) -> PulseStatus {
        use crate::proto::control::pps::PulseRefusal;
        PulseStatus {
            numbered: c.numbered,
            missed: c.missed,
            dropped: PulseRefusal::ALL
                .iter()
                .map(|&r| (r.label().to_string(), c.refused(r)))
                .filter(|&(_, n)| n > 0)
                .collect(),
        }
    }

    /// One line for the status: "PPS edges: 684 numbered, 0 missed, dropped: lock_too_old 8".
    pub fn describe(&self) -> String {
        let mut line = format!("PPS edges: {} numbered, {} missed", self.numbered, self.missed);
        if !self.dropped.is_empty() {
            let dropped: Vec<String> = self.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            line.push_str(&format!(", dropped: {}", dropped.join(", ")));
        }
        line
    }
}

impl UpstreamStatus {
    /// A configured source that has no association because its authentication failed: never
    /// used, shown with why.
    pub fn failed(name: String, why: String) -> UpstreamStatus {
        UpstreamStatus {
            name,
            state: SourceState::Unused,
            reason: Some(why.clone()),
            stratum: None,
            reach: 0,
            poll: 0,
            offset: None,
            delay: None,
            jitter: None,
            auth: Some(why),
            mode: SourceMode::Server,
            pulses: None,
        }
    }
}

/// What guards the served time: the agreement asked for, the step and panic limits, and what
/// they did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntegrityStatus {
    /// Agreeing sources needed to synchronize, and how many could take part now.
    pub minsources: usize,
    pub selectable: usize,
    /// The limits, seconds.
    pub max_startup_step_forward: f64,
    pub max_startup_step_backward: f64,
    pub max_correction: f64,
    /// Steps of the clock model, refused corrections (each update refused counts), and changes
    /// of the synchronization state, since start.
    pub steps: u64,
    pub refusals: u64,
    pub state_changes: u64,
    /// The refusal in force: the correction asked for (seconds, or s/s for a frequency) and
    /// what it means.
    pub refused_correction: Option<f64>,
    pub refused: Option<String>,
    /// The time constraints: how many are in force, or that none is reachable (None: none
    /// configured); the samples and corrections they rejected.
    #[serde(default)]
    pub constraints: Option<String>,
    #[serde(default)]
    pub constraint_rejections: u64,
}

impl IntegrityStatus {
    fn from_engine(engine: &Engine, selectable: usize) -> IntegrityStatus {
        let guard = engine.guard();
        let limits = guard.limits();
        IntegrityStatus {
            minsources: engine.config().minsources,
            selectable,
            max_startup_step_forward: limits.startup_forward,
            max_startup_step_backward: limits.startup_backward,
            max_correction: limits.max_correction,
            steps: guard.steps(),
            refusals: guard.refusals(),
            state_changes: engine.state_changes(),
            refused_correction: guard.active().map(|r| r.error),
            refused: guard.active().map(|r| r.describe()),
            // The control thread says what the constraints are (it fetches them).
            constraints: None,
            constraint_rejections: engine.constraint_rejections(),
        }
    }

    /// Why strata cannot synchronize with the sources it has, if that is so.
    pub fn too_few_sources(&self) -> Option<String> {
        (self.selectable < self.minsources).then(|| {
            format!(
                "{} selectable source(s), minsources is {}: cannot synchronize; add sources or \
                 lower minsources",
                self.selectable, self.minsources
            )
        })
    }
}

/// What the configured leap-seconds.list says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeapListState {
    /// None configured (`leap_seconds_list = "off"`).
    #[default]
    Off,
    /// Read, its hash verified, not expired.
    Valid,
    /// Valid once, past its expiry now: it says nothing of leaps since.
    Expired,
    /// Missing, unreadable or damaged.
    Unusable,
}

/// The leap-seconds.list as the status shows it. Times are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeapListStatus {
    pub path: Option<String>,
    pub state: LeapListState,
    /// Why it is unusable.
    pub problem: Option<String>,
    pub expires: Option<f64>,
    /// TAI − UTC now, by the list.
    pub tai_minus_utc: Option<i32>,
    /// The next leap the list announces (before its expiry): when, and +1 or −1 second.
    pub next_leap: Option<(f64, i32)>,
}

fn utc_date(unix: f64) -> String {
    let ts = crate::proto::wire::NtpTimestamp::from_unix_nanos((unix * 1e9) as i128);
    crate::proto::control::events::format_time(ts)[..10].to_string()
}

impl LeapListStatus {
    /// One line for the log and the status: the path, what it says, and what to do.
    pub fn describe(&self) -> String {
        let path = self.path.as_deref().unwrap_or("-");
        let fallback = "leap warnings come from the upstreams' majority";
        match self.state {
            LeapListState::Off => "off".to_string(),
            LeapListState::Unusable => format!(
                "{path}: unusable ({}); {fallback}",
                self.problem.as_deref().unwrap_or("unknown")
            ),
            LeapListState::Expired => format!(
                "{path}: EXPIRED on {}: it says nothing of leaps since; install a newer tzdata \
                 or point leap_seconds_list at a current copy; {fallback} meanwhile",
                self.expires.map_or("?".into(), utc_date)
            ),
            LeapListState::Valid => format!(
                "{path}: TAI-UTC {} s, {}, valid until {}",
                self.tai_minus_utc.map_or("?".into(), |n| n.to_string()),
                match self.next_leap {
                    Some((at, delta)) => format!(
                        "a leap second {} at the end of the day before {}",
                        if delta > 0 { "inserted" } else { "deleted" },
                        utc_date(at)
                    ),
                    None => "no leap second announced".to_string(),
                },
                self.expires.map_or("?".into(), utc_date)
            ),
        }
    }
}

/// The control thread's view, as last published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlStatus {
    pub sync: SyncStatus,
    pub sources: Vec<UpstreamStatus>,
    #[serde(default)]
    pub integrity: IntegrityStatus,
    #[serde(default)]
    pub leap_list: LeapListStatus,
    /// TAI − UTC and the leap second scheduled (the control thread fills it in).
    #[serde(default)]
    pub leap: super::leap_status::LeapSecondStatus,
    /// The hardware calendar (`rtc_sync`; the control thread fills it in).
    #[serde(default)]
    pub rtc: super::rtc_status::RtcStatus,
}

impl ControlStatus {
    /// The status of an [`Engine`] at kernel time `now` (CLOCK_REALTIME ns), for a control
    /// thread that runs one to publish after each tick.
    pub fn from_engine(engine: &Engine, now: i64) -> ControlStatus {
        let (sync, peer) = match engine.sync_state() {
            SyncState::Unsynchronized => (SyncStatus::Unsynchronized, None),
            SyncState::Synchronized { system_peer } => (SyncStatus::Synchronized, Some(system_peer)),
            SyncState::Holdover => (SyncStatus::Holdover, None),
            SyncState::Local => (SyncStatus::Local, None),
        };
        let all = engine.sources(now);
        let selectable = all
            .iter()
            .filter(|s| !matches!(s.unfit, Some(crate::proto::control::source::Unfit::NoSelect)))
            .count();
        let integrity = IntegrityStatus::from_engine(engine, selectable);
        let sources = all
            .into_iter()
            .map(|s| {
                let state = if Some(s.id) == peer {
                    SourceState::Selected
                } else if s.falseticker {
                    SourceState::Falseticker
                } else if s.survivor {
                    SourceState::Candidate
                } else {
                    SourceState::Unused
                };
                let output = engine.source(s.id).and_then(|src| src.last_output());
                UpstreamStatus {
                    // A reference clock by its pseudo-address and refid: "127.127.28.0 (GPS)".
                    name: match engine.refclock_refid(s.id) {
                        Some(refid) => format!(
                            "{} ({})",
                            s.addr.ip(),
                            String::from_utf8_lossy(&refid).trim_end_matches('\0')
                        ),
                        None => s.addr.to_string(),
                    },
                    state,
                    mode: match s.association {
                        crate::proto::control::source::Association::Client => SourceMode::Server,
                        crate::proto::control::source::Association::Symmetric => SourceMode::Peer,
                        crate::proto::control::source::Association::Refclock => SourceMode::Refclock,
                    },
                    reason: s.unfit.map(|u| u.label().to_string()),
                    pulses: engine.refclock_pulses(s.id).map(|c| PulseStatus::from_counts(&c)),
                    stratum: s.stratum,
                    reach: s.reach,
                    poll: s.poll,
                    offset: s.offset,
                    delay: output.map(|o| o.sample.delay),
                    jitter: output.map(|o| o.jitter),
                    auth: s.auth.map(|a| match a.rejected {
                        0 => a.summary(),
                        n => format!("{}, {n} rejected", a.summary()),
                    }),
                }
            })
            .collect();
        ControlStatus {
            sync,
            sources,
            integrity,
            leap_list: LeapListStatus::default(),
            leap: Default::default(),
            rtc: Default::default(),
        }
    }
}

/// The shared slot the control thread publishes into. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<ControlStatus>>);

impl StatusBoard {
    pub fn new(initial: ControlStatus) -> StatusBoard {
        StatusBoard(Arc::new(Mutex::new(initial)))
    }

    /// Replaces the published status.
    pub fn publish(&self, status: ControlStatus) {
        // A reader that panicked while holding the lock cannot have left a half-written value
        // (readers only clone): the value is still whole, so poisoning is ignored.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// A copy of the published status.
    pub fn read(&self) -> ControlStatus {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replaces_and_read_copies() {
        let board = StatusBoard::new(ControlStatus {
            sync: SyncStatus::Local,
            sources: vec![],
            integrity: IntegrityStatus::default(),
            leap_list: LeapListStatus::default(),
            leap: Default::default(),
            rtc: Default::default(),
        });
        let other = board.clone();
        assert_eq!(other.read().sync, SyncStatus::Local);
        board.publish(ControlStatus {
            sync: SyncStatus::Synchronized,
            sources: vec![UpstreamStatus {
                name: "192.0.2.1:123".into(),
                state: SourceState::Selected,
                reason: None,
                stratum: Some(1),
                reach: 0o377,
                poll: 6,
                offset: Some(1e-4),
                delay: Some(2e-3),
                jitter: Some(5e-5),
                auth: Some("key 5 ok".into()),
                mode: SourceMode::Server,
                pulses: None,
            }],
            integrity: IntegrityStatus::default(),
            leap_list: LeapListStatus::default(),
            leap: Default::default(),
            rtc: Default::default(),
        });
        let read = other.read();
        assert_eq!(read.sync, SyncStatus::Synchronized);
        assert_eq!(read.sources[0].state.mark(), '*');
        let json = serde_json::to_string(&read).unwrap();
        assert!(json.contains("\"state\":\"selected\""), "{json}");
        assert_eq!(serde_json::from_str::<ControlStatus>(&json).unwrap(), read);
    }
}
