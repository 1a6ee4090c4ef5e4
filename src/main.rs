//! The `strata` command.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT, SIGTERM or SIGUSR1), 2 for bad flags or a bad
//! configuration (the message on stderr; an unknown `user` among them), 1 when the server fails
//! at run time (a bind error, a responder thread that dies, a failed switch of user).

use std::process::ExitCode;

use clap::Parser;
use log::error;

use strata::daemon::cli::{Cli, ClientsArgs, Command, PhcArgs, ServeArgs, StatusArgs};
use strata::daemon::config::{flag_error, ServerConfig};
use strata::daemon::observe::{clients_view, control_socket, health, status_view};
use strata::daemon::server::Service;
use strata::daemon::{logging, run_as};

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
        Command::Clients(args) => clients(&args),
        Command::Phc(args) => phc(&args),
    }
}

/// `strata phc`: exit code 0 with at least one reading, 1 (and a message on stderr naming the
/// device or interface) without.
fn phc(args: &PhcArgs) -> ExitCode {
    use std::io::Write;
    use strata::daemon::phc_view::{self, Target};
    let target = match &args.iface {
        Some(name) => Target::Interface(name.clone()),
        None => Target::Device(args.device.clone()),
    };
    let mut device = match phc_view::resolve(&target).and_then(|path| phc_view::open(&path)) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("strata phc: {e}");
            return ExitCode::from(1);
        }
    };
    let interval = std::time::Duration::from_millis(args.interval_ms.into());
    let view = phc_view::take(&mut device, args.count.into(), interval);
    let text = if args.json {
        serde_json::to_string_pretty(&view).unwrap_or_default() + "\n"
    } else {
        phc_view::render(&view)
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if view.readings.is_empty() {
        eprintln!(
            "strata phc: no cross-timestamp could be read from {}",
            view.device
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `strata clients`: exit code 0 with the list, 1 (and a message on stderr) without a report.
fn clients(args: &ClientsArgs) -> ExitCode {
    use std::io::Write;
    let report = match control_socket::request(&args.control) {
        Ok((_, report)) => report,
        Err(e) => {
            eprintln!("strata clients: {e}");
            return ExitCode::from(1);
        }
    };
    let text = if args.json {
        let mut list = report.clients.clone();
        if let Some(c) = &mut list {
            c.clients.truncate(args.count);
        }
        serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
    } else {
        clients_view::render(&report, args.count)
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// `strata status --check`: 0 healthy, 1 serving but unhealthy, 2 not serving (see
/// [`health`]); one line on stdout, or the error on stderr.
fn check(args: &StatusArgs) -> ExitCode {
    let limits = health::Limits {
        accept: args.accept.clone(),
        max_root_distance: args.max_root_distance,
        max_stratum: args.max_stratum,
    };
    let (verdict, line) = match control_socket::request(&args.control) {
        Ok((_, report)) => health::check(&report, &limits),
        Err(e) => {
            eprintln!("strata status --check: down: {e}");
            return ExitCode::from(health::Health::Down as u8);
        }
    };
    println!("{line}");
    ExitCode::from(verdict as u8)
}

/// `strata status`: exit code 0 with the report, 1 (and a message on stderr) without one.
fn status(args: &StatusArgs) -> ExitCode {
    use std::io::Write;
    if args.check {
        return check(args);
    }
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
    // A user that does not exist is a configuration error too, found before anything starts.
    let run_as = match run_as::resolve(config.user.as_deref()) {
        Ok(run_as) => run_as,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    let log = logging::init(config.log_level, config.log_format);
    // SIGHUP reads the same file with the same flags again.
    let file = args.config.clone();
    let flags = args.flags.clone();
    let service = Service {
        run_as,
        reload: Some(Box::new(move || ServerConfig::load(file.as_deref(), &flags))),
        log: Some(Box::new(log)),
    };
    match strata::daemon::server::run(&config, service) {
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
    use log::LevelFilter;
    use std::time::Duration;
    use strata::daemon::config::Mode;
    use strata::proto::state::UnsyncPolicy;

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
        let machine = strata::daemon::config::Machine {
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
