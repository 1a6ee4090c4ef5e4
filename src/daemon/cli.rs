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
    #[arg(long)]
    pub json: bool,
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
