//! strata-loadgen's own XDP program (xdp/loadgen_xdp.c, compiled by build.rs): loaded and
//! attached with aya, its XSKMAP filled with the generator's AF_XDP sockets. Dropping the
//! [`ReplySteering`] detaches it (aya attaches through a bpf_link, which the kernel also drops
//! when the process dies).

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

use aya::maps::{Array, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use strata::sys::clock::read::read_clock_ns;

use super::displaced::Displaced;

/// The compiled object, embedded so that the binary needs no file beside it.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/loadgen_xdp.o"));

const RX_PROGRAM: &str = "loadgen_rx";
const SINK_PROGRAM: &str = "loadgen_sink";
const ECHO_PROGRAM: &str = "loadgen_echo";
const SINK_COUNTS_MAP: &str = "sink_counts";
const ECHO_CONFIG_MAP: &str = "echo_config";
const CONFIG_MAP: &str = "loadgen_config";
const XSKS_MAP: &str = "loadgen_xsks";
/// XSKMAP entries, as the C source declares them.
pub const MAX_QUEUES: u32 = 64;

/// Mirrors `struct loadgen_config` in loadgen_xdp.c.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Config {
    target_addr: u32,
    target_port: u16,
    reserved: u16,
}

// SAFETY: Config is repr(C), Copy, and made of integers with no padding (4 + 2 + 2 bytes).
unsafe impl aya::Pod for Config {}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// Loads `program` and attaches it to `ifindex`, first taking off a program attached there through
/// netlink (put back when the returned [`Displaced`] is dropped, which must come after the
/// program is detached).
fn load_and_attach(ebpf: &mut Ebpf, program: &str, ifindex: u32) -> io::Result<Option<Displaced>> {
    let displaced =
        Displaced::take(ifindex).map_err(|e| other("cannot query the interface's XDP program", e))?;
    attach(ebpf, program, ifindex)?;
    Ok(displaced)
}

fn attach(ebpf: &mut Ebpf, program: &str, ifindex: u32) -> io::Result<()> {
    let xdp: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or_else(|| io::Error::other(format!("{program} is missing from the object")))?
        .try_into()
        .map_err(|e| other(program, e))?;
    xdp.load()
        .map_err(|e| other("the kernel refused the XDP program", e))?;
    // Driver mode first (veth and real NICs have it); skb mode when the driver has no XDP.
    match xdp.attach_to_if_index(ifindex, XdpMode::Driver) {
        Ok(_) => Ok(()),
        Err(driver) => xdp
            .attach_to_if_index(ifindex, XdpMode::Skb)
            .map(|_| ())
            .map_err(|skb| {
                io::Error::other(format!(
                    "cannot attach XDP: driver mode: {driver}; skb mode: {skb}"
                ))
            }),
    }
}

/// The reply-steering program on the generator's interface.
pub struct ReplySteering {
    ebpf: Ebpf,
    /// Dropped after `ebpf` (field order), once the program is detached.
    displaced: Option<Displaced>,
}

impl ReplySteering {
    /// Loads the program for replies from `target`; nothing is attached yet.
    pub fn load(target: SocketAddrV4) -> io::Result<ReplySteering> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| other("cannot load the XDP object", e))?;
        let map = ebpf
            .map_mut(CONFIG_MAP)
            .ok_or_else(|| io::Error::other("no config map"))?;
        let mut config = Array::<_, Config>::try_from(map).map_err(|e| other(CONFIG_MAP, e))?;
        let value = Config {
            target_addr: u32::from_ne_bytes(target.ip().octets()),
            target_port: target.port().to_be(),
            reserved: 0,
        };
        config.set(0, value, 0).map_err(|e| other(CONFIG_MAP, e))?;
        Ok(ReplySteering {
            ebpf,
            displaced: None,
        })
    }

    /// Steers the replies arriving on `queue` to the AF_XDP socket `fd`.
    pub fn register(&mut self, queue: u32, fd: RawFd) -> io::Result<()> {
        let map = self
            .ebpf
            .map_mut(XSKS_MAP)
            .ok_or_else(|| io::Error::other("no XSKMAP"))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| other(XSKS_MAP, e))?;
        xsks.set(queue, fd, 0).map_err(|e| other(XSKS_MAP, e))
    }

    /// Attaches the program to the interface: from now on replies go to the sockets.
    pub fn attach(&mut self, ifindex: u32) -> io::Result<()> {
        self.displaced = load_and_attach(&mut self.ebpf, RX_PROGRAM, ifindex)?;
        Ok(())
    }
}

/// Mirrors `struct echo_config` in loadgen_xdp.c.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct EchoConfig {
    mode: u32,
    tai_utc: u32,
}

// SAFETY: EchoConfig is repr(C), Copy, and two u32 with no padding.
unsafe impl aya::Pod for EchoConfig {}

/// What the echo makes of a request (`echo_config` in loadgen_xdp.c; `ECHO_*` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EchoMode {
    /// A valid reply: mode 4, stratum 1, origin = the request's transmit timestamp, receive =
    /// transmit = now.
    Good = 0,
    /// The same with the origin timestamp corrupted (every reply is invalid: unknown origin).
    BadOrigin = 1,
    /// A Kiss-o'-Death (stratum 0, RATE) for every request.
    Kod = 2,
}

/// A program on the far end of a veth pair: one that drops every frame (for measuring how fast
/// the generator sends), or one that turns every IPv4 NTP request around with XDP_TX (the most any
/// XDP responder could answer there). It counts what it dropped or echoed. Detached when dropped.
pub struct Sink {
    ebpf: Ebpf,
    /// Dropped after `ebpf` (field order), once the program is detached.
    _displaced: Option<Displaced>,
}

impl Sink {
    /// The drop-everything sink.
    pub fn attach(ifindex: u32) -> io::Result<Sink> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| other("cannot load the XDP object", e))?;
        let displaced = load_and_attach(&mut ebpf, SINK_PROGRAM, ifindex)?;
        Ok(Sink {
            ebpf,
            _displaced: displaced,
        })
    }

    /// The echo, answering as `mode` says.
    pub fn attach_echo(ifindex: u32, mode: EchoMode) -> io::Result<Sink> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| other("cannot load the XDP object", e))?;
        {
            let map = ebpf
                .map_mut(ECHO_CONFIG_MAP)
                .ok_or_else(|| io::Error::other("no echo config map"))?;
            let mut config = Array::<_, EchoConfig>::try_from(map).map_err(|e| other(ECHO_CONFIG_MAP, e))?;
            // The kernel's TAI offset, as the program reads CLOCK_TAI.
            let tai = read_clock_ns(libc::CLOCK_TAI) - read_clock_ns(libc::CLOCK_REALTIME);
            let value = EchoConfig {
                mode: mode as u32,
                tai_utc: (tai as f64 / 1e9).round().max(0.0) as u32,
            };
            config.set(0, value, 0).map_err(|e| other(ECHO_CONFIG_MAP, e))?;
        }
        let displaced = load_and_attach(&mut ebpf, ECHO_PROGRAM, ifindex)?;
        Ok(Sink {
            ebpf,
            _displaced: displaced,
        })
    }

    /// Frames dropped (or echoed) so far, summed over the CPUs.
    pub fn count(&self) -> io::Result<u64> {
        let map = self
            .ebpf
            .map(SINK_COUNTS_MAP)
            .ok_or_else(|| io::Error::other("no counts map"))?;
        let counts = PerCpuArray::<_, u64>::try_from(map).map_err(|e| other(SINK_COUNTS_MAP, e))?;
        let values = counts.get(&0, 0).map_err(|e| other(SINK_COUNTS_MAP, e))?;
        Ok(values.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_is_bpf_and_declares_what_the_loader_uses() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247, "EM_BPF");
        let source = include_str!("../../xdp/loadgen_xdp.c");
        for name in [RX_PROGRAM, SINK_PROGRAM, ECHO_PROGRAM] {
            assert!(
                source.contains(&format!("int {name}(struct xdp_md *ctx)")),
                "{name}"
            );
        }
        for (name, mode) in [
            ("ECHO_GOOD", EchoMode::Good),
            ("ECHO_BAD_ORIGIN", EchoMode::BadOrigin),
            ("ECHO_KOD", EchoMode::Kod),
        ] {
            assert!(
                source.contains(&format!("#define {name} {}\n", mode as u32)),
                "{name}"
            );
        }
        for map in [CONFIG_MAP, XSKS_MAP, SINK_COUNTS_MAP, ECHO_CONFIG_MAP] {
            assert!(source.contains(&format!("}} {map} SEC(\".maps\");")), "{map}");
        }
        assert!(source.contains(&format!("__uint(max_entries, {MAX_QUEUES});")));
        assert_eq!(std::mem::size_of::<Config>(), 8);
        assert_eq!(std::mem::size_of::<EchoConfig>(), 8);
    }
}
