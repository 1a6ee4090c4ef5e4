//! The XDP program's PHC arithmetic (xdp-prog/strata_phc.h) against the one definition,
//! `PhcLine::tai_ns` (src/proto/clock/phc/line.rs): the header is compiled for the host with
//! clang (the compiler that builds the program; BPF has the same 64-bit multiply and arithmetic
//! shift) into a small filter, fed lines and stamps at and around every boundary (the line's
//! age, the elapsed and slope ranges, every reason code) and at random, and must give the same
//! TAI nanoseconds or the same reason for each.
//!
//! Why not through BPF_PROG_TEST_RUN like tests/xdp_answer_diff.rs: the hardware stamp comes
//! from a kfunc of the device-bound program only, which the kernel does not test-run, and a veth
//! has no stamp to give. What runs here is the function the program calls, not the program.

use std::io::Write;
use std::process::{Command, Stdio};

use strata::proto::clock::phc::line::{
    HardwareUnused, PhcLine, MAX_ELAPSED_NS, MAX_LINE_AGE_NS, MAX_SLOPE_Q48,
};
use strata_test_support::workspace_root;

const HARNESS: &str = r#"
#include <stdio.h>
#include "strata_phc.h"

int main(void)
{
	long long ref, off, slope, fitted, phc, now;
	unsigned long long unusable;

	while (scanf("%lld %lld %lld %lld %llu %lld %lld", &ref, &off, &slope, &fitted, &unusable, &phc, &now) == 7) {
		struct strata_phc l = { 0, ref, off, slope, fitted, unusable };
		__u64 tai = 0;
		__u32 why = strata_phc_tai(&l, (__u64)phc, (__u64)now, &tai);

		printf("%u %lld\n", why, (long long)tai);
	}
	return 0;
}
"#;

fn compile(dir: &std::path::Path) -> std::path::PathBuf {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let source = dir.join("phc_harness.c");
    std::fs::write(&source, HARNESS).unwrap();
    let binary = dir.join("phc_harness");
    let out = Command::new(&clang)
        .args([
            "-O2",
            "-Wall",
            "-Werror",
            "-fsanitize=undefined",
            "-fno-sanitize-recover=all",
        ])
        .arg(format!("-I{}", workspace_root().join("xdp-prog").display()))
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {clang} (Debian package clang): {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    binary
}

/// xorshift64*: reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn within(&mut self, bound: i64) -> i64 {
        (self.next() % (2 * bound as u64 + 1)) as i64 - bound
    }
}

#[test]
fn the_programs_phc_arithmetic_is_the_rust_one() {
    let dir = std::env::temp_dir().join(format!("strata-phc-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = compile(&dir);

    const T0: i64 = 1_800_000_037_000_000_000;
    let mut cases: Vec<(PhcLine, i64, i64)> = Vec::new();
    let base = PhcLine {
        phc_ref_ns: T0,
        offset_ns: 37_000_000_000 - 123_456,
        slope_q48: 12 << 28,
        fitted_tai_ns: T0,
        unusable: None,
    };
    // Boundaries: age, elapsed, slope, each just inside and just outside, both signs.
    for age in [
        -1,
        0,
        1,
        MAX_LINE_AGE_NS - 1,
        MAX_LINE_AGE_NS,
        MAX_LINE_AGE_NS + 1,
    ] {
        cases.push((base, T0 + 5, T0 + age));
    }
    for e in [MAX_ELAPSED_NS - 1, MAX_ELAPSED_NS, MAX_ELAPSED_NS + 1] {
        for sign in [1, -1] {
            for slope in [MAX_SLOPE_Q48 - 1, 1, 0, -1, -(MAX_SLOPE_Q48 - 1)] {
                let line = PhcLine {
                    slope_q48: slope,
                    ..base
                };
                cases.push((line, T0 + sign * e, T0));
            }
        }
    }
    for slope in [MAX_SLOPE_Q48, -MAX_SLOPE_Q48, i64::MAX, i64::MIN] {
        cases.push((
            PhcLine {
                slope_q48: slope,
                ..base
            },
            T0 + 1_000,
            T0,
        ));
    }
    for reason in HardwareUnused::ALL {
        cases.push((
            PhcLine {
                unusable: Some(reason),
                ..base
            },
            T0,
            T0,
        ));
    }
    // The floor of a negative product, around multiples of 2^20 and 2^48.
    for e in [
        -(1 << 20) - 1,
        -(1 << 20),
        -(1 << 20) + 1,
        -1,
        1,
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
    ] {
        for slope in [1, -1, 3, -3, (1 << 28) + 1, -(1 << 28) - 1] {
            cases.push((
                PhcLine {
                    slope_q48: slope,
                    ..base
                },
                T0 + e,
                T0,
            ));
        }
    }
    // At random: lines anywhere, stamps near them (and far), wrapping sums included.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let phc_ref_ns = rng.next() as i64;
        let line = PhcLine {
            phc_ref_ns,
            offset_ns: rng.next() as i64 >> (rng.next() % 64),
            slope_q48: rng.within(MAX_SLOPE_Q48 + 1000) >> (rng.next() % 40),
            fitted_tai_ns: rng.next() as i64,
            unusable: HardwareUnused::from_code(if rng.next().is_multiple_of(8) {
                rng.next() % 6
            } else {
                0
            }),
        };
        let phc = phc_ref_ns.wrapping_add(rng.within(MAX_ELAPSED_NS + 1000) >> (rng.next() % 41));
        let now = line
            .fitted_tai_ns
            .wrapping_add(rng.within(MAX_LINE_AGE_NS + 1000));
        cases.push((line, phc, now));
    }

    let mut child = Command::new(&binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (l, phc, now) in &cases {
        input += &format!(
            "{} {} {} {} {} {} {}\n",
            l.phc_ref_ns,
            l.offset_ns,
            l.slope_q48,
            l.fitted_tai_ns,
            HardwareUnused::code(l.unusable),
            phc,
            now
        );
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len());
    let mut mapped = 0;
    for ((l, phc, now), got) in cases.iter().zip(lines) {
        let want = match l.tai_ns(*phc, *now) {
            Ok(tai) => {
                mapped += 1;
                format!("0 {tai}")
            }
            Err(why) => format!("{} 0", HardwareUnused::code(Some(why))),
        };
        assert_eq!(got, want, "line {l:?}, phc {phc}, now {now}");
    }
    // Enough of both kinds for the comparison to mean something.
    assert!(
        mapped > cases.len() / 4 && mapped < cases.len(),
        "{mapped} of {}",
        cases.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
