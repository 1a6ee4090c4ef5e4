//! `strata status --check`: one verdict from a [`Report`], for the tools that decide whether a
//! node should take traffic (a BIRD or ExaBGP health watcher, keepalived's `track_script`, a
//! Kubernetes probe).
//!
//! Exit codes (the [`Health`] values):
//! - 0, [`Health::Healthy`]: serving time marked synchronized, in an accepted state, within the
//!   limits given;
//! - 1, [`Health::Unhealthy`]: serving, but unsynchronized, in a state not accepted (by default
//!   holdover: the sources are lost, the served time is still marked good but ages), or over a
//!   limit (`--max-root-distance`, `--max-stratum`);
//! - 2, [`Health::Down`]: not serving: no answer on the control socket, no responder running, or
//!   any other error.
//!
//! Holdover is not accepted by default because it comes long before unsynchronized: with the
//! default `max_distance` of 1.5 s the served time stays marked good for hours after the last
//! source is lost. A node behind an anycast address should leave while its peers still have
//! sources, so that no client is ever handed to a node about to turn unsynchronized.

use super::board::SyncStatus;
use super::report::Report;

/// The verdict, and the process exit code it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy = 0,
    Unhealthy = 1,
    Down = 2,
}

/// What counts as healthy.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// States accepted as healthy (unsynchronized never is).
    pub accept: Vec<SyncStatus>,
    /// Largest root distance (root delay / 2 + root dispersion), seconds.
    pub max_root_distance: Option<f64>,
    /// Largest stratum.
    pub max_stratum: Option<u8>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            accept: DEFAULT_ACCEPT.to_vec(),
            max_root_distance: None,
            max_stratum: None,
        }
    }
}

/// The states `--accept` takes by default.
pub const DEFAULT_ACCEPT: [SyncStatus; 2] = [SyncStatus::Synchronized, SyncStatus::Local];

/// The verdict on `report`, with one line that says why.
pub fn check(report: &Report, limits: &Limits) -> (Health, String) {
    let s = &report.server;
    if report.responders.is_empty() {
        return (Health::Down, "down: no responder is running".to_string());
    }
    let distance = s.root_delay / 2.0 + s.root_dispersion;
    let summary = format!(
        "{}, stratum {}, refid {}, root distance {:.6} s",
        s.sync.label(),
        s.stratum,
        if s.refid.is_empty() { "-" } else { &s.refid },
        distance
    );
    let unhealthy = |why: String| (Health::Unhealthy, format!("unhealthy: {why} ({summary})"));
    if !s.synchronized || s.sync == SyncStatus::Unsynchronized || s.leap == 3 {
        return unhealthy("replies are marked unsynchronized".to_string());
    }
    if !limits.accept.contains(&s.sync) {
        let accepted: Vec<&str> = limits.accept.iter().map(|a| a.label()).collect();
        return unhealthy(format!(
            "state {} is not accepted (--accept {})",
            s.sync.label(),
            accepted.join(",")
        ));
    }
    if let Some(max) = limits.max_root_distance {
        if distance > max {
            return unhealthy(format!("root distance above --max-root-distance {max}"));
        }
    }
    if let Some(max) = limits.max_stratum {
        if s.stratum > max {
            return unhealthy(format!("stratum above --max-stratum {max}"));
        }
    }
    (Health::Healthy, format!("healthy: {summary}"))
}

/// Parses one `--accept` value: synchronized, holdover or local.
pub fn parse_state(text: &str) -> Result<SyncStatus, String> {
    match text {
        "synchronized" => Ok(SyncStatus::Synchronized),
        "holdover" => Ok(SyncStatus::Holdover),
        "local" => Ok(SyncStatus::Local),
        "unsynchronized" => Err("unsynchronized is never healthy".to_string()),
        other => Err(format!("{other:?} is not one of synchronized, holdover, local")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::observe::report::test_observed;

    fn report(sync: SyncStatus, synchronized: bool, stratum: u8) -> Report {
        let (observed, _writer) = test_observed();
        let mut r = observed.report();
        r.server.sync = sync;
        r.server.synchronized = synchronized;
        r.server.leap = if synchronized { 0 } else { 3 };
        r.server.stratum = stratum;
        r.server.root_delay = 0.002;
        r.server.root_dispersion = 0.001;
        r
    }

    #[test]
    fn verdicts() {
        let d = Limits::default();
        let h = |r: &Report, l: &Limits| check(r, l).0;
        assert_eq!(h(&report(SyncStatus::Synchronized, true, 2), &d), Health::Healthy);
        assert_eq!(h(&report(SyncStatus::Local, true, 1), &d), Health::Healthy);
        assert_eq!(h(&report(SyncStatus::Holdover, true, 2), &d), Health::Unhealthy);
        assert_eq!(
            h(&report(SyncStatus::Unsynchronized, false, 16), &d),
            Health::Unhealthy
        );
        let holdover_ok = Limits {
            accept: vec![SyncStatus::Synchronized, SyncStatus::Holdover],
            ..Limits::default()
        };
        assert_eq!(
            h(&report(SyncStatus::Holdover, true, 2), &holdover_ok),
            Health::Healthy
        );
        assert_eq!(
            h(&report(SyncStatus::Local, true, 1), &holdover_ok),
            Health::Unhealthy
        );
        // Root distance 0.002 / 2 + 0.001 = 0.002 s.
        let near = Limits {
            max_root_distance: Some(0.0015),
            ..Limits::default()
        };
        let (health, why) = check(&report(SyncStatus::Synchronized, true, 2), &near);
        assert_eq!(health, Health::Unhealthy);
        assert!(why.contains("--max-root-distance"), "{why}");
        let far = Limits {
            max_root_distance: Some(0.0025),
            max_stratum: Some(1),
            ..Limits::default()
        };
        let (health, why) = check(&report(SyncStatus::Synchronized, true, 2), &far);
        assert_eq!(health, Health::Unhealthy);
        assert!(why.contains("--max-stratum 1"), "{why}");
        let mut none = report(SyncStatus::Synchronized, true, 2);
        none.responders.clear();
        assert_eq!(h(&none, &d), Health::Down);
    }

    #[test]
    fn states_parse() {
        assert_eq!(parse_state("holdover"), Ok(SyncStatus::Holdover));
        assert!(parse_state("unsynchronized").is_err());
        assert!(parse_state("sync").is_err());
    }
}
