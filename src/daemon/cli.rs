//! The `strata` command line as clap declares it: the binary parses it, and the man page
//! generator (`deploy/manpages`) renders it, so the manual always says what the binary takes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::daemon::config::{Overrides, DEFAULT_CONTROL};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A kernel-bypass NTP server for public, pool-scale deployment"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
// Parsed once at start: the size of `serve`'s many flags does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve NTP to clients
    Serve(ServeArgs),
    /// Show a running server's state, upstream sources and packet counters
    Status(StatusArgs),
    /// Show the most active clients of a running server, with what admission did to them
    Clients(ClientsArgs),
    /// Read a NIC's PTP hardware clock raw: its capabilities and a few cross-timestamps
    /// against the system clock (ioctl, bracket, PHC - CLOCK_REALTIME), to check a NIC
    Phc(PhcArgs),
}

#[derive(Args)]
pub struct PhcArgs {
    /// The PHC device
    #[arg(value_name = "DEVICE", default_value = "/dev/ptp0", conflicts_with = "iface")]
    pub device: PathBuf,

    /// Read the PHC of this network interface instead (ETHTOOL_GET_TS_INFO)
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,

    /// Cross-timestamps to take
    #[arg(short = 'n', long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,

    /// Milliseconds between cross-timestamps
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u16).range(0..=10000))]
    pub interval_ms: u16,

    /// Print the readings as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ClientsArgs {
    /// The server's control socket
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,

    /// Print the list as JSON
    #[arg(long)]
    pub json: bool,

    /// Clients to show, most active first (the server keeps up to 256 in its report)
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    pub count: usize,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The server's control socket
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,

    /// Print the report as JSON
    #[arg(long, conflicts_with = "check")]
    pub json: bool,

    /// Health check: print one line and exit 0 when serving synchronized time in an accepted
    /// state within the limits, 1 when serving but unsynchronized, in a state not accepted or
    /// over a limit, 2 when not serving (no answer on the control socket, no responder, any
    /// error). For anycast route health (BIRD, ExaBGP, keepalived) and Kubernetes probes.
    #[arg(long)]
    pub check: bool,

    /// With --check: the states accepted as healthy, comma-separated, out of synchronized,
    /// holdover (sources lost, the served time still marked good) and local (--local-stratum)
    #[arg(
        long,
        value_name = "STATES",
        value_delimiter = ',',
        default_value = "synchronized,local",
        value_parser = crate::daemon::observe::health::parse_state,
        requires = "check"
    )]
    pub accept: Vec<crate::daemon::observe::board::SyncStatus>,

    /// With --check: unhealthy above this root distance (root delay / 2 + root dispersion; in
    /// holdover it grows by 15 µs each second, so with --accept ...,holdover this bounds holdover)
    #[arg(long, value_name = "SECONDS", requires = "check", value_parser = positive_seconds)]
    pub max_root_distance: Option<f64>,

    /// With --check: unhealthy above this stratum
    #[arg(long, value_name = "N", requires = "check", value_parser = clap::value_parser!(u8).range(1..=15))]
    pub max_stratum: Option<u8>,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// TOML configuration file; the flags below override its keys
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    // Every setting's flag, declared with its file key in `config`'s `settings!` list.
    #[command(flatten)]
    pub flags: Overrides,
}

/// The clap command, for the man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
