//! The results: one report per step (a table row, or an element of the JSON `steps` array) and
//! the run's summary, `max_rate_below_loss`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::classify::{kiss_label, Invalid, KISS_KINDS};
use crate::cli::Args;
use crate::request::RequestKind;
use crate::run::StepPlan;
use crate::stats::{SignedHistogram, StepStats};

/// Percentiles of a latency, nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles {
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        })
    }
}

/// The spread of the offset, nanoseconds (signed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OffsetSummary {
    pub min: i64,
    pub p1: i64,
    pub p50: i64,
    pub p99: i64,
    pub max: i64,
}

impl OffsetSummary {
    fn of(h: &SignedHistogram) -> Option<OffsetSummary> {
        (!h.is_empty()).then(|| OffsetSummary {
            min: h.min(),
            p1: h.quantile(0.01),
            p50: h.quantile(0.5),
            p99: h.quantile(0.99),
            max: h.max(),
        })
    }
}

/// One step's results. Fractions are of the requests sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The rate asked for, requests/s.
    pub offered_rate: f64,
    /// The rate the requests actually left at.
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    /// Every datagram received during the step, whatever it was.
    pub received: u64,
    /// Requests with a first reply within the timeout (valid, KoD or invalid content).
    pub answered: u64,
    pub valid: u64,
    /// Requests without a reply within the timeout.
    pub lost: u64,
    pub lost_fraction: f64,
    pub invalid: u64,
    pub invalid_fraction: f64,
    pub invalid_reasons: BTreeMap<&'static str, u64>,
    pub kod: u64,
    pub kod_fraction: f64,
    pub kod_codes: BTreeMap<&'static str, u64>,
    /// Replies after the timeout.
    pub late: u64,
    /// Further replies to a request already answered.
    pub duplicate: u64,
    /// Round trip (T4 − T1) of the valid replies; null when there were none.
    pub latency_ns: Option<Percentiles>,
    /// The server's own time with a request (T3 − T2).
    pub response_time_ns: Option<Percentiles>,
    /// ((T2 − T1) + (T3 − T4)) / 2.
    pub offset_ns: Option<OffsetSummary>,
}

fn fraction(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl StepReport {
    pub fn new(plan: &StepPlan, s: &StepStats) -> StepReport {
        let invalid = s.invalid_total();
        let kod = s.kod_total();
        StepReport {
            offered_rate: plan.rate,
            achieved_rate: s.achieved_rate,
            duration_s: plan.duration_ns as f64 / 1e9,
            sent: s.sent,
            received: s.received,
            answered: s.answered,
            valid: s.valid,
            lost: s.lost(),
            lost_fraction: fraction(s.lost(), s.sent),
            invalid,
            invalid_fraction: fraction(invalid, s.sent),
            invalid_reasons: Invalid::ALL
                .iter()
                .map(|r| (r.label(), s.invalid[r.index()]))
                .collect(),
            kod,
            kod_fraction: fraction(kod, s.sent),
            kod_codes: (0..KISS_KINDS).map(|i| (kiss_label(i), s.kod[i])).collect(),
            late: s.late,
            duplicate: s.duplicate,
            latency_ns: Percentiles::of(&s.rtt),
            response_time_ns: Percentiles::of(&s.response),
            offset_ns: OffsetSummary::of(&s.offset),
        }
    }

    pub const TABLE_HEADER: &'static str =
        "  offered  achieved      sent  received   lost%  invalid%    kod%   \
         late    dup   p50(us)   p99(us) p99.9(us)   max(us)  resp(us) offset(us)";

    /// The step as one row under [`StepReport::TABLE_HEADER`].
    pub fn table_row(&self) -> String {
        let us = |ns: Option<u64>| ns.map_or("-".to_string(), |v| format!("{:.1}", v as f64 / 1e3));
        let l = self.latency_ns;
        format!(
            "{:>9.0} {:>9.0} {:>9} {:>9} {:>7.3} {:>9.3} {:>7.3} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            self.offered_rate,
            self.achieved_rate,
            self.sent,
            self.received,
            self.lost_fraction * 100.0,
            self.invalid_fraction * 100.0,
            self.kod_fraction * 100.0,
            self.late,
            self.duplicate,
            us(l.map(|p| p.p50)),
            us(l.map(|p| p.p99)),
            us(l.map(|p| p.p999)),
            us(l.map(|p| p.max)),
            us(self.response_time_ns.map(|p| p.p50)),
            self.offset_ns.map_or("-".to_string(), |o| format!("{:.1}", o.p50 as f64 / 1e3)),
        )
    }

    /// Invalid reasons and kiss codes that occurred, for a line under the table row.
    pub fn details(&self) -> Option<String> {
        let parts: Vec<String> = self
            .invalid_reasons
            .iter()
            .chain(self.kod_codes.iter())
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        (!parts.is_empty()).then(|| format!("          {}", parts.join(" ")))
    }
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub target: String,
    pub transport: &'static str,
    pub request: RequestKind,
    pub threads: u16,
    pub flows_per_thread: u32,
    pub poisson: bool,
    pub timeout_s: f64,
    /// As a fraction (0.001 for 0.1%).
    pub loss_threshold: f64,
    pub steps: Vec<StepReport>,
    /// The highest offered rate of a step whose loss was below the threshold; null if none.
    pub max_rate_below_loss: Option<f64>,
}

impl RunReport {
    pub fn new(args: &Args, steps: Vec<StepReport>) -> RunReport {
        RunReport {
            target: args.target.to_string(),
            transport: args.transport().label(),
            request: args.request,
            threads: args.threads,
            flows_per_thread: args.flows(),
            poisson: args.poisson,
            timeout_s: args.timeout,
            loss_threshold: args.loss_threshold,
            max_rate_below_loss: max_rate_below_loss(&steps, args.loss_threshold),
            steps,
        }
    }
}

pub fn max_rate_below_loss(steps: &[StepReport], threshold: f64) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.sent > 0 && s.lost_fraction < threshold)
        .map(|s| s.offered_rate)
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, sent: u64, answered: u64) -> StepReport {
        let stats = StepStats {
            sent,
            answered,
            received: answered,
            ..StepStats::default()
        };
        StepReport::new(
            &StepPlan {
                rate,
                duration_ns: 1_000_000_000,
                count: sent,
            },
            &stats,
        )
    }

    #[test]
    fn max_rate_is_the_highest_step_below_the_threshold() {
        let steps = vec![
            step(100.0, 1000, 1000),
            step(150.0, 1000, 999),
            step(225.0, 1000, 990),
        ];
        assert_eq!(max_rate_below_loss(&steps, 0.001), Some(100.0));
        assert_eq!(max_rate_below_loss(&steps, 0.002), Some(150.0));
        assert_eq!(max_rate_below_loss(&steps[2..], 0.001), None);
        // Not monotonic: a later step that recovered still counts.
        let steps = vec![step(100.0, 1000, 990), step(150.0, 1000, 1000)];
        assert_eq!(max_rate_below_loss(&steps, 0.001), Some(150.0));
    }

    #[test]
    fn fractions_are_of_the_requests_sent() {
        let s = step(100.0, 1000, 900);
        assert_eq!((s.lost, s.lost_fraction), (100, 0.1));
        assert_eq!(s.latency_ns, None);
        let json = serde_json::to_value(&s).unwrap();
        for key in [
            "offered_rate",
            "sent",
            "received",
            "lost_fraction",
            "invalid_fraction",
            "latency_ns",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["invalid_reasons"]["unknown_origin"], 0);
        assert_eq!(json["kod_codes"]["RATE"], 0);
    }
}
