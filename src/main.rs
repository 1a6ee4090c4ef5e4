//! The `strata` command.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT or SIGTERM), 2 for bad flags or a bad
//! configuration (the message on stderr), 1 when the server fails at run time (a bind error, a
//! responder thread that dies).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use log::{error, info, warn, LevelFilter};

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use strata::config::{
    flag_error, format_core_list, DataPath, Mode, Overrides, ServerConfig, DEFAULT_CONTROL,
};
use strata::control::{self, ControlConfig};
use strata::fastpath;
use strata::metrics::report::Observed;
use strata::metrics::{self, control_socket, observers, status_view, ResponderCounters};
use strata::socket::{self, SocketConfig};
use strata::state::{StateReader, UnsyncPolicy};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A kernel-bypass NTP server for public, pool-scale deployment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start: the size of `serve`'s many flags does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve NTP to clients
    Serve(ServeArgs),
    /// Show a running server's state, upstream sources and packet counters
    Status(StatusArgs),
}

#[derive(Args)]
struct StatusArgs {
    /// The server's control socket
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    control: PathBuf,

    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; the flags below override its keys
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    // Every setting's flag, declared with its file key in `config`'s `settings!` list.
    #[command(flatten)]
    flags: Overrides,
}

fn main() -> ExitCode {
    // clap prints its own errors and exits with 2 (0 for --help and --version), except for a
    // flag's bad value, which is worded as every other configuration error.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match flag_error(&e) {
            Some(e) => {
                eprintln!("strata: {e}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Status(args) => status(&args),
    }
}

/// `strata status`: exit code 0 with the report, 1 (and a message on stderr) without one.
fn status(args: &StatusArgs) -> ExitCode {
    use std::io::Write;
    let (json, report) = match control_socket::request(&args.control) {
        Ok(got) => got,
        Err(e) => {
            eprintln!("strata status: {e}");
            return ExitCode::from(1);
        }
    };
    let text = if args.json {
        // Pretty-printed from the server's own JSON, so that fields this build does not know
        // are shown too.
        match serde_json::from_str::<serde_json::Value>(&json).and_then(|v| serde_json::to_string_pretty(&v))
        {
            Ok(pretty) => pretty + "\n",
            Err(_) => json,
        }
    } else {
        status_view::render(&report)
    };
    // A closed stdout (`strata status | head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn init_logging(level: Option<LevelFilter>) {
    let mut builder = env_logger::Builder::new();
    match level {
        Some(level) => {
            builder.filter_level(level);
        }
        None => match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.is_empty() => {
                builder.parse_filters(&spec);
            }
            _ => {
                builder.filter_level(LevelFilter::Info);
            }
        },
    }
    builder.init();
}

/// Reports a fatal error: in the log, or on stderr when logging is off.
fn fatal(message: &str) {
    if log::log_enabled!(log::Level::Error) {
        error!("{message}");
    } else {
        eprintln!("strata: {message}");
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match ServerConfig::load(args.config.as_deref(), &args.flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level);
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            fatal(&message);
            ExitCode::from(1)
        }
    }
}

fn run(config: &ServerConfig) -> Result<(), String> {
    let started = SystemTime::now();
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while shutting down ends the process at once (exit code 1).
        signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(signal, shutdown.clone()))
            .map_err(|e| format!("cannot install the signal handlers: {e}"))?;
    }

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

    let mut server = match start_path(
        config,
        control.reader(),
        control.symmetric_sender(),
        shutdown.clone(),
    ) {
        Ok(server) => server,
        Err(e) => {
            shutdown.store(true, Ordering::Relaxed);
            let _ = control.join();
            return Err(e);
        }
    };

    let observed = Observed {
        responders: server.responders().to_vec(),
        xdp: server.take_stats_readers(),
        state: control.reader(),
        board: control.status_board(),
        started,
    };
    let observers = match observers::start(observed, &config.metrics, &config.control, shutdown.clone()) {
        Ok(observers) => observers,
        Err(e) => {
            shutdown.store(true, Ordering::Relaxed);
            let _ = server.join();
            let _ = control.join();
            return Err(e);
        }
    };

    let mut died = false;
    while !shutdown.load(Ordering::Relaxed) {
        if server.any_finished() {
            died = true;
            shutdown.store(true, Ordering::Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !died {
        info!("shutting down");
    }
    let (responders, failures) = server.join();
    if control.join().is_err() {
        warn!("the control thread panicked");
    }
    observers.join();
    log_counters(&responders);
    if died || !failures.is_empty() {
        let mut failures = failures;
        if failures.is_empty() {
            failures.push("a responder thread stopped unexpectedly".into());
        }
        return Err(failures.join("; "));
    }
    Ok(())
}

/// The path that serves: the socket path or the XDP path's threads.
enum Running {
    Socket(socket::SocketServer),
    Xdp(fastpath::XdpServer),
}

impl Running {
    fn responders(&self) -> &[ResponderCounters] {
        match self {
            Running::Socket(s) => s.responders(),
            Running::Xdp(s) => s.responders(),
        }
    }

    /// The fast path's kernel counters for the metrics (none on the socket path).
    fn take_stats_readers(&mut self) -> fastpath::StatsReaders {
        match self {
            Running::Socket(_) => fastpath::StatsReaders::default(),
            Running::Xdp(s) => s.take_stats_readers(),
        }
    }

    fn any_finished(&self) -> bool {
        match self {
            Running::Socket(s) => s.any_finished(),
            Running::Xdp(s) => s.any_finished(),
        }
    }

    /// Waits for the threads; the XDP path also logs its programs' counters and detaches them.
    fn join(self) -> (Vec<ResponderCounters>, Vec<String>) {
        match self {
            Running::Socket(s) => {
                let stopped = s.join();
                (stopped.responders, stopped.failures)
            }
            Running::Xdp(s) => {
                let stopped = s.join();
                for (iface, counters) in &stopped.programs {
                    match counters {
                        Ok(c) => info!("xdp program on {iface}: {c}"),
                        Err(e) => warn!("xdp program on {iface}: cannot read its counters: {e}"),
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
    symmetric: Option<strata::control::handoff::SymmetricSender>,
    shutdown: Arc<AtomicBool>,
) -> Result<Running, String> {
    if config.path == DataPath::Xdp {
        match start_xdp(config, state.clone(), shutdown.clone(), symmetric.clone()) {
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
    let server =
        socket::run_with_symmetric(&socket_config, state, shutdown, symmetric).map_err(|e| e.to_string())?;
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
    Ok(Running::Socket(server))
}

fn start_xdp(
    config: &ServerConfig,
    state: StateReader,
    shutdown: Arc<AtomicBool>,
    symmetric: Option<strata::control::handoff::SymmetricSender>,
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
    };
    let server =
        fastpath::run_with_symmetric(&xdp_config, state, shutdown, symmetric).map_err(|e| e.to_string())?;
    for served in server.served() {
        info!(
            "serving NTP port {} on {} through XDP ({}) with {} queue{}, {} address{} (xdp path, mode {}, \
             cores {}, batch size {}{})",
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
            if config.busy_poll { ", busy polling" } else { "" }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn serve_args(flags: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["strata", "serve"].iter().chain(flags))?;
        let Command::Serve(args) = cli.command else {
            panic!("parsed as serve");
        };
        Ok(args)
    }

    #[test]
    fn flags_become_the_configuration() {
        let args = serve_args(&[
            "--listen",
            "127.0.0.1:12300",
            "--listen",
            "[::1]:12300",
            "--cores",
            "0-1",
            "--local-stratum",
            "2",
            "--mode",
            "socket",
            "--unsynchronized",
            "drop",
            "--batch-size",
            "8",
            "--log-level",
            "debug",
            "--max-distance",
            "0.25",
            "--allow-step",
        ])
        .unwrap();
        let machine = strata::config::Machine {
            allowed: vec![0, 1],
            configured: 2,
        };
        let c = ServerConfig::resolve(None, &args.flags, &machine).unwrap();
        assert_eq!(
            c.listen,
            vec![
                "127.0.0.1:12300".parse::<std::net::SocketAddr>().unwrap(),
                "[::1]:12300".parse().unwrap()
            ]
        );
        assert_eq!(c.cores, vec![0, 1]);
        assert_eq!(c.local_stratum, Some(2));
        assert_eq!(c.mode, Mode::Socket);
        assert_eq!(c.unsynchronized, UnsyncPolicy::Drop);
        assert_eq!(c.batch_size, 8);
        assert_eq!(c.log_level, Some(LevelFilter::Debug));
        assert_eq!(c.upstream.max_distance, Duration::from_millis(250));
        assert!(c.upstream.allow_step);
    }

    #[test]
    fn a_bad_flag_value_is_named_as_a_configuration_error() {
        let message = |flags: &[&str]| {
            let e = serve_args(flags).err().expect("refused");
            assert_eq!(e.exit_code(), 2);
            flag_error(&e).expect("a value error").to_string()
        };
        assert_eq!(
            message(&["--local-stratum", "0"]),
            "flag `--local-stratum`: 0 is out of range 1..=15"
        );
        // Negative numbers reach the range check rather than being taken for flags.
        assert_eq!(
            message(&["--max-distance", "-1"]),
            "flag `--max-distance`: -1 is out of range [0.001, 16] seconds"
        );
        assert_eq!(
            message(&["--max-distance", "-0.5"]),
            "flag `--max-distance`: -0.5 is out of range [0.001, 16] seconds"
        );
        assert_eq!(
            message(&["--mode", "fast"]),
            "flag `--mode`: \"fast\" is not one of auto, socket, xdp"
        );
        // Other command-line errors stay clap's, a missing value among them.
        let e = serve_args(&["--unknown"]).err().unwrap();
        assert!(flag_error(&e).is_none());
        let e = serve_args(&["--max-distance", "--minsources", "2"])
            .err()
            .unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(
            e.to_string().contains("a value is required for '--max-distance"),
            "{e}"
        );
    }

    #[test]
    fn the_help_lists_the_choices() {
        let help = Cli::command()
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        for expected in [
            "--local-stratum <N>",
            "--upstream <HOST[:PORT]>",
            "--busy-poll",
            "- answer: Answer with leap indicator 3 and stratum 16",
            "- xdp:    AF_XDP kernel bypass on the --iface interfaces",
            "[possible values: off, error, warn, info, debug, trace]",
        ] {
            assert!(help.contains(expected), "{expected:?} in\n{help}");
        }
    }

    #[test]
    fn bad_flag_syntax_is_a_usage_error() {
        for args in [
            &["strata", "serve", "--mode", "fast"][..],
            &["strata", "serve", "--local-stratum", "one"][..],
            &["strata", "serve", "--unknown"][..],
            &["strata"][..],
        ] {
            let e = Cli::try_parse_from(args).err().unwrap();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }
}
