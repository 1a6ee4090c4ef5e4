//! The leap-seconds.list the control thread checks against: read once at start (a bounded
//! read), judged against the time now whenever the status is published, and reported once in
//! the log. An expired or unusable list is a warning, never a failure: strata then relies on
//! its upstreams' majority for leap warnings, and says so.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::daemon::observe::board::{LeapListState, LeapListStatus};
use crate::proto::leap::LeapList;
use crate::proto::wire::timestamp::UNIX_EPOCH_NTP_SECONDS as UNIX_EPOCH_NTP;

/// The real list is about 5 KB; anything much larger is not one.
const MAX_BYTES: u64 = 256 * 1024;

/// The configured list, as read at start.
#[derive(Debug, Clone)]
pub struct LeapFile {
    path: Option<PathBuf>,
    list: Result<LeapList, String>,
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!(
            "larger than {} KiB: not a leap-seconds list",
            MAX_BYTES / 1024
        ));
    }
    Ok(text)
}

impl LeapFile {
    /// Reads and checks the list at `path` (`None`: no list configured).
    pub fn load(path: Option<&Path>) -> LeapFile {
        let list = match path {
            None => Err("off".to_string()),
            Some(p) => read_bounded(p).and_then(|text| LeapList::parse(&text).map_err(|e| e.to_string())),
        };
        LeapFile {
            path: path.map(Path::to_path_buf),
            list,
        }
    }

    /// The list, if it verified (expired or not: the engine weighs its expiry).
    pub fn list(&self) -> Option<&LeapList> {
        self.list.as_ref().ok()
    }

    /// What the list says at Unix second `now`.
    pub fn status(&self, now_unix: i64) -> LeapListStatus {
        let path = self.path.as_ref().map(|p| p.display().to_string());
        let ntp_now = (now_unix + UNIX_EPOCH_NTP).max(0) as u64;
        let unix = |ntp: u64| ntp as f64 - UNIX_EPOCH_NTP as f64;
        match (&self.path, &self.list) {
            (None, _) => LeapListStatus {
                state: LeapListState::Off,
                ..LeapListStatus::default()
            },
            (Some(_), Err(why)) => LeapListStatus {
                path,
                state: LeapListState::Unusable,
                problem: Some(why.clone()),
                ..LeapListStatus::default()
            },
            (Some(_), Ok(list)) => LeapListStatus {
                path,
                state: if list.expired_at(ntp_now) {
                    LeapListState::Expired
                } else {
                    LeapListState::Valid
                },
                problem: None,
                expires: Some(unix(list.expires)),
                tai_minus_utc: list.tai_minus_utc_at(ntp_now),
                // A list knows nothing of leaps past its expiry.
                next_leap: list
                    .next_leap_after(ntp_now)
                    .filter(|&(at, _)| at <= list.expires)
                    .map(|(at, delta)| (unix(at), delta)),
            },
        }
    }
}

/// The one log line about the list at start: info when it is valid, a warning otherwise.
pub fn log_at_start(status: &LeapListStatus) {
    match status.state {
        LeapListState::Off => {
            log::info!("leap-seconds list: off; leap warnings come from the upstreams' majority")
        }
        LeapListState::Valid => log::info!("leap-seconds list {}", status.describe()),
        LeapListState::Expired | LeapListState::Unusable => {
            log::warn!("leap-seconds list {}", status.describe())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str =
        "#$ 3900000000\n#@ 3990000000\n3692217600 37\n#h 5e0c0d7a 6d9c3a34 bc4cbb4e 1d0b6c31 7ac8b7b8\n";

    fn write(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("strata-leapfile-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_missing_damaged_or_oversized_file_is_unusable_not_fatal() {
        let missing = LeapFile::load(Some(Path::new("/nonexistent/leap-seconds.list"))).status(0);
        assert_eq!(missing.state, LeapListState::Unusable);
        assert!(missing.problem.unwrap().contains("No such file"));
        let damaged = write("damaged", LIST);
        let s = LeapFile::load(Some(&damaged)).status(0);
        assert_eq!(s.state, LeapListState::Unusable);
        assert!(s.describe().contains("SHA-1"), "{}", s.describe());
        let big = write("big", &"#\n".repeat(200_000));
        let s = LeapFile::load(Some(&big)).status(0);
        assert!(s.problem.unwrap().contains("not a leap-seconds list"));
        let _ = std::fs::remove_file(damaged);
        let _ = std::fs::remove_file(big);
        assert_eq!(LeapFile::load(None).status(0).state, LeapListState::Off);
    }

    #[test]
    fn the_list_is_judged_against_the_time_now() {
        // The fixture, not this machine's copy (which expired on 2026-06-28 here anyway).
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/leap-seconds.list");
        let text = std::fs::read_to_string(&path).unwrap();
        let file = LeapFile::load(Some(&path));
        assert!(file.list().is_some());
        let list = LeapList::parse(&text).unwrap();
        let expires_unix = list.expires as i64 - UNIX_EPOCH_NTP;
        let before = file.status(expires_unix - 1);
        assert_eq!(before.state, LeapListState::Valid);
        assert_eq!(before.tai_minus_utc, Some(37));
        assert_eq!(before.expires, Some(expires_unix as f64));
        let after = file.status(expires_unix);
        assert_eq!(after.state, LeapListState::Expired);
        assert!(after.describe().contains("EXPIRED"), "{}", after.describe());
    }
}
