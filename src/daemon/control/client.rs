//! The I/O shell around the engine: one connected UDP socket per source, name resolution, pool
//! upkeep, the symmetric packets handed over by the responders, the logs, the optional system
//! clock discipline, and publishing. Everything it decides, it asks the engine; it only moves
//! bytes and time in and out.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::constraint_fetch::ConstraintFetcher;
use super::nts_source::{KeAnswer, KeRunner};
use super::resolve::Resolver;
use super::statslog::StatsLog;
use crate::daemon::control::leapfile::LeapFile;
use crate::daemon::observe::board::{ControlStatus, StatusBoard, UpstreamStatus};
use crate::daemon::observe::leap_status::LeapSecondStatus;
use crate::proto::clock::ClockParams;
use crate::proto::control::auth::MAX_MAC_LEN;
use crate::proto::control::engine::{Engine, SourceId, SyncState};
use crate::proto::control::events::{Event, KissAction};
use crate::proto::control::leapplan::DAY;
use crate::proto::control::source::{Association, Unfit};
use crate::proto::control::spec::{SourceKind, SourceSpec};
use crate::proto::nts::session::{ClientSession, SessionCounters, UID_LEN};
use crate::proto::state::Published;
use crate::proto::wire::ntp::Leap;
use crate::sys::adjtimex::{read_kernel_frequency, SystemClockDiscipline};
use crate::sys::clock::read::{kernel_tai_offset, read_clock_ns};
use crate::sys::handoff::SymmetricReceiver;
use crate::sys::kernel_leap::{kernel_armed_for, read_kernel_leap, set_kernel_leap};

/// The longest the loop waits before it looks at the shutdown flag and the symmetric channel.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How often the status board, the kernel's TAI offset and the pools are looked at.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Pools are resolved again this often, and names of unreachable sources no sooner than this.
const RESOLVE_AGAIN: Duration = Duration::from_secs(3600);
const RESOLVE_RETRY: Duration = Duration::from_secs(60);
/// A pool member that has not answered this many polls is replaced.
const UNREACHABLE_POLLS: u32 = 8;

fn kernel_now() -> i64 {
    read_clock_ns(libc::CLOCK_REALTIME)
}

/// One configured entry and the associations it has now.
struct Entry {
    spec: SourceSpec,
    /// The addresses of its last resolution.
    addrs: Vec<SocketAddr>,
    /// Addresses given up on (unreachable or refusing us) until the next resolution.
    given_up: Vec<SocketAddr>,
    active: Vec<SourceId>,
    resolving: bool,
    resolved_at: Option<Instant>,
    /// NTS: the NTS-KE servers (resolved addresses) a session is being made with.
    key_exchanges: Vec<SocketAddr>,
    /// NTS: why the last session failed, while the entry has no association to show it on.
    nts_failure: Option<String>,
}

impl Entry {
    /// What the name is resolved to: the NTS-KE server for an NTS source, else NTP.
    fn resolve_endpoint(&self) -> String {
        if self.spec.options.nts {
            SourceSpec {
                port: self.spec.options.nts_port,
                ..self.spec.clone()
            }
            .endpoint()
        } else {
            self.spec.endpoint()
        }
    }
}

struct Link {
    socket: UdpSocket,
    entry: usize,
    polls: u32,
    /// The resolved address it came from: its NTP address, or its NTS-KE server's.
    origin: SocketAddr,
    nts: Option<NtsLink>,
}

/// An association's NTS state in the shell: the pure session, and its renewal.
struct NtsLink {
    session: ClientSession,
    /// The counts of the sessions it had before this one.
    earlier: SessionCounters,
    renewing: bool,
    /// When the last renewal failed, and why (retried after `RESOLVE_RETRY`).
    failed: Option<(Instant, String)>,
}

impl NtsLink {
    fn counters(&self) -> SessionCounters {
        let now = self.session.counters();
        SessionCounters {
            authenticated: self.earlier.authenticated + now.authenticated,
            rejected: self.earlier.rejected + now.rejected,
            naks: self.earlier.naks + now.naks,
        }
    }

    /// The authentication state as `strata status` shows it.
    fn describe(&self) -> String {
        let c = self.counters();
        let mut text = format!(
            "NTS: {} cookies, {} authenticated, {} rejected, {} NAKs",
            self.session.cookies(),
            c.authenticated,
            c.rejected,
            c.naks
        );
        if let Some((_, why)) = &self.failed {
            text.push_str(&format!("; {why}"));
        }
        text
    }
}

pub(super) struct Shell {
    engine: Engine,
    publisher: super::Publisher,
    board: StatusBoard,
    entries: Vec<Entry>,
    associations: BTreeMap<SourceId, Link>,
    resolver: Resolver,
    key_exchange: KeRunner,
    constraints: ConstraintFetcher,
    symmetric: Option<SymmetricReceiver>,
    /// Mode-6 queries and the sockets they are answered through.
    queries: Option<super::queries::Queries>,
    statslog: Option<StatsLog>,
    /// The leap-seconds.list, judged against the time at each publication.
    leap_file: LeapFile,
    system: Option<SystemClockDiscipline>,
    /// The model as last moved into the kernel (with `--discipline-system`).
    transferred: Option<ClockParams>,
    tai: i32,
    /// With `--discipline-system`: the leap the kernel is armed for (+1, -1; 0 none), and
    /// whether arming failed (then strata applies the leap to its own time only).
    armed: i8,
    arming_failed: bool,
    /// adjtimex cannot even be read (systemd's ProtectClock): said once.
    kernel_unreadable: bool,
    last_published: Published,
    buf: [u8; 1024],
    /// Reference clock drivers, each with its source in the engine.
    refclocks: Vec<(SourceId, super::refclock::Refclock)>,
    /// Why each PPS refclock's last edge was dropped, as last logged (by refclock index).
    pulse_reported: Vec<Option<crate::proto::control::pps::PulseRefusal>>,
    /// The RTC upkeep, with `rtc_sync`.
    rtc: Option<super::rtc::RtcUpkeep>,
}

impl Shell {
    /// Publishes what `leap_file` says with the status (see `leapfile`).
    pub(super) fn with_leap_file(mut self, leap_file: LeapFile) -> Shell {
        self.leap_file = leap_file;
        self
    }

    /// NTS sources and the HTTPS servers of the time constraints `constraints` trust the CA
    /// certificates in `trusted` (PEM) instead of the system's store.
    pub(super) fn with_trust(
        mut self,
        trusted: Option<&std::path::Path>,
        constraints: Vec<crate::proto::control::constraint::ConstraintUrl>,
    ) -> Shell {
        self.key_exchange = KeRunner::new(trusted);
        if !constraints.is_empty() {
            self.engine.await_constraints();
        }
        self.constraints = ConstraintFetcher::new(constraints, trusted);
        self
    }

    /// Reads these reference clocks (already added to the engine) at every turn.
    pub(super) fn with_refclocks(mut self, refclocks: Vec<(SourceId, super::refclock::Refclock)>) -> Shell {
        self.refclocks = refclocks;
        self
    }

    /// Keeps the RTC in step (`rtc_sync`).
    pub(super) fn with_rtc(mut self, rtc: Option<super::rtc::RtcUpkeep>) -> Shell {
        self.rtc = rtc;
        self
    }

    /// Hands the engine every reading the reference clocks have now, then the PPS edges (after
    /// the readings, so that an edge is numbered by the newest reading of its lock refclock).
    fn read_refclocks(&mut self) {
        let mut readings = Vec::new();
        let tai_minus_utc = self.tai_minus_utc_now();
        for (id, clock) in self.refclocks.iter_mut() {
            readings.clear();
            clock.set_tai_minus_utc(tai_minus_utc);
            clock.read(&mut readings);
            for r in &readings {
                self.engine.refclock_reading(*id, *r);
            }
        }
        for (index, (id, clock)) in self.refclocks.iter_mut().enumerate() {
            let Some(edge) = clock.read_edge() else {
                continue;
            };
            let verdict = self.engine.refclock_pulse(*id, edge.time, edge.missed).err();
            // Each change of what becomes of the edges is logged once.
            if self.pulse_reported.get(index).copied().flatten() != verdict {
                match verdict {
                    Some(why) => log::warn!("{}: PPS edges dropped: {}", clock.name, why.describe()),
                    None => log::info!("{}: PPS edges numbered", clock.name),
                }
                if self.pulse_reported.len() <= index {
                    self.pulse_reported.resize(index + 1, None);
                }
                self.pulse_reported[index] = verdict;
            }
        }
    }

    /// TAI − UTC now, for references that keep TAI: the leap list's, else the kernel's when
    /// it was set (not 0), else unknown.
    fn tai_minus_utc_now(&self) -> Option<i32> {
        if self.refclocks.is_empty() {
            return None;
        }
        let ntp_s = read_clock_ns(libc::CLOCK_REALTIME).div_euclid(1_000_000_000)
            + crate::proto::wire::timestamp::UNIX_EPOCH_NTP_SECONDS;
        let listed = self
            .leap_file
            .list()
            .and_then(|l| l.tai_minus_utc_at(ntp_s.max(0) as u64));
        listed.or(Some(self.engine.published().clock.tai_minus_utc).filter(|&t| t != 0))
    }

    /// Answers mode-6 queries through `queries`.
    pub(super) fn with_queries(mut self, queries: super::queries::Queries) -> Shell {
        self.queries = Some(queries);
        self
    }

    pub(super) fn new(
        engine: Engine,
        publisher: super::Publisher,
        board: StatusBoard,
        sources: Vec<SourceSpec>,
        symmetric: Option<SymmetricReceiver>,
        statslog: Option<StatsLog>,
        discipline_system: bool,
    ) -> Shell {
        let system = if discipline_system {
            match read_kernel_frequency() {
                Ok(f) => Some(SystemClockDiscipline::new(f)),
                Err(e) => {
                    log::error!(
                        "cannot read the kernel clock's state, not disciplining the system clock: {e}"
                    );
                    None
                }
            }
        } else {
            None
        };
        let tai = engine.config().tai_minus_utc;
        let last_published = engine.published();
        let entries = sources
            .into_iter()
            .map(|spec| Entry {
                spec,
                addrs: Vec::new(),
                given_up: Vec::new(),
                active: Vec::new(),
                resolving: false,
                resolved_at: None,
                key_exchanges: Vec::new(),
                nts_failure: None,
            })
            .collect();
        Shell {
            engine,
            publisher,
            board,
            entries,
            associations: BTreeMap::new(),
            resolver: Resolver::new(),
            key_exchange: KeRunner::new(None),
            constraints: ConstraintFetcher::new(Vec::new(), None),
            symmetric,
            queries: None,
            statslog,
            leap_file: LeapFile::load(None),
            system,
            transferred: None,
            tai,
            armed: 0,
            arming_failed: false,
            kernel_unreadable: false,
            last_published,
            buf: [0; 1024],
            refclocks: Vec::new(),
            pulse_reported: Vec::new(),
            rtc: None,
        }
    }

    pub(super) fn run(mut self, shutdown: &AtomicBool) {
        for i in 0..self.entries.len() {
            self.resolve(i);
        }
        let mut next_housekeeping = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            // Once the process switched to `user`: keep only CAP_SYS_TIME, if this thread kept any.
            if let Err(e) = crate::sys::privilege::settle_this_thread() {
                log::warn!("the control thread cannot trim its capabilities: {e}");
            }
            // A peer's packets first: one that came in since the last round answers our last
            // packet, and sending our next one before reading it would make it stale (its
            // origin no longer ours), so peers that poll in step would never see each other.
            self.receive_symmetric();
            self.read_refclocks();
            let now = kernel_now();
            self.engine.tick(now);
            for tx in self.engine.transmit(now) {
                let mut buf = [0u8; 48 + MAX_MAC_LEN];
                self.send(tx.source, tx.to, tx.datagram(&mut buf));
            }
            if let Some(rtc) = self.rtc.as_mut() {
                rtc.turn(&self.engine, kernel_now());
            }
            if Instant::now() >= next_housekeeping {
                next_housekeeping = Instant::now() + HOUSEKEEPING;
                self.housekeeping();
            }
            self.after_engine_calls();
            self.wait_and_receive();
            self.after_engine_calls();
        }
    }

    /// Feeds the engine the symmetric packets the responders handed over since the last call,
    /// and answers the mode-6 queries that came.
    fn receive_symmetric(&mut self) {
        let Some(rx) = &self.symmetric else {
            return;
        };
        let packets: Vec<_> = rx.packets.try_iter().collect();
        let queries: Vec<_> = rx.queries.try_iter().collect();
        for p in packets {
            if !self.engine.receive_symmetric(p.from, p.bytes(), p.received_ns) {
                log::debug!("symmetric packet from {} ignored: not a configured peer", p.from);
            }
        }
        if let Some(answerer) = self.queries.as_mut() {
            let now = kernel_now();
            for q in queries {
                answerer.answer(&self.engine, now, q.from, q.bytes());
            }
            answerer.receive(&self.engine, now);
        }
    }

    /// Waits for a reply (or the next wakeup) and feeds what arrived into the engine.
    fn wait_and_receive(&mut self) {
        let now = kernel_now();
        let rtc_wakeup = self.rtc.as_ref().and_then(|r| r.next_wakeup(&self.engine, now));
        let wakeup = self.engine.next_wakeup().min(rtc_wakeup.unwrap_or(i64::MAX));
        let until_wakeup = Duration::from_nanos(wakeup.saturating_sub(now).max(0) as u64);
        let timeout = until_wakeup.min(MAX_WAIT);
        let ids: Vec<SourceId> = self.associations.keys().copied().collect();
        let mut fds: Vec<libc::pollfd> = ids
            .iter()
            .map(|id| libc::pollfd {
                fd: self.associations[id].socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        // SAFETY: `fds` is a live array of `len` pollfd structs; poll writes only their revents.
        let rc = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as libc::c_int,
            )
        };
        if rc <= 0 {
            return;
        }
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let id = ids[i];
            while let Some(a) = self.associations.get(&id) {
                match a.socket.recv(&mut self.buf) {
                    Ok(n) => {
                        // Stamped in user space, right after the wakeup; see the report's notes.
                        let rx = kernel_now();
                        let bytes = self.buf[..n].to_vec();
                        self.received(id, &bytes, rx);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        // ICMP port unreachable and the like: the poll just goes unanswered.
                        log::debug!("receive from source {:?}: {e}", id);
                        break;
                    }
                }
            }
        }
    }

    /// Logs the engine's events, publishes what changed, moves the model into the kernel.
    fn after_engine_calls(&mut self) {
        let mut stepped = false;
        for event in self.engine.take_events() {
            if let Some(log) = self.statslog.as_mut() {
                if let Err(e) = log.record(&event) {
                    log::warn!(
                        "cannot write to the log directory {}: {e}; no more sample logs",
                        log.dir().display()
                    );
                    self.statslog = None;
                }
            }
            stepped |= matches!(event, Event::Step { .. });
            log_event(&event);
        }
        if self.system.is_some() {
            self.discipline_system(stepped);
        }
        self.kernel_leap();
        let published = self.engine.published();
        if published != self.last_published {
            self.publisher.publish(&published);
            self.last_published = published;
        }
    }

    fn discipline_system(&mut self, stepped: bool) {
        let params = self.engine.published().clock;
        let same = self
            .transferred
            .is_some_and(|t| t.frequency_q48 == params.frequency_q48 && t.offset_ns == params.offset_ns);
        if same && !stepped {
            return;
        }
        let Some(system) = self.system.as_mut() else {
            return;
        };
        let now = kernel_now();
        let correction = params.corrected_utc_ns(now) - now;
        let synchronized = matches!(
            self.engine.sync_state(),
            SyncState::Synchronized { .. } | SyncState::Holdover
        );
        let (adj, change) = system.plan(
            &params,
            correction,
            stepped,
            synchronized,
            self.engine.root_distance(now),
        );
        match system.apply(&adj) {
            Ok(()) => {
                if let Some(step) = adj.step_ns {
                    log::info!("system clock stepped by {:+.6} s", step as f64 * 1e-9);
                }
                self.engine.clock_changed(now, change.step, change.dfreq);
                self.transferred = Some(self.engine.published().clock);
            }
            Err(e) => {
                log::error!("adjtimex failed, no longer disciplining the system clock: {e}");
                self.system = None;
            }
        }
    }

    /// The kernel and a stepped leap second due within the day (see `crate::sys::kernel_leap`).
    /// Whoever armed the kernel for it (strata with `--discipline-system`, or another daemon),
    /// CLOCK_REALTIME will carry it, and the engine is told so; once the kernel's TAI offset has
    /// moved by it, the kernel has performed it, and the engine takes the kernel's step. With
    /// `--discipline-system` strata arms the kernel during the last day, and disarms it after.
    fn kernel_leap(&mut self) {
        let now = kernel_now();
        let status = self.engine.leap_status(now);
        let due = status
            .scheduled
            .is_some_and(|s| s.midnight - now.div_euclid(1_000_000_000) <= DAY + 60);
        let pending = self.engine.pending_step().filter(|_| due);
        if pending.is_none() && self.armed == 0 {
            return;
        }
        // Under systemd's ProtectClock even a read-only adjtimex is refused: then whether the
        // kernel is armed is unknown, and only its TAI offset (CLOCK_TAI - CLOCK_REALTIME)
        // moving by the leap, at the leap, says that it leapt.
        let read = if self.kernel_unreadable {
            None
        } else {
            match read_kernel_leap() {
                Ok(state) => Some(state),
                Err(e) => {
                    // Said once, and not asked again: the answer will not change.
                    self.kernel_unreadable = true;
                    log::info!(
                        "cannot read the kernel's leap state ({e}): a leap the kernel performs \
                         is seen by its TAI offset alone"
                    );
                    None
                }
            }
        };
        let (armed, tai) = match (read, pending) {
            (Some((status, tai)), Some(delta)) => (Some(kernel_armed_for(status, delta)), tai),
            (Some((_, tai)), None) => (None, tai),
            (None, _) => (None, kernel_tai_offset()),
        };
        if let Some(delta) = pending {
            let leapt = tai == self.tai + delta as i32 && armed.unwrap_or_else(|| self.engine.near_leap(now));
            if leapt {
                log::info!(
                    "the kernel performed the leap second: its TAI-UTC went from {} s to {tai} s",
                    self.tai
                );
                self.tai = tai;
                self.engine.kernel_leapt(kernel_now());
            } else {
                self.engine.set_kernel_leap(armed.unwrap_or(false));
            }
        }
        if self.system.is_none() {
            return;
        }
        let pending = self.engine.pending_step();
        let want = match pending {
            Some(delta) if status.announced != Leap::NoWarning || self.armed == delta => delta,
            _ => 0,
        };
        if want == self.armed || (self.arming_failed && want != 0) {
            return;
        }
        match set_kernel_leap(want) {
            Ok(()) => {
                self.armed = want;
                self.engine.set_kernel_leap(want != 0);
                match want {
                    0 => log::info!("kernel leap second disarmed"),
                    d => log::info!(
                        "kernel armed to {} a second at the coming UTC midnight",
                        if d > 0 { "insert" } else { "delete" }
                    ),
                }
            }
            Err(e) => {
                self.arming_failed = true;
                log::error!(
                    "cannot arm the kernel for the leap second ({e}): the system clock will not \
                     leap; strata still applies it to the time it serves"
                );
            }
        }
    }

    fn housekeeping(&mut self) {
        // First: a kernel that has just leapt moved its TAI offset, which is not a change to
        // take alone.
        self.kernel_leap();
        let tai = kernel_tai_offset();
        if tai != self.tai {
            log::info!("kernel TAI-UTC offset changed from {} s to {tai} s", self.tai);
            self.tai = tai;
            self.engine.set_tai_offset(tai);
        }
        for (entry, answer) in self.resolver.answers() {
            self.resolved(entry, answer);
        }
        for answer in self.key_exchange.answers() {
            self.key_exchanged(answer);
        }
        if let Some(constraints) = self.constraints.poll() {
            self.engine.set_constraints(constraints);
        }
        self.replace_lost_sources();
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            let due = match e.resolved_at {
                Some(at) if e.spec.kind == SourceKind::Pool => at.elapsed() >= RESOLVE_AGAIN,
                Some(at) => e.active.is_empty() && at.elapsed() >= RESOLVE_RETRY,
                None => false,
            };
            if due && !e.resolving {
                self.resolve(i);
            }
        }
        let now = kernel_now();
        let leap_list = self.leap_file.status(now.div_euclid(1_000_000_000));
        let mut status = ControlStatus {
            leap: LeapSecondStatus::new(&self.engine.leap_status(now), &leap_list, self.tai),
            leap_list,
            ..ControlStatus::from_engine(&self.engine, now)
        };
        self.authentication_status(&mut status);
        status.integrity.constraints = self.constraints.describe();
        if let Some(rtc) = &self.rtc {
            status.rtc = rtc.status();
        }
        self.board.publish(status);
    }

    /// Sends the engine's packet for `id`: as it is, or NTS-protected with a cookie of its
    /// jar. An NTS association without cookies sends nothing (the poll goes unanswered) until a
    /// new NTS-KE session refills it.
    /// Sends `datagram` (a header and a MAC, if the source has a key) to the source, wrapped
    /// in NTS if it speaks NTS.
    fn send(&mut self, id: SourceId, to: SocketAddr, datagram: &[u8]) {
        let Some(a) = self.associations.get_mut(&id) else {
            return;
        };
        a.polls += 1;
        let wire = match a.nts.as_mut() {
            None => datagram.to_vec(),
            Some(nts) => {
                let mut uid = [0u8; UID_LEN];
                let mut nonce = [0u8; 16];
                let random =
                    crate::sys::random::fill(&mut uid).and_then(|()| crate::sys::random::fill(&mut nonce));
                let request = match random {
                    Ok(()) => {
                        let n = nts.session.aead().nonce_len();
                        let header: &[u8; 48] = datagram[..48].try_into().expect("a 48-byte header");
                        nts.session.request(header, uid, &nonce[..n])
                    }
                    Err(e) => {
                        log::error!("no random bytes for an NTS request: {e}");
                        None
                    }
                };
                let renew = nts.session.needs_key_exchange();
                let Some(request) = request else {
                    self.renew(id);
                    return;
                };
                if renew {
                    self.renew(id);
                }
                request
            }
        };
        let Some(a) = self.associations.get(&id) else {
            return;
        };
        if let Err(e) = a.socket.send(&wire) {
            log::debug!("sending to {to} failed: {e}");
        }
    }

    /// A packet from source `id`: to the engine, once authenticated if the source is NTS.
    fn received(&mut self, id: SourceId, bytes: &[u8], rx: i64) {
        let Some(a) = self.associations.get_mut(&id) else {
            return;
        };
        let Some(nts) = a.nts.as_mut() else {
            self.engine.receive(id, bytes, rx);
            return;
        };
        match nts.session.receive(bytes) {
            Ok(header) => self.engine.receive(id, &header, rx),
            Err(why) => {
                // Counted in the status; logged at the 1st, 2nd, 4th, 8th... so that a flood of
                // forgeries is not a flood of log lines.
                let c = nts.counters();
                let count = c.rejected + c.naks;
                if count.is_power_of_two() {
                    let addr = self
                        .engine
                        .source(id)
                        .map_or_else(String::new, |s| s.addr.to_string());
                    log::info!(
                        "NTS reply from {addr} rejected: {} ({count} rejected or NAKed so far)",
                        why.label()
                    );
                }
                if nts.session.needs_key_exchange() {
                    self.renew(id);
                }
            }
        }
    }

    /// Starts a new NTS-KE session for association `id` (unless one runs, or the last failed
    /// less than `RESOLVE_RETRY` ago).
    fn renew(&mut self, id: SourceId) {
        let Some(a) = self.associations.get_mut(&id) else {
            return;
        };
        let Some(nts) = a.nts.as_mut() else {
            return;
        };
        if nts.renewing
            || nts
                .failed
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < RESOLVE_RETRY)
        {
            return;
        }
        nts.renewing = true;
        let spec = &self.entries[a.entry].spec;
        log::info!(
            "{spec}: new NTS-KE session with {} ({} cookies left)",
            a.origin,
            nts.session.cookies()
        );
        self.key_exchange
            .request(a.entry, spec.host.clone(), a.origin, spec.port, Some(id));
    }

    /// An NTS-KE session ended: a new association, or a renewed one.
    fn key_exchanged(&mut self, answer: KeAnswer) {
        let KeAnswer {
            entry,
            ke_addr,
            rekey,
            result,
        } = answer;
        if let Some(id) = rekey {
            let Some(link) = self.associations.get_mut(&id) else {
                return;
            };
            let Some(nts) = link.nts.as_mut() else {
                return;
            };
            nts.renewing = false;
            match result {
                Ok(start) if self.engine.source(id).is_some_and(|s| s.addr == start.ntp) => {
                    nts.earlier = nts.counters();
                    nts.session = start.session;
                    nts.failed = None;
                    log::info!(
                        "{}: NTS renewed, {} cookies",
                        self.entries[entry].spec,
                        nts.session.cookies()
                    );
                }
                Ok(start) => {
                    // The server moved NTP elsewhere: the association follows it.
                    log::info!(
                        "{}: NTS-KE now names {} for NTP",
                        self.entries[entry].spec,
                        start.ntp
                    );
                    self.associations.remove(&id);
                    self.engine.remove_source(id, kernel_now());
                    self.entries[entry].active.retain(|x| *x != id);
                    self.start_nts(entry, ke_addr, start);
                }
                Err(why) => {
                    log::warn!("{}: {why}", self.entries[entry].spec);
                    nts.failed = Some((Instant::now(), why));
                }
            }
            return;
        }
        self.entries[entry].key_exchanges.retain(|a| *a != ke_addr);
        match result {
            Ok(start) => self.start_nts(entry, ke_addr, start),
            Err(why) => {
                let e = &mut self.entries[entry];
                log::warn!("{}: {why}", e.spec);
                e.given_up.push(ke_addr);
                e.nts_failure = Some(why);
                self.fill(entry);
            }
        }
    }

    fn start_nts(&mut self, entry: usize, ke_addr: SocketAddr, start: super::nts_source::NtsStart) {
        match self.associate(entry, start.ntp, ke_addr, Some(start.session)) {
            Ok(id) => {
                let e = &mut self.entries[entry];
                e.active.push(id);
                e.nts_failure = None;
            }
            Err(err) => {
                let e = &mut self.entries[entry];
                log::warn!("{}: cannot use {}: {err}", e.spec, start.ntp);
                e.given_up.push(ke_addr);
            }
        }
    }

    /// Each NTS source's authentication state in the status: on its association's row, or, for
    /// an entry whose NTS-KE failed and that has none, on a row of its own.
    fn authentication_status(&self, status: &mut ControlStatus) {
        for (id, link) in &self.associations {
            let (Some(nts), Some(src)) = (&link.nts, self.engine.source(*id)) else {
                continue;
            };
            let name = src.addr.to_string();
            if let Some(row) = status.sources.iter_mut().find(|r| r.name == name) {
                row.auth = Some(nts.describe());
            }
        }
        for e in &self.entries {
            if let (Some(why), true) = (&e.nts_failure, e.active.is_empty()) {
                status
                    .sources
                    .push(UpstreamStatus::failed(e.resolve_endpoint(), why.clone()));
            }
        }
    }

    fn resolve(&mut self, entry: usize) {
        let e = &mut self.entries[entry];
        e.resolving = true;
        self.resolver.request(entry, e.resolve_endpoint());
    }

    fn resolved(&mut self, entry: usize, answer: Result<Vec<SocketAddr>, String>) {
        let e = &mut self.entries[entry];
        e.resolving = false;
        e.resolved_at = Some(Instant::now());
        match answer {
            Ok(addrs) if !addrs.is_empty() => {
                e.addrs = addrs;
                e.given_up.clear();
            }
            Ok(_) => log::warn!("{}: the name has no address", e.spec),
            Err(message) => log::warn!("{}: {message}", e.spec),
        }
        self.fill(entry);
    }

    /// Adds associations for `entry` up to what it wants, from addresses not in use.
    fn fill(&mut self, entry: usize) {
        let wanted = match self.entries[entry].spec.kind {
            SourceKind::Pool => self.entries[entry].spec.options.max_sources,
            SourceKind::Server | SourceKind::Peer => 1,
        };
        while self.entries[entry].active.len() + self.entries[entry].key_exchanges.len() < wanted {
            let in_use: Vec<SocketAddr> = self
                .associations
                .values()
                .map(|l| l.origin)
                .chain(self.entries.iter().flat_map(|e| e.key_exchanges.iter().copied()))
                .collect();
            let e = &self.entries[entry];
            let Some(addr) = e
                .addrs
                .iter()
                .find(|a| !in_use.contains(a) && !e.given_up.contains(a))
                .copied()
            else {
                return;
            };
            if e.spec.options.nts {
                // The association comes with the session's answer (`key_exchanged`).
                if e.active.len() + e.key_exchanges.len() >= wanted {
                    return;
                }
                let (host, port) = (e.spec.host.clone(), e.spec.port);
                self.entries[entry].key_exchanges.push(addr);
                self.key_exchange.request(entry, host, addr, port, None);
                continue;
            }
            match self.associate(entry, addr, addr, None) {
                Ok(id) => self.entries[entry].active.push(id),
                Err(err) => {
                    log::warn!("{}: cannot use {addr}: {err}", self.entries[entry].spec);
                    self.entries[entry].given_up.push(addr);
                }
            }
        }
    }

    /// A new association with `addr` for `entry`, from the resolved address `origin`, with the
    /// NTS session an NTS source has.
    fn associate(
        &mut self,
        entry: usize,
        addr: SocketAddr,
        origin: SocketAddr,
        nts: Option<ClientSession>,
    ) -> io::Result<SourceId> {
        let any: IpAddr = match addr {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
        socket.connect(addr)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?.ip();
        let spec = &self.entries[entry].spec;
        let association = if spec.kind == SourceKind::Peer {
            Association::Symmetric
        } else {
            Association::Client
        };
        let id = self
            .engine
            .add_source(addr, association, spec.options, Some(local), kernel_now());
        match &nts {
            Some(session) => log::info!(
                "{}: polling {addr} from {local} with NTS ({} cookies from {origin})",
                spec,
                session.cookies()
            ),
            None => log::info!("{}: polling {addr} from {local}", spec),
        }
        self.associations.insert(
            id,
            Link {
                socket,
                entry,
                polls: 0,
                origin,
                nts: nts.map(|session| NtsLink {
                    session,
                    earlier: SessionCounters::default(),
                    renewing: false,
                    failed: None,
                }),
            },
        );
        Ok(id)
    }

    /// Pool members that stopped answering or refuse us make room for other addresses.
    fn replace_lost_sources(&mut self) {
        let mut lost = Vec::new();
        for (id, a) in &self.associations {
            if self.entries[a.entry].spec.kind != SourceKind::Pool {
                continue;
            }
            let Some(src) = self.engine.source(*id) else {
                continue;
            };
            if src.denied().is_some() || (src.reach() == 0 && a.polls >= UNREACHABLE_POLLS) {
                lost.push(*id);
            }
        }
        for id in lost {
            let a = self.associations.remove(&id).expect("association");
            let addr = self.engine.source(id).map(|s| s.addr);
            self.engine.remove_source(id, kernel_now());
            let e = &mut self.entries[a.entry];
            e.active.retain(|x| *x != id);
            if let Some(addr) = addr {
                e.given_up.push(a.origin);
                log::info!("{}: replacing {addr}", e.spec);
            }
            let spare = e.addrs.iter().any(|x| !e.given_up.contains(x));
            if spare {
                self.fill(a.entry);
            } else if !e.resolving {
                self.resolve(a.entry);
            }
        }
    }
}

pub(super) fn log_event(event: &Event) {
    use log::Level;
    // One line per event, with its fields (super::event_log).
    let level = match event {
        Event::Measurement(_) | Event::Statistics(_) => Level::Debug,
        Event::CorrectionRefused { .. } | Event::ConstraintRefused { .. } => Level::Error,
        Event::Kiss {
            action: KissAction::Dropped,
            ..
        }
        | Event::Unusable { why: Unfit::Loop, .. }
        | Event::Authentication { failure: Some(_), .. }
        | Event::Falseticker { .. }
        | Event::Unreachable { .. }
        | Event::Unsynchronized { .. }
        | Event::Holdover { .. }
        | Event::Overridden { .. }
        | Event::Step { .. } => Level::Warn,
        _ => Level::Info,
    };
    super::event_log::log(event, level, module_path!());
}
