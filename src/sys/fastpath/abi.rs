//! The contract with the XDP program, mirrored from `xdp-prog/strata_xdp.h`: map names, the
//! config entry, the counter indices and the metadata in front of every redirected frame.
//! Change both files together; the layout tests below pin the sizes and offsets the C side has.

/// The program's function name, which is also its name in the kernel (at most 15 bytes are
/// kept). A program of this name on an interface is strata's, from this or an earlier run.
pub const PROGRAM_NAME: &str = "strata_xdp";

pub const MAP_XSKS: &str = "strata_xsks";
pub const MAP_COUNTERS: &str = "strata_counters";
pub const MAP_CONFIG: &str = "strata_config";
pub const MAP_ADDRS_V4: &str = "strata_addrs_v4";
pub const MAP_ADDRS_V6: &str = "strata_addrs_v6";
pub const MAP_STATE: &str = "strata_state";
pub const MAP_ACL_V4: &str = "strata_acl_v4";
pub const MAP_ACL_V6: &str = "strata_acl_v6";
pub const MAP_ADMIT: &str = "strata_admit";
pub const MAP_LIMITER: &str = "strata_limiter";
pub const MAP_QUOTA: &str = "strata_quota";
pub const MAP_SAMPLES: &str = "strata_samples";
pub const MAP_PHC: &str = "strata_phc";
/// Every map, for reusing aya's maps in the device-bound object.
pub const MAPS: [&str; 13] = [
    MAP_XSKS,
    MAP_COUNTERS,
    MAP_CONFIG,
    MAP_ADDRS_V4,
    MAP_ADDRS_V6,
    MAP_STATE,
    MAP_ACL_V4,
    MAP_ACL_V6,
    MAP_ADMIT,
    MAP_LIMITER,
    MAP_QUOTA,
    MAP_SAMPLES,
    MAP_PHC,
];

/// `struct strata_sample`: one sampled request in the strata_samples ring.
pub const SAMPLE_LEN: usize = 24;

/// Rules each access-list trie has room for.
pub const MAX_ACL_RULES: u32 = 65536;
pub const ACL_ALLOW: u8 = 1;
pub const ACL_DENY: u8 = 2;
pub const ADMIT_ACL_V4: u8 = 1;
pub const ADMIT_ACL_V6: u8 = 2;
pub const ADMIT_LIMIT: u8 = 4;
pub const ADMIT_QUOTA: u8 = 8;
pub const DENY_DROP: u8 = 0;
pub const DENY_KISS_DENY: u8 = 1;
pub const DENY_KISS_RSTR: u8 = 2;

/// Bits 1-2 of [`Meta::flags`]: the Kiss-o'-Death admission chose (0: none).
pub const META_KISS_SHIFT: u32 = 1;
pub const KISS_RATE: u32 = 1;
pub const KISS_DENY: u32 = 2;
pub const KISS_RSTR: u32 = 3;

/// `struct strata_admit_config`, the single entry of the admission map.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpAdmitConfig {
    pub interval_ns: u64,
    pub burst_span_ns: u64,
    pub secret: [u64; 2],
    pub bucket_mask: u32,
    pub leak: u8,
    pub kod: u8,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub deny_action: u8,
    pub flags: u8,
    pub sample_shift: u8,
    pub reserved: u8,
    pub reserved2: u32,
    pub quota_interval_ns: u64,
    pub quota_quiet_span_ns: u64,
    pub quota_busy_span_ns: u64,
}

// SAFETY: plain old data, `repr(C)`, no padding (8 + 8 + 16 + 4 + 4 + 4 + 4 + 3 * 8 bytes, every
// field at its natural alignment), every bit pattern valid.
unsafe impl aya::Pod for XdpAdmitConfig {}

/// `struct strata_bucket`: two limiter slots (tat_ns, over, tag each).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpBucket {
    pub slots: [[u64; 2]; 2],
}

// SAFETY: plain old data, `repr(C)`, four u64s, every bit pattern valid.
unsafe impl aya::Pod for XdpBucket {}

/// Queues (XSKMAP entries) and addresses (per family) the maps have room for.
pub const MAX_QUEUES: u32 = 64;
pub const MAX_ADDRS: usize = 256;

pub const META_MAGIC: u32 = 0x5354_5241;
pub const META_HW: u32 = 1;

pub const CFG_CHECK_V4: u16 = 1;
pub const CFG_CHECK_V6: u16 = 2;
/// The program answers plain requests itself (`--xdp-answer on`).
pub const CFG_ANSWER: u16 = 4;

pub const STATE_VALID: u8 = 1;
pub const STATE_SYNCED: u8 = 2;
pub const STATE_UNSYNC_DROP: u8 = 4;

/// `struct strata_meta`: written by the program just before the frame's first byte.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// CLOCK_TAI nanoseconds when the program ran.
    pub xdp_tai_ns: u64,
    /// The NIC's receive stamp in its own clock (PHC), 0 when there is none.
    pub hw_ns: u64,
    pub magic: u32,
    pub flags: u32,
}

pub const META_LEN: usize = std::mem::size_of::<Meta>();

/// `struct strata_config`, the single entry of the config map.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpConfig {
    /// The NTP port in network byte order (as the program compares it with the header).
    pub ntp_port_be: u16,
    pub flags: u16,
    pub reserved: u32,
}

// SAFETY: plain old data, `repr(C)`, no padding (2 + 2 + 4 bytes), every bit pattern valid.
unsafe impl aya::Pod for XdpConfig {}

/// `struct strata_state`, the single entry of the state map: what the control thread publishes,
/// as the program reads it (see `xdp-prog/strata_xdp.h` and [`super::state_map`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpState {
    /// Odd while user space writes (a sequence lock).
    pub seq: u64,
    pub tai_anchor_ns: u64,
    pub ntp_anchor: u64,
    pub rate_int: u64,
    pub rate_frac: u64,
    pub reference_time: u64,
    pub root_delay: u32,
    pub root_dispersion: u32,
    pub refid: [u8; 4],
    pub flags: u8,
    pub leap: u8,
    pub stratum: u8,
    pub precision: i8,
    /// The pending leap second (`crate::proto::clock::scale`): where a stepped one happens,
    /// where a smeared one starts (NTP 32.32, the line's scale), the smear's length in seconds
    /// (0: stepped), and +1 inserted, -1 deleted, 0 none.
    pub leap_at: u64,
    pub smear_start: u64,
    pub smear_len_s: u32,
    pub leap_delta: i8,
    pub reserved: [u8; 3],
}

pub const STATE_LEN: usize = std::mem::size_of::<XdpState>();

/// `struct strata_phc`, the single entry of the PHC map: a sequence word, then the interface's
/// [`PhcLine`](crate::proto::clock::phc::PhcLine) as its `Words` encoding (see
/// [`super::phc_map`]).
pub const PHC_WORDS: usize = 6;
pub const PHC_LEN: usize = PHC_WORDS * 8;

/// `enum strata_counter`: what each slot of the per-CPU counter array counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpCounter {
    Seen,
    Redirected,
    Passed,
    RedirectFailed,
    DropShort,
    DropSrcPortZero,
    MetaFailed,
    HwStamped,
    Answered,
    AnsweredUnsync,
    DropUnsync,
    StateTorn,
    AnswerFailed,
    DropDenied,
    DropLimited,
    Leaked,
    KodRate,
    KodDeny,
    KodRstr,
    DropQuota,
    LimiterTracked,
    LimiterEvicted,
    SamplesLost,
    HwMapped,
    HwUnused,
}

impl XdpCounter {
    /// In index order.
    pub const ALL: [XdpCounter; 25] = [
        XdpCounter::Seen,
        XdpCounter::Redirected,
        XdpCounter::Passed,
        XdpCounter::RedirectFailed,
        XdpCounter::DropShort,
        XdpCounter::DropSrcPortZero,
        XdpCounter::MetaFailed,
        XdpCounter::HwStamped,
        XdpCounter::Answered,
        XdpCounter::AnsweredUnsync,
        XdpCounter::DropUnsync,
        XdpCounter::StateTorn,
        XdpCounter::AnswerFailed,
        XdpCounter::DropDenied,
        XdpCounter::DropLimited,
        XdpCounter::Leaked,
        XdpCounter::KodRate,
        XdpCounter::KodDeny,
        XdpCounter::KodRstr,
        XdpCounter::DropQuota,
        XdpCounter::LimiterTracked,
        XdpCounter::LimiterEvicted,
        XdpCounter::SamplesLost,
        XdpCounter::HwMapped,
        XdpCounter::HwUnused,
    ];

    pub const fn index(self) -> u32 {
        self as u32
    }

    /// A stable label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            XdpCounter::Seen => "seen",
            XdpCounter::Redirected => "redirected",
            XdpCounter::Passed => "passed",
            XdpCounter::RedirectFailed => "redirect_failed",
            XdpCounter::DropShort => "drop_short",
            XdpCounter::DropSrcPortZero => "drop_src_port_zero",
            XdpCounter::MetaFailed => "meta_failed",
            XdpCounter::HwStamped => "hw_stamped",
            XdpCounter::Answered => "answered",
            XdpCounter::AnsweredUnsync => "answered_unsync",
            XdpCounter::DropUnsync => "drop_unsync",
            XdpCounter::StateTorn => "state_torn",
            XdpCounter::AnswerFailed => "answer_failed",
            XdpCounter::DropDenied => "drop_denied",
            XdpCounter::DropLimited => "drop_limited",
            XdpCounter::Leaked => "leaked",
            XdpCounter::KodRate => "kod_rate",
            XdpCounter::KodDeny => "kod_deny",
            XdpCounter::KodRstr => "kod_rstr",
            XdpCounter::DropQuota => "drop_quota",
            XdpCounter::LimiterTracked => "limiter_tracked",
            XdpCounter::LimiterEvicted => "limiter_evicted",
            XdpCounter::SamplesLost => "samples_lost",
            XdpCounter::HwMapped => "hw_mapped",
            XdpCounter::HwUnused => "hw_unused",
        }
    }
}

/// The program's counters, summed over the CPUs, indexed like [`XdpCounter::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpCounters(pub [u64; XdpCounter::ALL.len()]);

impl XdpCounters {
    pub fn get(&self, counter: XdpCounter) -> u64 {
        self.0[counter.index() as usize]
    }

    /// Frames the program dropped, for every reason.
    pub fn dropped(&self) -> u64 {
        self.get(XdpCounter::DropShort)
            + self.get(XdpCounter::DropSrcPortZero)
            + self.get(XdpCounter::DropUnsync)
            + self.get(XdpCounter::DropDenied)
            + self.get(XdpCounter::DropLimited)
            + self.get(XdpCounter::DropQuota)
    }

    /// Requests the program answered itself (XDP_TX), synchronized or not.
    pub fn answered(&self) -> u64 {
        self.get(XdpCounter::Answered) + self.get(XdpCounter::AnsweredUnsync)
    }
}

/// One line for logs: `seen 10, redirected 4, ...`.
impl std::fmt::Display for XdpCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, counter) in XdpCounter::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", counter.label(), self.0[i])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_header() {
        assert_eq!(META_LEN, 24);
        assert_eq!(std::mem::offset_of!(Meta, hw_ns), 8);
        assert_eq!(std::mem::offset_of!(Meta, magic), 16);
        assert_eq!(std::mem::size_of::<XdpConfig>(), 8);
        assert_eq!(STATE_LEN, 88);
        assert_eq!(std::mem::offset_of!(XdpState, leap_at), 64);
        assert_eq!(std::mem::offset_of!(XdpState, smear_len_s), 80);
        assert_eq!(std::mem::offset_of!(XdpState, leap_delta), 84);
        assert_eq!(std::mem::size_of::<XdpAdmitConfig>(), 72);
        assert_eq!(std::mem::offset_of!(XdpAdmitConfig, bucket_mask), 32);
        assert_eq!(std::mem::offset_of!(XdpAdmitConfig, flags), 41);
        assert_eq!(std::mem::size_of::<XdpBucket>(), 32);
        assert_eq!(std::mem::offset_of!(XdpState, reference_time), 40);
        assert_eq!(std::mem::offset_of!(XdpState, root_delay), 48);
        assert_eq!(std::mem::offset_of!(XdpState, refid), 56);
        assert_eq!(std::mem::offset_of!(XdpState, precision), 63);
        assert_eq!(META_LEN % 4, 0, "the kernel wants metadata in 4-byte units");
    }

    #[test]
    fn counter_indices_are_positions() {
        for (i, c) in XdpCounter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
        }
        let mut c = XdpCounters::default();
        c.0[XdpCounter::DropShort.index() as usize] = 2;
        c.0[XdpCounter::DropSrcPortZero.index() as usize] = 3;
        assert_eq!(c.dropped(), 5);
        assert!(c.to_string().starts_with("seen 0, redirected 0"));
    }
}
