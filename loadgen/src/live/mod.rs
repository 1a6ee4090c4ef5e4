//! Live mode (`--transport live`): requests are frames written by an XDP program (`live_tx`)
//! that the generator's thread runs with BPF_PROG_RUN in live-frames mode, so that XDP_TX sends
//! them out of --iface without a socket, an skb or a system call per frame; replies are judged
//! and counted by a second XDP program (`live_rx`) on the same interface and dropped there.
//!
//! Pacing happens inside `live_tx`: it XDP_DROPs a run whose request is not due yet (an
//! absolute schedule from the step's start, as [`crate::pacing`] has it) and stops sending at
//! the step's end or count. Each BPF_PROG_RUN call costs tens of milliseconds of setup, so the
//! generator makes long calls, and the main thread ends the last one of a step with a signal
//! (the kernel checks for pending signals between batches and returns EINTR).
//!
//! What this mode measures differently from the others, because nothing is kept per request:
//! - duplicates cannot be told from first replies (each counts as answered; `duplicate` is 0);
//! - a reply to another flow of ours is `unknown_origin` (the tag covers the client), not
//!   `wrong_client`;
//! - the round trip is from `live_tx` to `live_rx` (bpf_ktime_get_ns, 16 ns ticks); it, the
//!   server's response time (T3 − T2) and the offset are kept in histograms of 8 buckets per
//!   octave (values within ±6%); the batch of up to --batch frames that the kernel flushes
//!   together is part of the round trip, and the offset takes the send and receive times to the
//!   wall clock through one pair of clock readings per step;
//! - against a server that reads a socket, each request reaches it as an skb around a whole page
//!   of BPF_PROG_RUN's page pool (about 4.5 KB of truesize, against under 1 KB for one sent by
//!   AF_XDP in copy mode), so a socket's default 208 KB receive buffer holds about 46 requests
//!   instead of 270: in the lab, chronyd dropped 28% of 20k/s in live mode (UdpRcvbufErrors) and
//!   none in AF_XDP mode. Live mode is for XDP servers and for socket servers with large buffers.

pub mod origin;
pub mod prog;

use std::io;
use std::net::SocketAddr;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use strata::proto::wire::NtpTimestamp;
use strata::sys::clock::read::read_clock_ns;
use strata::sys::fastpath::iface::Interface;

use crate::affinity;
use crate::cli::Args;
use crate::progress::ProgressLine;
use crate::report::{RunReport, StepReport};
use crate::request::RequestTemplate;
use crate::run::{plan, StepPlan};
use crate::setup::interface_mac;
use crate::stats::StepStats;
use prog::{LiveConfig, LiveCounts, LiveProgram, Runner, FLAG_POISSON};

/// Lead time between configuring a step and its start, so that the generator is already
/// spinning in its run when the first request falls due.
const START_LEAD_NS: i64 = 50_000_000;
/// How often the main thread looks at the generator's state during a step.
const POLL: Duration = Duration::from_millis(2);
/// How often the progress line is refreshed.
const PROGRESS_EVERY_NS: i64 = 1_000_000_000;
/// Program runs per BPF_PROG_RUN call: the most the kernel takes (a call that ends early is cut
/// by a signal).
const REPEAT: u32 = i32::MAX as u32;
/// The signal that ends a run of live_tx.
const STOP_SIGNAL: libc::c_int = libc::SIGUSR2;

/// Installs a handler that does nothing for [`STOP_SIGNAL`], without SA_RESTART, so that the
/// signal makes the BPF_PROG_RUN system call return EINTR instead of killing the process.
fn install_stop_handler() -> io::Result<()> {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn that touches nothing,
    // so it is async-signal-safe; sigemptyset and sigaction get valid pointers.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(STOP_SIGNAL, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A random 64-bit secret (the step's origin key).
fn secret() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is writable for its length; getrandom writes at most that many bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == buf.len() as isize {
        u64::from_ne_bytes(buf)
    } else {
        (read_clock_ns(libc::CLOCK_REALTIME) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(std::process::id())
    }
}

/// What the main thread tells the generator thread.
enum Order {
    /// Run live_tx until told to stop (the flag), then answer.
    Go,
    Quit,
}

/// The generator thread: runs live_tx in long calls while `running` is set.
struct Generator {
    orders: mpsc::Sender<Order>,
    done: mpsc::Receiver<io::Result<u64>>,
    running: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl Generator {
    fn start(runner: Runner, core: Option<usize>) -> io::Result<Generator> {
        let (orders, order_rx) = mpsc::channel::<Order>();
        let (done_tx, done) = mpsc::channel();
        let running = Arc::new(AtomicBool::new(false));
        let flag = running.clone();
        let handle = std::thread::Builder::new().name("loadgen-live".into()).spawn(move || {
            if let Some(core) = core {
                if !affinity::pin_current(core) {
                    eprintln!("strata-loadgen: the generator could not be pinned to CPU {core}; running unpinned");
                }
            }
            while let Ok(Order::Go) = order_rx.recv() {
                let mut calls = 0u64;
                let mut result = Ok(());
                while flag.load(Ordering::Acquire) {
                    calls += 1;
                    if let Err(e) = runner.run(REPEAT) {
                        result = Err(e);
                        break;
                    }
                }
                if done_tx.send(result.map(|()| calls)).is_err() {
                    break;
                }
            }
        })?;
        Ok(Generator {
            orders,
            done,
            running,
            handle,
        })
    }

    fn go(&self) -> Result<(), String> {
        self.running.store(true, Ordering::Release);
        self.orders
            .send(Order::Go)
            .map_err(|_| "the generator thread is gone".to_string())
    }

    /// Stops the current run: clears the flag and signals the thread until it answers (a signal
    /// that lands between two calls is lost, hence the repetition).
    fn stop(&self) -> Result<u64, String> {
        self.running.store(false, Ordering::Release);
        let thread = self.handle.as_pthread_t();
        for _ in 0..5000 {
            // SAFETY: the thread is alive (it is joined only in `quit`, after this), and the
            // signal has a handler that does nothing.
            unsafe { libc::pthread_kill(thread, STOP_SIGNAL) };
            match self.done.recv_timeout(Duration::from_millis(2)) {
                Ok(r) => return r.map_err(|e| format!("BPF_PROG_RUN of the generator failed: {e}")),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err("the generator thread is gone".into()),
            }
        }
        Err("the generator did not stop within 10 s".into())
    }

    fn quit(self) {
        self.running.store(false, Ordering::Release);
        let _ = self.orders.send(Order::Quit);
        let _ = self.handle.join();
    }
}

fn io_err(e: io::Error) -> String {
    e.to_string()
}

/// The fixed part of the configuration, from the command line.
fn base_config(args: &Args, name: &str) -> Result<LiveConfig, String> {
    let SocketAddr::V4(target) = args.target else {
        return Err("--transport live sends IPv4 only: give an IPv4 --target".into());
    };
    let flows = args.flows();
    if flows > args.src_net.hosts() {
        return Err(format!("--flows {flows} needs more addresses than --src-net has"));
    }
    let src_mac = match args.src_mac {
        Some(mac) => mac,
        None => interface_mac(name).map_err(|e| format!("cannot read the MAC address of {name}: {e}"))?,
    };
    let mut request = [0u8; 48];
    RequestTemplate::new(args.request).write(&mut request, NtpTimestamp::ZERO);
    Ok(LiveConfig {
        src_mac: src_mac.0,
        dst_mac: args.dst_mac.expect("clap requires --dst-mac with --iface").0,
        target_addr: u32::from_ne_bytes(target.ip().octets()),
        target_port: target.port().to_be(),
        flags: if args.poisson { FLAG_POISSON } else { 0 },
        src_first: u32::from(*args.src_net.flow(0).ip()),
        flows,
        version: 4,
        start_ns: 0,
        end_ns: 0,
        limit: 0,
        gap_q: 0,
        secret: 0,
        prev_secret: 0,
        timeout_ns: (args.timeout * 1e9) as u64,
        ref_mono_ns: 0,
        ref_ntp: 0,
        request,
        exp_q: origin::exp_table(),
    })
}

/// The NTP time (32.32 fixed point, era 0) of `unix_ns` after 1970.
fn ntp_from_unix_ns(unix_ns: i64) -> u64 {
    NtpTimestamp::from_unix_nanos(unix_ns as i128).0
}

/// The step's statistics from the generator's state and the counters' growth.
fn step_stats(sent: u64, start_ns: u64, last_ns: u64, step: &StepPlan, c: &LiveCounts) -> StepStats {
    let mut stats = StepStats {
        sent,
        received: c.received,
        answered: c.answered,
        valid: c.valid,
        kod: c.kod,
        invalid: c.invalid,
        late: c.late,
        duplicate: 0,
        ..StepStats::default()
    };
    let elapsed = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    stats.achieved_rate = if sent > 1 && elapsed > 0.0 {
        (sent - 1) as f64 / elapsed
    } else {
        sent as f64 * 1e9 / step.duration_ns as f64
    };
    for bucket in 0..origin::RTT_BUCKETS {
        // Histograms start at 1 ns: a bucket of 0 is recorded as 1.
        let value = origin::rtt_bucket_value(bucket).max(1);
        if c.rtt[bucket] > 0 {
            stats.rtt.saturating_record_n(value, c.rtt[bucket]);
        }
        if c.response[bucket] > 0 {
            stats.response.saturating_record_n(value, c.response[bucket]);
        }
        if c.offset_pos[bucket] > 0 {
            stats.offset.record_n(value as i64, c.offset_pos[bucket]);
        }
        if c.offset_neg[bucket] > 0 {
            stats.offset.record_n(-(value as i64), c.offset_neg[bucket]);
        }
    }
    stats
}

/// Runs the whole plan in live mode. `on_step` sees each step's report as soon as it is done.
pub fn run(args: &Args, mut on_step: impl FnMut(&StepReport)) -> Result<RunReport, String> {
    args.check()?;
    let plan = plan(args)?;
    let name = args.iface.clone().expect("live mode has --iface");
    let iface = Interface::lookup(&name).map_err(|e| format!("--iface {name}: {e}"))?;
    let mut config = base_config(args, &name)?;
    install_stop_handler().map_err(|e| format!("cannot install the stop signal's handler: {e}"))?;
    let mut program = LiveProgram::load(iface.index).map_err(|e| format!("{name}: {e}"))?;
    let runner = program
        .runner(iface.index, u32::from(args.batch))
        .map_err(|e| format!("{name}: {e}"))?;
    let generator = Generator::start(runner, args.cores.as_ref().map(|c| c.0[0]))
        .map_err(|e| format!("cannot start the generator thread: {e}"))?;
    let mut progress = (!args.quiet).then(ProgressLine::new);
    let mut steps = Vec::with_capacity(plan.len());
    let mut result = Ok(());
    for (index, step) in plan.iter().enumerate() {
        match run_step(
            args,
            &mut program,
            &generator,
            &mut config,
            index,
            plan.len(),
            step,
            &mut progress,
        ) {
            Ok(stats) => {
                if stats.received == 0 && !args.sink {
                    result = Err(format!(
                        "no reply from {} to {} requests in step {} ({:.0}/s for {:.1} s + {:.1} s timeout): \
                         is an NTP server answering there, does the far end of {name} run XDP or GRO \
                         (veth drops XDP_TX frames otherwise), and is the client network routed back?",
                        args.target,
                        stats.sent,
                        index + 1,
                        step.rate,
                        step.duration_ns as f64 / 1e9,
                        args.timeout
                    ));
                    break;
                }
                let report = StepReport::new(step, &stats);
                on_step(&report);
                steps.push(report);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    generator.quit();
    // Detached only now that nothing sends any more.
    drop(program);
    result?;
    Ok(RunReport::new(args, steps))
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    args: &Args,
    program: &mut LiveProgram,
    generator: &Generator,
    config: &mut LiveConfig,
    index: usize,
    steps: usize,
    step: &StepPlan,
    progress: &mut Option<ProgressLine>,
) -> Result<StepStats, String> {
    let start_ns = read_clock_ns(libc::CLOCK_MONOTONIC) + START_LEAD_NS;
    config.prev_secret = config.secret;
    config.secret = secret();
    config.start_ns = start_ns as u64;
    config.end_ns = (start_ns + step.duration_ns) as u64;
    config.limit = step.count;
    config.gap_q = origin::gap_q(step.rate);
    // The reference pair for the offset: a monotonic reading between two of the wall clock.
    let real_before = read_clock_ns(libc::CLOCK_REALTIME);
    config.ref_mono_ns = read_clock_ns(libc::CLOCK_MONOTONIC) as u64;
    let real_after = read_clock_ns(libc::CLOCK_REALTIME);
    config.ref_ntp = ntp_from_unix_ns(real_before / 2 + real_after / 2);
    program.configure(config).map_err(io_err)?;
    program.reset_state().map_err(io_err)?;
    let before = program.counts().map_err(io_err)?;
    generator.go()?;

    // Sending: until the step's end or its count.
    let end_ns = start_ns + step.duration_ns;
    let mut next_progress = start_ns + PROGRESS_EVERY_NS;
    loop {
        std::thread::sleep(POLL);
        let now = read_clock_ns(libc::CLOCK_MONOTONIC);
        let state = program.state().map_err(io_err)?;
        if now >= end_ns || state.sent >= step.count {
            break;
        }
        // The generator answers only when stopped, or when BPF_PROG_RUN failed.
        if let Ok(result) = generator.done.try_recv() {
            result.map_err(|e| format!("BPF_PROG_RUN of the generator failed: {e}"))?;
            return Err("the generator stopped on its own".into());
        }
        if now >= next_progress {
            next_progress += PROGRESS_EVERY_NS;
            if let Some(line) = progress.as_mut() {
                let c = program.counts().map_err(io_err)?.since(&before);
                line.show(
                    index,
                    steps,
                    step.rate,
                    (now - start_ns) as f64 / 1e9,
                    state.sent,
                    c.received,
                );
            }
        }
    }
    generator.stop()?;
    let state = program.state().map_err(io_err)?;

    // Draining: until every request is accounted for, or the timeout after the last one.
    let timeout_ns = (args.timeout * 1e9) as i64;
    let drain_end = (state.last_ns as i64).max(start_ns) + timeout_ns;
    loop {
        let c = program.counts().map_err(io_err)?.since(&before);
        let now = read_clock_ns(libc::CLOCK_MONOTONIC);
        if c.answered >= state.sent || now >= drain_end {
            break;
        }
        std::thread::sleep(POLL.min(Duration::from_nanos((drain_end - now) as u64)));
    }
    if let Some(line) = progress.as_mut() {
        line.clear();
    }
    let counts = program.counts().map_err(io_err)?.since(&before);
    Ok(step_stats(
        state.sent,
        start_ns as u64,
        state.last_ns,
        step,
        &counts,
    ))
}
