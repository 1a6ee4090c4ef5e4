//! The command line, parsed and checked up front: every value is in range before a socket opens.

use std::net::{IpAddr, SocketAddr};

use clap::{ArgGroup, Parser};

use crate::request::RequestKind;
use crate::transport::frame::SrcNet;
use strata::proto::wire::ethernet::EthernetAddress;

/// The NTP port, used when `--target` names none.
pub const NTP_PORT: u16 = 123;
/// Steps longer than this are refused: every step must end by itself in reasonable time.
pub const MAX_STEP_SECONDS: f64 = 3600.0;
/// A sweep with more steps than this is refused (raise --multiplier or narrow the range).
pub const MAX_STEPS: usize = 200;
/// The most flows a socket or AF_XDP transport opens (a socket, or a prepared header, each).
pub const MAX_FLOWS: u32 = 1024;
/// The most flows in live mode (its XDP program derives a flow's address and port from a
/// counter): a /8's addresses.
pub const MAX_LIVE_FLOWS: u32 = 1 << 24;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "strata-loadgen",
    version,
    about = "NTP load generator: paced rate steps or sweeps against one server, with loss, \
             invalid and KoD replies, and latency percentiles per step",
    after_help = "Exit status: 0 when the run completed, 1 when it could not run or the target \
                  never answered, 2 for a usage error."
)]
#[command(group(ArgGroup::new("load").required(true).args(["rate", "sweep"])))]
pub struct Args {
    /// Server to load, IP[:PORT] (IPv6 as [IP]:PORT); port 123 when omitted
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_target)]
    pub target: SocketAddr,

    /// One step at this rate (requests/s; k and M suffixes allowed)
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Steps from MIN up to MAX requests/s, each --multiplier times the last (MAX always included)
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_sweep)]
    pub sweep: Option<Sweep>,

    /// Rate factor between sweep steps
    #[arg(long, value_name = "F", default_value_t = 1.5, value_parser = parse_multiplier)]
    pub multiplier: f64,

    /// How long each step sends
    #[arg(long, value_name = "S", default_value_t = 2.0, value_parser = parse_step_seconds)]
    pub step_seconds: f64,

    /// Most requests of one step (all threads together) [default: rate × step seconds]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Exponential gaps between requests (Poisson arrivals) instead of constant ones
    #[arg(long)]
    pub poisson: bool,

    /// Sending threads, each with its own sockets, pacer and statistics
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,

    /// CPUs to pin the threads to, e.g. 0 or 0,2-3 (thread i on the i-th listed, cyclically)
    #[arg(long, value_name = "LIST", value_parser = parse_cores)]
    pub cores: Option<CoreList>,

    /// Client flows per thread: source ports (socket mode), or source address and port pairs
    /// (AF_XDP and live modes; each of its own address in --src-net). At most 1024, except in
    /// live mode, whose flows cost no memory: up to the addresses of --src-net (2^20 clients
    /// from a /11, for instance) [default: 8 in socket mode, 256 in AF_XDP and live modes]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_LIVE_FLOWS as i64))]
    pub flows: Option<u32>,

    /// Seconds a reply may take; a later one is counted as late and its request as lost
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = parse_timeout)]
    pub timeout: f64,

    /// Loss (in percent, "0.1" or "0.1%") below which a step counts for max_rate_below_loss
    #[arg(long, value_name = "PERCENT", default_value = "0.1", value_parser = parse_percent)]
    pub loss_threshold: f64,

    /// Kind of request to send
    #[arg(long, value_enum, default_value_t = RequestKind::Basic)]
    pub request: RequestKind,

    /// NTS: the NTS-KE server (ADDR:PORT) each thread gets its keys and cookie from, once
    #[arg(long, value_name = "ADDR:PORT")]
    pub nts_ke: Option<SocketAddr>,

    /// NTS: the CA certificate (PEM) the NTS-KE server's certificate is checked against
    /// [default: the system's trust store]
    #[arg(long, value_name = "PEM")]
    pub nts_ca: Option<std::path::PathBuf>,

    /// NTS: the name the NTS-KE server's certificate must carry [default: the --nts-ke address]
    #[arg(long, value_name = "NAME")]
    pub nts_name: Option<String>,

    /// Requests per send call (and replies per receive call); in live mode, frames per
    /// BPF_PROG_RUN batch, which the kernel sends together (at most 256)
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,

    /// How requests leave: `socket` (UDP sockets), `af-xdp` (raw frames through AF_XDP sockets on
    /// --iface), `live` (raw frames made by an XDP program run with BPF_PROG_RUN in live-frames
    /// mode and sent with XDP_TX out of --iface, paced inside the program; replies judged and
    /// counted by an XDP program on --iface; millions of requests/s from one core)
    /// [default: af-xdp with --iface, else socket]
    #[arg(long, value_enum, value_name = "KIND")]
    pub transport: Option<TransportKind>,

    /// AF_XDP and live modes: send raw frames on this interface (root; IPv4 target; one thread;
    /// AF_XDP sends on queue 0 and receives on every queue)
    #[arg(long, value_name = "IF", requires = "dst_mac")]
    pub iface: Option<String>,

    /// AF_XDP and live modes: the MAC address frames are sent to (the target's, or its router's)
    #[arg(long, value_name = "MAC", value_parser = parse_mac, requires = "iface")]
    pub dst_mac: Option<EthernetAddress>,

    /// AF_XDP and live modes: the source MAC address [default: the interface's]
    #[arg(long, value_name = "MAC", value_parser = parse_mac, requires = "iface")]
    pub src_mac: Option<EthernetAddress>,

    /// AF_XDP and live modes: the simulated client network the source addresses are taken from
    /// (the target must route it back over --iface)
    #[arg(long, value_name = "CIDR", default_value = "198.19.0.0/16", value_parser = SrcNet::parse)]
    pub src_net: SrcNet,

    /// The target is a sink that answers nothing (a benchmark of the generator's own send
    /// rate): report the steps instead of failing because nothing came back
    #[arg(long)]
    pub sink: bool,

    /// Print one JSON object with every step on stdout instead of the table
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr while a step runs
    #[arg(long)]
    pub quiet: bool,
}

/// How requests leave and replies come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// UDP sockets through the kernel's stack.
    Socket,
    /// Raw frames through AF_XDP sockets.
    AfXdp,
    /// Raw frames made and sent by an XDP program (BPF_PROG_RUN live frames), replies counted
    /// by an XDP program.
    Live,
}

impl TransportKind {
    /// The name in the JSON report.
    pub fn label(self) -> &'static str {
        match self {
            TransportKind::Socket => "socket",
            TransportKind::AfXdp => "af_xdp",
            TransportKind::Live => "live",
        }
    }
}

/// The most frames one BPF_PROG_RUN batch takes in live mode (the kernel's TEST_XDP_MAX_BATCH).
pub const LIVE_MAX_BATCH: u16 = 256;

/// The range of a sweep, requests/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    pub min: f64,
    pub max: f64,
}

/// CPUs to pin threads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

impl Args {
    /// How the run sends.
    pub fn transport(&self) -> TransportKind {
        self.transport.unwrap_or(if self.iface.is_some() {
            TransportKind::AfXdp
        } else {
            TransportKind::Socket
        })
    }

    /// Whether the run sends raw frames on --iface (AF_XDP or live), else UDP sockets.
    pub fn xdp(&self) -> bool {
        self.transport() != TransportKind::Socket
    }

    /// Checks the combinations clap cannot express; the message names the options at fault.
    pub fn check(&self) -> Result<(), String> {
        let kind = self.transport();
        match kind {
            TransportKind::Socket => {
                if self.iface.is_some() {
                    return Err(
                        "--iface (and --dst-mac, --src-mac) are for --transport af-xdp or live, \
                                not socket"
                            .into(),
                    );
                }
            }
            TransportKind::AfXdp | TransportKind::Live => {
                if self.iface.is_none() {
                    return Err(format!(
                        "--transport {} sends raw frames: it needs --iface IF and --dst-mac MAC",
                        if kind == TransportKind::Live {
                            "live"
                        } else {
                            "af-xdp"
                        }
                    ));
                }
                if self.target.is_ipv6() {
                    return Err(format!(
                        "--transport {} sends IPv4 only: give an IPv4 --target",
                        kind.label()
                    ));
                }
            }
        }
        if (self.request == RequestKind::Nts) != self.nts_ke.is_some() {
            return Err("--request nts and --nts-ke ADDR:PORT go together".into());
        }
        if self.request == RequestKind::Nts && kind == TransportKind::Live {
            return Err(
                "--request nts: the live transport sends one fixed frame; use socket or af-xdp".into(),
            );
        }
        if kind != TransportKind::Live && self.flows() > MAX_FLOWS {
            return Err(format!(
                "--flows {} is for --transport live: socket and AF_XDP modes open at most \
                 {MAX_FLOWS} flows",
                self.flows()
            ));
        }
        if kind == TransportKind::Live {
            if self.threads != 1 {
                return Err(format!(
                    "--transport live runs one generator thread (one core sends millions of \
                     requests/s; pin it with --cores); --threads is {}",
                    self.threads
                ));
            }
            if self.batch > LIVE_MAX_BATCH {
                return Err(format!(
                    "--transport live takes at most {LIVE_MAX_BATCH} frames per batch (the \
                     kernel's limit for BPF_PROG_RUN live frames); --batch is {}",
                    self.batch
                ));
            }
        }
        Ok(())
    }

    /// Flows per thread.
    pub fn flows(&self) -> u32 {
        self.flows.unwrap_or(if self.xdp() { 256 } else { 8 })
    }

    /// The offered rate of every step, in order.
    pub fn rates(&self) -> Result<Vec<f64>, String> {
        if let Some(rate) = self.rate {
            return Ok(vec![rate]);
        }
        let Sweep { min, max } = self.sweep.expect("clap requires --rate or --sweep");
        let mut rates = Vec::new();
        let mut r = min;
        while r <= max * (1.0 + 1e-9) {
            rates.push(r);
            if rates.len() > MAX_STEPS {
                return Err(format!(
                    "--sweep {min}-{max} with --multiplier {} makes more than {MAX_STEPS} steps",
                    self.multiplier
                ));
            }
            r *= self.multiplier;
        }
        if rates.last().is_some_and(|&last| last < max * (1.0 - 1e-9)) {
            rates.push(max);
        }
        Ok(rates)
    }
}

/// Parses `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
pub fn parse_target(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, NTP_PORT))
        .map_err(|_| format!("`{s}` is not IP, IP:PORT or [IPv6]:PORT (host names are not resolved)"))
}

/// A positive number with an optional k (10^3) or M (10^6) suffix.
fn parse_scaled(s: &str) -> Result<f64, String> {
    let (digits, scale) = match s.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1e3),
        None => match s.strip_suffix('M') {
            Some(d) => (d, 1e6),
            None => (s, 1.0),
        },
    };
    let v: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    let v = v * scale;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}` must be above 0"))
    }
}

pub fn parse_rate(s: &str) -> Result<f64, String> {
    let r = parse_scaled(s)?;
    if r > 1e9 {
        return Err(format!("{r} requests/s is more than 1G/s"));
    }
    Ok(r)
}

pub fn parse_sweep(s: &str) -> Result<Sweep, String> {
    let (min, max) = s.split_once('-').ok_or_else(|| format!("`{s}` is not MIN-MAX"))?;
    let (min, max) = (parse_rate(min)?, parse_rate(max)?);
    if min > max {
        return Err(format!("the sweep's minimum {min} is above its maximum {max}"));
    }
    Ok(Sweep { min, max })
}

fn parse_multiplier(s: &str) -> Result<f64, String> {
    let m: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if m.is_finite() && m > 1.0 {
        Ok(m)
    } else {
        Err(format!("{s} must be above 1"))
    }
}

fn parse_step_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.01..=MAX_STEP_SECONDS).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is out of range 0.01..={MAX_STEP_SECONDS}"))
    }
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.001..=60.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is out of range 0.001..=60"))
    }
}

/// A percentage, returned as a fraction (0.1 or 0.1% -> 0.001).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage"))?;
    if v.is_finite() && (0.0..=100.0).contains(&v) {
        Ok(v / 100.0)
    } else {
        Err(format!("{s} is out of range 0..=100 (percent)"))
    }
}

/// Parses a MAC address, `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<EthernetAddress, String> {
    let bad = || format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(EthernetAddress(mac))
}

/// Parses `0`, `0,2`, `1-3` and combinations.
pub fn parse_cores(s: &str) -> Result<CoreList, String> {
    let mut cores = Vec::new();
    for part in s.split(',') {
        let bad = || format!("`{part}` in `{s}` is not a CPU number or range");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b >= 4096 {
                    return Err(bad());
                }
                cores.extend(a..=b);
            }
            None => cores.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(CoreList(cores))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("strata-loadgen").chain(line.iter().copied()))
    }

    #[test]
    fn targets_default_to_port_123() {
        assert_eq!(parse_target("127.0.0.1"), Ok("127.0.0.1:123".parse().unwrap()));
        assert_eq!(
            parse_target("127.0.0.1:1234"),
            Ok("127.0.0.1:1234".parse().unwrap())
        );
        assert_eq!(parse_target("::1"), Ok("[::1]:123".parse().unwrap()));
        assert_eq!(parse_target("[::1]"), Ok("[::1]:123".parse().unwrap()));
        assert_eq!(parse_target("[::1]:5"), Ok("[::1]:5".parse().unwrap()));
        assert!(parse_target("localhost").is_err());
    }

    #[test]
    fn sweeps_are_geometric_and_end_at_max() {
        let a = args(&["--target", "127.0.0.1", "--sweep", "1k-5k", "--multiplier", "2"]).unwrap();
        assert_eq!(a.rates().unwrap(), vec![1000.0, 2000.0, 4000.0, 5000.0]);
        let a = args(&["--target", "127.0.0.1", "--sweep", "100-225"]).unwrap();
        assert_eq!(a.rates().unwrap(), vec![100.0, 150.0, 225.0]);
        let a = args(&["--target", "127.0.0.1", "--rate", "2M"]).unwrap();
        assert_eq!(a.rates().unwrap(), vec![2e6]);
        let a = args(&["--target", "127.0.0.1", "--sweep", "1-1M", "--multiplier", "1.01"]).unwrap();
        assert!(a.rates().unwrap_err().contains("more than 200 steps"));
    }

    #[test]
    fn defaults_and_ranges() {
        let a = args(&["--target", "10.0.0.1", "--rate", "100"]).unwrap();
        assert_eq!(
            (a.multiplier, a.step_seconds, a.threads, a.flows()),
            (1.5, 2.0, 1, 8)
        );
        assert!(!a.xdp());
        assert_eq!(a.transport(), TransportKind::Socket);
        let x = args(&[
            "--target",
            "10.0.0.1",
            "--rate",
            "1",
            "--iface",
            "veth0",
            "--dst-mac",
            "02:00:00:00:00:0a",
        ]);
        let x = x.unwrap();
        assert_eq!(
            (x.xdp(), x.flows(), x.dst_mac),
            (true, 256, Some(EthernetAddress([2, 0, 0, 0, 0, 10])))
        );
        assert_eq!(x.src_net, SrcNet::parse("198.19.0.0/16").unwrap());
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("02:00:00:00:00:0g").is_err());
        assert!(parse_mac("02:00:00:00:00:00:01").is_err());
        assert_eq!((a.loss_threshold, a.timeout, a.batch), (0.001, 1.0, 64));
        assert_eq!(parse_percent("0.5%"), Ok(0.005));
        assert_eq!(parse_cores("0,2-3"), Ok(CoreList(vec![0, 2, 3])));
        for bad in [
            &["--target", "10.0.0.1"][..],
            &["--target", "10.0.0.1", "--rate", "1", "--sweep", "1-2"],
            &["--target", "10.0.0.1", "--rate", "0"],
            &["--target", "10.0.0.1", "--rate", "-5"],
            &["--target", "10.0.0.1", "--sweep", "5-1"],
            &["--target", "10.0.0.1", "--rate", "1", "--multiplier", "1"],
            &["--target", "10.0.0.1", "--rate", "1", "--step-seconds", "7200"],
            &["--target", "10.0.0.1", "--rate", "1", "--threads", "0"],
            &["--target", "10.0.0.1", "--rate", "1", "--cores", "1-x"],
            &["--target", "10.0.0.1", "--rate", "1", "--loss-threshold", "101"],
            &["--target", "10.0.0.1", "--rate", "1", "--count", "0"],
            &["--target", "10.0.0.1", "--rate", "1", "--iface", "veth0"],
            &[
                "--target",
                "10.0.0.1",
                "--rate",
                "1",
                "--dst-mac",
                "02:00:00:00:00:0a",
            ],
        ] {
            assert!(args(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn transports_and_their_combinations() {
        let raw = ["--iface", "veth0", "--dst-mac", "02:00:00:00:00:0a"];
        let with = |extra: &[&str]| {
            let mut line = vec!["--target", "10.0.0.1", "--rate", "1M"];
            line.extend_from_slice(extra);
            args(&line).unwrap()
        };
        let live = with(&[&["--transport", "live"][..], &raw].concat());
        assert_eq!(
            (live.transport(), live.xdp(), live.flows()),
            (TransportKind::Live, true, 256)
        );
        assert_eq!(live.check(), Ok(()));
        assert_eq!(with(&raw).transport(), TransportKind::AfXdp);
        assert_eq!(with(&raw).check(), Ok(()));
        let fails = |extra: &[&str], needle: &str| {
            let e = with(extra).check().unwrap_err();
            assert!(e.contains(needle), "{extra:?}: {e}");
        };
        fails(&["--transport", "live"], "needs --iface IF and --dst-mac");
        fails(&["--transport", "af-xdp"], "needs --iface IF and --dst-mac");
        fails(&[&["--transport", "socket"][..], &raw].concat(), "not socket");
        fails(
            &[&["--transport", "live", "--threads", "2"][..], &raw].concat(),
            "one generator thread",
        );
        fails(
            &[&["--transport", "live", "--batch", "512"][..], &raw].concat(),
            "at most 256",
        );
        // A million clients from live mode's counter; the other modes hold state per flow.
        let million = with(&[&["--transport", "live", "--flows", "1048576"][..], &raw].concat());
        assert_eq!((million.flows(), million.check()), (1 << 20, Ok(())));
        fails(
            &[&["--flows", "1025"][..], &raw].concat(),
            "is for --transport live",
        );
        fails(&["--flows", "2000"], "is for --transport live");
        assert_eq!(with(&["--flows", "1024"]).check(), Ok(()));
        assert!(args(&["--target", "10.0.0.1", "--rate", "1", "--flows", "16777217"]).is_err());
        let mut v6 = args(
            &[
                &["--target", "[::1]:123", "--rate", "1", "--transport", "live"][..],
                &raw,
            ]
            .concat(),
        )
        .unwrap();
        assert!(v6.check().unwrap_err().contains("IPv4 only"));
        v6.transport = Some(TransportKind::Socket);
        v6.iface = None;
        assert_eq!(v6.check(), Ok(()));
        assert!(args(&["--target", "10.0.0.1", "--rate", "1", "--transport", "dpdk"]).is_err());
    }
}
