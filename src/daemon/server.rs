//! The server as `strata serve` runs it: the control thread first (so that the responders
//! never see an empty state), then the configured path (`--mode auto` falls back from XDP to
//! the socket path on the interface's addresses, and says why), then the observers (/metrics,
//! the status socket); it watches the responder threads until a signal or a failure, and stops
//! everything in the reverse order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use log::{info, warn};

use crate::daemon::config::{format_core_list, DataPath, Mode, ServerConfig};
use crate::daemon::control::{self, ControlConfig};
use crate::daemon::nts::NtsService;
use crate::daemon::observe::report::Observed;
use crate::daemon::observe::{clients, observers};
use crate::daemon::reload;
use crate::daemon::run_as;
use crate::daemon::service_status::ServiceStatus;
use crate::daemon::signals::Signals;
use crate::proto::admission::samples::SampleRing;
use crate::proto::admission::{Acl, AclAction, Admitter, DenyAction, Limiter, Quota, QuotaConfig, Sampling};
use crate::proto::nts::NtsKeys;

/// Samples the socket path's ring holds between two reads by the client watch (a quarter of a
/// second): 1 in 16 of 260k requests per second.
const SAMPLE_RING: usize = 16_384;
use crate::proto::metrics::{self, ResponderCounters};
use crate::proto::state::{StateReader, UnsyncPolicy};
use crate::sys::fastpath;
use crate::sys::notify::Notifier;
use crate::sys::privilege::RunAs;
use crate::sys::socket::{self, SocketConfig};

/// How the server runs as a service, beyond its configuration.
#[derive(Default)]
pub struct Service {
    /// The user to switch to once set up (resolved by [`run_as::resolve`] before the start).
    pub run_as: Option<RunAs>,
    /// Reads the configuration again on SIGHUP; None: SIGHUP only says it has nothing to read.
    pub reload: Option<reload::Loader>,
    /// Changes the logger's level and format on a reload.
    pub log: Option<Box<dyn reload::LogControl>>,
}

/// Runs the server until SIGINT, SIGTERM or SIGUSR1 (Ok) or a failure (the message).
pub fn run(config: &ServerConfig, service: Service) -> Result<(), String> {
    let started = SystemTime::now();
    let signals = Signals::install()?;
    let shutdown = signals.shutdown.clone();

    let control = control::start(ControlConfig::from(config), shutdown.clone())
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    let precision = control.precision();
    info!(
        "clock precision measured: 2^{precision} s (about {} ns)",
        (1e9 * 2f64.powi(precision as i32)).round()
    );
    let published = control.published();
    let sources = config.upstream.sources.len();
    if sources > 0 {
        info!("{sources} upstream source(s) configured; serving as below until one is usable");
    }
    match config.local_stratum {
        Some(stratum) => info!(
            "serving the system clock as a local reference: stratum {stratum}, refid LOCL, TAI-UTC {} s",
            published.clock.tai_minus_utc
        ),
        None if sources > 0 => info!(
            "not synchronized yet: {}",
            match config.unsynchronized {
                UnsyncPolicy::Answer => "answering as unsynchronized, leap 3 and stratum 16",
                UnsyncPolicy::Drop => "dropping requests while unsynchronized",
            }
        ),
        None => info!(
            "no time source (--local-stratum N serves the system clock): {}",
            match config.unsynchronized {
                UnsyncPolicy::Answer => "answering as unsynchronized, leap 3 and stratum 16",
                UnsyncPolicy::Drop => "dropping requests while unsynchronized",
            }
        ),
    }

    if let Some(keys) = &config.key_file {
        for warning in &keys.warnings {
            warn!("{warning}");
        }
        info!(
            "{} symmetric key(s) from {}: requests with a MAC of one are answered authenticated",
            keys.table.len(),
            keys.path.display()
        );
    }

    let nts = match config
        .nts
        .as_ref()
        .map(|c| NtsService::start(c, shutdown.clone()))
    {
        None => None,
        Some(Ok(nts)) => Some(nts),
        Some(Err(e)) => {
            shutdown.store(true, Ordering::Relaxed);
            let _ = control.join();
            return Err(e);
        }
    };
    let mut server = match start_path(
        config,
        control.reader(),
        Some(control.symmetric_sender()),
        shutdown.clone(),
        nts.as_ref().map(|n| n.keys.clone()),
    ) {
        Ok(server) => server,
        Err(e) => {
            shutdown.store(true, Ordering::Relaxed);
            let _ = control.join();
            if let Some(nts) = nts {
                nts.join();
            }
            return Err(e);
        }
    };

    control.set_reply_sockets(reply_sockets(config, &mut server));
    if let Running::Xdp(xdp) = &server {
        // The XDP programs answer plain requests with what the control thread publishes.
        match xdp.state_maps() {
            Ok(maps) => {
                for map in maps {
                    control.add_mirror(Box::new(map));
                }
            }
            Err(e) if config.xdp_answer => {
                warn!("the XDP programs cannot be given the server state ({e}); every request goes to AF_XDP")
            }
            Err(_) => {}
        }
    }

    // Each served interface's PHC, followed and published for the responders: the XDP
    // interfaces, or the interfaces the sockets serve.
    let phc_board = crate::sys::ptp::tracker::PhcBoard::default();
    let phc_watches = match &mut server {
        Running::Xdp(xdp) => xdp.take_phc_watches(),
        Running::Socket(socket, _) => socket.take_phc_watches(),
    };
    let phc_thread = match crate::sys::ptp::tracker::start(
        phc_watches,
        control.reader(),
        phc_board.clone(),
        shutdown.clone(),
    ) {
        Ok(thread) => thread,
        Err(e) => {
            warn!("hardware stamps stay unused: cannot start the PHC thread: {e}");
            None
        }
    };

    let mut xdp_stats = server.take_stats_readers();
    let clients = match config.admission.sample_shift {
        0 => None,
        shift => {
            match clients::start(
                std::mem::take(&mut xdp_stats.samples),
                server.admitter(),
                shift,
                config.admission.prefixes(),
                shutdown.clone(),
            ) {
                Ok(started) => Some(started),
                Err(e) => {
                    warn!("`strata clients` will have nothing to show: cannot start its thread: {e}");
                    None
                }
            }
        }
    };
    let observed = Observed {
        responders: server.responders().to_vec(),
        xdp: xdp_stats,
        state: control.reader(),
        board: control.status_board(),
        started,
        admitter: server.admitter(),
        limiter_slots: config.admission.limiter.map(|l| 2u64 << l.buckets_log2),
        clients: clients.as_ref().map(|(watch, _)| watch.clone()),
        nts: nts.as_ref().map(|n| n.view()),
        phc: phc_board,
    };
    let owner = service.run_as.as_ref().map(|u| (u.uid, u.gid));
    let observers = match observers::start(
        observed,
        &config.metrics,
        &config.control,
        owner,
        shutdown.clone(),
    ) {
        Ok(observers) => observers,
        Err(e) => {
            shutdown.store(true, Ordering::Relaxed);
            let _ = server.join();
            let _ = control.join();
            if let Some((_, thread)) = clients {
                let _ = thread.join();
            }
            if let Some(thread) = phc_thread {
                let _ = thread.join();
            }
            if let Some(nts) = nts {
                nts.join();
            }
            return Err(e);
        }
    };

    // Everything that needs root is done: the program is attached, the sockets bound.
    let mut fatal = None;
    match &service.run_as {
        Some(user) => {
            match run_as::switch(
                user,
                run_as::control_thread_keeps(config.upstream.discipline_system || config.upstream.rtc_sync),
            ) {
                Ok(line) => info!("{line}"),
                Err(e) => {
                    fatal = Some(e);
                    shutdown.store(true, Ordering::Relaxed);
                }
            }
        }
        // SAFETY: geteuid cannot fail and touches no memory.
        None if unsafe { libc::geteuid() } == 0 => {
            info!("running as root for the whole run: `user` (--user NAME) switches to that user once set up")
        }
        None => {}
    }

    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        warn!("not notifying systemd: {e}");
        Notifier::disabled()
    });
    let mut status = ServiceStatus::new(notifier, control.reader());
    if fatal.is_none() {
        status.ready();
    }
    let mut running = config.clone();
    let mut died = false;
    let mut checksums = ChecksumWatch::default();
    while !shutdown.load(Ordering::Relaxed) {
        if server.any_finished() {
            died = true;
            shutdown.store(true, Ordering::Relaxed);
            break;
        }
        // Without the control thread the served state goes stale: stop (and stop the
        // watchdog pings) rather than serve it, so that systemd restarts the service.
        if control.is_finished() {
            fatal = Some("the control thread stopped unexpectedly".to_string());
            shutdown.store(true, Ordering::Relaxed);
            break;
        }
        if signals.take_reload() {
            status.reloading();
            reload_config(&mut running, &service, &mut server);
            if let Some(nts) = &nts {
                // The NTS-KE thread reads the certificate and key again now (it also does when
                // their files change).
                nts.reload.store(true, Ordering::Relaxed);
                info!("reload (SIGHUP): the NTS certificate and key are read again");
            }
            status.reloaded();
        }
        status.tick();
        if let Some(warning) = checksums.check(&metrics::total(server.responders())) {
            warn!("{warning}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    status.stopping();
    if !died && fatal.is_none() {
        info!("shutting down");
    }
    let (responders, failures) = server.join();
    if control.join().is_err() {
        warn!("the control thread panicked");
    }
    observers.join();
    if let Some(nts) = nts {
        nts.join();
    }
    if let Some((_, thread)) = clients {
        if thread.join().is_err() {
            warn!("the client watch thread panicked");
        }
    }
    if let Some(thread) = phc_thread {
        if thread.join().is_err() {
            warn!("the PHC thread panicked");
        }
    }
    log_counters(&responders);
    if let Some(e) = fatal {
        return Err(e);
    }
    if died || !failures.is_empty() {
        let mut failures = failures;
        if failures.is_empty() {
            failures.push("a responder thread stopped unexpectedly".into());
        }
        return Err(failures.join("; "));
    }
    Ok(())
}

/// SIGHUP: reads the configuration again and applies what can be applied (see [`reload`]).
fn reload_config(running: &mut ServerConfig, service: &Service, server: &mut Running) {
    struct NoLog;
    impl reload::LogControl for NoLog {
        fn set_level(&self, level: log::LevelFilter) {
            log::set_max_level(level);
        }
        fn set_format(&self, _: crate::daemon::config::LogFormat) {}
    }
    let Some(loader) = &service.reload else {
        info!("reload (SIGHUP): nothing to read again (no configuration file or flags were given)");
        return;
    };
    let log: &dyn reload::LogControl = service.log.as_deref().unwrap_or(&NoLog);
    let outcome = loader().map(|new| reload::apply(running, new, log, server));
    reload::log_outcome(&outcome);
}

/// The path that serves: the socket path or the XDP path's threads.
enum Running {
    /// The socket path, with the admission it applies itself (for the metrics).
    Socket(socket::SocketServer, Option<Arc<Admitter>>),
    Xdp(fastpath::XdpServer),
}

impl reload::AdmissionControl for Running {
    fn set_access_rules(
        &mut self,
        old: &reload::Rules,
        new: &reload::Rules,
        deny_action: DenyAction,
    ) -> Result<(), String> {
        match self {
            Running::Socket(_, None) => {
                Err("the socket path started without admission (clients_sample 0 and \
                 nothing else configured)"
                    .into())
            }
            Running::Socket(_, Some(admitter)) => {
                let mut acl = Acl::default();
                for (prefix, action) in new {
                    acl.add(*prefix, *action)?;
                }
                admitter.set_rules(crate::proto::admission::AccessRules { acl, deny_action });
                Ok(())
            }
            Running::Xdp(xdp) => xdp
                .update_access_rules(old, new, deny_action)
                .map_err(|e| e.to_string()),
        }
    }

    fn set_rates(
        &mut self,
        limiter: Option<crate::proto::admission::LimiterRate>,
        total_per_second: Option<u32>,
    ) -> Result<(), String> {
        match self {
            Running::Socket(_, None) => Err("the socket path started without admission".into()),
            // The socket path's threads share one bucket of the whole cap.
            Running::Socket(_, Some(admitter)) => {
                admitter.set_rates(limiter, total_per_second.map(|t| QuotaConfig::share_of(t, 1)))
            }
            Running::Xdp(xdp) => xdp
                .update_rates(limiter, total_per_second)
                .map_err(|e| e.to_string()),
        }
    }
}

impl Running {
    /// The socket path's own admission (the XDP program admits for the XDP path).
    fn admitter(&self) -> Option<Arc<Admitter>> {
        match self {
            Running::Socket(_, a) => a.clone(),
            Running::Xdp(_) => None,
        }
    }

    fn responders(&self) -> &[ResponderCounters] {
        match self {
            Running::Socket(s, _) => s.responders(),
            Running::Xdp(s) => s.responders(),
        }
    }

    /// The fast path's kernel counters for the metrics (none on the socket path).
    fn take_stats_readers(&mut self) -> fastpath::StatsReaders {
        match self {
            Running::Socket(..) => fastpath::StatsReaders::default(),
            Running::Xdp(s) => s.take_stats_readers(),
        }
    }

    fn any_finished(&self) -> bool {
        match self {
            Running::Socket(s, _) => s.any_finished(),
            Running::Xdp(s) => s.any_finished(),
        }
    }

    /// Waits for the threads; the XDP path also logs its programs' counters and detaches them.
    fn join(self) -> (Vec<ResponderCounters>, Vec<String>) {
        match self {
            Running::Socket(s, _) => {
                let stopped = s.join();
                (stopped.responders, stopped.failures)
            }
            Running::Xdp(s) => {
                let stopped = s.join();
                for (iface, counters) in &stopped.programs {
                    match counters {
                        Ok(c) => {
                            info!(event = "xdp_detach", iface = iface.as_str(); "xdp program on {iface}: {c}")
                        }
                        Err(e) => warn!(
                            event = "xdp_detach", iface = iface.as_str();
                            "xdp program on {iface}: cannot read its counters: {e}"
                        ),
                    }
                }
                (stopped.responders, stopped.failures)
            }
        }
    }
}

/// Starts the configured path. `--mode auto` with an interface falls back to the socket path
/// on the interface's addresses when XDP cannot start, and says why.
fn start_path(
    config: &ServerConfig,
    state: StateReader,
    symmetric: Option<crate::sys::handoff::SymmetricSender>,
    shutdown: Arc<AtomicBool>,
    nts: Option<NtsKeys>,
) -> Result<Running, String> {
    let secret = limiter_secret();
    log_admission(config);
    if config.path == DataPath::Xdp {
        match start_xdp(
            config,
            state.clone(),
            shutdown.clone(),
            symmetric.clone(),
            secret,
            nts.clone(),
        ) {
            Ok(server) => return Ok(Running::Xdp(server)),
            Err(e) if config.mode == Mode::Auto => {
                warn!(
                    "mode auto: the XDP path cannot start ({e}); falling back to the socket path on the \
                     addresses of {}",
                    config.interfaces.join(", ")
                );
            }
            Err(e) => return Err(e),
        }
    }
    let mut socket_config = SocketConfig::from(config);
    if !config.interfaces.is_empty() {
        socket_config.listen = interface_listen_addrs(config)?;
    }
    let admitter = admitter(config, secret)?;
    let server = socket::run_with(&socket_config, state, shutdown, symmetric, admitter.clone(), nts)
        .map_err(|e| e.to_string())?;
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    info!(
        "listening on {} with {} thread{} (socket path, mode {}, cores {}, batch size {})",
        addrs.join(", "),
        config.cores.len(),
        if config.cores.len() == 1 { "" } else { "s" },
        config.mode,
        format_core_list(&config.cores),
        config.batch_size
    );
    Ok(Running::Socket(server, admitter))
}

/// The sockets mode-6 replies leave from: the socket path's own; on the XDP path, sockets
/// bound now (still as root) on the NTP port of loopback and of the served interfaces'
/// addresses, which also take the queries that reach the port through the kernel.
fn reply_sockets(config: &ServerConfig, server: &mut Running) -> Vec<crate::sys::socket::reply::ReplySocket> {
    use crate::sys::socket::reply::ReplySocket;
    let xdp = match server {
        Running::Socket(socket, _) => return socket.take_reply_sockets(),
        Running::Xdp(xdp) => xdp,
    };
    let mut addrs: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    for served in xdp.served() {
        addrs.extend(served.interface.addrs.iter().filter(|a| match a {
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        }));
    }
    let mut sockets = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(ip, config.ntp_port);
        match ReplySocket::bind(addr) {
            Ok(s) => sockets.push(s),
            Err(e) => warn!("mode-6 queries (ntpq, check_ntp_peer) are not answered on {addr}: {e}"),
        }
    }
    sockets
}

/// The rate limiter's hash key: 128 bits from the OS's random source (through the standard
/// library's per-process SipHash keys), so that nobody outside can tell which addresses share a
/// bucket of the limiter's table.
fn limiter_secret() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    std::array::from_fn(|i| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.finish()
    })
}

/// The socket path's admission, from the same settings the XDP program gets; None when there is
/// nothing to admit (no rules, no limiter), so requests skip the sender lookup and the check.
fn admitter(config: &ServerConfig, secret: [u64; 2]) -> Result<Option<Arc<Admitter>>, String> {
    let a = &config.admission;
    if a.rules.is_empty() && a.limiter.is_none() && a.total_per_second.is_none() && a.sample_shift == 0 {
        return Ok(None);
    }
    let (v4_prefix, v6_prefix) = a.prefixes();
    let mut acl = Acl::default();
    for (prefix, action) in &config.admission.rules {
        acl.add(*prefix, *action)?;
    }
    Ok(Some(Arc::new(
        Admitter::new(acl, config.admission.deny_action)
            .limited(config.admission.limiter.map(|l| Limiter::new(l, secret)))
            // The socket path's threads share one bucket: the whole cap.
            .capped(
                config
                    .admission
                    .total_per_second
                    .map(|total| Quota::new(QuotaConfig::share_of(total, 1))),
            )
            .sampled((a.sample_shift != 0).then(|| Sampling {
                shift: a.sample_shift,
                v4_prefix,
                v6_prefix,
                ring: SampleRing::new(SAMPLE_RING),
            })),
    )))
}

/// One line on who is answered.
fn log_admission(config: &ServerConfig) {
    let a = &config.admission;
    let deny = a.rules.iter().filter(|(_, act)| *act == AclAction::Deny).count();
    if !a.rules.is_empty() {
        info!(
            "access list: {} allow and {deny} deny prefix(es), the most specific wins; denied clients get {}",
            a.rules.len() - deny,
            match a.deny_action {
                DenyAction::Drop => "nothing",
                DenyAction::KissDeny => "a KoD DENY",
                DenyAction::KissRstr => "a KoD RSTR",
            }
        );
    }
    match &a.limiter {
        None => info!("rate limiting off (--rate-limit off)"),
        Some(l) => info!(
            "rate limiting per client (IPv4 /{}, IPv6 /{}): one request per {} s on average after a \
             burst of {}, {} of the rest answered anyway, {}; {} clients tracked ({} MiB)",
            l.v4_prefix,
            l.v6_prefix,
            l.interval_ns as f64 / 1e9,
            l.burst,
            if l.leak == 0 {
                "none".to_string()
            } else {
                format!("1 in {}", 1u32 << l.leak)
            },
            if l.kod == 0 {
                "no KoD".to_string()
            } else {
                format!("a KoD RATE to 1 in {} of the others", 1u32 << l.kod)
            },
            2u64 << l.buckets_log2,
            l.table_bytes() >> 20
        ),
    }
    if let Some(total) = a.total_per_second {
        info!(
            "total cap: {total} answers per second over every client (time and KoDs); clients within \
             their rate are served first, the rest dropped (over_quota)"
        );
    }
}

fn start_xdp(
    config: &ServerConfig,
    state: StateReader,
    shutdown: Arc<AtomicBool>,
    symmetric: Option<crate::sys::handoff::SymmetricSender>,
    secret: [u64; 2],
    nts: Option<NtsKeys>,
) -> Result<fastpath::XdpServer, String> {
    let xdp_config = fastpath::FastPathConfig {
        interfaces: config.interfaces.clone(),
        cores: config.cores.clone(),
        batch_size: config.batch_size,
        ntp_port: config.ntp_port,
        force: config.force,
        busy_poll: config.busy_poll.then_some(fastpath::BusyPoll {
            usecs: 20,
            budget: config.batch_size as u32,
        }),
        device_bound: true,
        answer: config.xdp_answer,
        interleaved: config.interleaved,
        admission: fastpath::AdmissionOptions {
            rules: config.admission.rules.clone(),
            deny_action: config.admission.deny_action,
            limiter: config.admission.limiter.map(|l| (l, secret)),
            quota: None,
            sample_shift: config.admission.sample_shift,
        },
        quota_total: config.admission.total_per_second,
        nts,
        keys: config.key_file.as_ref().map(|k| k.table.clone()),
    };
    let server =
        fastpath::run_with_symmetric(&xdp_config, state, shutdown, symmetric).map_err(|e| e.to_string())?;
    for served in server.served() {
        info!(
            event = "xdp_attach", iface = served.interface.name.as_str(), attach:% = served.mode;
            "serving NTP port {} on {} through XDP ({}) with {} queue{}, {} address{} (xdp path, mode {}, \
             cores {}, batch size {}{}; {})",
            config.ntp_port,
            served.interface.name,
            served.mode,
            served.interface.rx_queues,
            if served.interface.rx_queues == 1 { "" } else { "s" },
            served.interface.addrs.len(),
            if served.interface.addrs.len() == 1 {
                ""
            } else {
                "es"
            },
            config.mode,
            format_core_list(&config.cores),
            config.batch_size,
            if config.busy_poll { ", busy polling" } else { "" },
            if config.xdp_answer {
                "plain requests answered in XDP, the rest by AF_XDP"
            } else {
                "every request answered by AF_XDP (--xdp-answer off)"
            }
        );
    }
    Ok(server)
}

/// The socket path's addresses for `--iface`: each interface's addresses on the NTP port
/// (IPv6 link-local ones with the interface as their scope).
fn interface_listen_addrs(config: &ServerConfig) -> Result<Vec<SocketAddr>, String> {
    let mut listen = Vec::new();
    for name in &config.interfaces {
        let iface = fastpath::Interface::lookup(name).map_err(|e| e.to_string())?;
        for addr in &iface.addrs {
            listen.push(match addr {
                IpAddr::V4(v4) => SocketAddr::from((*v4, config.ntp_port)),
                IpAddr::V6(v6) => {
                    let scope = if v6.segments()[0] & 0xffc0 == 0xfe80 {
                        iface.index
                    } else {
                        0
                    };
                    SocketAddr::V6(SocketAddrV6::new(*v6, config.ntp_port, 0, scope))
                }
            });
        }
    }
    if listen.is_empty() {
        return Err(format!(
            "{} has no address to serve on",
            config.interfaces.join(", ")
        ));
    }
    Ok(listen)
}

fn log_counters(responders: &[ResponderCounters]) {
    for r in responders {
        info!(
            "{} responder {} (core {}): {}",
            r.path,
            r.index,
            r.core,
            r.snapshot()
        );
    }
    info!("total: {}", metrics::total(responders));
}

/// Says once when a large share of the requests is dropped for bad UDP checksums: the clients'
/// datagrams are being damaged, or a sender's checksum offload leaves them unfinished in a way
/// strata does not recognise (it does accept the usual one, the pseudo-header sum alone).
#[derive(Debug, Default)]
struct ChecksumWatch {
    said: bool,
}

/// Bad checksums, at least this many and this share of the requests, are worth a warning.
const BAD_CHECKSUMS_MIN: u64 = 100;
const BAD_CHECKSUMS_SHARE: f64 = 0.1;

impl ChecksumWatch {
    fn check(&mut self, total: &metrics::CounterSnapshot) -> Option<String> {
        let bad = total.frame_drop_count(crate::proto::frame::FrameDrop::BadUdpChecksum);
        if self.said || bad < BAD_CHECKSUMS_MIN || (bad as f64) < BAD_CHECKSUMS_SHARE * total.requests as f64
        {
            return None;
        }
        self.said = true;
        Some(format!(
            "{bad} of {} requests were dropped for a bad UDP checksum \
             (strata_requests_dropped_total{{reason=\"bad_udp_checksum\"}}): the clients' packets are \
             damaged on the way, or a sender's checksum offload leaves them unfinished; with a local \
             sender over veth, `ethtool -K DEV tx off` on its side shows which",
            total.requests
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::FrameDrop;

    #[test]
    fn bad_checksums_are_reported_once_when_they_are_a_large_share() {
        let mut watch = ChecksumWatch::default();
        let mut total = metrics::CounterSnapshot {
            requests: 1000,
            ..Default::default()
        };
        total.frame_drops[FrameDrop::BadUdpChecksum.index()] = 99;
        assert_eq!(watch.check(&total), None, "too few");
        total.frame_drops[FrameDrop::BadUdpChecksum.index()] = 99;
        total.requests = 100_000;
        assert_eq!(watch.check(&total), None, "too small a share");
        total.requests = 1000;
        total.frame_drops[FrameDrop::BadUdpChecksum.index()] = 200;
        let said = watch.check(&total).expect("a warning");
        assert!(said.starts_with("200 of 1000 requests"), "{said}");
        assert_eq!(watch.check(&total), None, "once");
    }
}
