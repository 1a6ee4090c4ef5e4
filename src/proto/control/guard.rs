//! Step and panic limits: which corrections the clock model may take from the sources.
//!
//! An NTP server hands its time to every client it has, so a correction that the sources ask
//! for is not applied just because they agree on it. Before the first synchronization the
//! clock model is whatever the kernel clock says; a first correction is stepped, but only
//! within the start-up limits (forward and backward apart, as ntpd-rs has them): a kernel clock
//! that is an hour off, or sources that are, need an operator's word (`--allow-step`, as
//! ntpd's `-g`). Once strata has served synchronized time, a correction is accepted only within
//! what strata itself claims its error could be (its root distance, which grows in holdover)
//! or `max_correction`, whichever is larger: a larger one means a source jumped (true time does
//! not), so it is refused, and strata goes into holdover on its own clock instead.
//!
//! Pure: the engine asks, this answers and keeps the figures that status and metrics show.

/// Default largest first step forward (the sources ahead of the kernel clock), seconds:
/// ntpd's panic threshold.
pub const DEFAULT_STARTUP_FORWARD: f64 = 1000.0;
/// Default largest first step backward, seconds.
pub const DEFAULT_STARTUP_BACKWARD: f64 = 1000.0;
/// Default floor of the largest correction once synchronized, seconds.
pub const DEFAULT_MAX_CORRECTION: f64 = 1.0;
/// Largest frequency error of a kernel clock that the sources may imply (s/s): the kernel's
/// own limit of adjustment. A line steeper than this is a source that drifts, not our clock.
pub const MAX_FREQUENCY: f64 = 500e-6;

/// The configured limits, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLimits {
    pub startup_forward: f64,
    pub startup_backward: f64,
    pub max_correction: f64,
    /// Accept the next correction whatever its size (once).
    pub allow_once: bool,
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits {
            startup_forward: DEFAULT_STARTUP_FORWARD,
            startup_backward: DEFAULT_STARTUP_BACKWARD,
            max_correction: DEFAULT_MAX_CORRECTION,
            allow_once: false,
        }
    }
}

/// When a correction is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No synchronized time was served yet: a step is possible.
    Startup,
    /// Synchronized time was served: only slews, within the limit.
    Later,
}

/// A correction that was not applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    pub phase: Phase,
    /// The correction asked for (seconds, positive: the sources are ahead of the served time),
    /// or for `frequency`, the frequency implied (s/s).
    pub error: f64,
    /// The limit it broke (seconds, or s/s for a frequency).
    pub limit: f64,
    /// Whether it was the frequency, not the offset, that was out of bounds.
    pub frequency: bool,
}

impl Refusal {
    /// One line for the log and the status: the figures and what to do.
    pub fn describe(&self) -> String {
        if self.frequency {
            return format!(
                "the sources imply a clock frequency error of {:+.1} ppm, beyond the {:.0} ppm \
                 any clock may have: they drift; the correction is refused",
                self.error * 1e6,
                self.limit * 1e6
            );
        }
        let direction = if self.error > 0.0 { "ahead of" } else { "behind" };
        match self.phase {
            Phase::Startup => format!(
                "the sources are {:.6} s {direction} the clock, beyond the start-up step limit of \
                 {} s {}: not synchronizing; if they are right, restart with --allow-step \
                 (once) or raise max_startup_step_{}",
                self.error.abs(),
                self.limit,
                if self.error > 0.0 { "forward" } else { "backward" },
                if self.error > 0.0 { "forward" } else { "backward" },
            ),
            Phase::Later => format!(
                "the sources are {:.6} s {direction} the served time, beyond the {:.6} s \
                 correction limit: refused, serving on the clock's own (holdover); if they are \
                 right, restart with --allow-step or raise max_correction",
                self.error.abs(),
                self.limit
            ),
        }
    }
}

/// The limits and what they did.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    limits: StepLimits,
    /// The refusal in force (the last update was refused), if any.
    active: Option<Refusal>,
    refusals: u64,
    steps: u64,
    overrides_used: u64,
}

/// What the guard decided about one correction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Apply it; `may_step` says whether a large error may be stepped.
    Accept { may_step: bool, overridden: bool },
    /// Do not apply it. `first` is true when no refusal was in force before (log it then).
    Refuse { refusal: Refusal, first: bool },
}

impl Guard {
    pub fn new(limits: StepLimits) -> Guard {
        Guard {
            limits,
            active: None,
            refusals: 0,
            steps: 0,
            overrides_used: 0,
        }
    }

    pub fn limits(&self) -> &StepLimits {
        &self.limits
    }

    /// The refusal in force, if the last correction asked for was refused.
    pub fn active(&self) -> Option<&Refusal> {
        self.active.as_ref()
    }

    /// Corrections refused so far (each update refused counts).
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// Steps made so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Records a step the discipline made.
    pub fn stepped(&mut self) {
        self.steps += 1;
    }

    /// Judges a correction of `error` seconds with the sources' frequency `frequency` (s/s).
    /// `own_distance` is the root distance strata claims for its served time now (seconds).
    pub fn judge(&mut self, phase: Phase, error: f64, frequency: f64, own_distance: f64) -> Verdict {
        if self.limits.allow_once {
            self.limits.allow_once = false;
            self.overrides_used += 1;
            self.active = None;
            return Verdict::Accept {
                may_step: true,
                overridden: true,
            };
        }
        let refusal = if frequency.abs() > MAX_FREQUENCY {
            Some(Refusal {
                phase,
                error: frequency,
                limit: MAX_FREQUENCY,
                frequency: true,
            })
        } else {
            let limit = match phase {
                Phase::Startup if error >= 0.0 => self.limits.startup_forward,
                Phase::Startup => self.limits.startup_backward,
                Phase::Later => self.limits.max_correction.max(own_distance),
            };
            (error.abs() > limit).then_some(Refusal {
                phase,
                error,
                limit,
                frequency: false,
            })
        };
        match refusal {
            Some(refusal) => {
                self.refusals += 1;
                let first = self.active.is_none();
                self.active = Some(refusal);
                Verdict::Refuse { refusal, first }
            }
            None => {
                self.active = None;
                Verdict::Accept {
                    may_step: phase == Phase::Startup,
                    overridden: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_limits_are_per_direction() {
        let mut g = Guard::new(StepLimits {
            startup_forward: 100.0,
            startup_backward: 10.0,
            ..StepLimits::default()
        });
        assert!(matches!(
            g.judge(Phase::Startup, 50.0, 0.0, 0.0),
            Verdict::Accept { may_step: true, .. }
        ));
        let Verdict::Refuse { refusal, first } = g.judge(Phase::Startup, -50.0, 0.0, 0.0) else {
            panic!()
        };
        assert!(first);
        assert_eq!(refusal.limit, 10.0);
        assert!(refusal.describe().contains("behind"), "{}", refusal.describe());
        assert!(refusal.describe().contains("--allow-step"));
        // The same refusal again is not a first one; an accepted correction ends it.
        assert!(matches!(
            g.judge(Phase::Startup, -60.0, 0.0, 0.0),
            Verdict::Refuse { first: false, .. }
        ));
        assert_eq!(g.refusals(), 2);
        assert!(g.active().is_some());
        assert!(matches!(
            g.judge(Phase::Startup, 5.0, 0.0, 0.0),
            Verdict::Accept { .. }
        ));
        assert!(g.active().is_none());
    }

    #[test]
    fn later_limit_is_the_larger_of_the_floor_and_the_own_distance() {
        let mut g = Guard::new(StepLimits::default());
        assert!(matches!(
            g.judge(Phase::Later, 0.9, 0.0, 0.01),
            Verdict::Accept { may_step: false, .. }
        ));
        assert!(matches!(
            g.judge(Phase::Later, -30.0, 0.0, 0.01),
            Verdict::Refuse { .. }
        ));
        // After long holdover the served time may really be that far off.
        assert!(matches!(
            g.judge(Phase::Later, -30.0, 0.0, 31.0),
            Verdict::Accept { .. }
        ));
    }

    #[test]
    fn allow_once_accepts_one_correction_of_any_size() {
        let mut g = Guard::new(StepLimits {
            allow_once: true,
            ..StepLimits::default()
        });
        assert_eq!(
            g.judge(Phase::Later, 3600.0, 0.0, 0.0),
            Verdict::Accept {
                may_step: true,
                overridden: true
            }
        );
        assert!(matches!(
            g.judge(Phase::Later, 3600.0, 0.0, 0.0),
            Verdict::Refuse { .. }
        ));
    }

    #[test]
    fn an_impossible_frequency_is_refused() {
        let mut g = Guard::new(StepLimits::default());
        let Verdict::Refuse { refusal, .. } = g.judge(Phase::Later, 0.0, 800e-6, 0.0) else {
            panic!()
        };
        assert!(refusal.frequency);
        assert!(
            refusal.describe().contains("+800.0 ppm"),
            "{}",
            refusal.describe()
        );
    }
}
