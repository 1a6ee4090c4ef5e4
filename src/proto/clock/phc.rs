//! The mapping from a NIC's clock (its PHC) to the system clock, from the kernel's
//! cross-timestamps, without I/O: what would let a hardware stamp become T2 (or a transmit time)
//! directly. The control side would read the cross-timestamps (ioctls on /dev/ptpN) and feed them
//! here; the mapping it keeps would be published with the other clock parameters.
//!
//! The three shapes the kernel gives, reduced to one [`CrossStamp`] each, as chrony's
//! sys_linux.c and hwclock.c do:
//! - PTP_SYS_OFFSET_PRECISE: the driver's own simultaneous reading of both clocks
//!   ([`CrossStamp::precise`]): no read delay at all;
//! - PTP_SYS_OFFSET_EXTENDED: n triples (system before, PHC, system after), each PHC read
//!   bracketed by two system reads ([`CrossStamp::bracketed`]);
//! - PTP_SYS_OFFSET: 2n+1 alternating readings, system first and last, the same triples
//!   overlapping ([`CrossStamp::alternating`]).
//!
//! For the last two, the triple with the shortest bracket is the one least disturbed (an
//! interrupt, a cache miss, a PCIe stall lengthens it); its midpoint is the system time of the
//! PHC reading, with half the bracket as its error bound.
//!
//! [`PhcMapping`] fits a line (offset and frequency) through the last [`WINDOW`] cross-stamps by
//! least squares and reports its quality: the offset of the last sample from the line, the
//! frequency error, and the jitter (RMS residual). A sample far from the line (beyond
//! [`REJECT_SIGMAS`] times the jitter plus its own error bound) is rejected and counted; a run of
//! [`STEP_AFTER`] rejected samples that agree with each other is a step of one of the clocks
//! (the PHC set by PTP, the system clock stepped): the window starts over from them. The mapping
//! is [`usable`](PhcMapping::usable) only with [`MIN_SAMPLES`] samples and a jitter within the
//! configured bound; otherwise [`PhcMapping::unusable_because`] says why, and a caller falls back
//! to its software stamps.

pub mod line;

pub use line::{ntp_from_phc, HardwareUnused, PhcLine, PhcLineReader, PhcLineWriter};

/// Cross-stamps the line is fitted through.
pub const WINDOW: usize = 16;
/// Samples needed before the mapping is used.
pub const MIN_SAMPLES: usize = 4;
/// A sample this many jitters (plus its own error bound) off the line is rejected.
pub const REJECT_SIGMAS: f64 = 5.0;
/// The least distance from the line that may reject a sample (a fit through a few very good
/// samples has a jitter of nearly nothing).
pub const MIN_REJECT_NS: f64 = 200.0;
/// Consecutive rejected samples that agree with each other: the clocks stepped.
pub const STEP_AFTER: usize = 3;
/// A cross-stamp with a longer bracket than this (2 × error bound) is no measurement.
pub const MAX_BRACKET_NS: i64 = 100_000;

/// One cross-timestamp: the PHC and the system clock at the same instant, as well as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossStamp {
    pub phc_ns: i64,
    pub sys_ns: i64,
    /// How far the system time may be off the PHC reading's instant (half the bracket).
    pub error_ns: i64,
}

impl CrossStamp {
    /// PTP_SYS_OFFSET_PRECISE: the device's simultaneous pair.
    pub fn precise(phc_ns: i64, sys_ns: i64) -> CrossStamp {
        CrossStamp {
            phc_ns,
            sys_ns,
            error_ns: 0,
        }
    }

    /// PTP_SYS_OFFSET_EXTENDED: triples (system before, PHC, system after); the one with the
    /// shortest bracket. None: no triple, or none with a bracket from 0 to [`MAX_BRACKET_NS`].
    pub fn bracketed(triples: &[(i64, i64, i64)]) -> Option<CrossStamp> {
        triples
            .iter()
            .filter(|(before, _, after)| (0..=MAX_BRACKET_NS).contains(&(after - before)))
            .min_by_key(|(before, _, after)| after - before)
            .map(|&(before, phc, after)| CrossStamp {
                phc_ns: phc,
                sys_ns: before + (after - before) / 2,
                error_ns: (after - before + 1) / 2,
            })
    }

    /// PTP_SYS_OFFSET: readings system, PHC, system, ..., system (an odd count of at least 3).
    /// None when the shape is wrong or no bracket is acceptable.
    pub fn alternating(readings: &[i64]) -> Option<CrossStamp> {
        if readings.len() < 3 || readings.len().is_multiple_of(2) {
            return None;
        }
        let mut best: Option<CrossStamp> = None;
        for i in (0..readings.len() - 2).step_by(2) {
            let one = CrossStamp::bracketed(&[(readings[i], readings[i + 1], readings[i + 2])]);
            if let Some(one) = one {
                if best.is_none_or(|b| one.error_ns < b.error_ns) {
                    best = Some(one);
                }
            }
        }
        best
    }
}

/// Why the mapping may not be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Fewer than [`MIN_SAMPLES`] samples since the start or the last step.
    TooFewSamples,
    /// The jitter of the cross-stamps is over the configured bound.
    TooNoisy,
}

impl Unusable {
    pub const fn label(self) -> &'static str {
        match self {
            Unusable::TooFewSamples => "too_few_samples",
            Unusable::TooNoisy => "too_noisy",
        }
    }
}

/// The mapping's quality, for `strata status` and /metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub samples: usize,
    /// The last accepted sample's distance from the line, ns.
    pub offset_ns: f64,
    /// The PHC's frequency error against the system clock (positive: the system clock runs
    /// faster), parts per million.
    pub frequency_ppm: f64,
    /// RMS residual of the samples around the line, ns.
    pub jitter_ns: f64,
    /// Samples rejected as too far from the line, since the start.
    pub rejected: u64,
    /// Steps detected (the window started over), since the start.
    pub steps: u64,
}

/// What [`PhcMapping::add`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Accepted,
    /// Too far from the line: counted, not used.
    Rejected,
    /// It and the rejected ones before it agree on a new line: the window started over.
    Stepped,
}

/// The PHC-to-system-clock line, fitted through the last cross-stamps.
#[derive(Debug, Clone)]
pub struct PhcMapping {
    window: [CrossStamp; WINDOW],
    len: usize,
    next: usize,
    /// The rejected samples in a row, which may be a step.
    suspects: [CrossStamp; STEP_AFTER],
    suspects_len: usize,
    /// The fit: sys − phc = intercept + slope × (phc − phc_ref).
    phc_ref: i64,
    intercept: f64,
    slope: f64,
    jitter: f64,
    last_offset: f64,
    rejected: u64,
    steps: u64,
    max_jitter_ns: f64,
}

impl PhcMapping {
    /// An empty mapping, usable once its jitter is at most `max_jitter_ns`.
    pub fn new(max_jitter_ns: f64) -> PhcMapping {
        let zero = CrossStamp::precise(0, 0);
        PhcMapping {
            window: [zero; WINDOW],
            len: 0,
            next: 0,
            suspects: [zero; STEP_AFTER],
            suspects_len: 0,
            phc_ref: 0,
            intercept: 0.0,
            slope: 0.0,
            jitter: 0.0,
            last_offset: 0.0,
            rejected: 0,
            steps: 0,
            max_jitter_ns,
        }
    }

    /// The system time of a PHC reading, by the line (None before the first sample).
    pub fn map(&self, phc_ns: i64) -> Option<i64> {
        (self.len > 0).then(|| phc_ns + self.offset_at(phc_ns).round() as i64)
    }

    fn offset_at(&self, phc_ns: i64) -> f64 {
        self.intercept + self.slope * (phc_ns - self.phc_ref) as f64
    }

    /// Takes one cross-stamp.
    pub fn add(&mut self, s: CrossStamp) -> Added {
        // From three samples on, the line has a jitter to judge by.
        if self.len >= 3 {
            let residual = (s.sys_ns - s.phc_ns) as f64 - self.offset_at(s.phc_ns);
            // The sample's own error, and that of the line's (its samples' errors, about).
            let bound = (REJECT_SIGMAS * self.jitter).max(MIN_REJECT_NS) + 2.0 * s.error_ns as f64;
            if residual.abs() > bound {
                return self.suspect(s, bound);
            }
        }
        self.suspects_len = 0;
        self.push(s);
        self.last_offset = (s.sys_ns - s.phc_ns) as f64 - self.offset_at(s.phc_ns);
        Added::Accepted
    }

    fn suspect(&mut self, s: CrossStamp, bound: f64) -> Added {
        self.rejected += 1;
        self.suspects[self.suspects_len] = s;
        self.suspects_len += 1;
        if self.suspects_len < STEP_AFTER {
            return Added::Rejected;
        }
        // Do the suspects agree with each other (one new offset at the same frequency), or are
        // they just bad?
        let offsets = self
            .suspects
            .map(|x| (x.sys_ns - x.phc_ns) as f64 - self.offset_at(x.phc_ns));
        let spread = offsets.iter().cloned().fold(f64::MIN, f64::max)
            - offsets.iter().cloned().fold(f64::MAX, f64::min);
        if spread > bound {
            // Not one step: forget the oldest suspect, keep looking.
            self.suspects.rotate_left(1);
            self.suspects_len -= 1;
            return Added::Rejected;
        }
        let suspects = self.suspects;
        self.len = 0;
        self.next = 0;
        self.suspects_len = 0;
        self.steps += 1;
        // The suspects were counted as rejected; they are the new line's first samples.
        self.rejected -= STEP_AFTER as u64;
        for x in suspects {
            self.push(x);
        }
        self.last_offset = 0.0;
        Added::Stepped
    }

    fn push(&mut self, s: CrossStamp) {
        self.window[self.next] = s;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        self.fit();
    }

    /// Least squares through the window: sys − phc against phc.
    fn fit(&mut self) {
        let samples = &self.window[..self.len];
        self.phc_ref = samples[0].phc_ns;
        let n = samples.len() as f64;
        let point = |s: &CrossStamp| ((s.phc_ns - self.phc_ref) as f64, (s.sys_ns - s.phc_ns) as f64);
        let (sx, sy) = samples
            .iter()
            .map(point)
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy) = samples.iter().map(point).fold((0.0, 0.0), |(a, b), (x, y)| {
            (a + (x - mx) * (x - mx), b + (x - mx) * (y - my))
        });
        self.slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        self.intercept = my - self.slope * mx;
        let sum_sq: f64 = samples
            .iter()
            .map(point)
            .map(|(x, y)| {
                let r = y - (self.intercept + self.slope * x);
                r * r
            })
            .sum();
        // Two parameters fitted: n − 2 degrees of freedom (none below three samples).
        self.jitter = if self.len > 2 {
            (sum_sq / (n - 2.0)).sqrt()
        } else {
            0.0
        };
    }

    /// Whether hardware stamps may be mapped with it now.
    pub fn usable(&self) -> bool {
        self.unusable_because().is_none()
    }

    /// Why not, if not.
    pub fn unusable_because(&self) -> Option<Unusable> {
        if self.len < MIN_SAMPLES {
            Some(Unusable::TooFewSamples)
        } else if self.jitter > self.max_jitter_ns {
            Some(Unusable::TooNoisy)
        } else {
            None
        }
    }

    /// Samples in the window now.
    pub fn samples(&self) -> usize {
        self.len
    }

    /// The fit as (phc_ref, intercept, slope): sys − phc = intercept + slope × (phc − phc_ref).
    pub fn line_parameters(&self) -> (i64, f64, f64) {
        (self.phc_ref, self.intercept, self.slope)
    }

    pub fn quality(&self) -> Quality {
        Quality {
            samples: self.len,
            offset_ns: self.last_offset,
            frequency_ppm: self.slope * 1e6,
            jitter_ns: self.jitter,
            rejected: self.rejected,
            steps: self.steps,
        }
    }
}

#[cfg(test)]
mod tests;
