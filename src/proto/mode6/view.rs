//! What mode 6 tells about the server and its sources: the control thread fills a [`View`]
//! from its own state when a query comes; this module turns it into ntpd's variables, with
//! ntpd's names and units (milliseconds for offsets, delays and dispersions, ppm for
//! frequencies), which `ntpq` and `check_ntp_peer` read.

use std::net::IpAddr;

use crate::proto::wire::NtpTimestamp;

/// A source's place in the last selection (the peer status word's select field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Rejected = 0,
    Falseticker = 1,
    Outlier = 3,
    Candidate = 4,
    SystemPeer = 6,
}

/// The server itself (association 0).
#[derive(Debug, Clone, PartialEq)]
pub struct SystemView {
    /// 0-3, as in the replies strata serves (3: unsynchronized).
    pub leap: u8,
    pub stratum: u8,
    pub precision: i8,
    /// Seconds.
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub reference_id: [u8; 4],
    pub reference_time: NtpTimestamp,
    /// The served time now.
    pub clock: NtpTimestamp,
    /// Association ID of the system peer, 0 for none.
    pub system_peer: u16,
    /// Whether the time comes from the local clock (`--local-stratum`), not a source.
    pub local: bool,
    /// log2 s: the poll of the system peer.
    pub poll: i8,
    /// Seconds: the served time minus the kernel clock's, as the clock model corrects it.
    pub offset: f64,
    /// ppm: the clock model's frequency beyond the kernel clock's.
    pub frequency_ppm: f64,
    /// Seconds: the system peer's jitter.
    pub jitter: f64,
    pub version: &'static str,
}

/// One source.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub association: u16,
    pub address: IpAddr,
    pub port: u16,
    /// 3: we are its client; 1: symmetric active.
    pub host_mode: u8,
    pub reach: u8,
    pub selection: Selection,
    /// Our poll and the source's (log2 s).
    pub poll: i8,
    pub peer_poll: i8,
    /// What its last reply said of itself, if it answered.
    pub leap: u8,
    pub stratum: u8,
    pub precision: i8,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub reference_id: [u8; 4],
    /// When its last usable sample was taken (NTP time; zero: never).
    pub received: NtpTimestamp,
    /// Seconds; None until measured.
    pub offset: Option<f64>,
    pub delay: Option<f64>,
    pub dispersion: Option<f64>,
    pub jitter: Option<f64>,
}

/// The server and its sources, as of one query.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub system: SystemView,
    pub peers: Vec<PeerView>,
}

impl SystemView {
    /// The system status word (RFC 9327 section 2.1): leap, the kind of time source, no events.
    pub fn status(&self) -> u16 {
        // Clock source codes: 6 NTP, 5 local clock, 0 unspecified (none yet).
        let source: u16 = if self.system_peer != 0 {
            6
        } else if self.local {
            5
        } else {
            0
        };
        ((self.leap as u16 & 3) << 14) | (source << 8)
    }

    pub fn variables(&self) -> Vec<(&'static str, String)> {
        vec![
            ("version", format!("\"{}\"", self.version)),
            ("processor", format!("\"{}\"", std::env::consts::ARCH)),
            ("system", "\"Linux\"".to_string()),
            ("leap", format!("{}", self.leap)),
            ("stratum", self.stratum.to_string()),
            ("precision", self.precision.to_string()),
            ("rootdelay", ms(self.root_delay)),
            ("rootdisp", ms(self.root_dispersion)),
            // The local clock's reference ID is a name (LOCL) at any stratum.
            (
                "refid",
                refid(if self.local { 1 } else { self.stratum }, self.reference_id),
            ),
            ("reftime", timestamp(self.reference_time)),
            ("clock", timestamp(self.clock)),
            ("peer", self.system_peer.to_string()),
            ("tc", self.poll.to_string()),
            ("mintc", "0".to_string()),
            ("offset", ms(self.offset)),
            ("frequency", format!("{:.6}", self.frequency_ppm)),
            ("sys_jitter", ms(self.jitter)),
            ("clk_jitter", ms(self.jitter)),
            ("clk_wander", "0.000".to_string()),
        ]
    }
}

impl PeerView {
    /// The peer status word: configured, reachable, the selection; no events.
    pub fn status(&self) -> u16 {
        let reach = if self.reach != 0 { 0x10 } else { 0 };
        ((0x80 | reach | self.selection as u16) << 8) & 0xff00
    }

    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let unknown = || "0.000".to_string();
        vec![
            ("srcadr", self.address.to_string()),
            ("srcport", self.port.to_string()),
            ("leap", format!("{}", self.leap)),
            ("stratum", self.stratum.to_string()),
            ("precision", self.precision.to_string()),
            ("rootdelay", ms(self.root_delay)),
            ("rootdisp", ms(self.root_dispersion)),
            ("refid", refid(self.stratum, self.reference_id)),
            ("reftime", timestamp(self.received)),
            ("rec", timestamp(self.received)),
            ("reach", format!("0x{:02x}", self.reach)),
            ("unreach", if self.reach == 0 { "1" } else { "0" }.to_string()),
            ("hmode", self.host_mode.to_string()),
            ("pmode", if self.host_mode == 3 { 4 } else { 1 }.to_string()),
            ("hpoll", self.poll.to_string()),
            ("ppoll", self.peer_poll.to_string()),
            ("flash", "0x0".to_string()),
            ("offset", self.offset.map_or_else(unknown, ms)),
            ("delay", self.delay.map_or_else(unknown, ms)),
            (
                "dispersion",
                self.dispersion.map_or_else(|| "16000.000".to_string(), ms),
            ),
            ("jitter", self.jitter.map_or_else(unknown, ms)),
        ]
    }
}

/// Seconds as ntpd's milliseconds (to the nanosecond).
fn ms(seconds: f64) -> String {
    format!("{:.6}", seconds * 1e3)
}

/// ntpd's form of a timestamp: `0x` seconds `.` fraction, in hexadecimal.
fn timestamp(t: NtpTimestamp) -> String {
    let bits = t.to_bits();
    format!("0x{:08x}.{:08x}", bits >> 32, bits & 0xffff_ffff)
}

/// A reference ID: an IPv4 address (or an IPv6 hash) above stratum 1, four characters at or
/// below (`GPS`, `LOCL`, a kiss code).
fn refid(stratum: u8, id: [u8; 4]) -> String {
    if (2..16).contains(&stratum) {
        std::net::Ipv4Addr::from(id).to_string()
    } else {
        id.iter()
            .take_while(|b| **b != 0)
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_ids_read_as_ntpd_shows_them() {
        assert_eq!(refid(2, [198, 18, 0, 1]), "198.18.0.1");
        assert_eq!(refid(1, *b"GPS\0"), "GPS");
        assert_eq!(refid(16, *b"INIT"), "INIT");
        assert_eq!(refid(0, *b"RA\x01E"), "RA?E");
    }

    #[test]
    fn timestamps_and_milliseconds_in_ntpds_form() {
        assert_eq!(
            timestamp(NtpTimestamp::from_bits(0xebc1_2345_8000_0000)),
            "0xebc12345.80000000"
        );
        assert_eq!(ms(-0.0012345), "-1.234500");
    }
}
