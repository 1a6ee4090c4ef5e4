//! `strata status` for people: the server (like `chronyc tracking`), its upstream sources (like
//! `chronyc sources`), and its packet counters per responder (like `chronyc serverstats`, per
//! core), from a [`Report`].

use std::fmt::Write;

use super::report::{CountersReport, Report};

/// Seconds with a sign, in the unit that reads best.
fn signed_time(seconds: f64) -> String {
    let a = seconds.abs();
    let sign = if seconds < 0.0 { '-' } else { '+' };
    if a >= 1.0 {
        format!("{sign}{a:.3}s")
    } else if a >= 1e-3 {
        format!("{sign}{:.3}ms", a * 1e3)
    } else if a >= 1e-6 {
        format!("{sign}{:.1}us", a * 1e6)
    } else {
        format!("{sign}{:.0}ns", a * 1e9)
    }
}

fn time(seconds: f64) -> String {
    signed_time(seconds)[1..].to_string()
}

fn leap_text(leap: u8) -> &'static str {
    match leap {
        0 => "normal",
        1 => "insert second",
        2 => "delete second",
        _ => "not synchronised",
    }
}

/// The whole human view.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    tracking(&mut out, r);
    out.push('\n');
    sources(&mut out, r);
    out.push('\n');
    serverstats(&mut out, r);
    if !r.phc.is_empty() {
        out.push('\n');
        phc(&mut out, r);
    }
    if !r.errors.is_empty() {
        out.push('\n');
        for e in &r.errors {
            let _ = writeln!(out, "warning: {e}");
        }
    }
    out
}

/// Each served interface's PHC mapping, or plainly that it has none.
fn phc(out: &mut String, r: &Report) {
    let _ = writeln!(out, "Hardware clocks (PHC -> served time):");
    for p in &r.phc {
        let Some(device) = &p.device else {
            let why = p.reason.as_deref().unwrap_or("no PHC");
            let _ = writeln!(out, "  {}: {why}; receive stamps are software", p.interface);
            continue;
        };
        let verdict = match (&p.reason, p.usable) {
            (_, true) => "in use: hardware receive stamps are T2".to_string(),
            (Some(why), false) => format!("not used ({why}): software stamps are T2"),
            (None, false) => "not used: software stamps are T2".to_string(),
        };
        let _ = writeln!(
            out,
            "  {} {device} ({}): {verdict}",
            p.interface,
            p.method.as_deref().unwrap_or("no reading yet")
        );
        let _ = writeln!(
            out,
            "    offset {}, frequency {:+.3} ppm, jitter {}, {} samples, {} rejected, {} steps, {} of {} reads failed",
            signed_time(p.offset_ns * 1e-9),
            p.frequency_ppm,
            time(p.jitter_ns * 1e-9),
            p.samples,
            p.rejected,
            p.steps,
            p.read_errors,
            p.reads
        );
    }
}

fn tracking(out: &mut String, r: &Report) {
    let s = &r.server;
    let refid = if s.refid.is_empty() { "-" } else { &s.refid };
    let _ = writeln!(out, "State           : {}", s.sync.label());
    let _ = writeln!(out, "Reference ID    : {refid}");
    let _ = writeln!(out, "Stratum         : {}", s.stratum);
    let _ = writeln!(out, "Leap status     : {}", leap_text(s.leap));
    let _ = writeln!(out, "Root delay      : {:.9} seconds", s.root_delay);
    let _ = writeln!(out, "Root dispersion : {:.9} seconds", s.root_dispersion);
    let _ = writeln!(
        out,
        "Offset          : {:+.9} seconds (served time minus the kernel clock)",
        s.offset
    );
    let _ = writeln!(out, "Frequency       : {:+.3} ppm", s.frequency_ppm);
    match s.since_update {
        Some(age) => {
            let _ = writeln!(out, "Last update     : {age:.1} seconds ago");
        }
        None => {
            let _ = writeln!(out, "Last update     : never");
        }
    }
    let _ = writeln!(out, "Precision       : 2^{} seconds", s.precision);
    let _ = writeln!(
        out,
        "TAI-UTC         : {} (kernel: {} s)",
        s.leap_second.describe_tai(),
        s.tai_minus_utc
    );
    let _ = writeln!(out, "Leap second     : {}", s.leap_second.describe_leap());
    let _ = writeln!(out, "Leap list       : {}", s.leap_list.describe());
    let _ = writeln!(out, "RTC             : {}", s.rtc.describe());
    integrity(out, r);
    let _ = writeln!(
        out,
        "Version         : {} (commit {}), up {:.0} seconds",
        r.build.version,
        r.build.commit,
        (r.now - r.started).max(0.0)
    );
}

/// The agreement asked for, the step and panic limits, and anything they are refusing now.
fn integrity(out: &mut String, r: &Report) {
    let i = &r.server.integrity;
    if !r.sources.is_empty() {
        let _ = writeln!(
            out,
            "Agreement       : {} source(s) must agree, {} selectable",
            i.minsources, i.selectable
        );
    }
    let _ = writeln!(
        out,
        "Step limits     : start-up +{} s / -{} s, later {} s; {} step(s), {} refusal(s), {} state change(s)",
        i.max_startup_step_forward,
        i.max_startup_step_backward,
        i.max_correction,
        i.steps,
        i.refusals,
        i.state_changes
    );
    if let Some(why) = &i.refused {
        let _ = writeln!(out, "REFUSED         : {why}");
    }
    if let Some(c) = &i.constraints {
        let _ = writeln!(out, "Constraints     : {c}; {} rejected", i.constraint_rejections);
    }
    if !r.sources.is_empty() {
        if let Some(why) = i.too_few_sources() {
            let _ = writeln!(out, "WARNING         : {why}");
        }
    }
}

fn sources(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "MS Name/IP address                     Stratum Poll Reach   Offset    Delay   Jitter"
    );
    let _ = writeln!(out, "{}", "=".repeat(84));
    if r.sources.is_empty() {
        let _ = writeln!(out, "(no upstream sources)");
        return;
    }
    for s in &r.sources {
        let opt = |v: Option<f64>, signed: bool| match v {
            Some(v) if signed => signed_time(v),
            Some(v) => time(v),
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{}{} {:<37} {:>7} {:>4} {:>5o} {:>8} {:>8} {:>8}{}",
            s.mode.mark(),
            s.state.mark(),
            s.name,
            s.stratum.map_or("-".to_string(), |n| n.to_string()),
            s.poll,
            s.reach,
            opt(s.offset, true),
            opt(s.delay, false),
            opt(s.jitter, false),
            s.reason
                .as_ref()
                .map_or(String::new(), |why| format!("  ({why})")),
        );
        // The authentication state under its source (a failure is the reason already).
        if let Some(auth) = s.auth.as_ref().filter(|a| s.reason.as_ref() != Some(*a)) {
            let _ = writeln!(out, "     {auth}");
        }
        if let Some(pulses) = &s.pulses {
            let _ = writeln!(out, "     {}", pulses.describe());
        }
    }
}

fn counters_row(out: &mut String, who: &str, core: &str, c: &CountersReport) {
    let _ = writeln!(
        out,
        "{who:<10} {core:>4} {:>12} {:>12} {:>10} {:>8} {:>14} {:>14} {:>6}",
        c.requests,
        c.replies,
        c.dropped,
        c.kiss.values().sum::<u64>(),
        c.bytes_in,
        c.bytes_out,
        if c.batches > 0 {
            format!("{:.1}", c.batched_requests as f64 / c.batches as f64)
        } else {
            "-".to_string()
        }
    );
}

/// "label n, label n" for the non-zero entries of a map.
fn nonzero<'a>(items: impl IntoIterator<Item = (&'a String, &'a u64)>) -> String {
    let parts: Vec<String> = items
        .into_iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// The response time below which a fraction `q` of replies went, to the bucket bound.
fn quantile_bound(c: &CountersReport, q: f64) -> Option<f64> {
    let h = &c.response_time;
    if h.count == 0 {
        return None;
    }
    let target = (q * h.count as f64).ceil() as u64;
    let mut seen = 0;
    for (i, n) in h.counts.iter().enumerate() {
        seen += n;
        if seen >= target {
            return Some(h.bounds.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    None
}

fn serverstats(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "{:<10} {:>4} {:>12} {:>12} {:>10} {:>8} {:>14} {:>14} {:>6}",
        "responder", "core", "requests", "replies", "dropped", "kod", "bytes in", "bytes out", "batch"
    );
    for x in &r.responders {
        counters_row(
            out,
            &format!("{} {}", x.path, x.queue),
            &x.core.to_string(),
            &x.counters,
        );
    }
    counters_row(out, "total", "", &r.total);
    // The XDP program's own answers never reach a responder, so the table above lacks them.
    for p in &r.xdp_programs {
        let sum = |key: &str| -> u64 { p.cpus.iter().filter_map(|cpu| cpu.get(key)).sum() };
        let _ = writeln!(
            out,
            "XDP answered    : {} {} time, {} unsynchronized (by the XDP program, not in the table)",
            p.interface,
            sum("answered"),
            sum("answered_unsync")
        );
    }
    if let Some(n) = &r.nts {
        let c = &n.sessions;
        let _ = writeln!(
            out,
            "NTS             : NTS-KE on {}: {} session(s) ok, {} bad request, {} TLS failed, {} timed out, \
             {} refused (busy {}, rate {}); cookie key {} in use for {} s of {} s, {} earlier accepted; \
             {} authenticated replies",
            n.ke_listen,
            c.ok,
            c.bad_request,
            c.tls_failed,
            c.timed_out,
            c.busy + c.rate_limited,
            c.busy,
            c.rate_limited,
            n.key_epoch,
            n.key_age_s,
            n.rotation_s,
            n.grace,
            r.total.replies_authenticated
        );
    }
    if let Some(l) = &r.limiter {
        let _ = writeln!(
            out,
            "Rate limiter    : {} of {} client slots in use, {} client(s) forgotten to make room",
            l.tracked, l.slots, l.evicted
        );
    }
    let t = &r.total;
    let _ = writeln!(out, "Drops           : {}", nonzero(&t.drops));
    let _ = writeln!(out, "KoD sent        : {}", nonzero(&t.kiss));
    let _ = writeln!(out, "Rx timestamps   : {}", nonzero(&t.rx_timestamps));
    if t.tx_timestamps.values().any(|n| *n > 0) {
        let _ = writeln!(
            out,
            "Tx timestamps   : {} ({} interleaved replies)",
            nonzero(&t.tx_timestamps),
            t.replies_interleaved
        );
    }
    let rt = |q| quantile_bound(t, q).map_or("-".to_string(), |b| format!("<= {}", time(b)));
    let _ = writeln!(
        out,
        "Response time   : median {}, 99% {} (T3 - T2, {} replies)",
        rt(0.5),
        rt(0.99),
        t.response_time.count
    );
    if t.receive_errors + t.send_errors + t.hardware_stamps_unused + t.receive_buffer_drops > 0 {
        let _ = writeln!(
            out,
            "Errors          : receive {}, send {}, hardware stamps unused {}, dropped by the kernel \
             (receive buffer full) {}",
            t.receive_errors, t.send_errors, t.hardware_stamps_unused, t.receive_buffer_drops
        );
    }
    for p in &r.xdp_programs {
        let mut sum: std::collections::BTreeMap<&String, u64> = std::collections::BTreeMap::new();
        for cpu in &p.cpus {
            for (k, v) in cpu {
                *sum.entry(k).or_default() += v;
            }
        }
        let _ = writeln!(
            out,
            "XDP program on {}: {}",
            p.interface,
            nonzero(sum.iter().map(|(k, v)| (*k, v)))
        );
    }
    for x in &r.xsk_tx {
        let _ = writeln!(out, "AF_XDP Tx stamps: {}: {}", x.interface, x.summary);
    }
    for s in &r.xsk_sockets {
        let fields = s.statistics.fields();
        let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "AF_XDP {} queue {} (responder {}): {}",
            s.interface,
            s.nic_queue,
            s.queue,
            parts.join(", ")
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::daemon::observe::report::{test_observed, XskTxReport};
    use crate::proto::respond::{DropReason, ReplyKind};

    /// Statuses as the PHC thread publishes them: an interface without a PHC, one in use, one
    /// whose mapping is too noisy.
    pub(crate) fn phc_statuses() -> Vec<crate::sys::ptp::tracker::PhcStatus> {
        use crate::sys::ptp::tracker::PhcStatus;
        let used = PhcStatus {
            interface: "eth0".into(),
            device: Some("/dev/ptp0".into()),
            method: Some("extended".into()),
            samples: 16,
            offset_ns: -12.0,
            frequency_ppm: -3.25,
            jitter_ns: 18.0,
            rejected: 2,
            steps: 1,
            reads: 400,
            read_errors: 0,
            usable: true,
            reason: None,
        };
        vec![
            PhcStatus::none("veth0", "no PHC (the driver reports none)"),
            used.clone(),
            PhcStatus {
                interface: "eth1".into(),
                device: Some("/dev/ptp1".into()),
                usable: false,
                jitter_ns: 4_000.0,
                reason: Some("too_noisy".into()),
                ..used
            },
        ]
    }

    #[test]
    fn each_interface_says_whether_its_hardware_stamps_are_used() {
        let (observed, _w) = test_observed();
        let mut report = observed.report();
        assert!(
            !render(&report).contains("Hardware clocks"),
            "nothing to say without interfaces"
        );
        report.phc = phc_statuses();
        let text = render(&report);
        assert!(
            text.contains("  veth0: no PHC (the driver reports none); receive stamps are software"),
            "{text}"
        );
        assert!(
            text.contains("  eth0 /dev/ptp0 (extended): in use: hardware receive stamps are T2"),
            "{text}"
        );
        assert!(
            text.contains("offset -12ns, frequency -3.250 ppm, jitter 18ns, 16 samples, 2 rejected, 1 steps, 0 of 400 reads failed"),
            "{text}"
        );
        assert!(
            text.contains("  eth1 /dev/ptp1 (extended): not used (too_noisy): software stamps are T2"),
            "{text}"
        );
        // And the JSON carries the same, for `strata status --json`.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["phc"][0]["device"], serde_json::Value::Null);
        assert_eq!(json["phc"][1]["usable"], true);
        assert_eq!(json["phc"][2]["reason"], "too_noisy");
    }

    #[test]
    fn times_read_well() {
        assert_eq!(signed_time(0.0000123), "+12.3us");
        assert_eq!(signed_time(-0.0021), "-2.100ms");
        assert_eq!(signed_time(2.5), "+2.500s");
        assert_eq!(time(4e-8), "40ns");
    }

    #[test]
    fn the_view_has_its_three_parts() {
        let (observed, mut w) = test_observed();
        w.batch(2);
        w.received(48);
        w.received(48);
        w.replied(ReplyKind::Unsynchronized, 48);
        w.response_time(20_000);
        w.dropped(DropReason::Control);
        let text = render(&observed.report());
        assert!(text.contains("State           : unsynchronized"), "{text}");
        assert!(text.contains("Stratum         : 16"), "{text}");
        assert!(text.contains("(no upstream sources)"), "{text}");
        assert!(text.contains("socket 0"), "{text}");
        assert!(text.contains("Drops           : control_mode 1"), "{text}");
        assert!(text.contains("median <= 32.8us"), "{text}");
    }

    /// The kernel's answer for each served interface, in the text and the JSON alike.
    #[test]
    fn af_xdp_transmit_stamp_support_is_shown_per_interface() {
        use crate::proto::wire::netdev::DevFeatures;
        use crate::sys::fastpath::xsk_features::XskTxSupport;
        let (observed, _) = test_observed();
        let mut r = observed.report();
        assert!(
            !render(&r).contains("AF_XDP Tx stamps"),
            "none on the socket path"
        );
        let veth = XskTxSupport {
            interface: "veth0".into(),
            driver: Some("veth".into()),
            features: Ok(DevFeatures {
                ifindex: 4,
                xdp_features: Some(0b111),
                xsk_features: Some(0),
                ..Default::default()
            }),
        };
        let nic = XskTxSupport {
            interface: "eth1".into(),
            driver: Some("mlx5_core".into()),
            features: Ok(DevFeatures {
                ifindex: 5,
                xsk_features: Some(1),
                ..Default::default()
            }),
        };
        r.xsk_tx = [&veth, &nic].map(XskTxReport::from_support).to_vec();
        let text = render(&r);
        assert!(
            text.contains(
                "AF_XDP Tx stamps: veth0: AF_XDP transmit timestamps not supported by the driver (veth): \
                 AF_XDP replies carry software transmit stamps"
            ),
            "{text}"
        );
        assert!(
            text.contains("eth1: AF_XDP transmit timestamps supported by the driver (mlx5_core; xsk-features tx-timestamp)"),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["xsk_tx"][0]["supported"], false);
        assert_eq!(json["xsk_tx"][0]["xsk_features"], "none");
        assert_eq!(json["xsk_tx"][0]["xdp_features"], "basic redirect ndo-xmit");
        assert_eq!(json["xsk_tx"][1]["supported"], true);
    }

    #[test]
    fn authentication_and_constraints_show_with_their_sources() {
        use crate::daemon::observe::board::{SourceState, UpstreamStatus};
        let (observed, _) = test_observed();
        let mut r = observed.report();
        let nts = "NTS: 7 cookies, 12 authenticated, 1 rejected, 0 NAKs".to_string();
        r.sources = vec![
            UpstreamStatus {
                auth: Some(nts.clone()),
                ..UpstreamStatus::failed("198.18.0.1:123".into(), "no measurement yet".into())
            },
            UpstreamStatus::failed(
                "nts.example:4460".into(),
                "NTS-KE failed: certificate not trusted".into(),
            ),
        ];
        r.sources[0].state = SourceState::Candidate;
        r.server.integrity.constraints = Some("1 of 2 in force".into());
        r.server.integrity.constraint_rejections = 3;
        let text = render(&r);
        assert!(text.contains(&format!("\n     {nts}\n")), "{text}");
        // A failure is said once, as the reason.
        assert_eq!(text.matches("certificate not trusted").count(), 1, "{text}");
        assert!(
            text.contains("Constraints     : 1 of 2 in force; 3 rejected"),
            "{text}"
        );
    }

    #[test]
    fn sources_are_marked_by_kind_as_chronys_are() {
        use crate::daemon::observe::board::{SourceMode, SourceState, UpstreamStatus};
        let (observed, _) = test_observed();
        let mut r = observed.report();
        let source = |name: &str, mode, state| UpstreamStatus {
            mode,
            state,
            reason: None,
            auth: None,
            ..UpstreamStatus::failed(name.into(), String::new())
        };
        let mut pps = source("127.127.22.0 (PPS)", SourceMode::Refclock, SourceState::Selected);
        let mut counts = crate::proto::control::pps::PulseCounts {
            numbered: 684,
            missed: 1,
            ..Default::default()
        };
        for _ in 0..8 {
            counts.count(crate::proto::control::pps::PulseRefusal::LockTooOld);
        }
        pps.pulses = Some(crate::daemon::observe::board::PulseStatus::from_counts(&counts));
        r.sources = vec![
            pps,
            source("198.18.0.1:123", SourceMode::Server, SourceState::Candidate),
            source("198.18.0.3:123", SourceMode::Peer, SourceState::Falseticker),
        ];
        let text = render(&r);
        assert!(text.contains("\n#* 127.127.22.0 (PPS) "), "{text}");
        assert!(
            text.contains("\n     PPS edges: 684 numbered, 1 missed, dropped: lock_too_old 8\n"),
            "{text}"
        );
        assert!(text.contains("\n^+ 198.18.0.1:123 "), "{text}");
        assert!(text.contains("\n=x 198.18.0.3:123 "), "{text}");
    }
}
