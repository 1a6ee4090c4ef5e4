//! Compiles strata-loadgen's XDP programs (xdp/loadgen_xdp.c) with clang into OUT_DIR, where
//! src/transport/xdp_prog.rs embeds the object. The generator has its own small program rather
//! than strata's (xdp-prog/): strata's steers requests *to* port 123 into its responders, the
//! generator needs the replies *from* the target steered into its own socket.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "xdp/loadgen_xdp.c";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // clang does not look in the Debian multiarch directory (asm/ headers) when it targets BPF.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        .args(["-c", SOURCE, "-o"])
        .arg(out.join("loadgen_xdp.o"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{clang}` (Debian package clang) for {SOURCE}: {e}"));
    if !output.status.success() {
        panic!(
            "clang failed to compile {SOURCE} (needs the Debian packages clang and libbpf-dev):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
