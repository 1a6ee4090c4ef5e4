//! `strata phc`: a NIC's PTP hardware clock seen raw, as an operator checks it before trusting
//! its stamps: what the device can do, then a few cross-timestamps with the ioctl that gave
//! each, its bracket (the system clock's uncertainty about the PHC read) and PHC − system
//! (CLOCK_REALTIME). The same readings the server's PHC thread takes (`crate::sys::ptp`).

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::sys::ptp::{Capabilities, CrossStampSource, PtpDevice};

/// Which PHC to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Device(PathBuf),
    /// The PHC of a network interface (ETHTOOL_GET_TS_INFO).
    Interface(String),
}

/// One reading, for the text and the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawReading {
    pub method: String,
    pub bracket_ns: i64,
    /// PHC − CLOCK_REALTIME, ns.
    pub phc_minus_system_ns: i64,
    pub system_ns: i64,
    pub phc_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawView {
    pub device: String,
    #[serde(flatten)]
    pub capabilities: Capabilities,
    pub readings: Vec<RawReading>,
    /// Readings that failed, with why.
    pub errors: Vec<String>,
}

/// The device path of `target`; the error says why there is none.
pub fn resolve(target: &Target) -> Result<PathBuf, String> {
    match target {
        Target::Device(path) => Ok(path.clone()),
        Target::Interface(name) => match crate::sys::fastpath::hwstamp::phc_index(name) {
            Ok(Some(index)) => Ok(PtpDevice::path_of_index(index)),
            Ok(None) => Err(format!("{name} has no PHC (its driver reports none)")),
            Err(e) => Err(format!("{name}: ETHTOOL_GET_TS_INFO: {e}")),
        },
    }
}

/// Opens `path` (the error names it).
pub fn open(path: &Path) -> Result<PtpDevice, String> {
    PtpDevice::open(path).map_err(|e| e.to_string())
}

/// `count` readings of `source`, `interval` apart.
pub fn take(source: &mut dyn CrossStampSource, count: usize, interval: Duration) -> RawView {
    let mut view = RawView {
        device: source.path().display().to_string(),
        capabilities: source.capabilities(),
        readings: Vec::with_capacity(count),
        errors: Vec::new(),
    };
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(interval);
        }
        match source.read() {
            Ok(r) => view.readings.push(RawReading {
                method: r.method.label().to_string(),
                bracket_ns: 2 * r.stamp.error_ns,
                phc_minus_system_ns: r.stamp.phc_ns - r.stamp.sys_ns,
                system_ns: r.stamp.sys_ns,
                phc_ns: r.stamp.phc_ns,
            }),
            Err(e) => view.errors.push(e.to_string()),
        }
    }
    view
}

/// The text view.
pub fn render(v: &RawView) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::new();
    let _ = writeln!(out, "{}:", v.device);
    let _ = writeln!(
        out,
        "  max adjustment {} ppb, {} external timestamp channel(s), {} periodic output(s), {} pin(s), \
         PPS {}, precise cross-timestamps {}",
        v.capabilities.max_adj_ppb,
        v.capabilities.n_ext_ts,
        v.capabilities.n_per_out,
        v.capabilities.n_pins,
        yes(v.capabilities.pps),
        yes(v.capabilities.cross_timestamping)
    );
    let _ = writeln!(
        out,
        "  {:<9} {:>10}  {:>24}",
        "method", "bracket", "PHC - CLOCK_REALTIME"
    );
    for r in &v.readings {
        let _ = writeln!(
            out,
            "  {:<9} {:>8}ns  {:>22}ns",
            r.method, r.bracket_ns, r.phc_minus_system_ns
        );
    }
    if let (Some(min), Some(max)) = (
        v.readings.iter().map(|r| r.phc_minus_system_ns).min(),
        v.readings.iter().map(|r| r.phc_minus_system_ns).max(),
    ) {
        let _ = writeln!(
            out,
            "  {} reading(s): PHC - CLOCK_REALTIME spread {} ns (drift between readings included)",
            v.readings.len(),
            max - min
        );
    }
    for e in &v.errors {
        let _ = writeln!(out, "  reading failed: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::ptp::sim::{SimConfig, SimulatedPhc};
    use crate::sys::ptp::Method;

    #[test]
    fn readings_show_method_bracket_and_offset() {
        let mut sim = SimulatedPhc::new(SimConfig {
            method: Method::Extended,
            bracket_ns: 600,
            ..SimConfig::default()
        });
        let view = take(&mut sim, 3, Duration::ZERO);
        assert_eq!(view.readings.len(), 3);
        assert!(view.errors.is_empty());
        for r in &view.readings {
            assert_eq!(r.method, "extended");
            assert_eq!(r.bracket_ns, 600);
            // The simulated PHC is 37 s + 123.456 µs ahead, drifting 12.5 ppm.
            assert!((r.phc_minus_system_ns - 37_000_123_456).abs() < 1_000, "{r:?}");
        }
        let text = render(&view);
        assert!(text.starts_with("/dev/ptp-simulated:\n"), "{text}");
        assert!(text.contains("precise cross-timestamps no"), "{text}");
        assert!(text.contains("  extended       600ns"), "{text}");
        assert!(text.contains("3 reading(s)"), "{text}");
    }

    #[test]
    fn failed_readings_are_listed_not_fatal() {
        let mut sim = SimulatedPhc::new(SimConfig::default());
        sim.fail(Some(std::io::ErrorKind::PermissionDenied));
        let view = take(&mut sim, 2, Duration::ZERO);
        assert!(view.readings.is_empty());
        assert_eq!(view.errors.len(), 2);
        assert!(render(&view).contains("reading failed: simulated failure"));
    }

    #[test]
    fn targets_without_a_phc_are_errors_that_name_them() {
        assert_eq!(
            resolve(&Target::Interface("lo".into())),
            Err("lo has no PHC (its driver reports none)".into())
        );
        assert!(resolve(&Target::Interface("nosuch0".into()))
            .unwrap_err()
            .starts_with("nosuch0: ETHTOOL_GET_TS_INFO"));
        let e = open(Path::new("/dev/ptp-strata-none")).err().unwrap();
        assert!(e.contains("/dev/ptp-strata-none"), "{e}");
    }
}
