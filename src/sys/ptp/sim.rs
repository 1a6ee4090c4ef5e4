//! A simulated PHC behind [`CrossStampSource`], for the tests of everything above the ioctls:
//! a clock with an offset and a frequency error against the system clock (the truth here), that
//! can be stepped, read by any of the three methods with brackets of a chosen length, the PHC's
//! read instant jittered inside them, and now and then a slow reading (an interrupt in the
//! bracket). Its readings are written into the kernel's structures and reduced by the same
//! functions as the device's ([`super::reduce_extended`] and the others).
//!
//! The simulated system clock only moves when [`SimulatedPhc::advance`] moves it (plus the
//! length of the readings themselves), so tests are exact and take no time.

use std::io;
use std::path::{Path, PathBuf};

use super::abi::{ClockTime, SysOffset, SysOffsetExtended, SysOffsetPrecise, MAX_SAMPLES};
use super::{
    reduce_extended, reduce_plain, reduce_precise, Capabilities, CrossStampSource, Method, Reading, READINGS,
};

/// How a simulated PHC behaves.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// PHC − system at system time `start_ns`.
    pub offset_ns: i64,
    /// The PHC runs this much fast against the system clock.
    pub ppm: f64,
    /// The method the simulated driver offers (the best one).
    pub method: Method,
    /// A reading's bracket (system after − system before).
    pub bracket_ns: i64,
    /// The PHC read instant is up to this far off the bracket's middle.
    pub jitter_ns: i64,
    /// Every this many calls, every bracket of the call is 100 times as long (0: never).
    pub slow_every: u64,
    /// The system time of the first reading (CLOCK_REALTIME ns).
    pub start_ns: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            offset_ns: 37_000_000_000 + 123_456,
            ppm: 12.5,
            method: Method::Extended,
            bracket_ns: 600,
            jitter_ns: 20,
            slow_every: 0,
            start_ns: 1_800_000_000_000_000_000,
        }
    }
}

/// The simulated device.
pub struct SimulatedPhc {
    config: SimConfig,
    path: PathBuf,
    /// The system clock now.
    now_ns: i64,
    /// Steps applied to the PHC so far.
    stepped_ns: i64,
    calls: u64,
    noise: u64,
    /// Fail every read with this error kind (a device that went away).
    failing: Option<io::ErrorKind>,
}

impl SimulatedPhc {
    pub fn new(config: SimConfig) -> SimulatedPhc {
        SimulatedPhc {
            config,
            path: PathBuf::from("/dev/ptp-simulated"),
            now_ns: config.start_ns,
            stepped_ns: 0,
            calls: 0,
            noise: 0x2545_f491_4f6c_dd1d,
            failing: None,
        }
    }

    /// The system clock now (CLOCK_REALTIME ns).
    pub fn now_ns(&self) -> i64 {
        self.now_ns
    }

    /// Lets `ns` of system time pass.
    pub fn advance(&mut self, ns: i64) {
        self.now_ns += ns;
    }

    /// Steps the PHC by `ns` (as ptp4l setting it would).
    pub fn step_phc(&mut self, ns: i64) {
        self.stepped_ns += ns;
    }

    /// Makes every read fail with `kind` (None: work again).
    pub fn fail(&mut self, kind: Option<io::ErrorKind>) {
        self.failing = kind;
    }

    /// The PHC's reading at system time `sys_ns`.
    pub fn phc_at(&self, sys_ns: i64) -> i64 {
        let elapsed = sys_ns - self.config.start_ns;
        sys_ns
            + self.config.offset_ns
            + self.stepped_ns
            + (elapsed as f64 * self.config.ppm * 1e-6).round() as i64
    }

    /// The system time at which the PHC reads `phc_ns`: the truth a mapping should find.
    pub fn sys_of(&self, phc_ns: i64) -> i64 {
        // x / (1 + p) written as x − x·p / (1 + p), so the large part stays an integer.
        let x = phc_ns - self.config.offset_ns - self.stepped_ns - self.config.start_ns;
        let p = self.config.ppm * 1e-6;
        self.config.start_ns + x - (x as f64 * p / (1.0 + p)).round() as i64
    }

    /// Uniform in [-amplitude, amplitude] (xorshift64: reproducible).
    fn jitter(&mut self, amplitude: i64) -> i64 {
        self.noise ^= self.noise << 13;
        self.noise ^= self.noise >> 7;
        self.noise ^= self.noise << 17;
        if amplitude == 0 {
            return 0;
        }
        (self.noise % (2 * amplitude as u64 + 1)) as i64 - amplitude
    }

    fn bracket(&self) -> i64 {
        let slow = self.config.slow_every > 0 && self.calls.is_multiple_of(self.config.slow_every);
        self.config.bracket_ns * if slow { 100 } else { 1 }
    }

    /// One (system before, PHC, system after) reading from now; the clock moves past it.
    fn triple(&mut self) -> (i64, i64, i64) {
        let bracket = self.bracket();
        let before = self.now_ns;
        let jitter = self.jitter(self.config.jitter_ns);
        let phc = self.phc_at(before + bracket / 2 + jitter);
        self.now_ns += bracket;
        (before, phc, self.now_ns)
    }
}

fn clock_time(ns: i64) -> ClockTime {
    ClockTime {
        sec: ns.div_euclid(1_000_000_000),
        nsec: ns.rem_euclid(1_000_000_000) as u32,
        reserved: 0,
    }
}

impl CrossStampSource for SimulatedPhc {
    fn path(&self) -> &Path {
        &self.path
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_adj_ppb: 500_000_000,
            n_ext_ts: 2,
            n_per_out: 1,
            n_pins: 0,
            pps: false,
            cross_timestamping: self.config.method == Method::Precise,
        }
    }

    fn read(&mut self) -> io::Result<Reading> {
        if let Some(kind) = self.failing {
            return Err(io::Error::new(kind, "simulated failure"));
        }
        self.calls += 1;
        let method = self.config.method;
        let stamp = match method {
            Method::Precise => {
                let sys = self.now_ns;
                let jitter = self.jitter(self.config.jitter_ns);
                let r = SysOffsetPrecise {
                    device: clock_time(self.phc_at(sys + jitter)),
                    sys_realtime: clock_time(sys),
                    ..SysOffsetPrecise::default()
                };
                self.now_ns += self.config.bracket_ns;
                Some(reduce_precise(&r))
            }
            Method::Extended => {
                let mut r = SysOffsetExtended {
                    n_samples: READINGS as u32,
                    rsv: [0; 3],
                    ts: [[ClockTime::default(); 3]; MAX_SAMPLES],
                };
                for slot in &mut r.ts[..READINGS] {
                    let (before, phc, after) = self.triple();
                    *slot = [clock_time(before), clock_time(phc), clock_time(after)];
                }
                reduce_extended(&r)
            }
            Method::Plain => {
                let mut r = SysOffset {
                    n_samples: READINGS as u32,
                    rsv: [0; 3],
                    ts: [ClockTime::default(); 2 * MAX_SAMPLES + 1],
                };
                r.ts[0] = clock_time(self.now_ns);
                for i in 0..READINGS {
                    let (_, phc, after) = self.triple();
                    r.ts[2 * i + 1] = clock_time(phc);
                    r.ts[2 * i + 2] = clock_time(after);
                }
                reduce_plain(&r)
            }
        };
        let stamp = stamp.ok_or_else(|| super::no_bracket(method))?;
        Ok(super::reading(method, stamp))
    }
}

/// A simulated PHC that a test keeps a handle on while a tracker or a refclock reads it.
#[derive(Clone)]
pub struct SharedPhc(pub std::sync::Arc<std::sync::Mutex<SimulatedPhc>>);

impl SharedPhc {
    pub fn new(config: SimConfig) -> SharedPhc {
        SharedPhc(std::sync::Arc::new(std::sync::Mutex::new(SimulatedPhc::new(
            config,
        ))))
    }

    /// The simulated device, to move its clock, step it or make it fail.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, SimulatedPhc> {
        // A test that panicked while holding it has failed already.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CrossStampSource for SharedPhc {
    fn path(&self) -> &Path {
        Path::new("/dev/ptp-simulated")
    }

    fn capabilities(&self) -> Capabilities {
        self.lock().capabilities()
    }

    fn read(&mut self) -> io::Result<Reading> {
        self.lock().read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_truth_inverts_the_phc() {
        let mut sim = SimulatedPhc::new(SimConfig::default());
        sim.step_phc(-5_000);
        for dt in [0, 1_000_000_000, 3_600_000_000_000] {
            let sys = sim.now_ns() + dt;
            assert!((sim.sys_of(sim.phc_at(sys)) - sys).abs() <= 1);
        }
    }

    #[test]
    fn each_method_gives_a_stamp_within_its_error_of_the_truth() {
        for method in Method::ALL {
            let mut sim = SimulatedPhc::new(SimConfig {
                method,
                ..SimConfig::default()
            });
            for _ in 0..50 {
                let r = sim.read().unwrap();
                assert_eq!(r.method, method);
                let off = (sim.sys_of(r.stamp.phc_ns) - r.stamp.sys_ns).abs();
                // The read instant is `jitter` off the middle the stamp claims.
                assert!(
                    off <= r.stamp.error_ns.max(0) + 20 + 1,
                    "{method}: {off} {:?}",
                    r.stamp
                );
                sim.advance(100_000_000);
            }
        }
    }

    #[test]
    fn slow_readings_are_refused_and_failures_reported() {
        let mut sim = SimulatedPhc::new(SimConfig {
            bracket_ns: 2_000,
            slow_every: 2,
            ..SimConfig::default()
        });
        assert!(sim.read().is_ok());
        // Every bracket of the second call is 200 µs: no measurement.
        assert!(sim.read().unwrap_err().to_string().contains("bracket"));
        sim.fail(Some(io::ErrorKind::NotFound));
        assert_eq!(sim.read().unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
