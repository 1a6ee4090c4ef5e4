//! A target that never answers is a clear error and a non-zero exit, not a table of zeros.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::loadgen;

#[test]
fn a_silent_target_fails_with_a_clear_message() {
    // A bound socket that never reads: requests arrive and vanish.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    for mode in [&["--json"][..], &[]] {
        let mut args = vec![
            "--target",
            &target,
            "--sweep",
            "100-1000",
            "--step-seconds",
            "0.2",
            "--timeout",
            "0.2",
        ];
        args.extend_from_slice(mode);
        let run = loadgen(&args, Duration::from_secs(20));
        assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
        assert!(run.stdout.trim().is_empty(), "printed a report: {}", run.stdout);
        assert!(
            run.stderr.contains(&format!("no reply from {target}")),
            "{}",
            run.stderr
        );
        // It stops at the first silent step instead of sweeping on.
        assert!(run.stderr.contains("in step 1 "), "{}", run.stderr);
    }
}

#[test]
fn usage_errors_exit_2() {
    let run = loadgen(&["--target", "127.0.0.1", "--rate", "0"], Duration::from_secs(10));
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("--rate"), "{}", run.stderr);
}
