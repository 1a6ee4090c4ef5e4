//! The control core: every source, selection, the discipline and the published state, as one
//! deterministic state machine. It performs no I/O and reads no clock: the caller passes the
//! kernel time (CLOCK_REALTIME nanoseconds, or a simulated one) into every call, sends the
//! packets [`Engine::transmit`] returns, feeds back what arrives, calls [`Engine::tick`] at
//! [`Engine::next_wakeup`] and publishes [`Engine::published`].
//!
//! States: unsynchronized until a selection succeeds; synchronized while one does; in holdover
//! when none does (the clock runs on its last frequency, the root dispersion grows at PHI from
//! the last update) until the root distance reaches `max_distance`, then unsynchronized (LI=3).
//! With `local_stratum` set, the local clock is served at that stratum whenever no source is
//! usable, instead of holdover and unsynchronized; sources at that stratum or above are not used
//! (RFC 5905's orphan mode).

use std::net::SocketAddr;

use super::auth::{AuthStatus, MacTrailer, SourceAuth, MAX_MAC_LEN};
use super::constraint::{Constraints, Verdict as ConstraintVerdict};
use super::discipline::{Correction, Discipline};
use super::events::{Event, KissAction, MeasurementRecord, StatisticsRecord};
use super::filter::PHI;
use super::guard::{Guard, Phase, Refusal, StepLimits, Verdict};
use super::leapplan::LeapSettings;
use super::leapstate::LeapState;
pub use super::leapstate::{LeapStatus, LEAP_CLOSE};
use super::local::{local_root_dispersion, LOCAL_REFID};
use super::packet::OurState;
use super::pps::{self, PulseCounts, PulseOptions, PulseReference, PulseRefusal};
use super::refclock::{Accumulator, RefSample, RefclockDriver, RefclockSpec};
use super::refid::refid_of;
use super::select::{select, Candidate, NoSelection};
use super::source::{Association, Context, Outcome, Source, Unfit, Upstream};
use super::spec::SourceOptions;
use crate::proto::auth::KeyTable;
use crate::proto::clock::{ClockParams, LeapScale};
use crate::proto::leap::LeapList;
use crate::proto::state::{Published, ServerState, UnsyncPolicy};
use crate::proto::wire::ntp::Leap;
use crate::proto::wire::{NtpShort, NtpTimestamp};

const SECOND: i64 = 1_000_000_000;
/// RFC 5905's MAXDIST: the largest root distance served as synchronized.
pub const DEFAULT_MAX_DISTANCE: f64 = 1.5;
/// The state turns unsynchronized this long before the root distance would reach the maximum,
/// so that no reply is ever marked good beyond it however late the tick comes.
const DEADLINE_MARGIN: i64 = SECOND;
/// The local reference's reference time is refreshed this often (replies grow its dispersion).
const LOCAL_REFRESH: i64 = SECOND;
/// Hysteresis: once not serving synchronized time (unsynchronized, or the local reference),
/// strata synchronizes again only when the root distance is at most this share of the
/// maximum, so that a distance hovering at the maximum does not flip the state every poll.
pub const ENTRY_SHARE: f64 = 0.5;
/// Before the first synchronization, selection waits this long for every source to answer (an
/// initial burst takes 14 s), so that the first source to answer, which may be a falseticker,
/// does not get to step the clock alone.
pub const STARTUP_WAIT: i64 = 16 * SECOND;

/// What the core is told once, at start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Serve the local clock at this stratum when no source is usable.
    pub local_stratum: Option<u8>,
    pub unsync_policy: UnsyncPolicy,
    /// Largest root distance (seconds) of a usable source and of the served time.
    pub max_distance: f64,
    /// Truechimers needed to synchronize.
    pub minsources: usize,
    /// Error above which the first update steps the clock model (seconds).
    pub step_threshold: f64,
    /// The step and panic limits (see [`super::guard`]).
    pub limits: StepLimits,
    /// Our clock's precision (log2 s).
    pub precision: i8,
    pub tai_minus_utc: i32,
    /// The `leap` override and how a leap is served (stepped or smeared).
    pub leap: LeapSettings,
}

/// A source's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub usize);

/// A packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub source: SourceId,
    pub to: SocketAddr,
    /// The NTP header.
    pub packet: [u8; 48],
    /// The MAC that follows it, for a source with a key.
    pub mac: Option<MacTrailer>,
}

impl Transmit {
    /// The datagram: the header and the MAC, if any, in `buf`.
    pub fn datagram<'a>(&self, buf: &'a mut [u8; 48 + MAX_MAC_LEN]) -> &'a [u8] {
        buf[..48].copy_from_slice(&self.packet);
        let mac = self.mac.as_ref().map_or(&[][..], |m| m.as_bytes());
        buf[48..48 + mac.len()].copy_from_slice(mac);
        &buf[..48 + mac.len()]
    }
}

/// Where the server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Unsynchronized,
    Synchronized { system_peer: SourceId },
    Holdover,
    Local,
}

/// A source as the status output shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceStatus {
    pub id: SourceId,
    pub addr: SocketAddr,
    pub association: Association,
    pub reach: u8,
    pub poll: i8,
    pub stratum: Option<u8>,
    /// Source time minus served time now (seconds), if estimated.
    pub offset: Option<f64>,
    pub unfit: Option<Unfit>,
    pub falseticker: bool,
    pub survivor: bool,
    /// Its key and whether its packets pass (`key N`); None: no key.
    pub auth: Option<AuthStatus>,
}

#[derive(Debug, Clone)]
struct Slot {
    source: Source,
    /// The last reason logged for not using it, so that each change is logged once.
    reported: Option<Unfit>,
    falseticker: bool,
    survivor: bool,
    reachable_reported: bool,
    /// Its last sample was outside the time constraints: not a candidate until one is inside.
    outside_constraint: bool,
    /// Whether its packets passed its key, as last logged (None: not yet, or no key).
    auth_reported: Option<bool>,
    /// A reference clock's readings since its last poll and the refid it announces.
    refclock: Option<(Accumulator, [u8; 4])>,
    /// A PPS refclock's options and what became of its edges.
    pulse: Option<(PulseOptions, PulseCounts)>,
}

impl Slot {
    /// A slot as it starts: nothing reported, nothing judged yet, no refclock state.
    fn new(source: Source) -> Slot {
        Slot {
            source,
            reported: None,
            falseticker: false,
            survivor: false,
            reachable_reported: false,
            outside_constraint: false,
            auth_reported: None,
            refclock: None,
            pulse: None,
        }
    }
}

pub struct Engine {
    config: EngineConfig,
    slots: Vec<Option<Slot>>,
    discipline: Discipline,
    server: ServerState,
    sync: SyncState,
    /// Kernel time of the last clock update; its root delay and dispersion (seconds).
    reference_kernel: i64,
    root_delay: f64,
    root_dispersion: f64,
    next_local_refresh: i64,
    /// Whether a selection has produced a fitted frequency yet.
    frequency_known: bool,
    /// Kernel time of the start; until [`STARTUP_WAIT`] after it, the first synchronization
    /// waits for every source.
    started: i64,
    ever_synchronized: bool,
    last_tick: i64,
    guard: Guard,
    /// Changes of [`SyncState`] (a new system peer is not one).
    state_changes: u64,
    /// The key file's keys, for sources with `key N`.
    keys: std::sync::Arc<KeyTable>,
    events: Vec<Event>,
    /// The leap second: what decides it, and what the served time does about it.
    leap: LeapState,
    /// Kernel time of the next leap boundary (announcement, commitment, step, fold).
    leap_wakeup: i64,
    /// The time constraints (HTTPS Date headers), and the samples and corrections they
    /// rejected.
    constraints: Constraints,
    constraint_rejections: u64,
    /// A correction outside the constraints was refused and said so (said once until one is
    /// accepted).
    constraint_refused: bool,
    /// Constraints are configured and their first fetch has not ended: the first
    /// synchronization (and its step) waits for them.
    awaiting_constraints: bool,
}

impl Engine {
    /// A core with no sources yet, serving `params` (normally the identity) from kernel time `now`.
    pub fn new(config: EngineConfig, params: ClockParams, now: i64) -> Engine {
        let mut engine = Engine {
            config,
            slots: Vec::new(),
            discipline: Discipline::new(
                ClockParams {
                    tai_minus_utc: config.tai_minus_utc,
                    ..params
                },
                config.step_threshold,
            ),
            server: ServerState::unsynchronized(config.precision, config.unsync_policy),
            sync: SyncState::Unsynchronized,
            reference_kernel: now,
            root_delay: 0.0,
            root_dispersion: 0.0,
            next_local_refresh: now,
            frequency_known: false,
            started: now,
            ever_synchronized: false,
            last_tick: now,
            guard: Guard::new(config.limits),
            state_changes: 0,
            keys: Default::default(),
            events: Vec::new(),
            leap: LeapState::new(config.leap),
            leap_wakeup: i64::MAX,
            constraints: Constraints::default(),
            constraint_rejections: 0,
            constraint_refused: false,
            awaiting_constraints: false,
        };
        engine.refresh_leap(now);
        if config.local_stratum.is_some() {
            engine.go_local(now);
        }
        engine
    }

    /// The clock parameters served now: the discipline's model and the leap second.
    pub fn params(&self) -> ClockParams {
        ClockParams {
            leap: self.leap.scale(),
            ..self.discipline.params()
        }
    }

    /// The served time before the pending leap at kernel time `now` (`u`, see
    /// `crate::proto::clock::scale`).
    fn pre_leap(&self, now: i64) -> NtpTimestamp {
        self.params().pre_leap_from_realtime(now)
    }

    /// Takes the leap-seconds.list (`None`: none, or it did not verify).
    pub fn set_leap_list(&mut self, list: Option<LeapList>, now: i64) {
        self.leap.set_list(list);
        self.refresh_leap(now);
    }

    /// The kernel is armed (STA_INS/STA_DEL, by strata's `--discipline-system` or by another
    /// daemon) to step CLOCK_REALTIME at the pending leap itself, or not: readings of that clock
    /// then already carry the leap.
    pub fn set_kernel_leap(&mut self, armed: bool) {
        self.leap.set_kernel(armed);
    }

    /// The pending leap, if it is to be stepped (the kernel can be armed for it).
    pub fn pending_step(&self) -> Option<i8> {
        self.leap.pending_step()
    }

    /// The kernel performed the pending leap: CLOCK_REALTIME stepped by -delta seconds and its
    /// TAI offset changed by delta. `now` is a CLOCK_REALTIME reading taken after it. The model
    /// takes the step as any change of the kernel clock (the served time stays continuous),
    /// and the leap is done.
    pub fn kernel_leapt(&mut self, now: i64) {
        let Some(delta) = self.leap.pending_step() else {
            return;
        };
        let step_ns = -(delta as i64) * SECOND;
        self.clock_changed(now - step_ns, step_ns as f64 * 1e-9, 0.0);
        self.set_tai_offset(self.config.tai_minus_utc + delta as i32);
        self.leap.fold(&mut self.events);
        self.refresh_leap(now);
    }

    /// The leap second now.
    pub fn leap_status(&self, now: i64) -> LeapStatus {
        self.leap.status(self.pre_leap(now))
    }

    /// Whether kernel time `now` is within [`LEAP_CLOSE`] of the pending leap (no sample is
    /// taken then).
    pub fn near_leap(&self, now: i64) -> bool {
        self.leap.near(self.pre_leap(now))
    }

    /// Brings the leap second up to date (see [`LeapState::refresh`]), sets the leap indicator
    /// and works out when to look again.
    fn refresh_leap(&mut self, now: i64) {
        let model = self.discipline.params();
        let u_of = |leap: &LeapScale| ClockParams { leap: *leap, ..model }.pre_leap_from_realtime(now);
        self.leap.refresh(u_of, now, &mut self.events);
        if self.server.synchronized {
            self.server.leap = self.leap.announced(self.pre_leap(now));
        }
        let rate = 1.0 + self.params().frequency_ppm() * 1e-6;
        // A microsecond late rather than early: the tick must find the boundary passed.
        self.leap_wakeup = self.leap.next_boundary().map_or(i64::MAX, |ahead| {
            now + (ahead as f64 / rate).ceil() as i64 + 1_000
        });
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The snapshot responders should serve now.
    pub fn published(&self) -> Published {
        Published {
            server: self.server,
            clock: self.params(),
        }
    }

    pub fn sync_state(&self) -> SyncState {
        self.sync
    }

    /// The step and panic limits, and what they refused.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// How many times the synchronization state changed (a new system peer does not count).
    pub fn state_changes(&self) -> u64 {
        self.state_changes
    }

    fn set_sync(&mut self, new: SyncState) {
        if std::mem::discriminant(&new) != std::mem::discriminant(&self.sync) {
            self.state_changes += 1;
        }
        self.sync = new;
    }

    /// The frequency the clock model runs at beyond the kernel clock, without any slew (s/s).
    pub fn frequency(&self) -> f64 {
        self.discipline.frequency()
    }

    /// Constraints are configured: the first synchronization waits for
    /// [`Engine::set_constraints`].
    pub fn await_constraints(&mut self) {
        self.awaiting_constraints = true;
    }

    /// The time constraints in force from now on (empty: none reachable, nothing checked).
    pub fn set_constraints(&mut self, constraints: Constraints) {
        self.constraints = constraints;
        self.awaiting_constraints = false;
    }

    pub fn constraints(&self) -> &Constraints {
        &self.constraints
    }

    /// Samples and corrections the time constraints rejected.
    pub fn constraint_rejections(&self) -> u64 {
        self.constraint_rejections
    }

    /// Takes the events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Adds a source, first polled at `now`. `local` is our address as the source sees it (the
    /// local address of the socket that talks to it), for loop detection.
    pub fn add_source(
        &mut self,
        addr: SocketAddr,
        association: Association,
        options: SourceOptions,
        local: Option<std::net::IpAddr>,
        now: i64,
    ) -> SourceId {
        let mut source = Source::new(addr, association, options, local.map(refid_of), now);
        if let Some(id) = options.key {
            source = source.with_auth(SourceAuth::new(id, self.keys.get(id).cloned()));
        }
        let slot = Slot::new(source);
        self.insert(slot)
    }

    /// Adds a reference clock, `index` being its place among the configured refclocks (for its
    /// default refid and pseudo-address), first polled one poll interval after `now`.
    pub fn add_refclock(&mut self, spec: &RefclockSpec, index: usize, now: i64) -> SourceId {
        let o = spec.options;
        let options = SourceOptions {
            iburst: false,
            minpoll: o.poll,
            maxpoll: o.poll,
            prefer: o.prefer,
            noselect: o.noselect,
            ..SourceOptions::default()
        };
        let first_poll = now + (SECOND << o.poll.clamp(0, 17));
        let source = Source::new(
            spec.pseudo_addr(index),
            Association::Refclock,
            options,
            None,
            first_poll,
        );
        self.insert(Slot {
            refclock: Some((Accumulator::new(o), spec.refid(index))),
            pulse: matches!(spec.driver, RefclockDriver::Pps(_)).then(|| (o.pulse, PulseCounts::default())),
            ..Slot::new(source)
        })
    }

    /// An edge of PPS refclock `id` at kernel time `edge`, `missed` edges after the one before
    /// (see [`super::pps`]): numbered by the latest reading of its `lock` refclock, or by the
    /// served clock while that is synchronized, it becomes a reading that counts at the next
    /// poll; otherwise it is dropped and counted by the reason, which is returned.
    pub fn refclock_pulse(&mut self, id: SourceId, edge: i64, missed: u32) -> Result<(), PulseRefusal> {
        let Some(Some(slot)) = self.slots.get(id.0) else {
            return Ok(());
        };
        let (Some((options, _)), Some((acc, _))) = (slot.pulse, slot.refclock.as_ref()) else {
            return Ok(());
        };
        let dispersion = 2f64.powi(acc.options().precision as i32);
        let reference = match options.lock {
            Some(lock) => PulseReference::Lock(self.lock_reading(id, lock)),
            None => PulseReference::Served(pps::ServedClock {
                // Holdover still serves time within its root distance; the local clock does not
                // know which second it is.
                synchronized: matches!(self.sync, SyncState::Synchronized { .. } | SyncState::Holdover),
                correction: (self.params().corrected_utc_ns(edge) - edge) as f64 * 1e-9,
                distance: self.root_distance(edge),
                leap: self.server.leap,
            }),
        };
        let numbered = pps::number_pulse(edge, options.rate, dispersion, reference);
        let Some(slot) = self.slots.get_mut(id.0).and_then(|s| s.as_mut()) else {
            return Ok(());
        };
        if let Some((_, counts)) = slot.pulse.as_mut() {
            counts.missed += missed as u64;
            match numbered {
                Ok(_) => counts.numbered += 1,
                Err(why) => counts.count(why),
            }
        }
        let reading = numbered?;
        if let Some((acc, _)) = slot.refclock.as_mut() {
            acc.push(reading);
        }
        Ok(())
    }

    /// The latest reading of the refclock (other than `pps`) announcing `refid`, and its
    /// dispersion.
    fn lock_reading(&self, pps: SourceId, refid: [u8; 4]) -> Option<pps::LockReading> {
        self.slots.iter().enumerate().find_map(|(i, slot)| {
            let (acc, id) = slot.as_ref()?.refclock.as_ref()?;
            if i == pps.0 || *id != refid {
                return None;
            }
            Some(pps::LockReading {
                reading: acc.latest()?,
                dispersion: 2f64.powi(acc.options().precision as i32),
            })
        })
    }

    /// What became of a PPS refclock's edges; `None` for other sources.
    pub fn refclock_pulses(&self, id: SourceId) -> Option<PulseCounts> {
        self.slots
            .get(id.0)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.pulse)
            .map(|(_, counts)| counts)
    }

    /// A reading of reference clock `id` (see [`super::refclock`]); it counts at the next poll.
    pub fn refclock_reading(&mut self, id: SourceId, reading: RefSample) {
        if let Some((acc, _)) = self
            .slots
            .get_mut(id.0)
            .and_then(|s| s.as_mut())
            .and_then(|s| s.refclock.as_mut())
        {
            acc.push(reading);
        }
    }

    /// The refid a reference clock announces; `None` for a network source.
    pub fn refclock_refid(&self, id: SourceId) -> Option<[u8; 4]> {
        self.slots
            .get(id.0)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.refclock.as_ref())
            .map(|(_, refid)| *refid)
    }

    fn insert(&mut self, slot: Slot) -> SourceId {
        let index = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        SourceId(index)
    }

    /// The keys of the key file, which sources with `key N` use (sources added from now on).
    pub fn set_keys(&mut self, keys: std::sync::Arc<KeyTable>) {
        self.keys = keys;
    }

    /// Removes a source (a pool member being replaced). Selection goes on without it.
    pub fn remove_source(&mut self, id: SourceId, now: i64) {
        if let Some(slot) = self.slots.get_mut(id.0) {
            *slot = None;
        }
        if self.sync == (SyncState::Synchronized { system_peer: id }) {
            self.reselect(now);
        }
    }

    pub fn source_ids(&self) -> Vec<SourceId> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .map(SourceId)
            .collect()
    }

    pub fn source(&self, id: SourceId) -> Option<&Source> {
        self.slots.get(id.0).and_then(|s| s.as_ref()).map(|s| &s.source)
    }

    /// Every source's status at kernel time `now`.
    pub fn sources(&self, now: i64) -> Vec<SourceStatus> {
        let correction = self.discipline.correction_ns(now) as f64 * 1e-9;
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .map(|(i, s)| {
                let src = &s.source;
                let unfit = if s.outside_constraint {
                    Some(Unfit::OutsideConstraint)
                } else {
                    src.candidate(i, now, self.config.max_distance).err()
                };
                SourceStatus {
                    id: SourceId(i),
                    addr: src.addr,
                    association: src.association,
                    reach: src.reach(),
                    poll: src.poll(),
                    stratum: src.upstream().map(|u| u.stratum),
                    offset: src.estimate().map(|e| e.offset_at(now) - correction),
                    unfit,
                    falseticker: s.falseticker,
                    survivor: s.survivor,
                    auth: src.auth_status(),
                }
            })
            .collect()
    }

    /// Kernel time of the next call to [`Engine::transmit`] or [`Engine::tick`] that has work.
    pub fn next_wakeup(&self) -> i64 {
        let mut next = self
            .slots
            .iter()
            .flatten()
            .map(|s| s.source.next_poll())
            .min()
            .unwrap_or(i64::MAX);
        if let Some(end) = self.discipline.slew_end() {
            next = next.min(end);
        }
        next = next.min(self.leap_wakeup);
        if !self.ever_synchronized && self.started + STARTUP_WAIT > self.last_tick {
            next = next.min(self.started + STARTUP_WAIT);
        }
        match self.sync {
            SyncState::Synchronized { .. } | SyncState::Holdover => next = next.min(self.deadline()),
            SyncState::Local => next = next.min(self.next_local_refresh),
            SyncState::Unsynchronized => {}
        }
        next
    }

    fn our_state(&self) -> OurState {
        OurState {
            leap: self.server.leap,
            stratum: if self.server.synchronized {
                self.server.stratum
            } else {
                16
            },
            precision: self.config.precision,
            root_delay: self.server.root_delay,
            root_dispersion: self.server.root_dispersion,
            reference_id: self.server.reference_id,
            reference_time: self.server.reference_time,
        }
    }

    /// The packets due at `now`.
    pub fn transmit(&mut self, now: i64) -> Vec<Transmit> {
        let wire = self.params().ntp_from_realtime(now);
        let us = self.our_state();
        let mut out = Vec::new();
        let mut lost_any = false;
        let mut refclock_polls = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if !slot.source.is_due(now) {
                continue;
            }
            let packet = match slot.source.association {
                Association::Client => slot.source.client_request(wire),
                Association::Symmetric => slot.source.symmetric_packet(&us, wire),
                Association::Refclock => {
                    refclock_polls.push(SourceId(i));
                    continue;
                }
            };
            if slot.source.transmitted(wire, now) {
                self.events.push(Event::Unreachable {
                    addr: slot.source.addr,
                });
                slot.reachable_reported = false;
                lost_any = true;
            }
            out.push(Transmit {
                source: SourceId(i),
                to: slot.source.addr,
                packet,
                mac: slot.source.sign(&packet),
            });
        }
        if lost_any {
            self.reselect(now);
        }
        for id in refclock_polls {
            self.poll_refclock(id, now);
        }
        out
    }

    /// A reference clock's poll: the reach register shifts as for a request, and the readings
    /// since the last poll, median-filtered into one sample, answer it (none: it goes
    /// unanswered, and eight such polls make the refclock unreachable).
    fn poll_refclock(&mut self, id: SourceId, now: i64) {
        let wire = self.params().ntp_from_realtime(now);
        let ctx = self.context(now);
        let Some(slot) = self.slots.get_mut(id.0).and_then(|s| s.as_mut()) else {
            return;
        };
        let Some((acc, refid)) = slot.refclock.as_mut() else {
            return;
        };
        let refid = *refid;
        let taken = acc.take();
        let precision = acc.options().precision;
        if slot.source.transmitted(wire, now) {
            self.events.push(Event::Unreachable {
                addr: slot.source.addr,
            });
            slot.reachable_reported = false;
            self.reselect(now);
            return;
        }
        let Some(taken) = taken else {
            return;
        };
        let upstream = Upstream {
            leap: taken.leap,
            stratum: 0,
            precision,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: refid,
        };
        let outcome = slot.source.reference_sample(taken.sample, upstream, now, &ctx);
        let received = self.params().ntp_from_realtime(now);
        self.outcome(id, outcome, now, received);
    }

    /// What the engine tells a source about itself with each packet or sample.
    fn context(&self, now: i64) -> Context {
        Context {
            freq_hint: self.discipline.frequency(),
            freq_known: self.frequency_known,
            precision: self.config.precision,
            max_distance: self.config.max_distance,
            leap: self.leap.scale(),
            hold: self.near_leap(now),
        }
    }

    /// A packet from source `id` (on its own socket), received at kernel time `now`.
    pub fn receive(&mut self, id: SourceId, bytes: &[u8], now: i64) {
        let received = self.params().ntp_from_realtime(now);
        let ctx = self.context(now);
        let Some(slot) = self.slots.get_mut(id.0).and_then(|s| s.as_mut()) else {
            return;
        };
        let outcome = slot.source.receive(bytes, now, received, &ctx);
        self.outcome(id, outcome, now, received);
    }

    /// Events, selection and the clock update after what a packet or a refclock sample did.
    fn outcome(&mut self, id: SourceId, outcome: Outcome, now: i64, received: NtpTimestamp) {
        let Some(slot) = self.slots.get_mut(id.0).and_then(|s| s.as_mut()) else {
            return;
        };
        let addr = slot.source.addr;
        if let Some(AuthStatus {
            key,
            last: Some(verdict),
            ..
        }) = slot.source.auth_status()
        {
            if slot.auth_reported != Some(verdict.is_ok()) {
                slot.auth_reported = Some(verdict.is_ok());
                self.events.push(Event::Authentication {
                    addr,
                    key,
                    failure: verdict.err(),
                });
            }
        }
        let answered = !matches!(outcome, Outcome::Invalid(_) | Outcome::Kiss { .. });
        if answered && !slot.reachable_reported {
            slot.reachable_reported = true;
            self.events.push(Event::Reachable { addr });
        }
        match outcome {
            Outcome::Invalid(_) | Outcome::Held => {}
            Outcome::Kiss { code, known, poll } => {
                let action = match known {
                    Some(crate::proto::respond::KissCode::Rate) => KissAction::SlowedDown { poll },
                    Some(_) => KissAction::Dropped,
                    None => KissAction::Ignored,
                };
                self.events.push(Event::Kiss { addr, code, action });
                if action == KissAction::Dropped {
                    slot.reported = slot.source.denied().map(Unfit::Denied);
                    self.reselect(now);
                }
            }
            Outcome::Unusable(why) => {
                if slot.reported != Some(why) {
                    slot.reported = Some(why);
                    self.events.push(Event::Unusable { addr, why });
                }
                self.reselect(now);
            }
            Outcome::Measured {
                sample,
                output,
                estimate,
            } => {
                // Checked on the raw sample: true time minus kernel time, as the constraints are.
                let verdict = self.constraints.check(sample.offset, sample.time);
                slot.outside_constraint = matches!(verdict, ConstraintVerdict::Outside { .. });
                if slot.outside_constraint {
                    self.constraint_rejections += 1;
                    if slot.reported != Some(Unfit::OutsideConstraint) {
                        slot.reported = Some(Unfit::OutsideConstraint);
                        self.events.push(Event::Unusable {
                            addr,
                            why: Unfit::OutsideConstraint,
                        });
                    }
                    self.reselect(now);
                    return;
                }
                slot.reported = None;
                let up = *slot.source.upstream().expect("a measured source has a header");
                let correction = self.discipline.correction_ns(sample.time) as f64 * 1e-9;
                self.events.push(Event::Measurement(MeasurementRecord {
                    time: received,
                    addr,
                    leap: up.leap,
                    stratum: up.stratum,
                    reach: slot.source.reach(),
                    poll: slot.source.poll(),
                    offset: sample.offset - correction,
                    delay: sample.delay,
                    dispersion: sample.dispersion,
                    root_delay: up.root_delay.to_seconds_f64(),
                    root_dispersion: up.root_dispersion.to_seconds_f64(),
                    reference_id: up.reference_id,
                    used: output.is_some(),
                }));
                if let Some(e) = estimate {
                    let now_correction = self.discipline.correction_ns(now) as f64 * 1e-9;
                    self.events.push(Event::Statistics(StatisticsRecord {
                        time: received,
                        addr,
                        std_dev: e.residual_sd,
                        offset: e.offset_at(now) - now_correction,
                        offset_sd: e.offset_sd,
                        frequency_ppm: e.frequency * 1e6,
                        frequency_sd_ppm: e.frequency_sd * 1e6,
                        points: e.points,
                    }));
                    self.update(now);
                }
            }
        }
    }

    /// A symmetric packet (mode 1 or 2) that arrived on the server port from `from`. Returns
    /// false when no configured peer has that address (the packet is then ignored).
    pub fn receive_symmetric(&mut self, from: SocketAddr, bytes: &[u8], now: i64) -> bool {
        let id = self.slots.iter().position(|s| {
            s.as_ref().is_some_and(|s| {
                s.source.association == Association::Symmetric && s.source.addr.ip() == from.ip()
            })
        });
        match id {
            Some(i) => {
                self.receive(SourceId(i), bytes, now);
                true
            }
            None => false,
        }
    }

    /// The kernel clock was changed under us (see `Discipline::clock_changed`).
    pub fn clock_changed(&mut self, at: i64, step: f64, dfreq: f64) {
        self.discipline.clock_changed(at, step, dfreq);
        let hint = self.discipline.frequency();
        for slot in self.slots.iter_mut().flatten() {
            slot.source.clock_changed(at, step, dfreq, hint);
        }
        self.constraints.clock_stepped(step);
        let step_ns = (step * 1e9).round() as i64;
        self.reference_kernel += step_ns;
        self.next_local_refresh += step_ns;
    }

    pub fn set_tai_offset(&mut self, tai_minus_utc: i32) {
        self.config.tai_minus_utc = tai_minus_utc;
        self.discipline.set_tai_offset(tai_minus_utc);
    }

    /// Time-driven work: the end of a slew, the holdover deadline, the local reference's refresh.
    pub fn tick(&mut self, now: i64) {
        let waited = self.last_tick < self.started + STARTUP_WAIT && now >= self.started + STARTUP_WAIT;
        self.last_tick = now;
        if waited && !self.ever_synchronized {
            self.update(now);
        }
        self.discipline.tick(now);
        self.refresh_leap(now);
        match self.sync {
            SyncState::Synchronized { .. } | SyncState::Holdover if now >= self.deadline() => {
                let reason = format!(
                    "root distance reached the maximum of {} s after {} s without an update",
                    self.config.max_distance,
                    (now - self.reference_kernel) / SECOND
                );
                self.lose_sync(now, reason);
            }
            SyncState::Local if now >= self.next_local_refresh => self.refresh_local(now),
            _ => {}
        }
    }

    /// Kernel time at which the root distance of the served time reaches the maximum.
    fn deadline(&self) -> i64 {
        let room = self.config.max_distance - self.root_delay / 2.0 - self.root_dispersion;
        self.reference_kernel + (room.max(0.0) / PHI * 1e9) as i64 - DEADLINE_MARGIN
    }

    fn candidates(&self, now: i64) -> Vec<Candidate> {
        // Orphan style: with a local reference at stratum L, a source at stratum L or above
        // would make us serve worse than the local clock, so it is not a candidate (two peers
        // with local strata then follow the lower one, never each other).
        let limit = self.config.local_stratum.unwrap_or(16);
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| !s.outside_constraint)
                    .and_then(|s| s.source.candidate(i, now, self.config.max_distance).ok())
            })
            .filter(|c| c.stratum < limit)
            .collect()
    }

    /// Selection without new data (a source was lost or became unusable): update from what is
    /// left, or go into holdover.
    fn reselect(&mut self, now: i64) {
        if matches!(self.sync, SyncState::Synchronized { .. }) {
            self.update(now);
        }
    }

    /// Whether every source that may still answer has been heard, or the wait is over (and
    /// the time constraints, when configured, have been fetched or failed to be).
    fn ready_for_first_sync(&self, now: i64) -> bool {
        if self.awaiting_constraints {
            return false;
        }
        now - self.started >= STARTUP_WAIT
            || self.slots.iter().flatten().all(|s| {
                s.source.options.noselect
                    || !matches!(
                        s.source.candidate(0, now, self.config.max_distance),
                        Err(Unfit::NoData)
                    )
            })
    }

    /// Selection, combination and a clock update.
    fn update(&mut self, now: i64) {
        if !self.ever_synchronized && !self.ready_for_first_sync(now) {
            return;
        }
        let candidates = self.candidates(now);
        let selection = select(&candidates, self.config.minsources);
        for slot in self.slots.iter_mut().flatten() {
            slot.survivor = false;
        }
        let selection = match selection {
            Ok(s) => s,
            Err(why) => {
                let reason = match why {
                    NoSelection::NoCandidates => "no usable source".to_string(),
                    NoSelection::NoMajority => "the sources disagree: no majority".to_string(),
                    NoSelection::TooFew {
                        truechimers,
                        minsources,
                    } => {
                        format!("{truechimers} agreeing source(s), minsources is {minsources}")
                    }
                };
                self.no_selection(now, reason);
                return;
            }
        };
        for &i in &selection.falsetickers {
            let slot = self.slots[i].as_mut().expect("candidate slot");
            if !slot.falseticker {
                slot.falseticker = true;
                self.events.push(Event::Falseticker {
                    addr: slot.source.addr,
                });
            }
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(slot) = slot {
                if !selection.falsetickers.contains(&i) {
                    slot.falseticker = false;
                }
                slot.survivor = selection.survivors.contains(&i);
            }
        }

        let frequency = selection.frequency.unwrap_or(self.discipline.frequency());
        let asked = selection.offset - self.discipline.correction_ns(now) as f64 * 1e-9;
        if let ConstraintVerdict::Outside { low, high } = self.constraints.check(selection.offset, now) {
            // Above all a start-up step: the time the sources agree on is not the time HTTPS
            // servers strata trusts give.
            self.constraint_rejections += 1;
            if !self.constraint_refused {
                self.constraint_refused = true;
                let correction = self.discipline.correction_ns(now) as f64 * 1e-9;
                self.events.push(Event::ConstraintRefused {
                    seconds: asked,
                    low: low - correction,
                    high: high - correction,
                });
            }
            self.no_selection(now, "the correction is outside the time constraints".to_string());
            return;
        }
        self.constraint_refused = false;
        let phase = if self.ever_synchronized {
            Phase::Later
        } else {
            Phase::Startup
        };
        let own_distance = if self.ever_synchronized {
            self.root_distance(now)
        } else {
            0.0
        };
        let (may_step, overridden) = match self.guard.judge(phase, asked, frequency, own_distance) {
            Verdict::Accept { may_step, overridden } => (may_step, overridden),
            Verdict::Refuse { refusal, first } => {
                self.refused(now, refusal, first);
                return;
            }
        };
        self.frequency_known |= selection.frequency.is_some();
        let correction = self.discipline.update(now, selection.offset, frequency, may_step);
        let error = match correction {
            Correction::Step(seconds) => {
                self.guard.stepped();
                self.events.push(Event::Step { seconds });
                0.0
            }
            Correction::Slew { error, .. } => error.abs(),
        };
        if overridden {
            self.events.push(Event::Overridden { seconds: asked });
        }

        let peer = self.slots[selection.system_peer]
            .as_ref()
            .expect("system peer slot");
        let up = *peer.source.upstream().expect("selected source has a header");
        let out = *peer
            .source
            .last_output()
            .expect("selected source has a measurement");
        let jitter = candidates
            .iter()
            .find(|c| c.index == selection.system_peer)
            .map_or(0.0, |c| c.jitter);
        let age = ((now - out.sample.time) as f64 * 1e-9).max(0.0);
        let root_delay = up.root_delay.to_seconds_f64() + out.sample.delay;
        let root_dispersion = up.root_dispersion.to_seconds_f64()
            + out.dispersion
            + PHI * age
            + (jitter * jitter + selection.selection_jitter.powi(2)).sqrt()
            + error;
        let serving = matches!(self.sync, SyncState::Synchronized { .. } | SyncState::Holdover);
        if !serving && root_delay / 2.0 + root_dispersion > self.config.max_distance * ENTRY_SHARE {
            // The model takes the correction, but the time is not served as synchronized until
            // the error bound is well inside the maximum (hysteresis).
            return;
        }
        self.root_delay = root_delay;
        self.root_dispersion = root_dispersion;
        self.reference_kernel = now;
        let stratum = up.stratum + 1;
        let addr = peer.source.addr;
        let refid = match &peer.refclock {
            // A reference clock's own name (GPS, PPS...), as RFC 5905 has stratum 1 send.
            Some((_, refid)) => *refid,
            None => refid_of(addr.ip()),
        };

        // The leap warning the majority of the survivors announce (the plan weighs it).
        let leaps: Vec<Leap> = selection
            .survivors
            .iter()
            .filter_map(|&i| {
                self.slots[i]
                    .as_ref()
                    .and_then(|s| s.source.upstream())
                    .map(|u| u.leap)
            })
            .collect();
        let majority = |l: Leap| leaps.iter().filter(|&&x| x == l).count() * 2 > leaps.len();
        self.leap.set_upstream(
            [Leap::AddSecond, Leap::DeleteSecond]
                .into_iter()
                .find(|&l| majority(l))
                .unwrap_or(Leap::NoWarning),
        );

        let previous = self.sync;
        self.ever_synchronized = true;
        let id = SourceId(selection.system_peer);
        self.set_sync(SyncState::Synchronized { system_peer: id });
        self.server = ServerState {
            synchronized: true,
            leap: Leap::NoWarning,
            stratum,
            precision: self.config.precision,
            root_delay: NtpShort::from_seconds_f64(self.root_delay),
            root_dispersion: NtpShort::from_seconds_f64(self.root_dispersion),
            reference_id: refid,
            reference_time: self.params().ntp_from_realtime(now),
            unsync_policy: self.config.unsync_policy,
        };
        self.refresh_leap(now);
        match previous {
            SyncState::Synchronized { system_peer } if system_peer == id => {}
            SyncState::Synchronized { .. } => self.events.push(Event::Selected {
                addr,
                stratum: up.stratum,
            }),
            _ => {
                self.events.push(Event::Selected {
                    addr,
                    stratum: up.stratum,
                });
                self.events.push(Event::Synchronized { addr, stratum });
            }
        }
    }

    /// The correction the sources asked for was refused: the served time stays on the clock's
    /// own (holdover, or the local reference), whatever state it was in.
    fn refused(&mut self, now: i64, refusal: Refusal, first: bool) {
        if first {
            self.events.push(Event::CorrectionRefused { refusal });
        }
        self.no_selection(now, "the correction the sources ask for is refused".to_string());
    }

    fn no_selection(&mut self, now: i64, reason: String) {
        match self.sync {
            SyncState::Synchronized { .. } => {
                if self.config.local_stratum.is_some() {
                    self.go_local(now);
                } else {
                    self.set_sync(SyncState::Holdover);
                    self.events.push(Event::Holdover { reason });
                }
            }
            SyncState::Holdover | SyncState::Local | SyncState::Unsynchronized => {}
        }
    }

    fn lose_sync(&mut self, now: i64, reason: String) {
        if self.config.local_stratum.is_some() {
            self.go_local(now);
            return;
        }
        self.set_sync(SyncState::Unsynchronized);
        self.server = ServerState::unsynchronized(self.config.precision, self.config.unsync_policy);
        self.events.push(Event::Unsynchronized { reason });
    }

    fn go_local(&mut self, now: i64) {
        let stratum = self.config.local_stratum.expect("local stratum configured");
        self.set_sync(SyncState::Local);
        self.refresh_local(now);
        self.events.push(Event::Local { stratum });
    }

    /// The local reference's state, its reference time now (as `local::server_state` makes it).
    fn refresh_local(&mut self, now: i64) {
        let stratum = self.config.local_stratum.expect("local stratum configured");
        self.server = ServerState {
            synchronized: true,
            leap: Leap::NoWarning,
            stratum,
            precision: self.config.precision,
            root_delay: NtpShort::ZERO,
            root_dispersion: local_root_dispersion(self.config.precision),
            reference_id: LOCAL_REFID,
            reference_time: self.params().ntp_from_realtime(now),
            unsync_policy: self.config.unsync_policy,
        };
        self.server.leap = self.leap.announced(self.pre_leap(now));
        self.next_local_refresh = now + LOCAL_REFRESH;
    }

    /// Root distance of the served time at kernel time `now` (seconds), as replies compute it.
    pub fn root_distance(&self, now: i64) -> f64 {
        self.root_delay / 2.0
            + self.root_dispersion
            + PHI * ((now - self.reference_kernel) as f64 * 1e-9).max(0.0)
    }

    /// Our served time at kernel time `now`.
    pub fn served_time(&self, now: i64) -> NtpTimestamp {
        self.params().ntp_from_realtime(now)
    }
}
