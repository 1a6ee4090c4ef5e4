//! `strata-loadgen-sink IFACE SECONDS`: attaches an XDP program that drops every frame to IFACE
//! for SECONDS (at most 600), then detaches it. On the far end of a veth pair it is the cheapest
//! possible target for measuring how fast strata-loadgen sends (`--sink`).

use std::process::ExitCode;
use std::time::Duration;

use strata::sys::fastpath::iface::Interface;
use strata_loadgen::transport::xdp_prog::Sink;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(seconds)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok())) else {
        eprintln!("usage: strata-loadgen-sink IFACE SECONDS");
        return ExitCode::from(2);
    };
    let result = Interface::lookup(name).and_then(|iface| Sink::attach(iface.index));
    match result {
        Ok(sink) => {
            eprintln!("strata-loadgen-sink: dropping everything on {name} for {seconds} s");
            std::thread::sleep(Duration::from_secs(seconds.min(600)));
            drop(sink);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata-loadgen-sink: {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
