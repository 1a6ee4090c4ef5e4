//! The `strata` command.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT or SIGTERM), 2 for bad flags or a bad
//! configuration (the message on stderr), 1 when the server fails at run time (a bind error, a
//! responder thread that dies).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use log::{error, info, warn, LevelFilter};

use strata::config::{format_core_list, Mode, Overrides, ServerConfig};
use strata::control::{self, ControlConfig};
use strata::metrics::{self, ResponderCounters};
use strata::socket::{self, SocketConfig};
use strata::state::UnsyncPolicy;

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
enum Command {
    /// Serve NTP to clients
    Serve(ServeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// XDP when an interface is given, else sockets (this build: sockets)
    Auto,
    /// The portable socket path (recvmmsg/sendmmsg)
    Socket,
    /// AF_XDP kernel bypass (not in this build)
    Xdp,
}

#[derive(Clone, Copy, ValueEnum)]
enum UnsyncArg {
    /// Answer with leap indicator 3 and stratum 16
    Answer,
    /// Send nothing, so that clients turn to other servers at once
    Drop,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevelArg {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; the flags below override its keys
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address to serve on, IPv6 as [ADDR]:PORT; repeatable [default: 0.0.0.0:123 and [::]:123]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<String>,

    /// CPUs to run one responder thread on each, e.g. 0,1 or 0-3 [default: every CPU this process may use]
    #[arg(long, value_name = "LIST")]
    cores: Option<String>,

    /// Serve the system clock at this stratum (1-15); without it the server is unsynchronized
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    local_stratum: Option<i64>,

    /// Packet path [default: auto]
    #[arg(long, value_name = "MODE")]
    mode: Option<ModeArg>,

    /// What to do with requests while not synchronized [default: answer]
    #[arg(long, value_name = "POLICY")]
    unsynchronized: Option<UnsyncArg>,

    /// Datagrams per receive call (1-1024) [default: 64]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    batch_size: Option<i64>,

    /// Log level [default: RUST_LOG if set, else info]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<LogLevelArg>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            cores: self.cores.clone(),
            local_stratum: self.local_stratum,
            mode: self.mode.map(|m| match m {
                ModeArg::Auto => Mode::Auto,
                ModeArg::Socket => Mode::Socket,
                ModeArg::Xdp => Mode::Xdp,
            }),
            unsynchronized: self.unsynchronized.map(|u| match u {
                UnsyncArg::Answer => UnsyncPolicy::Answer,
                UnsyncArg::Drop => UnsyncPolicy::Drop,
            }),
            batch_size: self.batch_size,
            log_level: self.log_level.map(|l| match l {
                LogLevelArg::Off => LevelFilter::Off,
                LogLevelArg::Error => LevelFilter::Error,
                LogLevelArg::Warn => LevelFilter::Warn,
                LogLevelArg::Info => LevelFilter::Info,
                LogLevelArg::Debug => LevelFilter::Debug,
                LogLevelArg::Trace => LevelFilter::Trace,
            }),
        }
    }
}

fn main() -> ExitCode {
    // clap prints its own errors and exits with 2 (0 for --help and --version).
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
    }
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
    let config = match ServerConfig::load(args.config.as_deref(), &args.overrides()) {
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
    match config.local_stratum {
        Some(stratum) => info!(
            "serving the system clock as a local reference: stratum {stratum}, refid LOCL, TAI-UTC {} s",
            published.clock.tai_minus_utc
        ),
        None => info!(
            "no time source (--local-stratum N serves the system clock): {}",
            match config.unsynchronized {
                UnsyncPolicy::Answer => "answering as unsynchronized, leap 3 and stratum 16",
                UnsyncPolicy::Drop => "dropping requests while unsynchronized",
            }
        ),
    }

    let server = match socket::run(&SocketConfig::from(config), control.reader(), shutdown.clone()) {
        Ok(server) => server,
        Err(e) => {
            shutdown.store(true, Ordering::Relaxed);
            let _ = control.join();
            return Err(e.to_string());
        }
    };
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
    let stopped = server.join();
    if control.join().is_err() {
        warn!("the control thread panicked");
    }
    log_counters(&stopped.responders);
    if died || !stopped.failures.is_empty() {
        let mut failures = stopped.failures;
        if failures.is_empty() {
            failures.push("a responder thread stopped unexpectedly".into());
        }
        return Err(failures.join("; "));
    }
    Ok(())
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

    #[test]
    fn flags_become_overrides() {
        let cli = Cli::try_parse_from([
            "strata",
            "serve",
            "--listen",
            "127.0.0.1:12300",
            "--listen",
            "[::1]:12300",
            "--cores",
            "0-1",
            "--local-stratum",
            "0",
            "--mode",
            "xdp",
            "--unsynchronized",
            "drop",
            "--batch-size",
            "8",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command;
        let o = args.overrides();
        assert_eq!(o.listen, vec!["127.0.0.1:12300", "[::1]:12300"]);
        assert_eq!(o.cores.as_deref(), Some("0-1"));
        // Range checks belong to the configuration, which names the flag.
        assert_eq!(o.local_stratum, Some(0));
        assert_eq!(o.mode, Some(Mode::Xdp));
        assert_eq!(o.unsynchronized, Some(UnsyncPolicy::Drop));
        assert_eq!(o.batch_size, Some(8));
        assert_eq!(o.log_level, Some(LevelFilter::Debug));
        let e = ServerConfig::resolve(
            None,
            &o,
            &strata::config::Machine {
                allowed: vec![0, 1],
                configured: 2,
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "flag `--local-stratum`: 0 is out of range 1..=15");
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
