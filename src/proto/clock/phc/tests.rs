//! The mapping against a simulated PHC: a clock with an offset and a frequency error against
//! the system clock (the truth here), read through the same cross-stamp shapes the kernel's
//! ioctls give, with read delays and jitter.

use super::*;

const SECOND: i64 = 1_000_000_000;

/// xorshift64: reproducible noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-amplitude, amplitude].
    fn uniform(&mut self, amplitude: i64) -> i64 {
        if amplitude == 0 {
            return 0;
        }
        (self.next() % (2 * amplitude as u64 + 1)) as i64 - amplitude
    }

    /// Uniform in [lo, hi].
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// A PHC `offset_ns` ahead of the system clock at system time 0, running `ppm` fast.
#[derive(Clone, Copy)]
struct Phc {
    offset_ns: i64,
    ppm: f64,
}

impl Phc {
    fn at(&self, sys_ns: i64) -> i64 {
        sys_ns + self.offset_ns + (sys_ns as f64 * self.ppm * 1e-6).round() as i64
    }

    /// The system time at which the PHC reads `phc_ns` (the truth a mapping must find).
    fn sys_of(&self, phc_ns: i64) -> i64 {
        // x / (1 + p) as x − x·p / (1 + p): the large part stays an integer (an f64 of 1.7e18
        // ns is only good to 256 ns).
        let x = phc_ns - self.offset_ns;
        let p = self.ppm * 1e-6;
        x - (x as f64 * p / (1.0 + p)).round() as i64
    }

    /// PTP_SYS_OFFSET_EXTENDED at system time `t`: `n` triples, each PHC read some hundreds of
    /// ns into its bracket, the instant of the read `jitter` off the bracket's middle.
    fn extended(&self, t: i64, n: usize, jitter: i64, noise: &mut Noise) -> Vec<(i64, i64, i64)> {
        let mut now = t;
        (0..n)
            .map(|_| {
                let half = noise.between(200, 800);
                let before = now;
                let after = before + 2 * half;
                let read = before + half + noise.uniform(jitter.min(half));
                now = after + noise.between(50, 300);
                (before, self.at(read), after)
            })
            .collect()
    }
}

/// Feeds `samples` extended cross-stamps a second apart from system time `start`.
fn feed(
    m: &mut PhcMapping,
    phc: Phc,
    start: i64,
    samples: usize,
    jitter: i64,
    noise: &mut Noise,
) -> Vec<Added> {
    (0..samples as i64)
        .map(|i| {
            let triples = phc.extended(start + i * SECOND, 5, jitter, noise);
            m.add(CrossStamp::bracketed(&triples).expect("a good bracket"))
        })
        .collect()
}

/// The largest error of the mapping over PHC stamps spread over the last `seconds`.
fn worst_error(m: &PhcMapping, phc: Phc, end: i64, seconds: i64, noise: &mut Noise) -> i64 {
    (0..200)
        .map(|_| {
            let sys = end - noise.between(0, seconds * SECOND);
            let stamp = phc.at(sys);
            (m.map(stamp).unwrap() - phc.sys_of(stamp)).abs()
        })
        .max()
        .unwrap()
}

#[test]
fn mapped_stamps_are_within_the_jitter_of_the_truth() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    // 37 s and a bit ahead (a PHC on TAI against CLOCK_REALTIME), 40 ppm fast.
    let phc = Phc {
        offset_ns: 37 * SECOND + 123_456,
        ppm: 40.0,
    };
    let jitter = 100;
    let mut m = PhcMapping::new(1000.0);
    assert_eq!(m.unusable_because(), Some(Unusable::TooFewSamples));
    let start = 1_700_000_000 * SECOND;
    let added = feed(&mut m, phc, start, 30, jitter, &mut noise);
    assert!(added.iter().all(|a| *a == Added::Accepted), "{added:?}");
    assert!(m.usable());
    let q = m.quality();
    assert_eq!(q.samples, WINDOW);
    // sys − phc falls 40 µs per second of PHC time.
    assert!((q.frequency_ppm + 40.0 / 1.000_04).abs() < 0.05, "{q:?}");
    assert!(q.jitter_ns <= jitter as f64, "{q:?}");
    let end = start + 29 * SECOND;
    let worst = worst_error(&m, phc, end, 15, &mut noise);
    assert!(
        worst <= jitter,
        "mapped {worst} ns off the truth (jitter {jitter} ns)"
    );
}

#[test]
fn precise_cross_stamps_map_to_within_their_jitter() {
    let mut noise = Noise(7);
    let phc = Phc {
        offset_ns: -5 * SECOND,
        ppm: -12.5,
    };
    let mut m = PhcMapping::new(1000.0);
    let start = 1_700_000_000 * SECOND;
    for i in 0..20 {
        let t = start + i * SECOND;
        // The driver's pair: the system time of the PHC reading, 20 ns of jitter.
        m.add(CrossStamp::precise(phc.at(t + noise.uniform(20)), t));
    }
    assert!(m.usable());
    let worst = worst_error(&m, phc, start + 19 * SECOND, 15, &mut noise);
    assert!(worst <= 20, "{worst} ns");
}

#[test]
fn a_bad_sample_is_rejected_and_the_mapping_keeps() {
    let mut noise = Noise(11);
    let phc = Phc {
        offset_ns: 2 * SECOND,
        ppm: 5.0,
    };
    let mut m = PhcMapping::new(1000.0);
    let start = 1_700_000_000 * SECOND;
    feed(&mut m, phc, start, 10, 100, &mut noise);
    let before = m.quality();
    // A read disturbed by 50 µs, its bracket not showing it (an SMI between the reads, say).
    let t = start + 10 * SECOND;
    let bad = CrossStamp {
        phc_ns: phc.at(t) + 50_000,
        sys_ns: t,
        error_ns: 400,
    };
    assert_eq!(m.add(bad), Added::Rejected);
    assert_eq!(m.quality().rejected, 1);
    assert_eq!(m.quality().samples, before.samples);
    assert!(m.usable());
    // The next good ones are taken, and the mapping is as good as before.
    let added = feed(&mut m, phc, start + 11 * SECOND, 5, 100, &mut noise);
    assert!(added.iter().all(|a| *a == Added::Accepted), "{added:?}");
    assert!(worst_error(&m, phc, start + 15 * SECOND, 10, &mut noise) <= 100);
    // Bad samples that disagree with each other are never taken for a step.
    for k in 0..6 {
        let t = start + (16 + k) * SECOND;
        let wild = CrossStamp {
            phc_ns: phc.at(t) + if k % 2 == 0 { 80_000 } else { -30_000 } + k * 7_000,
            sys_ns: t,
            error_ns: 400,
        };
        assert_eq!(m.add(wild), Added::Rejected, "sample {k}");
    }
    assert_eq!(m.quality().steps, 0);
    assert!(m.usable());
}

#[test]
fn a_phc_step_is_detected_the_mapping_restarts_and_is_unusable_meanwhile() {
    let mut noise = Noise(23);
    let phc = Phc {
        offset_ns: 37 * SECOND,
        ppm: 40.0,
    };
    let mut m = PhcMapping::new(1000.0);
    let start = 1_700_000_000 * SECOND;
    feed(&mut m, phc, start, 20, 100, &mut noise);
    assert!(m.usable());
    // PTP steps the PHC by a millisecond.
    let stepped = Phc {
        offset_ns: phc.offset_ns + 1_000_000,
        ..phc
    };
    let added = feed(&mut m, stepped, start + 20 * SECOND, 3, 100, &mut noise);
    assert_eq!(added, [Added::Rejected, Added::Rejected, Added::Stepped]);
    let q = m.quality();
    assert_eq!((q.steps, q.rejected, q.samples), (1, 0, 3));
    assert_eq!(m.unusable_because(), Some(Unusable::TooFewSamples));
    // Until the new line has its samples: then the new truth.
    let added = feed(&mut m, stepped, start + 23 * SECOND, 10, 100, &mut noise);
    assert!(added.iter().all(|a| *a == Added::Accepted), "{added:?}");
    assert!(m.usable());
    let worst = worst_error(&m, stepped, start + 32 * SECOND, 8, &mut noise);
    assert!(worst <= 100, "{worst} ns after the step");
}

#[test]
fn noisy_cross_stamps_make_the_mapping_unusable() {
    let mut noise = Noise(5);
    let phc = Phc {
        offset_ns: 0,
        ppm: 1.0,
    };
    let mut m = PhcMapping::new(1000.0);
    let start = 1_700_000_000 * SECOND;
    for i in 0..20 {
        let t = start + i * SECOND;
        // Each pair off by up to 20 µs (a driver without a good cross-timestamp), flagged as
        // such by its error bound, so that it is not rejected but counted in the jitter.
        m.add(CrossStamp {
            phc_ns: phc.at(t + noise.uniform(20_000)),
            sys_ns: t,
            error_ns: 20_000,
        });
    }
    assert_eq!(m.unusable_because(), Some(Unusable::TooNoisy));
    assert!(m.quality().jitter_ns > 1000.0);
}

#[test]
fn the_shortest_bracket_is_taken_and_bad_shapes_are_refused() {
    let s =
        CrossStamp::bracketed(&[(0, 10_500, 1_000), (2_000, 12_200, 2_400), (3_000, 13_900, 4_000)]).unwrap();
    assert_eq!(
        s,
        CrossStamp {
            phc_ns: 12_200,
            sys_ns: 2_200,
            error_ns: 200
        }
    );
    // A bracket that runs backwards (a clock stepped between the reads) or is too long.
    assert_eq!(CrossStamp::bracketed(&[(5_000, 1, 4_000)]), None);
    assert_eq!(CrossStamp::bracketed(&[(0, 1, MAX_BRACKET_NS + 1)]), None);
    assert_eq!(CrossStamp::bracketed(&[]), None);
    // PTP_SYS_OFFSET: sys, phc, sys, phc, sys: the triples overlap.
    let s = CrossStamp::alternating(&[0, 10_400, 1_000, 11_100, 1_200]).unwrap();
    assert_eq!(
        s,
        CrossStamp {
            phc_ns: 11_100,
            sys_ns: 1_100,
            error_ns: 100
        }
    );
    assert_eq!(CrossStamp::alternating(&[0, 1, 2, 3]), None);
    assert_eq!(CrossStamp::alternating(&[0]), None);
}
