//! The run: start the workers, hand them each step at a common start time, merge what they
//! measured, and stop early with an error when the target does not answer at all.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use strata::sys::clock::read::read_clock_ns;

use crate::affinity;
use crate::cli::{Args, TransportKind};
use crate::progress::{Live, ProgressLine};
use crate::report::{RunReport, StepReport};
use crate::request::{NtsSession, RequestKind, RequestTemplate};
use crate::setup::{self, BoxedTransport};
use crate::stats::StepStats;
use crate::worker::{Command, Event, StepOrder, Worker, WorkerSettings};

/// Lead time between handing out a step and its start, so that every worker starts together.
const START_LEAD_NS: i64 = 20_000_000;
/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Slack on top of a step's send time and timeout before a silent worker is given up on.
const STEP_SLACK_NS: i64 = 5_000_000_000;
/// The least and most requests in flight a worker's matcher tracks.
const MIN_IN_FLIGHT: usize = 4096;
const MAX_IN_FLIGHT: usize = 1 << 23;

/// One step of the plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    pub rate: f64,
    pub duration_ns: i64,
    pub count: u64,
}

/// The steps of a run, from the command line.
pub fn plan(args: &Args) -> Result<Vec<StepPlan>, String> {
    let duration_ns = (args.step_seconds * 1e9).round() as i64;
    Ok(args
        .rates()?
        .into_iter()
        .map(|rate| StepPlan {
            rate,
            duration_ns,
            count: args
                .count
                .unwrap_or_else(|| (rate * args.step_seconds).ceil().max(1.0) as u64),
        })
        .collect())
}

/// A per-run nonce for the cookies, so that replies to an earlier run are not taken for ours.
fn nonce() -> u16 {
    let mut buf = [0u8; 2];
    // SAFETY: `buf` is writable for its length; getrandom writes at most that many bytes.
    let n = unsafe {
        libc::getrandom(
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::GRND_NONBLOCK,
        )
    };
    if n == buf.len() as isize {
        u16::from_ne_bytes(buf)
    } else {
        (read_clock_ns(libc::CLOCK_REALTIME) as u64 ^ std::process::id() as u64) as u16
    }
}

struct Workers {
    commands: Vec<Sender<Command>>,
    handles: Vec<JoinHandle<()>>,
    live: Vec<Arc<Live>>,
    events: mpsc::Receiver<Event>,
}

impl Workers {
    fn stop(self) {
        for c in &self.commands {
            let _ = c.send(Command::Quit);
        }
        drop(self.commands);
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn start_workers(args: &Args, plan: &[StepPlan], transports: Vec<BoxedTransport>) -> Result<Workers, String> {
    let threads = transports.len();
    let max_rate = plan.iter().map(|s| s.rate).fold(0.0, f64::max) / threads as f64;
    let in_flight =
        ((max_rate * args.timeout * 1.25) as usize + args.batch as usize).clamp(MIN_IN_FLIGHT, MAX_IN_FLIGHT);
    if (max_rate * args.timeout) as usize > MAX_IN_FLIGHT {
        eprintln!(
            "strata-loadgen: warning: at {max_rate:.0}/s per thread only {MAX_IN_FLIGHT} requests can \
             be tracked: replies slower than {:.3} s will count as late",
            MAX_IN_FLIGHT as f64 / max_rate
        );
    }
    let nonce = nonce();
    let (event_tx, events) = mpsc::channel();
    let mut workers = Workers {
        commands: Vec::new(),
        handles: Vec::new(),
        live: Vec::new(),
        events,
    };
    for (index, transport) in transports.into_iter().enumerate() {
        let settings = WorkerSettings {
            index,
            nonce,
            core: args.cores.as_ref().map(|c| c.0[index % c.0.len()]),
            poisson: args.poisson,
            timeout_ns: (args.timeout * 1e9) as i64,
            in_flight,
            template: match args.request {
                RequestKind::Nts => RequestTemplate::nts(nts_session(args)?),
                kind => RequestTemplate::new(kind),
            },
        };
        let (command_tx, commands) = mpsc::channel();
        let live = Arc::new(Live::default());
        let events = event_tx.clone();
        let worker_live = live.clone();
        let spawned = std::thread::Builder::new().name(format!("loadgen-{index}")).spawn(move || {
            if let Some(core) = settings.core {
                if !affinity::pin_current(core) {
                    eprintln!("strata-loadgen: thread {index} could not be pinned to CPU {core}; running unpinned");
                }
            }
            affinity::tighten_timer_slack();
            Worker::new(settings, transport, worker_live).serve(commands, events);
        });
        match spawned {
            Ok(handle) => {
                workers.commands.push(command_tx);
                workers.handles.push(handle);
                workers.live.push(live);
            }
            Err(e) => {
                workers.stop();
                return Err(format!("cannot start a thread: {e}"));
            }
        }
    }
    Ok(workers)
}

/// Runs one step on every worker and merges their statistics.
fn run_step(
    workers: &Workers,
    index: usize,
    steps: usize,
    step: &StepPlan,
    timeout_ns: i64,
    progress: &mut Option<ProgressLine>,
) -> Result<StepStats, String> {
    let threads = workers.commands.len();
    let start_ns = read_clock_ns(libc::CLOCK_MONOTONIC) + START_LEAD_NS;
    let gap_ns = 1e9 / step.rate;
    for (w, commands) in workers.commands.iter().enumerate() {
        // Split the count exactly: the first `count % threads` workers send one more.
        let limit = step.count / threads as u64 + u64::from((w as u64) < step.count % threads as u64);
        let order = StepOrder {
            index,
            start_ns,
            duration_ns: step.duration_ns,
            rate: step.rate / threads as f64,
            limit,
            phase_ns: (w as f64 * gap_ns) as i64,
        };
        commands
            .send(Command::Step(order))
            .map_err(|_| format!("worker {w} is gone"))?;
    }
    let deadline_ns = start_ns + step.duration_ns + timeout_ns + STEP_SLACK_NS;
    let mut merged = StepStats::default();
    let mut done = 0;
    while done < threads {
        match workers.events.recv_timeout(PROGRESS_EVERY) {
            Ok(Event::StepDone { step, result, .. }) if step == index => {
                merged.merge(&*result?);
                done += 1;
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                let now = read_clock_ns(libc::CLOCK_MONOTONIC);
                if now > deadline_ns {
                    return Err(format!("step {} did not finish in time", index + 1));
                }
                if let Some(line) = progress.as_mut() {
                    let (sent, received) = workers
                        .live
                        .iter()
                        .map(|l| l.read())
                        .fold((0, 0), |(s, r), (s2, r2)| (s + s2, r + r2));
                    let elapsed = (now - start_ns).max(0) as f64 / 1e9;
                    line.show(index, steps, step.rate, elapsed, sent, received);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Err("the worker threads are gone".into()),
        }
    }
    if let Some(line) = progress.as_mut() {
        line.clear();
    }
    Ok(merged)
}

/// Runs the whole plan. `on_step` sees each step's report as soon as it is done.
pub fn run(args: &Args, mut on_step: impl FnMut(&StepReport)) -> Result<RunReport, String> {
    args.check()?;
    if args.transport() == TransportKind::Live {
        return crate::live::run(args, on_step);
    }
    let plan = plan(args)?;
    let opened = setup::open(args)?;
    for note in &opened.notes {
        eprintln!("strata-loadgen: {note}");
    }
    let workers = start_workers(args, &plan, opened.transports)?;
    let mut progress = (!args.quiet).then(ProgressLine::new);
    let mut steps = Vec::with_capacity(plan.len());
    let mut result = Ok(());
    for (index, step) in plan.iter().enumerate() {
        let stats = match run_step(
            &workers,
            index,
            plan.len(),
            step,
            (args.timeout * 1e9) as i64,
            &mut progress,
        ) {
            Ok(stats) => stats,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if stats.received == 0 && !args.sink {
            // Nothing at all came back: no server there, a firewall, or a wrong port. A table
            // of zeros would hide that.
            result = Err(format!(
                "no reply from {} to {} requests in step {} ({:.0}/s for {:.1} s + {:.1} s timeout): \
                 is an NTP server listening there, and reachable?",
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
    workers.stop();
    // Detached only now that no worker sends any more.
    drop(opened.steering);
    result?;
    Ok(RunReport::new(args, steps))
}

/// One NTS-KE session (each thread runs its own, as a fleet of clients would): the keys and
/// the first cookie.
fn nts_session(args: &Args) -> Result<NtsSession, String> {
    let ke = args.nts_ke.ok_or("--request nts needs --nts-ke")?;
    let ca = match &args.nts_ca {
        Some(path) => Some(std::fs::read(path).map_err(|e| format!("--nts-ca {}: {e}", path.display()))?),
        None => None,
    };
    let config = strata::daemon::nts::ke_client::client_config(ca.as_deref())?;
    let name = args.nts_name.clone().unwrap_or_else(|| ke.ip().to_string());
    let est = strata::daemon::nts::ke_client::establish(
        config,
        ke,
        &name,
        &strata::proto::nts::Aead::ALL,
        std::time::Duration::from_secs(5),
    )?;
    let cookie = est
        .response
        .cookies
        .first()
        .ok_or_else(|| format!("NTS-KE with {ke}: no cookie"))?
        .clone();
    Ok(NtsSession {
        keys: est.keys,
        cookie,
    })
}
