//! The XDP program's objects, compiled by build.rs from `xdp-prog/` and embedded in the binary,
//! so that a deployed `strata` needs no file beside it.

/// The plain program: receive stamps from `bpf_ktime_get_tai_ns()`. Loaded by aya.
pub static PLAIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata_xdp.o"));

/// The device-bound variant, which also reads the NIC's hardware stamp through the
/// `bpf_xdp_metadata_rx_timestamp` kfunc. Loaded by libbpf (see `devbound`).
pub static DEVICE_BOUND: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata_xdp_devbound.o"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_objects_are_bpf_elf_files() {
        for object in [PLAIN, DEVICE_BOUND] {
            assert_eq!(&object[..4], b"\x7fELF");
            // e_machine 247 is EM_BPF (little-endian ELF on every host strata builds for).
            assert_eq!(u16::from_le_bytes([object[18], object[19]]), 247);
        }
        assert_ne!(PLAIN, DEVICE_BOUND);
    }

    /// The C header and abi.rs must agree; catch the easy mistakes (a renumbered counter, a new
    /// magic) by reading the header itself.
    #[test]
    fn the_header_agrees_with_abi_rs() {
        use super::super::abi::*;
        let header = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/xdp-prog/strata_xdp.h"));
        assert!(header.contains(&format!("#define STRATA_META_MAGIC 0x{META_MAGIC:08x}u")));
        assert!(header.contains(&format!("#define STRATA_MAX_QUEUES {MAX_QUEUES}")));
        assert!(header.contains(&format!("#define STRATA_MAX_ADDRS {MAX_ADDRS}")));
        for counter in XdpCounter::ALL {
            let name = format!("STRATA_{} = {},", counter.label().to_uppercase(), counter.index());
            assert!(header.contains(&name), "{name} is not in strata_xdp.h");
        }
        let source = [
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/xdp-prog/strata_xdp.c")),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/xdp-prog/strata_answer.h")),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/xdp-prog/strata_admit.h")),
        ]
        .concat();
        for map in MAPS {
            assert!(source.contains(&format!("}} {map} SEC(\".maps\");")), "{map}");
        }
        assert!(source.contains(&format!("int {PROGRAM_NAME}(struct xdp_md *ctx)")));
    }
}
