//! The Prometheus view of a [`Report`]: every metric family, named `strata_...`, in base units,
//! counters ending in `_total`, labels low-cardinality (path, queue, core, reason, code,
//! source, interface, cpu).
//!
//! prometheus-client's metric types own their values, but strata's values live in the
//! responders' counter blocks and the kernel: so the report is encoded through a [`Collector`]
//! with constant metrics, built fresh for each scrape. The encoder writes OpenMetrics text;
//! [`super::text`] turns it into the classic 0.0.4 text format for clients that do not ask for
//! OpenMetrics.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::board::{LeapListState, SourceState, SyncStatus};
use super::report::{CountersReport, Histogram, Report};
use crate::sys::fastpath::abi::XdpCounter;

/// Every metric name starts with this (and an underscore).
pub const PREFIX: &str = "strata";

/// The report as OpenMetrics text, `# EOF` included.
pub fn encode_openmetrics(report: Report) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(ReportCollector(report)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail, and every label and value here is encodable");
    out
}

#[derive(Debug)]
struct ReportCollector(Report);

type Labels = Vec<(&'static str, String)>;

/// A per-source gauge that exists only once measured: name, help, unit, value.
type OptionalGauge = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&super::board::UpstreamStatus) -> Option<f64>,
);

/// Writes one family: its descriptor, then one sample per (labels, value) given by `samples`.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    kind: MetricType,
    samples: impl FnOnce(&mut MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, unit.as_ref(), kind)?;
    samples(&mut metric)
}

fn counter(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, v: u64) -> fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge(m: &mut MetricEncoder, labels: &Labels, v: f64) -> fmt::Result {
    if labels.is_empty() {
        // Without labels: `name value`, not `name{} value`.
        return m.encode_gauge(&v);
    }
    m.encode_family(labels)?.encode_gauge(&v)
}

fn histogram(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, h: &Histogram) -> fmt::Result {
    // prometheus-client takes per-bucket counts and accumulates them; f64::MAX means +Inf.
    let buckets: Vec<(f64, u64)> = h
        .bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::MAX))
        .zip(h.counts.iter().copied())
        .collect();
    m.encode_family(labels)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
}

/// A family with one counter per responder, the value picked by `value`.
fn per_responder(
    enc: &mut DescriptorEncoder,
    report: &Report,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: impl Fn(&CountersReport) -> u64,
) -> fmt::Result {
    family(enc, name, help, unit, MetricType::Counter, |m| {
        for r in &report.responders {
            counter(
                m,
                &responder_labels(r.path.as_str(), r.queue, r.core),
                value(&r.counters),
            )?;
        }
        Ok(())
    })
}

fn responder_labels(path: &str, queue: usize, core: usize) -> Labels {
    vec![
        ("path", path.to_string()),
        ("queue", queue.to_string()),
        ("core", core.to_string()),
    ]
}

/// A family with one counter per responder and per key of the map `value` picks.
fn per_responder_by(
    enc: &mut DescriptorEncoder,
    report: &Report,
    name: &str,
    help: &str,
    label: &'static str,
    value: impl Fn(&CountersReport) -> &std::collections::BTreeMap<String, u64>,
) -> fmt::Result {
    family(enc, name, help, None, MetricType::Counter, |m| {
        for r in &report.responders {
            for (key, v) in value(&r.counters) {
                let mut labels = responder_labels(r.path.as_str(), r.queue, r.core);
                labels.push((label, key.clone()));
                counter(m, &labels, *v)?;
            }
        }
        Ok(())
    })
}

fn xdp_help(counter: XdpCounter) -> &'static str {
    match counter {
        XdpCounter::Seen => "Frames the XDP program looked at, per CPU.",
        XdpCounter::Redirected => "NTP requests the XDP program redirected to an AF_XDP socket, per CPU.",
        XdpCounter::Passed => "Frames the XDP program passed on to the kernel stack, per CPU.",
        XdpCounter::RedirectFailed => "NTP requests whose redirect to an AF_XDP socket failed, per CPU.",
        XdpCounter::DropShort
        | XdpCounter::DropSrcPortZero
        | XdpCounter::DropUnsync
        | XdpCounter::DropDenied
        | XdpCounter::DropLimited
        | XdpCounter::DropQuota => "Frames the XDP program dropped, by reason, per CPU.",
        XdpCounter::LimiterTracked => {
            "Clients the XDP program's rate limiter tracks: slots of its table taken while empty (a \
             slot is never emptied, only taken over), per CPU; their sum is the table's occupancy."
        }
        XdpCounter::HwMapped => {
            "Requests the XDP program answered with T2 from the NIC's hardware stamp, mapped through \
             the interface's PHC line, per CPU."
        }
        XdpCounter::HwUnused => {
            "Requests the XDP program answered with its own (XDP-time) T2 though the NIC stamped them: \
             no usable PHC line (no PHC, too few samples, too noisy, stale), per CPU."
        }
        XdpCounter::SamplesLost => {
            "Samples for `strata clients` lost because their ring was full (the requests are not), \
             per CPU."
        }
        XdpCounter::LimiterEvicted => {
            "Clients the XDP program's rate limiter forgot to make room for another (a slot taken \
             over), per CPU; rising fast means the table is too small (rate_limit_clients)."
        }
        XdpCounter::MetaFailed => "Frames the XDP program could not attach receive metadata to, per CPU.",
        XdpCounter::HwStamped => "Frames that carried a NIC hardware receive timestamp, per CPU.",
        XdpCounter::Answered => {
            "NTP requests the XDP program answered itself with the time (XDP_TX), per CPU."
        }
        XdpCounter::AnsweredUnsync => {
            "NTP requests the XDP program answered itself as unsynchronized (LI=3), per CPU."
        }
        XdpCounter::StateTorn => {
            "Plain requests redirected to AF_XDP because the published state changed under the \
             program's two reads, per CPU."
        }
        XdpCounter::AnswerFailed => {
            "Plain requests the XDP program could not turn into a reply (frame not shortened), per CPU."
        }
        XdpCounter::Leaked => "Requests over their client's rate limit answered anyway (the leak), per CPU.",
        XdpCounter::KodRate => "Requests over their client's rate limit given a KoD RATE, per CPU.",
        XdpCounter::KodDeny => "Requests from denied sources given a KoD DENY, per CPU.",
        XdpCounter::KodRstr => "Requests from denied sources given a KoD RSTR, per CPU.",
    }
}

impl ReportCollector {
    fn responders(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let r = &self.0;
        if r.responders.is_empty() {
            return Ok(());
        }
        per_responder(
            enc,
            r,
            "requests",
            "NTP requests received (every datagram or frame, answered or not).",
            None,
            |c| c.requests,
        )?;
        family(
            enc,
            "replies",
            "Replies sent, by kind (time, unsynchronized, kiss).",
            None,
            MetricType::Counter,
            |m| {
                for x in &r.responders {
                    let c = &x.counters;
                    let kiss = c.kiss.values().sum();
                    for (kind, v) in [
                        ("time", c.replies_time),
                        ("unsynchronized", c.replies_unsynchronized),
                        ("kiss", kiss),
                    ] {
                        let mut labels = responder_labels(&x.path, x.queue, x.core);
                        labels.push(("kind", kind.to_string()));
                        counter(m, &labels, v)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "nts_authenticated_replies",
            "Time and unsynchronized replies authenticated with NTS (also counted in replies).",
            None,
            MetricType::Counter,
            |m| {
                for x in &r.responders {
                    counter(
                        m,
                        &responder_labels(&x.path, x.queue, x.core),
                        x.counters.replies_authenticated,
                    )?;
                }
                Ok(())
            },
        )?;
        per_responder_by(
            enc,
            r,
            "kod_sent",
            "Kiss-o'-Death replies sent, by code.",
            "code",
            |c| &c.kiss,
        )?;
        per_responder_by(
            enc,
            r,
            "requests_dropped",
            "Requests not answered, by reason.",
            "reason",
            |c| &c.drops,
        )?;
        per_responder(
            enc,
            r,
            "received",
            "Bytes of requests received (UDP payload on the socket path, whole frames on the XDP path).",
            Some(Unit::Bytes),
            |c| c.bytes_in,
        )?;
        per_responder(
            enc,
            r,
            "sent",
            "Bytes of replies sent (UDP payload on the socket path, whole frames on the XDP path).",
            Some(Unit::Bytes),
            |c| c.bytes_out,
        )?;
        per_responder_by(
            enc,
            r,
            "receive_timestamps",
            "Requests by the source of their receive timestamp.",
            "source",
            |c| &c.rx_timestamps,
        )?;
        per_responder_by(
            enc,
            r,
            "transmit_timestamps",
            "Sent replies by the source of their transmit timestamp, as the kernel reported it \
             (kernel_software, hardware: a NIC stamp, not usable until the PHC is mapped; none: no \
             stamp came, the time read before sending stands; af_xdp_kick: AF_XDP, the time the reply \
             was in the TX ring, right before the kick that sends it).",
            "source",
            |c| &c.tx_timestamps,
        )?;
        per_responder(
            enc,
            r,
            "interleaved_replies",
            "Time and unsynchronized replies sent in interleaved mode (also counted in replies).",
            None,
            |c| c.replies_interleaved,
        )?;
        per_responder(
            enc,
            r,
            "crypto_nak_replies",
            "Time and unsynchronized replies sent with a crypto-NAK: the request's MAC named a key \
             this server does not have (also counted in replies).",
            None,
            |c| c.replies_crypto_nak,
        )?;
        per_responder_by(
            enc,
            r,
            "nts_refused",
            "NTS requests refused, by reason: cookie_expired, cookie_invalid and bad_authenticator got \
             an NTS NAK (KoD NTSN), malformed was dropped.",
            "reason",
            |c| &c.nts_refusals,
        )?;
        per_responder_by(
            enc,
            r,
            "hardware_timestamps_unused",
            "NIC hardware receive timestamps that arrived but were not used as T2 (the software or \
             XDP-time stamp was), by reason: no_mapping (the interface has no PHC mapping), \
             too_few_samples, too_noisy (the mapping's cross-timestamps), stale (not refreshed).",
            "reason",
            |c| &c.hardware_stamps_unused_by_reason,
        )?;
        per_responder(
            enc,
            r,
            "receive_errors",
            "Receive calls that failed.",
            None,
            |c| c.receive_errors,
        )?;
        per_responder(
            enc,
            r,
            "receive_buffer_drops",
            "Datagrams the kernel dropped before the responder read them: its socket's receive \
             buffer was full (SO_RXQ_OVFL; the socket path).",
            None,
            |c| c.receive_buffer_drops,
        )?;
        per_responder(
            enc,
            r,
            "send_errors",
            "Replies that could not be sent.",
            None,
            |c| c.send_errors,
        )?;
        family(
            enc,
            "response_time",
            "Server response time, from receive timestamp (T2) to transmit timestamp (T3).",
            Some(Unit::Seconds),
            MetricType::Histogram,
            |m| {
                for x in &r.responders {
                    histogram(
                        m,
                        &responder_labels(&x.path, x.queue, x.core),
                        &x.counters.response_time,
                    )?;
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "receive_batch_size",
            "Requests taken per receive call (or per AF_XDP RX batch).",
            None,
            MetricType::Histogram,
            |m| {
                for x in &r.responders {
                    histogram(
                        m,
                        &responder_labels(&x.path, x.queue, x.core),
                        &x.counters.batch_size,
                    )?;
                }
                Ok(())
            },
        )
    }

    /// NTS-KE sessions and the cookie keys (NTS requests are counted with the responders').
    fn nts(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let Some(n) = &self.0.nts else {
            return Ok(());
        };
        let c = n.sessions;
        family(
            enc,
            "nts_ke_sessions",
            "NTS-KE sessions by outcome: ok (cookies sent), bad_request, tls_failed, timed_out, and \
             refused before TLS: busy (too many at once) and rate_limited (one address too often).",
            None,
            MetricType::Counter,
            |m| {
                for (outcome, v) in [
                    ("ok", c.ok),
                    ("bad_request", c.bad_request),
                    ("tls_failed", c.tls_failed),
                    ("timed_out", c.timed_out),
                    ("busy", c.busy),
                    ("rate_limited", c.rate_limited),
                ] {
                    counter(m, &vec![("outcome", outcome.to_string())], v)?;
                }
                Ok(())
            },
        )?;
        let none: Labels = Vec::new();
        family(
            enc,
            "nts_cookie_key_age",
            "Seconds since the current cookie key came into use (it rotates every nts_key_rotation).",
            Some(Unit::Seconds),
            MetricType::Gauge,
            |m| gauge(m, &none, n.key_age_s as f64),
        )?;
        family(
            enc,
            "nts_cookie_key_rotation",
            "Seconds between cookie key rotations.",
            Some(Unit::Seconds),
            MetricType::Gauge,
            |m| gauge(m, &none, n.rotation_s as f64),
        )
    }

    /// The rate limiter's table, the same families on both paths (summed over every table).
    fn limiter(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let Some(l) = self.0.limiter else {
            return Ok(());
        };
        let none: Labels = Vec::new();
        family(
            enc,
            "rate_limit_slots",
            "Clients the rate limiter's tables can track at once (rate_limit_clients).",
            None,
            MetricType::Gauge,
            |m| gauge(m, &none, l.slots as f64),
        )?;
        family(
            enc,
            "rate_limit_tracked_clients",
            "Clients the rate limiter tracks now: table slots in use (a slot is never emptied, only \
             taken over by another client).",
            None,
            MetricType::Gauge,
            |m| gauge(m, &none, l.tracked as f64),
        )?;
        family(
            enc,
            "rate_limit_evictions",
            "Clients the rate limiter forgot to make room for others; rising fast while the table \
             is full means rate_limit_clients is too small (a forgotten client is served as new).",
            None,
            MetricType::Counter,
            |m| counter(m, &none, l.evicted),
        )
    }

    /// The hardware calendar, with `rtc_sync` on.
    fn rtc(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        use super::rtc_status::RtcState;
        let r = &self.0.server.rtc;
        if r.state == RtcState::Off {
            return Ok(());
        }
        let none: Labels = Vec::new();
        family(
            enc,
            "rtc_present",
            "1 when rtc_sync is on and the RTC device opened, 0 when there is none.",
            None,
            MetricType::Gauge,
            |m| gauge(m, &none, (r.state != RtcState::Missing) as u8 as f64),
        )?;
        family(
            enc,
            "rtc_kernel_keeps",
            "1 when the kernel's 11-minute mode writes the RTC (strata then only compares it).",
            None,
            MetricType::Gauge,
            |m| gauge(m, &none, (r.state == RtcState::Kernel) as u8 as f64),
        )?;
        if let Some(offset) = r.offset {
            family(
                enc,
                "rtc_offset",
                "RTC minus served time at the last comparison (the RTC shows whole seconds; several \
                 readings bracket it).",
                Some(Unit::Seconds),
                MetricType::Gauge,
                |m| gauge(m, &none, offset),
            )?;
        }
        if let Some(at) = r.last_set {
            family(
                enc,
                "rtc_last_set_timestamp",
                "When strata last set the RTC (Unix time).",
                Some(Unit::Seconds),
                MetricType::Gauge,
                |m| gauge(m, &none, at),
            )?;
        }
        family(
            enc,
            "rtc_sets",
            "Times strata set the RTC since start.",
            None,
            MetricType::Counter,
            |m| counter(m, &none, r.sets),
        )
    }

    fn xdp(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let r = &self.0;
        if !r.xdp_programs.is_empty() {
            let drop_reason = |k: XdpCounter| match k {
                XdpCounter::DropShort => Some("short"),
                XdpCounter::DropSrcPortZero => Some("src_port_zero"),
                XdpCounter::DropUnsync => Some("unsynchronized"),
                XdpCounter::DropDenied => Some("denied"),
                XdpCounter::DropLimited => Some("rate_limited"),
                XdpCounter::DropQuota => Some("over_quota"),
                _ => None,
            };
            // The drop counters share one family (`reason` label); every other counter is its
            // own family.
            for k in XdpCounter::ALL.iter().filter(|&&k| drop_reason(k).is_none()) {
                let name = match k {
                    XdpCounter::MetaFailed => "xdp_metadata_failed".to_string(),
                    XdpCounter::HwStamped => "xdp_hardware_stamped".to_string(),
                    XdpCounter::HwMapped => "xdp_hardware_stamps_mapped".to_string(),
                    XdpCounter::HwUnused => "xdp_hardware_stamps_unused".to_string(),
                    other => format!("xdp_{}", other.label()),
                };
                family(enc, &name, xdp_help(*k), None, MetricType::Counter, |m| {
                    for p in &r.xdp_programs {
                        for (cpu, values) in p.cpus.iter().enumerate() {
                            let labels: Labels =
                                vec![("interface", p.interface.clone()), ("cpu", cpu.to_string())];
                            counter(m, &labels, values.get(k.label()).copied().unwrap_or(0))?;
                        }
                    }
                    Ok(())
                })?;
            }
            family(
                enc,
                "xdp_dropped",
                xdp_help(XdpCounter::DropShort),
                None,
                MetricType::Counter,
                |m| {
                    for p in &r.xdp_programs {
                        for (cpu, values) in p.cpus.iter().enumerate() {
                            for k in XdpCounter::ALL {
                                if let Some(reason) = drop_reason(k) {
                                    let labels: Labels = vec![
                                        ("interface", p.interface.clone()),
                                        ("cpu", cpu.to_string()),
                                        ("reason", reason.to_string()),
                                    ];
                                    counter(m, &labels, values.get(k.label()).copied().unwrap_or(0))?;
                                }
                            }
                        }
                    }
                    Ok(())
                },
            )?;
        }
        if let Some(first) = r.xsk_sockets.first() {
            let helps = [
                "Frames the AF_XDP socket dropped for other reasons (XDP_STATISTICS rx_dropped).",
                "Frames dropped for an invalid fill ring descriptor (XDP_STATISTICS rx_invalid_descs).",
                "TX descriptors the kernel rejected as invalid (XDP_STATISTICS tx_invalid_descs).",
                "Frames dropped because the RX ring was full (XDP_STATISTICS rx_ring_full).",
                "Times the kernel found the fill ring empty (XDP_STATISTICS rx_fill_ring_empty_descs).",
                "Times the kernel found the TX ring empty (XDP_STATISTICS tx_ring_empty_descs).",
            ];
            for (i, (field, _)) in first.statistics.fields().iter().enumerate() {
                family(
                    enc,
                    &format!("xsk_{field}"),
                    helps[i],
                    None,
                    MetricType::Counter,
                    |m| {
                        for s in &r.xsk_sockets {
                            let labels: Labels =
                                vec![("interface", s.interface.clone()), ("queue", s.queue.to_string())];
                            counter(m, &labels, s.statistics.fields()[i].1)?;
                        }
                        Ok(())
                    },
                )?;
            }
        }
        if !r.xsk_tx.is_empty() {
            family(
                enc,
                "xsk_tx_timestamps_supported",
                "1 when the interface's driver fills AF_XDP transmit timestamps (netlink xsk-features \
                 tx-timestamp), else 0: AF_XDP replies then carry software transmit stamps.",
                None,
                MetricType::Gauge,
                |m| {
                    for x in &r.xsk_tx {
                        let labels: Labels = vec![
                            ("interface", x.interface.clone()),
                            ("driver", x.driver.clone().unwrap_or_default()),
                        ];
                        gauge(m, &labels, f64::from(u8::from(x.supported)))?;
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    fn server(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let s = &self.0.server;
        let none: Labels = Vec::new();
        let mut g = |name: &str, help: &str, unit: Option<Unit>, v: f64| {
            family(enc, name, help, unit, MetricType::Gauge, |m| gauge(m, &none, v))
        };
        g(
            "server_synchronized",
            "1 when replies carry synchronized time, else 0.",
            None,
            s.synchronized as u8 as f64,
        )?;
        g(
            "server_stratum",
            "Stratum the server replies with.",
            None,
            s.stratum as f64,
        )?;
        g(
            "server_leap_indicator",
            "Leap indicator replies carry (0 none, 1 insert, 2 delete, 3 unsynchronized).",
            None,
            s.leap as f64,
        )?;
        g(
            "server_root_delay",
            "Root delay replies carry.",
            Some(Unit::Seconds),
            s.root_delay,
        )?;
        g(
            "server_root_dispersion",
            "Root dispersion as of the last update.",
            Some(Unit::Seconds),
            s.root_dispersion,
        )?;
        g(
            "server_precision",
            "Precision of the served clock.",
            Some(Unit::Seconds),
            2f64.powi(s.precision as i32),
        )?;
        g(
            "clock_offset",
            "Served time minus the kernel clock.",
            Some(Unit::Seconds),
            s.offset,
        )?;
        g(
            "clock_frequency_ppm",
            "Frequency correction of the served clock against the kernel clock, in parts per million.",
            None,
            s.frequency_ppm,
        )?;
        g(
            "clock_tai_offset",
            "TAI minus UTC, as the kernel has it.",
            Some(Unit::Seconds),
            s.tai_minus_utc as f64,
        )?;
        let leap = &s.leap_list;
        g(
            "leap_list_valid",
            "1 when the leap-seconds.list was read, its hash verified and it has not expired.",
            None,
            (leap.state == LeapListState::Valid) as u8 as f64,
        )?;
        if let Some(expires) = leap.expires {
            g(
                "leap_list_expiry_timestamp",
                "When the leap-seconds.list expires (Unix time).",
                Some(Unit::Seconds),
                expires,
            )?;
        }
        if let Some(offset) = leap.tai_minus_utc {
            g(
                "leap_list_tai_offset",
                "TAI minus UTC now, by the leap-seconds.list.",
                Some(Unit::Seconds),
                offset as f64,
            )?;
        }
        let l = &s.leap_second;
        if let Some(tai) = l.tai_minus_utc {
            g(
                "leap_tai_offset",
                "TAI minus UTC now, from the list, an expired list and the upstreams, or the kernel (see strata status).",
                Some(Unit::Seconds),
                tai as f64,
            )?;
        }
        g(
            "leap_scheduled",
            "The leap second scheduled: 1 inserted, -1 deleted, 0 none.",
            None,
            l.scheduled.as_ref().map_or(0.0, |s| s.delta as f64),
        )?;
        if let Some(sched) = &l.scheduled {
            g(
                "leap_scheduled_timestamp",
                "The midnight (Unix time) that ends the day with the scheduled leap second.",
                Some(Unit::Seconds),
                sched.midnight as f64,
            )?;
        }
        g(
            "leap_smearing",
            "1 while a leap second is being smeared.",
            None,
            l.smearing as u8 as f64,
        )?;
        g(
            "leap_smear_offset",
            "Served time minus UTC as the smear has it (0 when not smearing).",
            Some(Unit::Seconds),
            l.smear_offset,
        )?;
        let i = &s.integrity;
        g(
            "clock_correction_refused",
            "1 while the correction the sources ask for is refused by the step and panic limits.",
            None,
            i.refused.is_some() as u8 as f64,
        )?;
        if let Some(asked) = i.refused_correction {
            g(
                "clock_refused_correction",
                "The correction being refused (seconds; for a frequency refusal, s/s).",
                None,
                asked,
            )?;
        }
        g(
            "server_minsources",
            "Agreeing sources needed to synchronize.",
            None,
            i.minsources as f64,
        )?;
        g(
            "server_selectable_sources",
            "Sources that could take part in selection now.",
            None,
            i.selectable as f64,
        )?;
        if let Some(age) = s.since_update {
            g(
                "server_update_age",
                "Time since the served clock was last updated (its reference time).",
                Some(Unit::Seconds),
                age,
            )?;
        }
        for (name, help, v) in [
            ("clock_steps", "Steps of the served clock model.", i.steps),
            (
                "clock_corrections_refused",
                "Updates whose correction the step and panic limits refused.",
                i.refusals,
            ),
            (
                "server_sync_state_changes",
                "Changes of the synchronization state.",
                i.state_changes,
            ),
        ] {
            // Without labels: `name_total value`, not `name_total{} value`.
            family(enc, name, help, None, MetricType::Counter, |m| {
                m.encode_counter::<NoLabelSet, u64, u64>(&v, None)
            })?;
        }
        family(
            enc,
            "server_sync_state",
            "1 for the server's synchronization state, 0 for the others.",
            None,
            MetricType::Gauge,
            |m| {
                for state in SyncStatus::ALL {
                    let labels: Labels = vec![("state", state.label().to_string())];
                    gauge(m, &labels, (state == s.sync) as u8 as f64)?;
                }
                Ok(())
            },
        )
    }

    /// Each served interface's PHC mapping: labelled by interface (and device, method), one
    /// `phc_usable` sample per interface even without a PHC (device "none").
    fn phc(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let phc = &self.0.phc;
        if phc.is_empty() {
            return Ok(());
        }
        let labels = |p: &crate::sys::ptp::tracker::PhcStatus| -> Labels {
            vec![
                ("interface", p.interface.clone()),
                ("device", p.device.clone().unwrap_or_else(|| "none".into())),
                ("method", p.method.clone().unwrap_or_else(|| "none".into())),
            ]
        };
        family(
            enc,
            "phc_usable",
            "1 when the interface's hardware receive stamps become T2 through its PHC mapping, \
             0 when they fall back to the software stamp (no PHC, too few samples, too noisy, \
             a failed read).",
            None,
            MetricType::Gauge,
            |m| {
                phc.iter()
                    .try_for_each(|p| gauge(m, &labels(p), p.usable as u8 as f64))
            },
        )?;
        let with_device: Vec<_> = phc.iter().filter(|p| p.device.is_some()).collect();
        if with_device.is_empty() {
            return Ok(());
        }
        type Pick = fn(&crate::sys::ptp::tracker::PhcStatus) -> f64;
        let gauges: [(&str, &str, Option<Unit>, Pick); 4] = [
            (
                "phc_offset",
                "The last cross-timestamp's distance from the PHC mapping's line.",
                Some(Unit::Seconds),
                |p| p.offset_ns / 1e9,
            ),
            (
                "phc_frequency_ppm",
                "The PHC's frequency against the system clock (positive: the system clock runs faster).",
                None,
                |p| p.frequency_ppm,
            ),
            (
                "phc_jitter",
                "RMS residual of the cross-timestamps around the PHC mapping's line.",
                Some(Unit::Seconds),
                |p| p.jitter_ns / 1e9,
            ),
            (
                "phc_samples",
                "Cross-timestamps in the PHC mapping's window.",
                None,
                |p| p.samples as f64,
            ),
        ];
        for (name, help, unit, pick) in gauges {
            family(enc, name, help, unit, MetricType::Gauge, |m| {
                with_device.iter().try_for_each(|p| gauge(m, &labels(p), pick(p)))
            })?;
        }
        type Count = fn(&crate::sys::ptp::tracker::PhcStatus) -> u64;
        let counters: [(&str, &str, Count); 3] = [
            (
                "phc_rejected",
                "Cross-timestamps rejected as too far from the PHC mapping's line.",
                |p| p.rejected,
            ),
            (
                "phc_steps",
                "Steps of the PHC or the system clock: the mapping started over.",
                |p| p.steps,
            ),
            ("phc_read_errors", "Cross-timestamp ioctls that failed.", |p| {
                p.read_errors
            }),
        ];
        for (name, help, pick) in counters {
            family(enc, name, help, None, MetricType::Counter, |m| {
                with_device
                    .iter()
                    .try_for_each(|p| counter(m, &labels(p), pick(p)))
            })?;
        }
        Ok(())
    }

    fn sources(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let sources = &self.0.sources;
        if sources.is_empty() {
            return Ok(());
        }
        let label = |name: &str| -> Labels { vec![("source", name.to_string())] };
        let optional: [OptionalGauge; 4] = [
            (
                "source_offset",
                "Upstream source time minus served time.",
                Some(Unit::Seconds),
                |s| s.offset,
            ),
            (
                "source_delay",
                "Round-trip delay to the upstream source.",
                Some(Unit::Seconds),
                |s| s.delay,
            ),
            (
                "source_jitter",
                "Jitter of the upstream source's offsets.",
                Some(Unit::Seconds),
                |s| s.jitter,
            ),
            ("source_stratum", "Stratum of the upstream source.", None, |s| {
                s.stratum.map(f64::from)
            }),
        ];
        for (name, help, unit, pick) in optional {
            if sources.iter().all(|s| pick(s).is_none()) {
                continue;
            }
            family(enc, name, help, unit, MetricType::Gauge, |m| {
                for s in sources {
                    if let Some(v) = pick(s) {
                        gauge(m, &label(&s.name), v)?;
                    }
                }
                Ok(())
            })?;
        }
        family(
            enc,
            "source_reach",
            "Reachability register of the upstream source (8 bits, newest poll in bit 0).",
            None,
            MetricType::Gauge,
            |m| {
                for s in sources {
                    gauge(m, &label(&s.name), s.reach as f64)?;
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "source_poll_interval",
            "Poll interval of the upstream source.",
            Some(Unit::Seconds),
            MetricType::Gauge,
            |m| {
                for s in sources {
                    gauge(m, &label(&s.name), 2f64.powi(s.poll as i32))?;
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "source_state",
            "1 for what selection made of the upstream source, 0 for the other states.",
            None,
            MetricType::Gauge,
            |m| {
                for s in sources {
                    for state in SourceState::ALL {
                        let mut labels = label(&s.name);
                        labels.push(("state", state.label().to_string()));
                        gauge(m, &labels, (state == s.state) as u8 as f64)?;
                    }
                }
                Ok(())
            },
        )
    }

    fn process(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let r = &self.0;
        family(
            enc,
            "build_info",
            "Always 1; the labels say which build is running.",
            None,
            MetricType::Gauge,
            |m| {
                let labels: Labels = vec![
                    ("version", r.build.version.clone()),
                    ("commit", r.build.commit.clone()),
                ];
                gauge(m, &labels, 1.0)
            },
        )?;
        let none: Labels = Vec::new();
        family(
            enc,
            "process_start_time",
            "When the server process started, in seconds since the Unix epoch.",
            Some(Unit::Seconds),
            MetricType::Gauge,
            |m| gauge(m, &none, r.started),
        )?;
        family(
            enc,
            "exporter_read_errors",
            "Kernel counters (XDP program, AF_XDP sockets) that could not be read for this scrape.",
            None,
            MetricType::Gauge,
            |m| gauge(m, &none, r.errors.len() as f64),
        )
    }
}

impl Collector for ReportCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.process(&mut enc)?;
        self.server(&mut enc)?;
        self.rtc(&mut enc)?;
        self.sources(&mut enc)?;
        self.responders(&mut enc)?;
        self.limiter(&mut enc)?;
        self.nts(&mut enc)?;
        self.phc(&mut enc)?;
        self.xdp(&mut enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::observe::report::{test_observed, XskTxReport};
    use crate::daemon::observe::rtc_status::{RtcState, RtcStatus};

    #[test]
    fn the_rtc_metrics_appear_with_rtc_sync_on() {
        let (observed, _writer) = test_observed();
        let report = observed.report();
        assert!(
            !encode_openmetrics(report.clone()).contains("strata_rtc_"),
            "off: none"
        );
        let mut kept = report.clone();
        kept.server.rtc = RtcStatus {
            state: RtcState::Strata,
            device: Some("/dev/rtc0".into()),
            offset: Some(-0.012),
            offset_uncertainty: Some(0.025),
            checked: Some(1_796_266_740.0),
            last_set: Some(1_796_266_700.0),
            sets: 2,
            ..RtcStatus::default()
        };
        let om = encode_openmetrics(kept);
        for line in [
            "strata_rtc_present 1.0",
            "strata_rtc_kernel_keeps 0.0",
            "strata_rtc_offset_seconds -0.012",
            "strata_rtc_last_set_timestamp_seconds 1796266700.0",
            "strata_rtc_sets_total{} 2",
        ] {
            assert!(om.contains(line), "{line} not in {om}");
        }
        let mut missing = report;
        missing.server.rtc.state = RtcState::Missing;
        let om = encode_openmetrics(missing);
        assert!(om.contains("strata_rtc_present 0.0"), "{om}");
        assert!(!om.contains("strata_rtc_offset"), "{om}");
    }

    #[test]
    fn phc_mappings_are_exported_per_interface() {
        let (observed, _w) = test_observed();
        let mut report = observed.report();
        assert!(!encode_openmetrics(report.clone()).contains("strata_phc_"));
        report.phc = crate::daemon::observe::status_view::tests::phc_statuses();
        let text = encode_openmetrics(report);
        for line in [
            r#"strata_phc_usable{interface="veth0",device="none",method="none"} 0.0"#,
            r#"strata_phc_usable{interface="eth0",device="/dev/ptp0",method="extended"} 1.0"#,
            r#"strata_phc_jitter_seconds{interface="eth1",device="/dev/ptp1",method="extended"} 0.000004"#,
            r#"strata_phc_frequency_ppm{interface="eth0",device="/dev/ptp0",method="extended"} -3.25"#,
            r#"strata_phc_steps_total{interface="eth0",device="/dev/ptp0",method="extended"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        // An interface without a PHC has no quality figures.
        assert!(
            !text.contains(r#"strata_phc_samples{interface="veth0""#),
            "{text}"
        );
    }

    #[test]
    fn af_xdp_transmit_stamp_support_is_a_gauge_per_interface() {
        let (observed, _) = test_observed();
        let mut r = observed.report();
        assert!(!encode_openmetrics(r.clone()).contains("xsk_tx_timestamps_supported"));
        let x = |interface: &str, supported| XskTxReport {
            interface: interface.into(),
            driver: Some("veth".into()),
            supported,
            xsk_features: Some("none".into()),
            xdp_features: None,
            summary: String::new(),
        };
        r.xsk_tx = vec![x("veth0", false), x("veth1", true)];
        let om = encode_openmetrics(r);
        assert!(
            om.contains("strata_xsk_tx_timestamps_supported{interface=\"veth0\",driver=\"veth\"} 0"),
            "{om}"
        );
        assert!(
            om.contains("strata_xsk_tx_timestamps_supported{interface=\"veth1\",driver=\"veth\"} 1"),
            "{om}"
        );
    }
}
