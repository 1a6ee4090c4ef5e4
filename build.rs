//! Compiles the XDP program (xdp-prog/, C) with clang into OUT_DIR, where src/fastpath/program.rs
//! embeds it with `include_bytes!`.
//!
//! Two objects come from the one source:
//! - `strata_xdp.o`, the plain program, which aya loads and attaches;
//! - `strata_xdp_devbound.o`, built with `-DSTRATA_DEV_BOUND`, which also calls the
//!   `bpf_xdp_metadata_rx_timestamp` kfunc for the NIC's hardware receive stamp.
//!
//! Why two: the verifier accepts that kfunc only in a program loaded bound to one device
//! (`prog_ifindex` + `BPF_F_XDP_DEV_BOUND_ONLY`), and aya can neither load device-bound nor resolve
//! a `__ksym` extern. So the device-bound object is loaded through libbpf (see
//! src/fastpath/devbound.rs) and falls back to the plain one, which must then not mention the
//! kfunc at all, or it would not load either.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "xdp-prog/strata_xdp.c";
const HEADERS: [&str; 4] = [
    "xdp-prog/strata_xdp.h",
    "xdp-prog/strata_answer.h",
    "xdp-prog/strata_admit.h",
    "xdp-prog/strata_phc.h",
];

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    for header in HEADERS {
        println!("cargo:rerun-if-changed={header}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    compile(&clang, &out.join("strata_xdp.o"), &[]);
    compile(
        &clang,
        &out.join("strata_xdp_devbound.o"),
        &["-DSTRATA_DEV_BOUND"],
    );
    git_commit();
}

/// Sets STRATA_GIT_COMMIT to the commit being built, for `strata_build_info` and
/// `strata status` (src/metrics/report.rs). Outside a git checkout (a source tarball, a
/// vendored copy) or without git, nothing is set and the build reports "unknown".
fn git_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(hash) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=STRATA_GIT_COMMIT={hash}");
    // A new commit moves the branch's ref (or HEAD itself, when detached): rebuild then.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            // A ref that lives only in packed-refs has no file of its own; watching a missing
            // file would rerun this script on every build.
            for watched in [format!("{dir}/{head_ref}"), format!("{dir}/packed-refs")] {
                if Path::new(&watched).exists() {
                    println!("cargo:rerun-if-changed={watched}");
                }
            }
        }
    }
}

/// The directory of the host's `asm/` headers, which `linux/types.h` includes: clang does not
/// look in the Debian multiarch directory when it targets BPF.
fn multiarch_include() -> String {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    format!("/usr/include/{arch}-linux-gnu")
}

fn compile(clang: &str, object: &Path, defines: &[&str]) {
    let output = Command::new(clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{}", multiarch_include()))
        .args(defines)
        .args(["-c", SOURCE, "-o"])
        .arg(object)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{clang}` was not found: the XDP program (xdp-prog/) is compiled with clang. \
             Install the Debian package `clang` (apt-get install clang), or set CLANG to a clang binary."
        ),
        Err(e) => panic!("cannot run `{clang}`: {e}"),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("bpf/bpf_helpers.h") {
            "\nhint: install the Debian package `libbpf-dev` (the BPF helper headers)"
        } else if stderr.contains("asm/types.h") || stderr.contains("linux/bpf.h") {
            "\nhint: install the Debian package `linux-libc-dev` (the kernel UAPI headers)"
        } else {
            ""
        };
        panic!("clang failed to compile {SOURCE}:\n{stderr}{hint}");
    }
}
