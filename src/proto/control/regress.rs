//! Offset and frequency of the kernel clock against one source: a weighted least-squares line
//! through the clock filter's outputs, as chrony's sourcestats does. Offsets are against the
//! uncorrected kernel clock, so they lie on a line whose slope is its frequency error; the line
//! evaluated "now" is the best estimate of the offset, much better than any one sample.
//!
//! A sample is weighted by how much more delay it had than the quickest one in the window (extra
//! delay is where the error comes from). When the residuals run in long runs of one sign, the
//! frequency has changed and the oldest samples no longer fit: they are dropped (a runs test, as
//! chrony makes).

use std::collections::VecDeque;

/// Most points kept; more would follow frequency changes too slowly.
pub const MAX_POINTS: usize = 32;
/// Points needed before the slope is trusted; below it, the slope given as a hint is used.
pub const MIN_POINTS_FOR_FREQUENCY: usize = 3;
/// A point further than this from the line's prediction (seconds), plus what any clock could
/// drift since the newest point at 500 ppm, is a jump of the source, not noise: the line starts
/// afresh from it, so that the source's offset is the one it now shows rather than a slope
/// drawn through both sides of the jump.
pub const JUMP_GATE: f64 = 1.0;
const JUMP_DRIFT: f64 = 500e-6;

/// One filter output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Kernel nanoseconds.
    pub time: i64,
    /// Seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
}

/// The fitted line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Kernel nanoseconds of the newest point, where `offset` holds.
    pub time: i64,
    pub offset: f64,
    /// The slope: the kernel clock's frequency error (s/s; positive: true time runs ahead).
    pub frequency: f64,
    /// Standard error of `offset` at `time`.
    pub offset_sd: f64,
    /// Standard error of `frequency`.
    pub frequency_sd: f64,
    /// Weighted RMS of the residuals.
    pub residual_sd: f64,
    /// Points the line went through.
    pub points: usize,
    /// Delay of the quickest point.
    pub min_delay: f64,
}

impl Estimate {
    /// The offset at kernel time `t`.
    pub fn offset_at(&self, t: i64) -> f64 {
        self.offset + self.frequency * (t - self.time) as f64 * 1e-9
    }
}

#[derive(Debug, Clone, Default)]
pub struct Regression {
    points: VecDeque<Point>,
    estimate: Option<Estimate>,
}

impl Regression {
    pub fn new() -> Regression {
        Regression {
            points: VecDeque::with_capacity(MAX_POINTS),
            estimate: None,
        }
    }

    pub fn estimate(&self) -> Option<&Estimate> {
        self.estimate.as_ref()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn clear(&mut self) {
        self.points.clear();
        self.estimate = None;
    }

    /// The kernel clock was stepped by `step` seconds and its frequency changed by `dfreq` at
    /// kernel time `at`: every point is moved to where it would have been measured against the
    /// changed clock, so the line continues across the change.
    pub fn clock_changed(&mut self, at: i64, step: f64, dfreq: f64, hint: f64) {
        for p in self.points.iter_mut() {
            p.offset -= step + dfreq * (p.time - at) as f64 * 1e-9;
        }
        self.fit(hint);
    }

    /// Adds a point and fits the line again. `hint` is the slope to use while there are too few
    /// points to fit one (the combined estimate of all sources, or zero).
    /// Whether `point` is so far from the line that the source must have jumped (see
    /// [`JUMP_GATE`]; half the point's delay is allowed on top, the most it can move a
    /// measurement).
    pub fn is_jump(&self, point: &Point) -> bool {
        self.estimate.is_some_and(|e| {
            let since = ((point.time - e.time) as f64 * 1e-9).abs();
            let gate = JUMP_GATE + JUMP_DRIFT * since + point.delay / 2.0;
            (point.offset - e.offset_at(point.time)).abs() > gate
        })
    }

    pub fn add(&mut self, point: Point, hint: f64) -> Estimate {
        if self.is_jump(&point) {
            self.points.clear();
        }
        if self.points.len() == MAX_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
        self.fit(hint);
        while let Some(e) = self.estimate {
            if e.points < 8 || !too_few_runs(&self.points, &e) {
                break;
            }
            // The oldest quarter no longer fits the line: a frequency change.
            let drop = (self.points.len() / 4).max(1);
            self.points.drain(..drop);
            self.fit(hint);
        }
        self.estimate.expect("at least one point")
    }

    fn fit(&mut self, hint: f64) {
        let Some(newest) = self.points.back().copied() else {
            self.estimate = None;
            return;
        };
        let n = self.points.len();
        let min_delay = self.points.iter().map(|p| p.delay).fold(f64::INFINITY, f64::min);
        // Each point's error scale: its delay above the quickest, plus the typical such excess
        // (so that the quickest point is not trusted infinitely more than the rest).
        let mut excess: Vec<f64> = self.points.iter().map(|p| (p.delay - min_delay) / 2.0).collect();
        excess.sort_by(f64::total_cmp);
        let typical = excess[n / 2].max(1e-7);
        let x = |p: &Point| (p.time - newest.time) as f64 * 1e-9;
        let w = |p: &Point| {
            let e = (p.delay - min_delay) / 2.0 + typical;
            1.0 / (e * e)
        };
        let (mut sw, mut swx, mut swy, mut swxx, mut swxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for p in &self.points {
            let (wi, xi) = (w(p), x(p));
            sw += wi;
            swx += wi * xi;
            swy += wi * p.offset;
            swxx += wi * xi * xi;
            swxy += wi * xi * p.offset;
        }
        let det = sw * swxx - swx * swx;
        let span = x(&self.points[0]).abs();
        let (a, b, fitted) = if n >= MIN_POINTS_FOR_FREQUENCY && det > 0.0 && span > 0.0 {
            let b = (sw * swxy - swx * swy) / det;
            ((swy - b * swx) / sw, b, true)
        } else {
            (((swy - hint * swx) / sw), hint, false)
        };
        // Residuals, with the weights normalized to a mean of one.
        let mean_w = sw / n as f64;
        let ssr: f64 = self
            .points
            .iter()
            .map(|p| w(p) / mean_w * (p.offset - a - b * x(p)).powi(2))
            .sum();
        let dof = if fitted {
            n.saturating_sub(2)
        } else {
            n.saturating_sub(1)
        };
        let residual_sd = if dof > 0 {
            (ssr / dof as f64).sqrt()
        } else {
            typical
        };
        let (offset_sd, frequency_sd) = if fitted {
            let (nsw, nswx, nswxx) = (sw / mean_w, swx / mean_w, swxx / mean_w);
            let ndet = nsw * nswxx - nswx * nswx;
            (
                residual_sd * (nswxx / ndet).sqrt(),
                residual_sd * (nsw / ndet).sqrt(),
            )
        } else {
            (residual_sd / (n as f64).sqrt(), f64::INFINITY)
        };
        self.estimate = Some(Estimate {
            time: newest.time,
            offset: a,
            frequency: b,
            offset_sd,
            frequency_sd,
            residual_sd,
            points: n,
            min_delay,
        });
    }
}

/// Whether the residuals' signs form so few runs that they are not noise around the line
/// (a Wald-Wolfowitz runs test at about 2.6 standard deviations).
fn too_few_runs(points: &VecDeque<Point>, e: &Estimate) -> bool {
    let signs: Vec<bool> = points.iter().map(|p| p.offset >= e.offset_at(p.time)).collect();
    let pos = signs.iter().filter(|&&s| s).count() as f64;
    let neg = signs.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return true;
    }
    let n = pos + neg;
    let runs = 1 + signs.windows(2).filter(|w| w[0] != w[1]).count();
    let mean = 2.0 * pos * neg / n + 1.0;
    let var = (mean - 1.0) * (mean - 2.0) / (n - 1.0);
    (runs as f64) < mean - 2.6 * var.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn recovers_offset_and_frequency_of_a_line() {
        let mut r = Regression::new();
        let mut e = None;
        for i in 0..10 {
            let t = i * 64 * S;
            // +-2 us of alternating noise around 1 ms + 50 ppm.
            let noise = if i % 2 == 0 { 2e-6 } else { -2e-6 };
            e = Some(r.add(
                Point {
                    time: t,
                    offset: 1e-3 + 50e-6 * (i * 64) as f64 + noise,
                    delay: 1e-3,
                },
                0.0,
            ));
        }
        let e = e.unwrap();
        let t_end = 9 * 64;
        assert!((e.frequency - 50e-6).abs() < 0.05e-6, "{}", e.frequency);
        assert!(
            (e.offset - (1e-3 + 50e-6 * t_end as f64)).abs() < 2e-6,
            "{}",
            e.offset
        );
        assert!(e.residual_sd > 1e-6 && e.residual_sd < 3e-6);
        assert_eq!(e.points, 10);
        assert!(e.offset_sd < e.residual_sd);
    }

    #[test]
    fn one_point_uses_the_hint() {
        let mut r = Regression::new();
        let e = r.add(
            Point {
                time: 0,
                offset: 0.5,
                delay: 1e-3,
            },
            20e-6,
        );
        assert_eq!((e.offset, e.frequency), (0.5, 20e-6));
        assert!((e.offset_at(10 * S) - 0.5002).abs() < 1e-12);
    }

    #[test]
    fn a_frequency_change_drops_the_old_points() {
        let mut r = Regression::new();
        for i in 0..20 {
            let noise = if i % 2 == 0 { 1e-6 } else { -1e-6 };
            r.add(
                Point {
                    time: i * 64 * S,
                    offset: noise,
                    delay: 1e-3,
                },
                0.0,
            );
        }
        let mut offset = 0.0;
        let mut last = None;
        for i in 20..32 {
            offset += 10e-6 * 64.0;
            let noise = if i % 2 == 0 { 1e-6 } else { -1e-6 };
            last = Some(r.add(
                Point {
                    time: i * 64 * S,
                    offset: offset + noise,
                    delay: 1e-3,
                },
                0.0,
            ));
        }
        let e = last.unwrap();
        assert!(r.len() < 32, "old points dropped: {}", r.len());
        assert!((e.frequency - 10e-6).abs() < 1e-6, "{}", e.frequency);
    }

    #[test]
    fn clock_changes_move_the_points() {
        let mut r = Regression::new();
        for i in 0..5 {
            r.add(
                Point {
                    time: i * S,
                    offset: 1.0 + 1e-4 * i as f64,
                    delay: 1e-3,
                },
                0.0,
            );
        }
        // The clock is stepped forward by the 1.0004 s it was behind at t = 4 s and made faster
        // by the 100 ppm it was slow.
        r.clock_changed(4 * S, 1.0004, 1e-4, 0.0);
        let e = r.estimate().unwrap();
        assert!(e.frequency.abs() < 1e-12 && e.offset.abs() < 1e-12, "{e:?}");
    }

    #[test]
    fn a_jump_of_the_source_starts_the_line_afresh() {
        let mut r = Regression::new();
        let point = |i: i64, offset: f64| Point {
            time: i * 64 * S,
            offset,
            delay: 1e-3,
        };
        for i in 0..10 {
            r.add(point(i, 20e-6 * (i * 64) as f64), 0.0);
        }
        // The source jumps by an hour: its offset is the hour it shows, not a slope through it.
        let e = r.add(point(10, 3600.0), 20e-6);
        assert_eq!((e.points, e.offset), (1, 3600.0));
        // A jump back likewise.
        let e = r.add(point(11, 0.0), 20e-6);
        assert_eq!((e.points, e.offset), (1, 0.0));
        // Drift at 500 ppm over a long poll is not a jump.
        let e = r.add(point(12, 500e-6 * 64.0 * 1.5), 20e-6);
        assert_eq!(e.points, 2);
    }
}
