//! `--discipline-system`: the kernel clock follows strata's clock model, as chrony disciplines
//! it. strata keeps measuring against the kernel clock and keeps its own model authoritative;
//! what the model says is moved into the kernel:
//!
//! - at start, if the first update stepped the model, the kernel clock is stepped by the same
//!   amount (`ADJ_SETOFFSET`), once;
//! - after that, the model's whole rate (frequency plus any running slew) is moved into the
//!   kernel's frequency (`ADJ_FREQUENCY`, within the kernel's ±500 ppm), so the kernel slews as
//!   strata's served time does and never steps;
//! - every change is told back to the engine (`Engine::clock_changed`), which moves its samples
//!   and its model so that the served time stays exactly continuous;
//! - `STA_UNSYNC` is cleared (and `maxerror`/`esterror` set) while synchronized, so the kernel's
//!   11-minute mode copies the system time into the RTC; it is set again when not.
//!
//! The timex values are computed by pure functions, tested without touching the clock; only
//! [`SystemClockDiscipline::apply`] calls adjtimex with modes set.

use std::io;

use crate::proto::clock::ClockParams;

/// The kernel's frequency range: ±500 ppm, in its unit of 2^-16 ppm.
pub const MAX_KERNEL_FREQUENCY: i64 = 500 << 16;

/// What to ask of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelAdjustment {
    /// Step the clock by this many nanoseconds (only at start).
    pub step_ns: Option<i64>,
    /// Set the frequency to this (2^-16 ppm).
    pub frequency: i64,
    /// Clear STA_UNSYNC (and report these errors, µs) or set it.
    pub synchronized: bool,
    pub maxerror_us: i64,
    pub esterror_us: i64,
}

/// The frequency (2^-16 ppm) that makes the kernel run at `ppm` faster.
pub fn kernel_frequency(ppm: f64) -> i64 {
    ((ppm * 65536.0).round() as i64).clamp(-MAX_KERNEL_FREQUENCY, MAX_KERNEL_FREQUENCY)
}

/// The timex for an adjustment: the modes and fields adjtimex reads.
pub fn timex_for(adj: &KernelAdjustment, current_status: i32) -> libc::timex {
    // SAFETY: an all-zero timex is a valid value (modes 0, every field zero).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let mut modes = libc::ADJ_FREQUENCY | libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
    tx.freq = adj.frequency as libc::c_long;
    // PLL and FLL off: the kernel must not correct on its own; strata sets the frequency.
    let mut status = current_status & !(libc::STA_PLL | libc::STA_FLL | libc::STA_UNSYNC);
    if !adj.synchronized {
        status |= libc::STA_UNSYNC;
    }
    tx.status = status;
    tx.maxerror = adj.maxerror_us as libc::c_long;
    tx.esterror = adj.esterror_us as libc::c_long;
    if let Some(step) = adj.step_ns {
        modes |= libc::ADJ_SETOFFSET | libc::ADJ_NANO;
        tx.time.tv_sec = step.div_euclid(1_000_000_000) as libc::time_t;
        tx.time.tv_usec = step.rem_euclid(1_000_000_000) as libc::suseconds_t;
    }
    tx.modes = modes as libc::c_uint;
    tx
}

/// Moves the clock model into the kernel. Keeps track of what the kernel was given.
#[derive(Debug, Clone)]
pub struct SystemClockDiscipline {
    /// What strata has set it to (2^-16 ppm); it starts at the kernel's own.
    frequency: i64,
    stepped: bool,
}

/// The change the kernel clock went through, to tell the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelChange {
    pub step: f64,
    /// Change of the kernel's rate (s/s).
    pub dfreq: f64,
}

impl SystemClockDiscipline {
    /// Starts from the kernel's current frequency (read with [`read_kernel_frequency`]).
    pub fn new(base_frequency: i64) -> Self {
        SystemClockDiscipline {
            frequency: base_frequency,
            stepped: false,
        }
    }

    /// What to ask of the kernel so that it carries the model `params` (whose offset is stepped
    /// into the kernel only the first time and only if `step_allowed`), and the change that
    /// makes to the kernel clock. The model's rate is `params`'s frequency.
    pub fn plan(
        &self,
        params: &ClockParams,
        correction_ns: i64,
        step_allowed: bool,
        synchronized: bool,
        root_distance: f64,
    ) -> (KernelAdjustment, KernelChange) {
        let step_ns = (step_allowed && !self.stepped && correction_ns != 0).then_some(correction_ns);
        let wanted = self.frequency + kernel_frequency(params.frequency_ppm());
        let frequency = wanted.clamp(-MAX_KERNEL_FREQUENCY, MAX_KERNEL_FREQUENCY);
        let dfreq = (frequency - self.frequency) as f64 / 65536.0 * 1e-6;
        let error_us = (root_distance * 1e6).ceil() as i64;
        (
            KernelAdjustment {
                step_ns,
                frequency,
                synchronized,
                maxerror_us: error_us.min(16_000_000),
                esterror_us: error_us.min(16_000_000),
            },
            KernelChange {
                step: step_ns.unwrap_or(0) as f64 * 1e-9,
                dfreq,
            },
        )
    }

    /// Calls adjtimex with the adjustment. On success the kernel has been changed and the caller
    /// must tell the engine.
    pub fn apply(&mut self, adj: &KernelAdjustment) -> io::Result<()> {
        let status = read_status()?;
        let mut tx = timex_for(adj, status);
        // SAFETY: `tx` is a valid, initialized timex; adjtimex reads the fields its modes name
        // and writes the kernel's state back into it.
        let rc = unsafe { libc::adjtimex(&mut tx) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.frequency = adj.frequency;
        if adj.step_ns.is_some() {
            self.stepped = true;
        }
        Ok(())
    }
}

/// The kernel clock's status bits (STA_*), read without changing anything.
pub fn read_status() -> io::Result<i32> {
    // SAFETY: an all-zero timex with modes 0 is a read-only query.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex; with modes 0 adjtimex changes nothing.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tx.status)
}

/// The kernel's frequency now (2^-16 ppm), read without changing anything.
pub fn read_kernel_frequency() -> io::Result<i64> {
    // SAFETY: as in read_status.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex; with modes 0 adjtimex changes nothing.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tx.freq as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_are_in_the_kernels_unit_and_range() {
        assert_eq!(kernel_frequency(1.0), 65536);
        assert_eq!(kernel_frequency(-50.0), -50 * 65536);
        assert_eq!(kernel_frequency(900.0), MAX_KERNEL_FREQUENCY);
    }

    #[test]
    fn the_first_plan_steps_and_moves_the_rate() {
        let d = SystemClockDiscipline::new(10 << 16);
        let params = ClockParams {
            tai_minus_utc: 37,
            base_ns: 0,
            offset_ns: 250_000_000,
            frequency_q48: ClockParams::frequency_q48_from_ppm(-50.0),
            leap: Default::default(),
        };
        let (adj, change) = d.plan(&params, 250_000_000, true, true, 0.001);
        assert_eq!(adj.step_ns, Some(250_000_000));
        assert_eq!(adj.frequency, (10 - 50) << 16);
        assert!((change.dfreq + 50e-6).abs() < 1e-12 && (change.step - 0.25).abs() < 1e-12);
        assert_eq!((adj.maxerror_us, adj.esterror_us), (1000, 1000));

        let tx = timex_for(&adj, libc::STA_PLL | libc::STA_UNSYNC | libc::STA_NANO);
        let modes = tx.modes;
        assert_ne!(modes & libc::ADJ_SETOFFSET, 0);
        assert_ne!(modes & libc::ADJ_NANO, 0);
        assert_ne!(modes & libc::ADJ_FREQUENCY, 0);
        assert_eq!((tx.time.tv_sec, tx.time.tv_usec), (0, 250_000_000));
        assert_eq!(tx.freq, -40 << 16);
        assert_eq!(
            tx.status & libc::STA_UNSYNC,
            0,
            "cleared so the RTC is kept in step"
        );
        assert_eq!(tx.status & libc::STA_PLL, 0, "the kernel PLL stays off");
        assert_ne!(tx.status & libc::STA_NANO, 0, "other bits kept");
    }

    #[test]
    fn later_plans_never_step_and_negative_steps_split_correctly() {
        let mut d = SystemClockDiscipline::new(0);
        d.stepped = true;
        let params = ClockParams {
            frequency_q48: ClockParams::frequency_q48_from_ppm(2.0),
            ..ClockParams::identity(0)
        };
        let (adj, change) = d.plan(&params, 5_000_000, true, false, 2.0);
        assert_eq!(adj.step_ns, None);
        assert_eq!(change.step, 0.0);
        assert_eq!(adj.frequency, 2 << 16);
        let tx = timex_for(&adj, 0);
        assert_eq!(tx.modes & libc::ADJ_SETOFFSET, 0);
        assert_ne!(tx.status & libc::STA_UNSYNC, 0, "unsynchronized: set");

        let step = KernelAdjustment {
            step_ns: Some(-1_500_000_000),
            frequency: 0,
            synchronized: true,
            maxerror_us: 0,
            esterror_us: 0,
        };
        let tx = timex_for(&step, 0);
        assert_eq!((tx.time.tv_sec, tx.time.tv_usec), (-2, 500_000_000));
    }
}
