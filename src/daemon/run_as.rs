//! `user`: once strata is set up as root, every thread switches to the configured user, and the
//! switch is checked thread by thread in /proc (see `crate::sys::privilege` for why nothing is
//! needed afterwards, and how the control thread alone keeps CAP_SYS_TIME for
//! `discipline_system`).

use std::time::{Duration, Instant};

use crate::sys::privilege::{self, capability_names, Capability, RunAs};

/// The thread that may keep CAP_SYS_TIME (its name, as /proc shows it).
const CONTROL_THREAD: &str = "strata-control";
/// How long the control thread has to trim its capabilities after the switch (it does so on its
/// next loop, within a fraction of a second).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Looks the configured user up, before anything starts; a user that does not exist, or a
/// switch that cannot happen (not started as root), is a configuration error.
pub fn resolve(name: Option<&str>) -> Result<Option<RunAs>, String> {
    let Some(name) = name else {
        return Ok(None);
    };
    let user = privilege::lookup_user(name).map_err(|e| format!("user `{name}`: {e}"))?;
    // SAFETY: geteuid and getuid cannot fail and touch no memory.
    let (euid, uid) = unsafe { (libc::geteuid(), libc::getuid()) };
    if euid != 0 && !(uid == user.uid && euid == user.uid) {
        return Err(format!(
            "user `{name}`: switching to it needs strata to start as root (it runs as uid {euid}); \
             start it as root, or as {name} without `user`"
        ));
    }
    Ok(Some(user))
}

/// The capability the control thread keeps, if any: CAP_SYS_TIME when it sets a clock
/// (`discipline_system`, or `rtc_sync`: RTC_SET_TIME needs it too).
pub fn control_thread_keeps(sets_clocks: bool) -> Option<Capability> {
    sets_clocks.then_some(Capability::SysTime)
}

/// Switches every thread to `user` and checks that each one got there, holding no capability
/// but the control thread's `kept`. Returns the line to log.
pub fn switch(user: &RunAs, kept: Option<Capability>) -> Result<String, String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(format!("running as {} (uid {}) already", user.name, user.uid));
    }
    privilege::switch_user(user).map_err(|e| format!("cannot switch to user {}: {e}", user.name))?;
    let allowed = kept.map_or(0, |c| c.bit());
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let threads = privilege::thread_credentials()
            .map_err(|e| format!("cannot read the threads' credentials in /proc: {e}"))?;
        let wrong: Vec<String> = threads
            .iter()
            .filter_map(|t| {
                let may = if t.name == CONTROL_THREAD { allowed } else { 0 };
                let ok = t.uids == [user.uid; 4]
                    && t.gids == [user.gid; 4]
                    && t.permitted & !may == 0
                    && t.effective & !may == 0;
                (!ok).then(|| {
                    format!(
                        "thread {} ({}): uids {:?}, gids {:?}, capabilities {:?}",
                        t.tid,
                        t.name,
                        t.uids,
                        t.gids,
                        capability_names(t.permitted)
                    )
                })
            })
            .collect();
        if wrong.is_empty() {
            return Ok(format!(
                "running as user {} (uid {}, gid {}), {} thread(s), with no capability{}",
                user.name,
                user.uid,
                user.gid,
                threads.len(),
                match kept {
                    Some(cap) => format!(" but {cap} in the control thread (discipline_system)"),
                    None => String::new(),
                }
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the switch to user {} did not reach every thread: {}",
                user.name,
                wrong.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
