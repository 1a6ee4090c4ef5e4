//! `strata-loadgen-sink IFACE SECONDS [--echo [good|bad-origin|kod]]`: attaches an XDP program to
//! IFACE for SECONDS (at most 600), or until SIGINT or SIGTERM, then detaches it and prints on
//! stdout how many frames it handled (`dropped N` or `echoed N`).
//!
//! Without --echo it drops every frame: on the far end of a veth pair the cheapest possible
//! target for measuring how fast strata-loadgen sends (`--sink`). With --echo it turns every IPv4 NTP
//! client request around with XDP_TX (mode 4, stratum 1, origin = the request's transmit
//! timestamp, receive = transmit = now; MACs, addresses and ports swapped, UDP checksum 0): the
//! most any XDP responder could answer in that place, for comparing servers against. `bad-origin`
//! and `kod` make every reply invalid or a RATE kiss, for tests of the generator's validation.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata::sys::fastpath::iface::Interface;
use strata_loadgen::transport::xdp_prog::{EchoMode, Sink};

const USAGE: &str = "usage: strata-loadgen-sink IFACE SECONDS [--echo [good|bad-origin|kod]]";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM end the wait early (and the counts are still printed).
fn install_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn parse(args: &[String]) -> Result<(String, u64, Option<EchoMode>), String> {
    let (Some(name), Some(seconds)) = (args.get(1), args.get(2)) else {
        return Err(USAGE.into());
    };
    let seconds: u64 = seconds
        .parse()
        .map_err(|_| format!("`{seconds}` is not a number of seconds\n{USAGE}"))?;
    let echo = match &args[3..] {
        [] => None,
        [flag] if flag == "--echo" => Some(EchoMode::Good),
        [flag, mode] if flag == "--echo" => Some(
            <EchoMode as clap::ValueEnum>::from_str(mode, false)
                .map_err(|_| format!("--echo takes good, bad-origin or kod, not `{mode}`\n{USAGE}"))?,
        ),
        _ => return Err(USAGE.into()),
    };
    Ok((name.clone(), seconds.min(600), echo))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (name, seconds, echo) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    install_handlers();
    let result = Interface::lookup(&name).and_then(|iface| match echo {
        Some(mode) => Sink::attach_echo(iface.index, mode),
        None => Sink::attach(iface.index),
    });
    let sink = match result {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("strata-loadgen-sink: {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verb = if echo.is_some() { "echoed" } else { "dropped" };
    match echo {
        Some(mode) => {
            eprintln!("strata-loadgen-sink: echoing NTP requests ({mode:?}) on {name} for {seconds} s")
        }
        None => eprintln!("strata-loadgen-sink: dropping everything on {name} for {seconds} s"),
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    while !STOP.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let count = sink.count();
    drop(sink);
    match count {
        Ok(n) => {
            println!("{verb} {n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata-loadgen-sink: cannot read the count: {e}");
            ExitCode::FAILURE
        }
    }
}
