//! One consistent-enough picture of the whole server, taken on demand: what `/metrics` exports
//! and what `strata status` shows (as JSON over the control socket, then as text).
//!
//! [`Observed`] holds read-only handles on everything (the responders' counter blocks, the
//! published server state, the control thread's status board, the fast path's kernel
//! counters); [`Observed::report`] reads them all into a plain, serializable [`Report`]. Taking
//! one costs a few microseconds and never touches the hot path: counters are read with relaxed
//! loads, the state through the seqlock, the board under its own lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::board::{IntegrityStatus, LeapListStatus, StatusBoard, SyncStatus, UpstreamStatus};
use super::clients::ClientWatch;
use crate::proto::admission::talkers::Talker;
use crate::proto::admission::Admitter;
use crate::proto::frame::FrameDrop;
use crate::proto::metrics::counters::CounterSnapshot;
use crate::proto::metrics::histogram::{batch_bound, response_bound_seconds, BATCH_FINITE, RESPONSE_FINITE};
use crate::proto::metrics::ResponderCounters;
use crate::proto::respond::{DropReason, KissCode};
use crate::proto::state::StateReader;
use crate::proto::wire::NtpTimestamp;
use crate::sys::clock::read::read_clock_ns;
use crate::sys::fastpath::abi::XdpCounter;
use crate::sys::fastpath::{StatsReaders, XskStatistics};

use crate::proto::clock::phc::HardwareUnused;
use crate::proto::metrics::counters::RxTimestampSource;

/// The drop reason label of a datagram larger than the socket path's receive buffer (kept
/// apart from the frame-level `truncated`, which means a frame shorter than its headers say).
pub const OVERSIZED: &str = "oversized";

/// What the binary was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub version: String,
    /// The git commit (short hash) the build came from, "unknown" outside a git checkout.
    pub commit: String,
}

impl BuildInfo {
    pub fn current() -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: option_env!("STRATA_GIT_COMMIT").unwrap_or("unknown").to_string(),
        }
    }
}

/// Everything the observers read.
pub struct Observed {
    pub responders: Vec<ResponderCounters>,
    /// The fast path's program counters and socket statistics (empty on the socket path).
    pub xdp: StatsReaders,
    pub state: StateReader,
    pub board: StatusBoard,
    /// When the process started (the exporter's `process_start_time_seconds`).
    pub started: SystemTime,
    /// The socket path's own admission (None on the XDP path, whose program admits).
    pub admitter: Option<Arc<Admitter>>,
    /// The slots of each rate limiter table (one per XDP program, one on the socket path);
    /// None: rate limiting off.
    pub limiter_slots: Option<u64>,
    /// The most active clients (None: sampling off).
    pub clients: Option<Arc<ClientWatch>>,
    /// The NTS service (None: NTS off).
    pub nts: Option<crate::daemon::nts::NtsView>,
    /// Each served interface's PHC mapping, or why it has none.
    pub phc: crate::sys::ptp::tracker::PhcBoard,
}

/// The most active clients, for `strata clients`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientsReport {
    /// 1 in 2^sample_shift requests are sampled; the counts are estimates from the samples.
    pub sample_shift: u8,
    /// Samples lost on the way to the summary.
    pub samples_lost: u64,
    /// Most active first.
    pub clients: Vec<Talker>,
}

/// Clients a report lists at most.
pub const REPORT_CLIENTS: usize = 256;

/// The rate limiter's table: its size and how full it is, summed over every table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LimiterReport {
    /// Slots in every table.
    pub slots: u64,
    /// Clients tracked now (slots ever taken: a slot is never emptied, only taken over).
    pub tracked: u64,
    /// Clients forgotten to make room for others, since start.
    pub evicted: u64,
}

/// The served clock and the state replies carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerReport {
    pub sync: SyncStatus,
    /// Whether replies carry synchronized time.
    pub synchronized: bool,
    pub stratum: u8,
    /// The leap indicator replies carry (0-3).
    pub leap: u8,
    /// The reference ID as text: four letters for stratum 1 and local, else an IPv4 address
    /// (or the first four bytes of an IPv6 source's hash).
    pub refid: String,
    /// Seconds.
    pub root_delay: f64,
    pub root_dispersion: f64,
    /// Precision, log2 seconds.
    pub precision: i8,
    /// Served time minus the kernel clock, seconds.
    pub offset: f64,
    /// Frequency correction of the served clock against the kernel clock, ppm.
    pub frequency_ppm: f64,
    pub tai_minus_utc: i32,
    /// Reference time (last update), Unix seconds; None if never updated.
    pub reference_time: Option<f64>,
    /// Seconds since the reference time.
    pub since_update: Option<f64>,
    /// Agreement, step and panic limits, and what they did.
    #[serde(default)]
    pub integrity: IntegrityStatus,
    /// The leap-seconds.list and what it says now.
    #[serde(default)]
    pub leap_list: LeapListStatus,
    /// TAI − UTC, its source, and the leap second scheduled.
    #[serde(default)]
    pub leap_second: super::leap_status::LeapSecondStatus,
    /// The hardware calendar (`rtc_sync`).
    #[serde(default)]
    pub rtc: super::rtc_status::RtcStatus,
}

/// A histogram as recorded: `counts[i]` values fell at or below `bounds[i]` and above the
/// previous bound; the last count (one more than the bounds) is above every bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// One responder's counters, with every labelled array as a name → value map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountersReport {
    pub requests: u64,
    pub bytes_in: u64,
    /// Every reply sent, of every kind.
    pub replies: u64,
    pub replies_time: u64,
    pub replies_unsynchronized: u64,
    /// Of those, authenticated with NTS.
    #[serde(default)]
    pub replies_authenticated: u64,
    /// Kiss-o'-Death replies by code (RATE, DENY, RSTR).
    pub kiss: BTreeMap<String, u64>,
    pub bytes_out: u64,
    /// Every drop reason of every stage, with zeros.
    pub drops: BTreeMap<String, u64>,
    pub dropped: u64,
    /// Receive timestamps by source.
    pub rx_timestamps: BTreeMap<String, u64>,
    pub hardware_stamps_unused: u64,
    /// The same by reason (no_mapping, too_few_samples, too_noisy, stale).
    #[serde(default)]
    pub hardware_stamps_unused_by_reason: BTreeMap<String, u64>,
    /// Sent replies by the source of their transmit timestamp (the socket path).
    #[serde(default)]
    pub tx_timestamps: BTreeMap<String, u64>,
    /// Of the time and unsynchronized replies, those sent in interleaved mode.
    #[serde(default)]
    pub replies_interleaved: u64,
    /// Of the time and unsynchronized replies, crypto-NAKs.
    #[serde(default)]
    pub replies_crypto_nak: u64,
    /// NTS requests refused, by reason (NAKed, or dropped as malformed).
    #[serde(default)]
    pub nts_refusals: BTreeMap<String, u64>,
    pub receive_errors: u64,
    /// Datagrams the kernel dropped before a responder read them (socket receive buffer full).
    #[serde(default)]
    pub receive_buffer_drops: u64,
    pub send_errors: u64,
    pub batches: u64,
    pub batched_requests: u64,
    pub batch_size: Histogram,
    /// T3 − T2 in seconds.
    pub response_time: Histogram,
}

/// One responder thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponderReport {
    pub path: String,
    pub queue: usize,
    pub core: usize,
    pub counters: CountersReport,
}

/// The XDP program on one interface, per CPU: `cpus[cpu][counter label]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XdpProgramReport {
    pub interface: String,
    pub cpus: Vec<BTreeMap<String, u64>>,
}

/// One AF_XDP socket's kernel statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XskReport {
    pub interface: String,
    /// The responder index, like [`ResponderReport::queue`].
    pub queue: usize,
    /// The NIC receive queue the socket is bound to.
    pub nic_queue: u32,
    pub statistics: XskStatistics,
}

/// Whether an interface's driver stamps AF_XDP transmissions (netlink `xsk-features`, read at
/// start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XskTxReport {
    pub interface: String,
    pub driver: Option<String>,
    /// True only when the kernel reports `tx-timestamp` for the device.
    pub supported: bool,
    /// xsk-features as the kernel named them (None: not reported, or the query failed).
    pub xsk_features: Option<String>,
    pub xdp_features: Option<String>,
    /// What it means for the replies, in a sentence.
    pub summary: String,
}

impl XskTxReport {
    pub fn from_support(s: &crate::sys::fastpath::xsk_features::XskTxSupport) -> XskTxReport {
        let features = s.features.as_ref().ok();
        XskTxReport {
            interface: s.interface.clone(),
            driver: s.driver.clone(),
            supported: s.supported(),
            xsk_features: features.and_then(|f| f.xsk_feature_names()),
            xdp_features: features.and_then(|f| f.xdp_feature_names()),
            summary: s.describe(),
        }
    }
}

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub build: BuildInfo,
    /// Unix seconds.
    pub started: f64,
    pub now: f64,
    pub server: ServerReport,
    pub sources: Vec<UpstreamStatus>,
    pub responders: Vec<ResponderReport>,
    /// The sum over every responder.
    pub total: CountersReport,
    pub xdp_programs: Vec<XdpProgramReport>,
    pub xsk_sockets: Vec<XskReport>,
    /// AF_XDP transmit timestamp support per served interface (empty on the socket path).
    #[serde(default)]
    pub xsk_tx: Vec<XskTxReport>,
    /// The rate limiter's occupancy; None when rate limiting is off.
    #[serde(default)]
    pub limiter: Option<LimiterReport>,
    /// The most active clients; None when sampling is off.
    #[serde(default)]
    pub clients: Option<ClientsReport>,
    /// NTS-KE and the cookie keys; None when NTS is off.
    #[serde(default)]
    pub nts: Option<crate::daemon::nts::NtsReport>,
    /// Each served interface's PHC mapping (XDP path), or why it has none.
    #[serde(default)]
    pub phc: Vec<crate::sys::ptp::tracker::PhcStatus>,
    /// Kernel counters that could not be read this time, with why.
    pub errors: Vec<String>,
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The reference ID as people read it: four letters for a reference clock (`textual`: stratum
/// 1, unsynchronized, or a local reference at any stratum), else an IPv4 address.
pub fn refid_text(refid: [u8; 4], textual: bool) -> String {
    let ascii = refid.iter().all(|&b| b == 0 || b.is_ascii_graphic());
    if textual && ascii {
        refid
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as char)
            .collect()
    } else {
        std::net::Ipv4Addr::from(refid).to_string()
    }
}

fn histogram(bounds: Vec<f64>, counts: &[u64], sum: f64) -> Histogram {
    Histogram {
        bounds,
        count: counts.iter().sum(),
        counts: counts.to_vec(),
        sum,
    }
}

impl CountersReport {
    pub fn from_snapshot(s: &CounterSnapshot) -> CountersReport {
        let mut drops = BTreeMap::new();
        for reason in FrameDrop::FRAME_LEVEL {
            drops.insert(reason.label().to_string(), s.frame_drop_count(reason));
        }
        for reason in DropReason::ALL {
            drops.insert(reason.label().to_string(), s.drop_count(reason));
        }
        drops.insert(OVERSIZED.to_string(), s.truncated);
        let kiss = KissCode::ALL
            .iter()
            .map(|&code| {
                (
                    String::from_utf8_lossy(&code.code()).into_owned(),
                    s.kiss_count(code),
                )
            })
            .collect();
        let rx_timestamps = RxTimestampSource::ALL
            .iter()
            .map(|&src| (src.label().to_string(), s.rx_timestamp_count(src)))
            .collect();
        CountersReport {
            requests: s.requests,
            bytes_in: s.bytes_in,
            replies: s.replies(),
            replies_time: s.replies_time,
            replies_unsynchronized: s.replies_unsynchronized,
            replies_authenticated: s.replies_authenticated,
            kiss,
            bytes_out: s.bytes_out,
            drops,
            dropped: s.dropped(),
            rx_timestamps,
            hardware_stamps_unused: s.hardware_stamps_unused_total(),
            hardware_stamps_unused_by_reason: HardwareUnused::ALL
                .iter()
                .zip(&s.hardware_stamps_unused)
                .map(|(why, n)| (why.label().to_string(), *n))
                .collect(),
            tx_timestamps: crate::proto::metrics::TxTimestampSource::ALL
                .iter()
                .map(|&src| (src.label().to_string(), s.tx_timestamp_count(src)))
                .collect(),
            replies_interleaved: s.replies_interleaved,
            replies_crypto_nak: s.replies_crypto_nak,
            nts_refusals: crate::proto::nts::NtsRefusal::ALL
                .iter()
                .zip(s.nts_refusals)
                .map(|(why, n)| (why.label().to_string(), n))
                .collect(),
            receive_errors: s.receive_errors,
            receive_buffer_drops: s.receive_buffer_drops,
            send_errors: s.send_errors,
            batches: s.batches,
            batched_requests: s.batched_requests,
            batch_size: histogram(
                (0..BATCH_FINITE).map(batch_bound).collect(),
                &s.batch_sizes,
                s.batched_requests as f64,
            ),
            response_time: histogram(
                (0..RESPONSE_FINITE).map(response_bound_seconds).collect(),
                &s.response_times,
                s.response_time_sum_ns as f64 * 1e-9,
            ),
        }
    }
}

impl Observed {
    /// Reads everything now.
    pub fn report(&self) -> Report {
        let mut errors = Vec::new();
        let control = self.board.read();
        let published = self.state.read();
        let realtime = read_clock_ns(libc::CLOCK_REALTIME);
        // Served UTC, leap second included (the model alone runs on a uniform scale).
        let served_now = published.clock.ntp_from_realtime(realtime);
        let served_ns = served_now.to_unix_nanos(realtime as i128) as i64;
        let s = &published.server;
        let reference_time = (s.reference_time != NtpTimestamp::ZERO)
            .then(|| s.reference_time.to_unix_nanos(served_ns as i128) as f64 * 1e-9);
        let since_update = (s.reference_time != NtpTimestamp::ZERO)
            .then(|| served_now.diff_nanos(s.reference_time) as f64 * 1e-9);
        let server = ServerReport {
            sync: control.sync,
            synchronized: s.synchronized,
            stratum: s.stratum,
            leap: s.leap as u8,
            refid: refid_text(
                s.reference_id,
                s.stratum <= 1 || s.stratum >= 16 || control.sync == SyncStatus::Local,
            ),
            root_delay: s.root_delay.to_seconds_f64(),
            root_dispersion: s.root_dispersion.to_seconds_f64(),
            precision: s.precision,
            offset: (served_ns - realtime) as f64 * 1e-9,
            frequency_ppm: published.clock.frequency_ppm(),
            tai_minus_utc: published.clock.tai_minus_utc,
            reference_time,
            since_update,
            integrity: control.integrity.clone(),
            leap_list: control.leap_list.clone(),
            leap_second: control.leap.clone(),
            rtc: control.rtc.clone(),
        };

        let snapshots: Vec<CounterSnapshot> = self.responders.iter().map(|r| r.snapshot()).collect();
        let responders = self
            .responders
            .iter()
            .zip(&snapshots)
            .map(|(r, snap)| ResponderReport {
                path: r.path.to_string(),
                queue: r.index,
                core: r.core,
                counters: CountersReport::from_snapshot(snap),
            })
            .collect();
        let total = CountersReport::from_snapshot(&snapshots.iter().copied().sum());

        let mut xdp_programs = Vec::new();
        for program in &self.xdp.programs {
            match program.per_cpu() {
                Ok(cpus) => xdp_programs.push(XdpProgramReport {
                    interface: program.interface.clone(),
                    cpus: cpus
                        .iter()
                        .map(|c| {
                            XdpCounter::ALL
                                .iter()
                                .map(|&k| (k.label().to_string(), c.get(k)))
                                .collect()
                        })
                        .collect(),
                }),
                Err(e) => errors.push(format!("xdp program on {}: {e}", program.interface)),
            }
        }
        let mut xsk_sockets = Vec::new();
        for socket in &self.xdp.sockets {
            match socket.read() {
                Ok(statistics) => xsk_sockets.push(XskReport {
                    interface: socket.interface.clone(),
                    queue: socket.index,
                    nic_queue: socket.queue,
                    statistics,
                }),
                Err(e) => errors.push(format!(
                    "AF_XDP socket of {} queue {}: {e}",
                    socket.interface, socket.queue
                )),
            }
        }

        let limiter =
            self.limiter_slots.map(
                |slots| match self.admitter.as_ref().and_then(|a| a.limiter.as_ref()) {
                    Some(limiter) => {
                        let (tracked, evicted) = limiter.occupancy();
                        LimiterReport {
                            slots: limiter.capacity(),
                            tracked,
                            evicted,
                        }
                    }
                    None => {
                        let sum = |k: XdpCounter| -> u64 {
                            xdp_programs
                                .iter()
                                .flat_map(|p| &p.cpus)
                                .map(|c| c.get(k.label()).copied().unwrap_or(0))
                                .sum()
                        };
                        LimiterReport {
                            slots: slots * xdp_programs.len() as u64,
                            tracked: sum(XdpCounter::LimiterTracked),
                            evicted: sum(XdpCounter::LimiterEvicted),
                        }
                    }
                },
            );
        Report {
            build: BuildInfo::current(),
            started: unix_seconds(self.started),
            now: realtime as f64 * 1e-9,
            server,
            sources: control.sources,
            responders,
            total,
            xdp_programs,
            xsk_sockets,
            xsk_tx: self.xdp.xsk_tx.iter().map(XskTxReport::from_support).collect(),
            limiter,
            clients: self.clients.as_ref().map(|w| ClientsReport {
                sample_shift: w.shift(),
                samples_lost: w.lost(),
                clients: w.top(REPORT_CLIENTS),
            }),
            nts: self.nts.as_ref().map(|n| n.report()),
            phc: self.phc.read(),
            errors,
        }
    }
}

/// A small [`Observed`] for unit tests: one socket responder, an unsynchronized state.
#[cfg(test)]
pub(crate) fn test_observed() -> (Observed, crate::proto::metrics::CounterWriter) {
    use crate::proto::clock::ClockParams;
    use crate::proto::state::{publish, Published, ServerState, UnsyncPolicy};
    let (writer, reader) = crate::proto::metrics::counters();
    let (_state_writer, state) = publish(Published {
        server: ServerState::unsynchronized(-20, UnsyncPolicy::Answer),
        clock: ClockParams::identity(37),
    });
    let observed = Observed {
        responders: vec![ResponderCounters {
            path: "socket",
            index: 0,
            core: 1,
            counters: reader,
        }],
        xdp: StatsReaders::default(),
        state,
        board: StatusBoard::default(),
        started: SystemTime::now(),
        admitter: None,
        limiter_slots: None,
        clients: None,
        phc: Default::default(),
        nts: None,
    };
    (observed, writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::metrics::counters;
    use crate::proto::respond::ReplyKind;

    #[test]
    fn refids_read_as_text_or_addresses() {
        assert_eq!(refid_text(*b"LOCL", true), "LOCL");
        assert_eq!(refid_text(*b"GPS\0", true), "GPS");
        assert_eq!(refid_text([0; 4], true), "");
        assert_eq!(refid_text([192, 0, 2, 1], false), "192.0.2.1");
        assert_eq!(refid_text(*b"LOCL", false), "76.79.67.76");
        assert_eq!(refid_text([0xff, 0, 2, 1], true), "255.0.2.1");
    }

    #[test]
    fn counters_report_names_every_reason_once() {
        let (mut w, r) = counters::counters();
        w.received(48);
        w.replied(ReplyKind::Kiss(KissCode::Rate), 48);
        w.dropped(DropReason::Control);
        w.truncated();
        w.batch(3);
        w.response_time(1_000);
        let c = CountersReport::from_snapshot(&r.snapshot());
        assert_eq!(
            c.drops.len(),
            FrameDrop::FRAME_LEVEL.len() + DropReason::ALL.len() + 1
        );
        assert_eq!(c.drops["control_mode"], 1);
        assert_eq!(c.drops[OVERSIZED], 1);
        assert_eq!(c.drops["truncated"], 0);
        assert_eq!(c.dropped, 2);
        assert_eq!(c.kiss["RATE"], 1);
        assert_eq!(c.replies, 1);
        assert_eq!(c.batch_size.count, 1);
        assert_eq!(c.batch_size.sum, 3.0);
        assert_eq!(c.batch_size.counts.len(), c.batch_size.bounds.len() + 1);
        assert_eq!(c.response_time.count, 1);
        assert!((c.response_time.sum - 1e-6).abs() < 1e-12);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CountersReport>(&json).unwrap(), c);
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let (observed, mut w) = test_observed();
        w.received(48);
        let r = observed.report();
        assert_eq!(r.server.stratum, 16);
        assert!(!r.server.synchronized);
        assert_eq!(r.server.tai_minus_utc, 37);
        assert_eq!(r.server.since_update, None);
        assert_eq!(r.total.requests, 1);
        assert_eq!(r.responders[0].core, 1);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }
}
