//! chronyd as a client, in a namespace, for a few seconds: its own measurements log read back,
//! sample by sample. Used where a test asks chronyd what it measured of strata (interleaved mode
//! on the socket path and on the AF_XDP tier).

use std::process::{Command, Output};

use crate::process::{TempDir, CHRONYD};

/// One sample of chronyd's measurements log: its mode column (`4B` basic, `4I` interleaved) and
/// its offset in seconds.
#[derive(Debug)]
pub struct ChronySample {
    pub mode: String,
    pub offset: f64,
}

/// Runs chronyd with `exec` (a namespace's `exec`) against `server`, with `options` on its server
/// line, polling 16 times a second for `seconds`, and returns its samples (at least 10: a
/// shorter log fails the test, with chronyd's output).
pub fn chronyd_client_samples(
    exec: impl Fn(&str, &[&str]) -> Output,
    server: &str,
    options: &str,
    seconds: &str,
) -> Vec<ChronySample> {
    let dir = TempDir::new("xleave-chronyd");
    // chronyd drops privileges before it writes logs unless told to stay root (-u root).
    Command::new("chmod").arg("777").arg(&dir.0).status().unwrap();
    let conf = dir.0.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server {server} iburst minpoll -4 maxpoll -4 {options}\nlogdir {0}\nlog measurements\n\
             cmdport 0\npidfile {0}/chronyd.pid\n",
            dir.0.display()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let out = exec(
        "timeout",
        &[seconds, CHRONYD, "-d", "-x", "-u", "root", "-f", &conf],
    );
    let log = std::fs::read_to_string(dir.0.join("measurements.log")).unwrap_or_default();
    // Date Time IP L St 123 567 ABCD LP RP Score Offset PeerDel PeerDisp RootDel RootDisp Refid Mode TX RX
    let samples: Vec<ChronySample> = log
        .lines()
        .filter(|l| l.starts_with("20"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 18, "a measurement line too short: {l}");
            // The packet tests (ABCD are chronyd's own delay filters, not about the packet).
            assert_eq!(f[5..7].concat(), "111111", "every packet test passed: {l}");
            ChronySample {
                mode: f[17].to_string(),
                offset: f[11].parse().unwrap_or_else(|_| panic!("an offset in: {l}")),
            }
        })
        .collect();
    assert!(
        samples.len() >= 10,
        "chronyd took {} samples with {options:?}:\n{log}\n{}",
        samples.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    samples
}

/// The median of the samples' absolute offsets, in seconds.
pub fn median_abs_offset(samples: &[&ChronySample]) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|s| s.offset.abs()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
