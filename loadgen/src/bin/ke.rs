//! `strata-loadgen-ke`: NTS-KE handshakes per second against an NTS-KE server (strata's,
//! chronyd's, any RFC 8915 one). `--concurrency` threads each run whole sessions back to back
//! for `--seconds`; with `--src-net`/`--sources` each session comes from the next of that many
//! addresses (they must be routed back to this host, as bench/lab's 198.19.0.0/16 is), so that a
//! per-address limit sees many clients. Prints one line, or one JSON object with `--json`; exits
//! 1 when no session completed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use strata_loadgen::cli::parse_target;
use strata_loadgen::ke::{self, KeBench, MAX_CONCURRENCY};
use strata_loadgen::transport::frame::SrcNet;

/// NTS-KE handshakes per second against an NTS-KE server
#[derive(Parser, Debug)]
#[command(name = "strata-loadgen-ke", version)]
struct Args {
    /// The NTS-KE server, IP:PORT
    #[arg(long, value_name = "IP:PORT", value_parser = parse_target)]
    target: SocketAddr,

    /// The name the server's certificate must carry [default: the target's address]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// The CA certificate (PEM) the server's certificate is checked against [default: the
    /// system's trust store]
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,

    /// Sessions under way at once (one thread each)
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=MAX_CONCURRENCY as i64))]
    concurrency: u16,

    /// How long to run
    #[arg(long, value_name = "S", default_value_t = 3.0, value_parser = parse_seconds)]
    seconds: f64,

    /// The simulated client network the sessions' source addresses are taken from (routed back
    /// to this host; IPv4 target)
    #[arg(long, value_name = "CIDR", value_parser = SrcNet::parse, requires = "sources")]
    src_net: Option<SrcNet>,

    /// How many addresses of --src-net the sessions take in turn
    #[arg(long, value_name = "N", requires = "src_net", value_parser = clap::value_parser!(u32).range(1..))]
    sources: Option<u32>,

    /// Seconds one session may take
    #[arg(long, value_name = "S", default_value_t = 5.0, value_parser = parse_seconds)]
    timeout: f64,

    /// Print one JSON object on stdout
    #[arg(long)]
    json: bool,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 600.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds from 0 to 600")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let sources = match (args.src_net, args.sources) {
        (Some(net), Some(n)) if n > net.hosts() => {
            eprintln!(
                "strata-loadgen-ke: --sources {n} is more than the {} addresses of --src-net",
                net.hosts()
            );
            return ExitCode::from(2);
        }
        (Some(net), Some(n)) => Some((net, n)),
        _ => None,
    };
    let ca_pem = match &args.ca {
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                eprintln!("strata-loadgen-ke: --ca {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let bench = KeBench {
        target: args.target,
        name: args.name.unwrap_or_else(|| args.target.ip().to_string()),
        ca_pem,
        concurrency: args.concurrency,
        seconds: args.seconds,
        sources,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let report = match ke::run(&bench) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata-loadgen-ke: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("a report serializes"));
    } else {
        println!(
            "{}: {} sessions in {:.2} s = {:.0}/s ({} failed: {:?}); session p50 {:.0} µs, p99 {:.0} µs",
            report.target,
            report.sessions_ok,
            report.seconds,
            report.rate,
            report.sessions_failed,
            report.failures,
            report.session_us.p50,
            report.session_us.p99
        );
    }
    if report.sessions_ok == 0 {
        eprintln!("strata-loadgen-ke: no session completed: {:?}", report.failures);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
