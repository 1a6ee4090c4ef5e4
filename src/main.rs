//! The `strata` command.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT or SIGTERM), 2 for bad flags or a bad
//! configuration (the message on stderr), 1 when the server fails at run time (a bind error, a
//! responder thread that dies).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use log::{error, LevelFilter};

use strata::config::{Mode, Overrides, ServerConfig, DEFAULT_CONTROL};
use strata::metrics::{control_socket, status_view};
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

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// XDP when an interface is given (sockets on its addresses if XDP cannot start), else sockets
    Auto,
    /// The portable socket path (recvmmsg/sendmmsg)
    Socket,
    /// AF_XDP kernel bypass on the --iface interfaces
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

    /// Interface to serve on through XDP/AF_XDP, every receive queue; repeatable
    #[arg(long, value_name = "IF")]
    iface: Vec<String>,

    /// UDP port requests are sent to, on the XDP path and its socket fallback [default: 123]
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    ntp_port: Option<i64>,

    /// Replace an XDP program on the interface that is not strata's
    #[arg(long)]
    force: bool,

    /// Busy-poll the AF_XDP sockets (SO_PREFER_BUSY_POLL) instead of sleeping in poll()
    #[arg(long)]
    busy_poll: bool,

    /// Serve Prometheus metrics on GET /metrics here, or `off` [default: 127.0.0.1:9123]
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,

    /// Answer `strata status` on this Unix socket, or `off` [default: /run/strata/control.sock]
    #[arg(long, value_name = "PATH")]
    control: Option<String>,

    /// Upstream server to synchronize to, "HOST[:PORT] [iburst] [prefer] [noselect] [minpoll N]
    /// [maxpoll N]"; repeatable (replaces the file's `server` entries)
    #[arg(long, value_name = "HOST[:PORT]")]
    upstream: Vec<String>,

    /// Symmetric peer (mode 1), same syntax as --upstream; repeatable
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: Vec<String>,

    /// Largest root distance, in seconds, of a usable source and of time served as synchronized
    /// [default: 1.5]
    #[arg(long, value_name = "SECONDS")]
    max_distance: Option<String>,

    /// Agreeing sources needed to synchronize [default: 2]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    minsources: Option<i64>,

    /// Largest first step forward, seconds: sources further ahead of the clock at start are
    /// refused until --allow-step [default: 1000]
    #[arg(long, value_name = "SECONDS")]
    max_startup_step_forward: Option<String>,

    /// Largest first step backward, seconds [default: 1000]
    #[arg(long, value_name = "SECONDS")]
    max_startup_step_backward: Option<String>,

    /// Largest correction once synchronized, seconds (or the served time's root distance, if
    /// larger); a larger one is refused and strata holds over on its own clock [default: 1]
    #[arg(long, value_name = "SECONDS")]
    max_correction: Option<String>,

    /// Accept the first correction whatever its size, once (as ntpd's -g)
    #[arg(long)]
    allow_step: bool,

    /// Also discipline the system clock (adjtimex): slew, step only at start
    #[arg(long)]
    discipline_system: bool,

    /// Write measurements.log and statistics.log (one line per sample) into this directory
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
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
            iface: self.iface.clone(),
            ntp_port: self.ntp_port,
            force: self.force,
            busy_poll: self.busy_poll,
            metrics: self.metrics.clone(),
            control: self.control.clone(),
            upstream: self.upstream.clone(),
            peer: self.peer.clone(),
            max_distance: self.max_distance.clone(),
            minsources: self.minsources,
            max_startup_step_forward: self.max_startup_step_forward.clone(),
            max_startup_step_backward: self.max_startup_step_backward.clone(),
            max_correction: self.max_correction.clone(),
            allow_step: self.allow_step,
            discipline_system: self.discipline_system,
            log_dir: self.log_dir.clone(),
        }
    }
}

fn main() -> ExitCode {
    // clap prints its own errors and exits with 2 (0 for --help and --version).
    let cli = Cli::parse();
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
    let config = match ServerConfig::load(args.config.as_deref(), &args.overrides()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level);
    match strata::server::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            fatal(&message);
            ExitCode::from(1)
        }
    }
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
        let Command::Serve(args) = cli.command else {
            panic!("parsed as serve");
        };
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
