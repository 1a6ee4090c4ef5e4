//! The kernel-bypass path: an XDP program steers NTP requests into one AF_XDP socket per
//! receive queue, and one responder thread per queue, pinned to a core, answers them.
//!
//! - [`abi`]: the contract with the program in `xdp-prog/` (maps, counters, metadata);
//! - [`program`]: the compiled objects, embedded;
//! - [`loader`], [`devbound`], [`existing`]: loading, attaching, replacing a stale program;
//! - [`iface`]: queues and addresses of an interface;
//! - [`hwstamp`]: the NIC's hardware receive stamps;
//! - [`state_map`]: the server state the program answers plain requests with, published by the
//!   control thread; [`phc_map`]: the interface's PHC line, published by the PHC thread;
//! - [`xsk`]: the AF_XDP socket of a queue;
//! - [`responder`]: the loop of one thread.
//!
//! Clean exit: the program is attached through a bpf_link, owned by [`XdpServer`]. Dropping
//! the server (after a signal, an error, or while a panic unwinds) detaches it, and the kernel
//! detaches it itself when the process dies any other way, SIGKILL included. Sockets close
//! with their threads, which also empties their XSKMAP slots.

pub mod abi;
pub mod devbound;
pub mod existing;
pub mod hwstamp;
pub mod iface;
pub mod loader;
pub mod mapped;
pub mod phc_map;
pub mod program;
pub mod responder;
pub mod state_map;
pub mod stats;
pub mod xsk;

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::proto::admission::QuotaConfig;
use crate::proto::metrics::{CounterSnapshot, ResponderCounters};
use crate::proto::state::StateReader;
use crate::sys::handoff::SymmetricSender;

use crate::sys::pool::{check_responders, ResponderPool};

pub use abi::{XdpCounter, XdpCounters};
pub use iface::Interface;
pub use loader::{AdmissionOptions, AttachMode, ProgramOptions, XdpProgram};
pub use stats::{ProgramCounterReader, SampleReader, XskStatistics, XskStatsReader};
pub use xsk::BusyPoll;

/// What the fast path needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastPathConfig {
    /// Interfaces to serve on; every receive queue of each gets a socket and a responder.
    pub interfaces: Vec<String>,
    /// Cores for the responders, assigned to the (interface, queue) pairs in turn.
    pub cores: Vec<usize>,
    /// Frames per RX batch.
    pub batch_size: usize,
    /// UDP port of requests.
    pub ntp_port: u16,
    /// Replace an XDP program that is not strata's.
    pub force: bool,
    /// Busy polling for every socket.
    pub busy_poll: Option<BusyPoll>,
    /// Try the device-bound program (hardware stamps) first.
    pub device_bound: bool,
    /// The XDP program answers plain requests itself (`--xdp-answer`).
    pub answer: bool,
    /// The access list and rate limiter the program applies (its `quota` is replaced by the
    /// shares of `quota_total`).
    pub admission: AdmissionOptions,
    /// The server's total cap, answers per second over every interface; None: no cap.
    pub quota_total: Option<u32>,
    /// NTS key material for the responders (the XDP program passes NTS requests up).
    pub nts: Option<crate::proto::nts::NtsKeys>,
    /// Symmetric keys for the responders (the XDP program passes requests with a MAC up: it
    /// answers only 48-byte requests).
    pub keys: Option<Arc<crate::proto::auth::KeyTable>>,
}

/// One interface being served.
pub struct Served {
    pub interface: Interface,
    pub program: XdpProgram,
    pub mode: AttachMode,
}

/// The attached programs and the running responder threads.
pub struct XdpServer {
    served: Vec<Served>,
    /// Receive queues served in all: the total cap's shares.
    queues: u32,
    pool: ResponderPool,
    /// Handles for the metrics exporter; taken with [`XdpServer::take_stats_readers`].
    stats: StatsReaders,
    /// Each interface's PHC (or why none), whose lines the responders read; taken by the
    /// control side with [`XdpServer::take_phc_watches`].
    phc: Vec<crate::sys::ptp::tracker::PhcWatch>,
}

/// Read-only handles on the program counters and socket statistics (see [`stats`]).
#[derive(Default)]
pub struct StatsReaders {
    pub programs: Vec<ProgramCounterReader>,
    pub sockets: Vec<XskStatsReader>,
    /// The sampled requests of each program, for `strata clients`.
    pub samples: Vec<SampleReader>,
}

/// How the threads ended.
#[derive(Debug)]
pub struct Stopped {
    pub responders: Vec<ResponderCounters>,
    /// Each interface's program counters as they were at the end.
    pub programs: Vec<(String, io::Result<XdpCounters>)>,
    pub failures: Vec<String>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Loads and attaches the program on every interface, opens every socket and starts the
/// responders. Nothing is left behind on error: what was attached is detached again.
pub fn run(config: &FastPathConfig, state: StateReader, shutdown: Arc<AtomicBool>) -> io::Result<XdpServer> {
    run_with_symmetric(config, state, shutdown, None)
}

/// [`run`], with symmetric packets (modes 1 and 2) handed to the control thread's peers.
pub fn run_with_symmetric(
    config: &FastPathConfig,
    state: StateReader,
    shutdown: Arc<AtomicBool>,
    symmetric: Option<SymmetricSender>,
) -> io::Result<XdpServer> {
    if config.interfaces.is_empty() {
        return Err(invalid("no interface to serve on".into()));
    }
    check_responders(&config.cores, config.batch_size)?;

    let interfaces = config
        .interfaces
        .iter()
        .map(|name| Interface::lookup(name))
        .collect::<io::Result<Vec<_>>>()?;
    // The cap is split evenly over every receive queue served: each queue's CPU keeps a share
    // (RSS spreads clients evenly over the queues).
    let queues: u32 = interfaces.iter().map(|i| i.rx_queues).sum();
    let admission = AdmissionOptions {
        quota: config
            .quota_total
            .map(|total| QuotaConfig::share_of(total, queues)),
        ..config.admission.clone()
    };
    let mut served = Vec::new();
    let mut sockets = Vec::new();
    let mut phc = Vec::new();
    let mut lines = std::collections::HashMap::new();
    let mut stats = StatsReaders::default();
    for interface in interfaces {
        let name = &interface.name;
        let stamps = hwstamp::detect_and_enable(name);
        log::info!("{name}: {stamps}");
        let (writer, reader) = crate::proto::clock::seqlock::seqlock(crate::proto::clock::phc::PhcLine::NONE);
        let mut watch =
            crate::sys::ptp::tracker::PhcWatch::for_interface(name, hwstamp::phc_index(name), writer);
        let options = ProgramOptions {
            ntp_port: config.ntp_port,
            force: config.force,
            answer: config.answer,
            admission: admission.clone(),
        };
        let mut program = XdpProgram::load(&interface, &interface.addrs, &options)?;
        match &mut watch.phc {
            Ok(tracker) => {
                log::info!(
                    "{name}: its PHC is followed; hardware receive stamps become T2 once the mapping is good"
                );
                lines.insert(name.clone(), reader);
                // The program's own answers map the NIC's stamps through the same line.
                match program.phc_map() {
                    Ok(map) => tracker.add_mirror(Box::new(map)),
                    Err(e) => log::warn!("{name}: the XDP program answers with XDP-time stamps: {e}"),
                }
            }
            Err(why) => log::info!("{name}: {why}; receive stamps are the XDP program's"),
        }
        phc.push(watch);
        for queue in 0..interface.rx_queues {
            let options = xsk::SocketOptions {
                busy_poll: config.busy_poll,
                ..xsk::SocketOptions::default()
            };
            let socket = xsk::QueueSocket::open(name, queue, &options)?;
            program.register_socket(queue, socket.fd())?;
            sockets.push((name.clone(), socket));
        }
        // Device-bound even without hardware stamps: it costs nothing when the kfunc has no
        // stamp to give, and it is the variant that reads them for the PHC mapping to convert.
        let mode = program.attach(config.device_bound)?;
        // Metrics only: a failure here is logged and the server runs without these series.
        match program
            .counters_map_fd()
            .and_then(|fd| ProgramCounterReader::new(name.clone(), fd))
        {
            Ok(reader) => stats.programs.push(reader),
            Err(e) => log::warn!("{name}: the XDP program's counters cannot be exported: {e}"),
        }
        match program.take_samples() {
            Ok(ring) => stats.samples.push(SampleReader::new(name.clone(), ring)),
            Err(e) => log::warn!("{name}: `strata clients` will not see this interface: {e}"),
        }
        if let Some(stale) = &program.replaced {
            log::info!(
                "{name}: the replaced program was id {} ({})",
                stale.id,
                stale.name
            );
        }
        served.push(Served {
            interface,
            program,
            mode,
        });
    }

    let mut server = XdpServer {
        served,
        queues,
        pool: ResponderPool::new("xdp", shutdown),
        stats,
        phc,
    };
    for (index, (iface, socket)) in sockets.into_iter().enumerate() {
        let core = config.cores[index % config.cores.len()];
        match socket.stats_fd() {
            Ok(fd) => server
                .stats
                .sockets
                .push(XskStatsReader::new(index, iface.clone(), socket.queue, fd)),
            Err(e) => log::warn!(
                "{iface} queue {}: the socket's statistics cannot be exported: {e}",
                socket.queue
            ),
        }
        let name = format!(
            "xdp responder {index} ({iface} queue {}, {}, core {core})",
            socket.queue,
            if socket.zero_copy {
                "zero-copy"
            } else {
                "copy mode"
            }
        );
        log::info!("{name} starts");
        let state = state.clone();
        let stop = server.pool.shutdown();
        let symmetric = symmetric.clone();
        let keys = config.keys.clone();
        let line = lines.get(&iface).cloned();
        let nts = config
            .nts
            .as_ref()
            .map(|k| k.responder(crate::sys::random::seed()));
        let (batch_size, ntp_port, busy) = (config.batch_size, config.ntp_port, config.busy_poll.is_some());
        let started = server.pool.spawn(index, core, name, move |name, counters| {
            responder::Responder::new(
                name, socket, batch_size, state, counters, stop, ntp_port, busy, symmetric,
            )
            .with_nts(nts)
            .with_keys(keys)
            .with_phc(line)
            .run()
        });
        if let Err(e) = started {
            // The started threads are joined; the programs are detached.
            server.join();
            return Err(e);
        }
    }
    Ok(server)
}

impl XdpServer {
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// Replaces the access list in every program (a reload); see
    /// [`XdpProgram::update_access_rules`].
    pub fn update_access_rules(
        &mut self,
        old: &[(
            crate::proto::admission::Prefix,
            crate::proto::admission::AclAction,
        )],
        new: &[(
            crate::proto::admission::Prefix,
            crate::proto::admission::AclAction,
        )],
        deny_action: crate::proto::admission::DenyAction,
    ) -> io::Result<()> {
        for s in &mut self.served {
            s.program.update_access_rules(old, new, deny_action)?;
        }
        Ok(())
    }

    /// Changes the rate limiter's rate and the total cap in every program (a reload); see
    /// [`XdpProgram::update_rates`].
    pub fn update_rates(
        &mut self,
        limiter: Option<crate::proto::admission::LimiterRate>,
        total_per_second: Option<u32>,
    ) -> io::Result<()> {
        let quota = total_per_second.map(|total| QuotaConfig::share_of(total, self.queues));
        for s in &mut self.served {
            s.program.update_rates(limiter, quota)?;
        }
        Ok(())
    }

    /// A writable mapping of every interface's state map, for the control thread to publish
    /// into (`StateMirror`).
    pub fn state_maps(&self) -> io::Result<Vec<state_map::StateMap>> {
        self.served.iter().map(|s| s.program.state_map()).collect()
    }

    /// Takes each served interface's PHC watch, for the poller (`crate::sys::ptp::tracker`);
    /// a second call returns none.
    pub fn take_phc_watches(&mut self) -> Vec<crate::sys::ptp::tracker::PhcWatch> {
        std::mem::take(&mut self.phc)
    }

    pub fn responders(&self) -> &[ResponderCounters] {
        self.pool.responders()
    }

    /// Takes the read-only handles on the program counters and socket statistics, for the
    /// metrics exporter (a second call returns none).
    pub fn take_stats_readers(&mut self) -> StatsReaders {
        std::mem::take(&mut self.stats)
    }

    pub fn total(&self) -> CounterSnapshot {
        self.pool.total()
    }

    /// Whether some thread has ended (before shutdown, that is a failure).
    pub fn any_finished(&self) -> bool {
        self.pool.any_finished()
    }

    /// Waits for every thread (after `shutdown` was set), reads the program counters, and
    /// detaches the programs.
    pub fn join(mut self) -> Stopped {
        let pool = std::mem::replace(&mut self.pool, ResponderPool::new("xdp", Arc::default()));
        let (responders, failures) = pool.join();
        let programs = self
            .served
            .iter()
            .map(|s| (s.interface.name.clone(), s.program.counters()))
            .collect();
        for s in &mut self.served {
            s.program.detach();
        }
        Stopped {
            responders,
            programs,
            failures,
        }
    }
}
