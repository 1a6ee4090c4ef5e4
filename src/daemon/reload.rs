//! SIGHUP: the configuration is read again (the same file and flags as at start) and compared
//! with the running one. (NTS certificates and keys are not its business: the NTS-KE service
//! reads their files again when they change.) A configuration with an error changes nothing; the
//! log level and format, the access list (`allow`, `deny`, `deny_action`) and the rates
//! (`rate_limit_interval`, `_burst`, `_leak`, `_kod`, `rate_limit_total`) are applied at once;
//! every other changed setting is named, as needing a restart.
//!
//! Why not more: the rate limiter's table is sized and keyed at start (its size, prefixes and
//! secret shape the XDP program's map; switching the limiter or the total cap on or off makes
//! or drops a table), and the addresses, interfaces, cores and sockets are the shape of the
//! running threads. Saying so is better than applying half a change.

use log::LevelFilter;

use crate::daemon::config::{AdmissionConfig, ConfigError, LogFormat, ServerConfig};
use crate::proto::admission::{AclAction, DenyAction, LimiterConfig, LimiterRate, Prefix};

/// Reads the configuration again, as at start.
pub type Loader = Box<dyn Fn() -> Result<ServerConfig, ConfigError> + Send>;

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The settings applied live, as `name: old -> new`.
    pub applied: Vec<String>,
    /// The settings that changed but take effect only at the next start.
    pub need_restart: Vec<&'static str>,
}

/// How the logger's level and format are changed live.
pub trait LogControl {
    fn set_level(&self, level: LevelFilter);
    fn set_format(&self, format: LogFormat);
}

/// An access list as the configuration gives it.
pub type Rules = [(Prefix, AclAction)];

/// How the access list and the rates are replaced live (the XDP programs' maps, the socket
/// path's admitter).
pub trait AdmissionControl {
    fn set_access_rules(&mut self, old: &Rules, new: &Rules, deny_action: DenyAction) -> Result<(), String>;
    /// The limiter's rate and the total cap (answers/s); each None exactly when it is off.
    fn set_rates(
        &mut self,
        limiter: Option<LimiterRate>,
        total_per_second: Option<u32>,
    ) -> Result<(), String>;
}

/// Nothing to apply the access list to (no path admits: a restart is needed).
pub struct NoAdmission;

impl AdmissionControl for NoAdmission {
    fn set_access_rules(&mut self, _: &Rules, _: &Rules, _: DenyAction) -> Result<(), String> {
        Err("this server started without any admission on its path".into())
    }
    fn set_rates(&mut self, _: Option<LimiterRate>, _: Option<u32>) -> Result<(), String> {
        Err("this server started without any admission on its path".into())
    }
}

/// The admission settings with the live ones (access list, rates) blanked: equal shapes can be
/// changed without a restart.
fn shape(a: &AdmissionConfig) -> AdmissionConfig {
    let blank = LimiterConfig::default().rate();
    AdmissionConfig {
        rules: Vec::new(),
        deny_action: DenyAction::Drop,
        limiter: a.limiter.map(|l| l.with_rate(blank)),
        total_per_second: a.total_per_second.map(|_| 0),
        ..a.clone()
    }
}

fn describe_rates(a: &AdmissionConfig) -> String {
    let limiter = match a.limiter {
        Some(l) => format!(
            "one per {} s after {}, leak {}, kod {}",
            l.interval_ns as f64 / 1e9,
            l.burst,
            if l.leak == 0 {
                "off".to_string()
            } else {
                format!("1/{}", 1u64 << l.leak)
            },
            if l.kod == 0 {
                "off".to_string()
            } else {
                format!("1/{}", 1u64 << l.kod)
            }
        ),
        None => "off".into(),
    };
    let total = a.total_per_second.map_or("off".into(), |t| format!("{t}/s"));
    format!("{limiter}; total {total}")
}

/// Compares `new` with `running`, applies what can be applied, and makes `running` the
/// configuration in force (the settings that need a restart keep their running values).
pub fn apply(
    running: &mut ServerConfig,
    new: ServerConfig,
    log: &dyn LogControl,
    admission_control: &mut dyn AdmissionControl,
) -> Outcome {
    let mut out = Outcome::default();
    // The access list alone is live; the rest of admission needs a restart.
    let (old_a, new_a) = (&running.admission, &new.admission);
    if (&new_a.rules, new_a.deny_action) != (&old_a.rules, old_a.deny_action) {
        match admission_control.set_access_rules(&old_a.rules, &new_a.rules, new_a.deny_action) {
            Ok(()) => {
                out.applied.push(format!(
                    "access list: {} -> {} rule(s), deny_action {:?} -> {:?}",
                    old_a.rules.len(),
                    new_a.rules.len(),
                    old_a.deny_action,
                    new_a.deny_action
                ));
                running.admission.rules = new_a.rules.clone();
                running.admission.deny_action = new_a.deny_action;
            }
            Err(e) => {
                log::error!("reload (SIGHUP): the access list cannot be replaced live: {e}");
                out.need_restart.push("allow, deny and deny_action");
            }
        }
    }
    // The rates are live when the tables stay as they are.
    let (old_a, new_a) = (&running.admission, &new.admission);
    let rates_differ = (new_a.limiter.map(|l| l.rate()), new_a.total_per_second)
        != (old_a.limiter.map(|l| l.rate()), old_a.total_per_second);
    if rates_differ && shape(old_a) == shape(new_a) {
        match admission_control.set_rates(new_a.limiter.map(|l| l.rate()), new_a.total_per_second) {
            Ok(()) => {
                out.applied.push(format!(
                    "rate limits: {} -> {}",
                    describe_rates(old_a),
                    describe_rates(new_a)
                ));
                running.admission.limiter = new_a.limiter;
                running.admission.total_per_second = new_a.total_per_second;
            }
            Err(e) => {
                log::error!("reload (SIGHUP): the rate limits cannot be changed live: {e}");
                out.need_restart
                    .push("rate_limit_interval, _burst, _leak, _kod and rate_limit_total");
            }
        }
    }
    if new.log_level != running.log_level {
        let level = new.log_level.unwrap_or(LevelFilter::Info);
        out.applied.push(format!(
            "log_level: {} -> {}",
            running.log_level.unwrap_or(LevelFilter::Info),
            level
        ));
        log.set_level(level);
        running.log_level = new.log_level;
    }
    if new.log_format != running.log_format {
        out.applied
            .push(format!("log_format: {:?} -> {:?}", running.log_format, new.log_format).to_lowercase());
        log.set_format(new.log_format);
        running.log_format = new.log_format;
    }
    // Every field named, so that a new setting cannot be left out of this list unnoticed.
    let ServerConfig {
        listen,
        cores,
        local_stratum,
        mode,
        path: _, // follows mode and iface
        unsynchronized,
        batch_size,
        log_level: _,
        log_format: _,
        user,
        interfaces,
        ntp_port,
        force: _, // a flag for the moment of the start
        busy_poll,
        xdp_answer,
        interleaved,
        admission,
        metrics,
        control,
        upstream,
        nts,
        key_file,
        monitor,
    } = new;
    let r = &*running;
    for (name, differs) in [
        ("listen", r.listen != listen),
        ("cores", r.cores != cores),
        ("local_stratum", r.local_stratum != local_stratum),
        ("mode", r.mode != mode),
        ("unsynchronized", r.unsynchronized != unsynchronized),
        ("batch_size", r.batch_size != batch_size),
        ("user", r.user != user),
        ("iface", r.interfaces != interfaces),
        ("ntp_port", r.ntp_port != ntp_port),
        ("busy_poll", r.busy_poll != busy_poll),
        ("xdp_answer", r.xdp_answer != xdp_answer),
        ("interleaved", r.interleaved != interleaved),
        ("monitor", r.monitor != monitor),
        (
            "rate_limit on or off, rate_limit_clients, the prefixes, rate_limit_total on or off \
             and clients_sample",
            shape(&admission) != shape(&r.admission),
        ),
        ("metrics", r.metrics != metrics),
        ("control", r.control != control),
        (
            "server, pool, peer, the discipline and leap settings",
            r.upstream != upstream,
        ),
        // The certificate and key files themselves are read again when they change.
        ("nts_*", r.nts != nts),
        ("key_file (or the keys in it)", r.key_file != key_file),
    ] {
        if differs {
            out.need_restart.push(name);
        }
    }
    out
}

/// Logs the outcome: one line for what was applied, one for what waits for a restart.
pub fn log_outcome(result: &Result<Outcome, ConfigError>) {
    match result {
        Err(e) => log::error!("reload (SIGHUP): the configuration has an error, nothing changed: {e}"),
        Ok(o) if o.applied.is_empty() && o.need_restart.is_empty() => {
            log::info!("reload (SIGHUP): the configuration is unchanged")
        }
        Ok(o) => {
            if !o.applied.is_empty() {
                log::info!("reload (SIGHUP): applied {}", o.applied.join(", "));
            }
            if !o.need_restart.is_empty() {
                log::warn!(
                    "reload (SIGHUP): changed but applied only at the next restart: {}",
                    o.need_restart.join("; ")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);

    impl LogControl for Recorder {
        fn set_level(&self, level: LevelFilter) {
            self.0.borrow_mut().push(format!("level {level}"));
        }
        fn set_format(&self, format: LogFormat) {
            self.0.borrow_mut().push(format!("format {format:?}"));
        }
    }

    /// Records the access lists it is given.
    #[derive(Default)]
    struct Rules(Vec<usize>, Vec<(Option<LimiterRate>, Option<u32>)>);

    impl AdmissionControl for Rules {
        fn set_access_rules(
            &mut self,
            _: &super::Rules,
            new: &super::Rules,
            _: DenyAction,
        ) -> Result<(), String> {
            self.0.push(new.len());
            Ok(())
        }
        fn set_rates(&mut self, limiter: Option<LimiterRate>, total: Option<u32>) -> Result<(), String> {
            self.1.push((limiter, total));
            Ok(())
        }
    }

    fn config(flags: &[&str]) -> ServerConfig {
        use clap::Parser;
        let cli = crate::daemon::cli::Cli::try_parse_from(["strata", "serve"].iter().chain(flags)).unwrap();
        let crate::daemon::cli::Command::Serve(args) = cli.command else {
            unreachable!()
        };
        let machine = crate::daemon::config::Machine {
            allowed: vec![0, 1],
            configured: 2,
        };
        ServerConfig::resolve(None, &args.flags, &machine).unwrap()
    }

    #[test]
    fn the_log_level_applies_and_the_rest_is_named() {
        let mut running = config(&["--local-stratum", "2"]);
        let before = running.clone();
        let log = Recorder::default();
        let mut rules = Rules::default();
        let out = apply(&mut running, before.clone(), &log, &mut rules);
        assert_eq!(out, Outcome::default());
        assert!(log.0.borrow().is_empty());

        let new = config(&[
            "--local-stratum",
            "3",
            "--log-level",
            "debug",
            "--deny",
            "192.0.2.0/24",
            "--rate-limit-burst",
            "4",
            "--rate-limit-clients",
            "1024",
        ]);
        let out = apply(&mut running, new, &log, &mut rules);
        assert_eq!(
            out.applied,
            vec![
                "access list: 0 -> 1 rule(s), deny_action Drop -> Drop",
                "log_level: INFO -> DEBUG"
            ]
        );
        assert_eq!(
            out.need_restart,
            vec![
                "local_stratum",
                "rate_limit on or off, rate_limit_clients, the prefixes, rate_limit_total on or off and \
                 clients_sample"
            ]
        );
        assert_eq!(*log.0.borrow(), vec!["level DEBUG"]);
        assert_eq!(rules.0, vec![1]);
        assert!(
            rules.1.is_empty(),
            "a new table size: the rates wait for the restart too"
        );
        // What needs a restart keeps its running value; the access list is the new one.
        assert_eq!(running.local_stratum, Some(2));
        assert_eq!(running.admission.limiter, before.admission.limiter);
        assert_eq!(running.admission.rules.len(), 1);
        assert_eq!(running.log_level, Some(LevelFilter::Debug));
        // A path that cannot take it: named as needing a restart.
        let mut running = before.clone();
        let out = apply(
            &mut running,
            config(&["--local-stratum", "2", "--allow", "10.0.0.0/8"]),
            &log,
            &mut NoAdmission,
        );
        assert_eq!(out.need_restart, vec!["allow, deny and deny_action"]);
        assert!(running.admission.rules.is_empty());
    }

    #[test]
    fn rates_apply_live_while_the_tables_stay() {
        let mut running = config(&["--rate-limit-total", "1000"]);
        let log = Recorder::default();
        let mut control = Rules::default();
        let new = config(&[
            "--rate-limit-total",
            "5000",
            "--rate-limit-interval",
            "2",
            "--rate-limit-burst",
            "8",
            "--rate-limit-leak",
            "0",
            "--rate-limit-kod",
            "1",
        ]);
        let out = apply(&mut running, new.clone(), &log, &mut control);
        assert_eq!(
            out.applied,
            vec!["rate limits: one per 1 s after 16, leak 1/4, kod off; total 1000/s -> one per 2 s after 8, leak off, kod 1/2; total 5000/s"]
        );
        assert!(out.need_restart.is_empty(), "{:?}", out.need_restart);
        let rate = control.1[0].0.unwrap();
        assert_eq!(
            (rate.interval_ns, rate.burst, rate.leak, rate.kod),
            (2_000_000_000, 8, 0, 1)
        );
        assert_eq!(control.1[0].1, Some(5000));
        assert_eq!(running.admission, new.admission);
        // Switching the cap off drops a table: a restart.
        let out = apply(
            &mut running,
            config(&["--rate-limit-interval", "2"]),
            &log,
            &mut control,
        );
        assert!(out.applied.is_empty());
        assert_eq!(out.need_restart.len(), 1);
        assert_eq!(control.1.len(), 1);
        // A path that cannot take them: named.
        let mut running = config(&[]);
        let out = apply(
            &mut running,
            config(&["--rate-limit-burst", "2"]),
            &log,
            &mut NoAdmission,
        );
        assert_eq!(
            out.need_restart,
            vec!["rate_limit_interval, _burst, _leak, _kod and rate_limit_total"]
        );
    }
}
