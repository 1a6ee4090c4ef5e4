//! Compiles strata-loadgen's XDP programs with clang into OUT_DIR, where the loaders embed the
//! objects: xdp/loadgen_xdp.c (AF_XDP reply steering, the sink and the echo; see
//! src/transport/xdp_prog.rs) and xdp/loadgen_live.c (the live mode's generator and reply
//! counter; see src/live/prog.rs). The generator has its own small programs rather than strata's
//! (xdp-prog/): strata's steers requests *to* port 123 into its responders, the generator needs
//! the replies *from* the target steered into its own socket (or judged in place).

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCES: [(&str, &str); 2] = [
    ("xdp/loadgen_xdp.c", "loadgen_xdp.o"),
    ("xdp/loadgen_live.c", "loadgen_live.o"),
];

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // clang does not look in the Debian multiarch directory (asm/ headers) when it targets BPF.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    for (source, object) in SOURCES {
        println!("cargo:rerun-if-changed={source}");
        let output = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-I/usr/include/{arch}-linux-gnu"))
            .args(["-c", source, "-o"])
            .arg(out.join(object))
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{clang}` (Debian package clang) for {source}: {e}"));
        if !output.status.success() {
            panic!(
                "clang failed to compile {source} (needs the Debian packages clang and libbpf-dev):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
