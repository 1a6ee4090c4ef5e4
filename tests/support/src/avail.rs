//! "Required or skip": a test that needs root, a namespace or an outside tool runs when it has
//! them; without them it says `SKIPPED` and passes, unless `STRATA_REQUIRE_INTEROP=1` (set by
//! `make test` and CI), under which it fails.

use std::process::{Command, Stdio};

/// Whether a missing peer or privilege fails the test (set by `make test` and CI) or skips it.
pub fn interop_required() -> bool {
    std::env::var_os("STRATA_REQUIRE_INTEROP").is_some_and(|v| v == "1")
}

/// Returns false (and says why) when `what` is missing and the test may be skipped; panics when
/// interop tests are required.
pub fn available(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(
            !interop_required(),
            "{what} is required (STRATA_REQUIRE_INTEROP=1) but missing"
        );
        eprintln!("SKIPPED: {what} is not available here");
    }
    ok
}

/// Whether `cmd` is on the PATH.
pub fn have_command(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
