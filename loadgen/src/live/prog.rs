//! The live mode's XDP programs (xdp/loadgen_live.c): `live_rx` attached to the generator's
//! interface with aya, `live_tx` loaded but not attached, run with BPF_PROG_RUN in live-frames
//! mode through libbpf-sys (aya does not wrap BPF_PROG_RUN), and their maps.
//!
//! Dropping [`LiveProgram`] detaches `live_rx` (aya attaches through a bpf_link, which the
//! kernel also drops when the process dies).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use super::origin::{EXP_TABLE, RTT_BUCKETS};
use crate::classify::{Invalid, KISS_KINDS};
use crate::transport::displaced::Displaced;

/// The compiled object, embedded so that the binary needs no file beside it.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/loadgen_live.o"));

const TX_PROGRAM: &str = "live_tx";
const RX_PROGRAM: &str = "live_rx";
const CONFIG_MAP: &str = "live_config";
const STATE_MAP: &str = "live_state";
const COUNTS_MAP: &str = "live_counts";
/// The request frame: Ethernet, IPv4 without options, UDP, an NTP header.
pub const FRAME_LEN: usize = 14 + 20 + 8 + 48;
/// The most frames the kernel runs per batch in live mode (TEST_XDP_MAX_BATCH).
pub const MAX_BATCH: u32 = 256;
/// live_config.flags: Poisson gaps.
pub const FLAG_POISSON: u16 = 1;

/// Mirrors `struct live_config`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct LiveConfig {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Network byte order, as in the frame.
    pub target_addr: u32,
    /// Network byte order.
    pub target_port: u16,
    pub flags: u16,
    /// The first client address, host order.
    pub src_first: u32,
    pub flows: u32,
    pub version: u32,
    /// CLOCK_MONOTONIC ns (bpf_ktime_get_ns).
    pub start_ns: u64,
    pub end_ns: u64,
    pub limit: u64,
    pub gap_q: u64,
    pub secret: u64,
    pub prev_secret: u64,
    pub timeout_ns: u64,
    /// A CLOCK_MONOTONIC reading and the NTP time (32.32) of the same instant, for the offset.
    pub ref_mono_ns: u64,
    pub ref_ntp: u64,
    pub request: [u8; 48],
    pub exp_q: [u32; EXP_TABLE],
}

/// Mirrors `struct live_state`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct LiveState {
    pub sent: u64,
    pub due_q: u64,
    /// Runs that found no request due (the generator's spare capacity).
    pub idle: u64,
    /// When the last request was sent, CLOCK_MONOTONIC ns.
    pub last_ns: u64,
}

/// Mirrors `struct live_counts`: one per CPU, summed by [`LiveProgram::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct LiveCounts {
    pub received: u64,
    pub answered: u64,
    pub valid: u64,
    pub late: u64,
    pub kod: [u64; KISS_KINDS],
    pub invalid: [u64; Invalid::COUNT],
    pub rtt: [u64; RTT_BUCKETS],
    /// T3 − T2 of the valid replies.
    pub response: [u64; RTT_BUCKETS],
    /// ((T2 − T1) + (T3 − T4)) / 2 of the valid replies, by sign.
    pub offset_pos: [u64; RTT_BUCKETS],
    pub offset_neg: [u64; RTT_BUCKETS],
}

impl Default for LiveCounts {
    fn default() -> Self {
        LiveCounts {
            received: 0,
            answered: 0,
            valid: 0,
            late: 0,
            kod: [0; KISS_KINDS],
            invalid: [0; Invalid::COUNT],
            rtt: [0; RTT_BUCKETS],
            response: [0; RTT_BUCKETS],
            offset_pos: [0; RTT_BUCKETS],
            offset_neg: [0; RTT_BUCKETS],
        }
    }
}

/// Adds `b` into `a` element by element, or subtracts it (wrapping: counters only grow).
fn combine<const N: usize>(a: &mut [u64; N], b: &[u64; N], subtract: bool) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = if subtract { x.wrapping_sub(*y) } else { *x + y };
    }
}

impl LiveCounts {
    fn combine(&mut self, o: &LiveCounts, subtract: bool) {
        let mut scalars = [self.received, self.answered, self.valid, self.late];
        combine(&mut scalars, &[o.received, o.answered, o.valid, o.late], subtract);
        [self.received, self.answered, self.valid, self.late] = scalars;
        combine(&mut self.kod, &o.kod, subtract);
        combine(&mut self.invalid, &o.invalid, subtract);
        combine(&mut self.rtt, &o.rtt, subtract);
        combine(&mut self.response, &o.response, subtract);
        combine(&mut self.offset_pos, &o.offset_pos, subtract);
        combine(&mut self.offset_neg, &o.offset_neg, subtract);
    }

    /// What was counted since `before` (counters only grow).
    pub fn since(&self, before: &LiveCounts) -> LiveCounts {
        let mut out = *self;
        out.combine(before, true);
        out
    }
}

// SAFETY: the three are repr(C), Copy, and made of integers and integer arrays laid out without
// padding (every field is at a multiple of its alignment and the sizes are multiples of 8, as
// the test below checks), so any bytes are a valid value.
unsafe impl aya::Pod for LiveConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for LiveState {}
// SAFETY: as above.
unsafe impl aya::Pod for LiveCounts {}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// The loaded programs and their maps.
pub struct LiveProgram {
    ebpf: Ebpf,
    /// A program taken off the interface for the run; dropped after `ebpf` (field order), so
    /// that it is put back once live_rx is detached.
    _displaced: Option<Displaced>,
}

impl LiveProgram {
    /// Loads both programs and attaches `live_rx` to `ifindex` (driver mode, else skb mode).
    pub fn load(ifindex: u32) -> io::Result<LiveProgram> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| other("cannot load the XDP object", e))?;
        for name in [TX_PROGRAM, RX_PROGRAM] {
            let xdp: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| io::Error::other(format!("{name} is missing from the object")))?
                .try_into()
                .map_err(|e| other(name, e))?;
            xdp.load()
                .map_err(|e| other(&format!("the kernel refused {name}"), e))?;
        }
        let displaced =
            Displaced::take(ifindex).map_err(|e| other("cannot query the interface's XDP program", e))?;
        let rx: &mut Xdp = ebpf
            .program_mut(RX_PROGRAM)
            .expect("loaded above")
            .try_into()
            .map_err(|e| other(RX_PROGRAM, e))?;
        if let Err(driver) = rx.attach_to_if_index(ifindex, XdpMode::Driver) {
            rx.attach_to_if_index(ifindex, XdpMode::Skb).map_err(|skb| {
                io::Error::other(format!(
                    "cannot attach {RX_PROGRAM}: driver mode: {driver}; skb mode: {skb}"
                ))
            })?;
        }
        Ok(LiveProgram {
            ebpf,
            _displaced: displaced,
        })
    }

    /// A handle for the thread that runs the generator (its own descriptor of `live_tx`).
    pub fn runner(&self, ifindex: u32, batch: u32) -> io::Result<Runner> {
        let prog: &Xdp = self
            .ebpf
            .program(TX_PROGRAM)
            .expect("loaded")
            .try_into()
            .map_err(|e| other(TX_PROGRAM, e))?;
        let fd = prog
            .fd()
            .map_err(|e| other(TX_PROGRAM, e))?
            .as_fd()
            .try_clone_to_owned()?;
        Ok(Runner { fd, ifindex, batch })
    }

    fn array<V: aya::Pod>(&self, name: &str) -> io::Result<Array<&MapData, V>> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| io::Error::other(format!("no map {name}")))?;
        Array::try_from(map).map_err(|e| other(name, e))
    }

    fn array_mut<V: aya::Pod>(&mut self, name: &str) -> io::Result<Array<&mut MapData, V>> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| io::Error::other(format!("no map {name}")))?;
        Array::try_from(map).map_err(|e| other(name, e))
    }

    pub fn configure(&mut self, config: &LiveConfig) -> io::Result<()> {
        self.array_mut::<LiveConfig>(CONFIG_MAP)?
            .set(0, config, 0)
            .map_err(|e| other(CONFIG_MAP, e))
    }

    /// Clears the generator's state for a new step (no run of `live_tx` may be under way).
    pub fn reset_state(&mut self) -> io::Result<()> {
        self.array_mut::<LiveState>(STATE_MAP)?
            .set(0, LiveState::default(), 0)
            .map_err(|e| other(STATE_MAP, e))
    }

    pub fn state(&self) -> io::Result<LiveState> {
        self.array::<LiveState>(STATE_MAP)?
            .get(&0, 0)
            .map_err(|e| other(STATE_MAP, e))
    }

    /// The reply counters, summed over the CPUs.
    pub fn counts(&self) -> io::Result<LiveCounts> {
        let map = self
            .ebpf
            .map(COUNTS_MAP)
            .ok_or_else(|| io::Error::other(format!("no map {COUNTS_MAP}")))?;
        let per_cpu = PerCpuArray::<_, LiveCounts>::try_from(map).map_err(|e| other(COUNTS_MAP, e))?;
        let values = per_cpu.get(&0, 0).map_err(|e| other(COUNTS_MAP, e))?;
        let mut sum = LiveCounts::default();
        for v in values.iter() {
            sum.combine(v, false);
        }
        Ok(sum)
    }
}

/// Runs `live_tx` with BPF_PROG_RUN in live-frames mode; owned by the generator's thread.
pub struct Runner {
    fd: OwnedFd,
    ifindex: u32,
    batch: u32,
}

impl Runner {
    /// Runs the program `repeat` times (in batches of `batch` frames) on the calling thread's CPU,
    /// each frame it returns XDP_TX for leaving through the interface. Returns false when a
    /// signal cut the run short (EINTR), which is how the step's end interrupts a long run.
    pub fn run(&self, repeat: u32) -> io::Result<bool> {
        // The initial contents of every page of the kernel's page pool; live_tx rewrites them.
        let frame = [0u8; FRAME_LEN];
        let ctx = libbpf_sys::xdp_md {
            data: 0,
            data_end: FRAME_LEN as u32,
            data_meta: 0,
            ingress_ifindex: self.ifindex,
            rx_queue_index: 0,
            egress_ifindex: 0,
        };
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            data_in: frame.as_ptr().cast(),
            data_size_in: FRAME_LEN as u32,
            ctx_in: (&ctx as *const libbpf_sys::xdp_md).cast(),
            ctx_size_in: std::mem::size_of::<libbpf_sys::xdp_md>() as u32,
            repeat: repeat.min(i32::MAX as u32) as i32,
            flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: self.batch,
            ..Default::default()
        };
        // SAFETY: `opts` is a fully initialised bpf_test_run_opts whose `sz` is its own size;
        // data_in and ctx_in point at live buffers of the sizes given, which the kernel only
        // reads during the call; no output buffers are passed (live mode refuses them).
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.fd.as_raw_fd(), &mut opts) };
        if rc == 0 {
            return Ok(true);
        }
        // libbpf returns -errno (and sets errno).
        let err = io::Error::from_raw_os_error(-rc);
        if err.raw_os_error() == Some(libc::EINTR) {
            Ok(false)
        } else {
            Err(err)
        }
    }
}

impl Runner {
    /// Runs `live_tx` once without sending anything (no live-frames flag): its verdict
    /// (XDP_TX = 3 for a request written, XDP_DROP = 1 for none due) and the frame it wrote.
    /// For tests that check the program's frames against this crate's own reading of them.
    pub fn run_once(&self) -> io::Result<(u32, Vec<u8>)> {
        let frame = [0u8; FRAME_LEN];
        let mut out = vec![0u8; FRAME_LEN + 256];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            data_in: frame.as_ptr().cast(),
            data_size_in: FRAME_LEN as u32,
            data_out: out.as_mut_ptr().cast(),
            data_size_out: out.len() as u32,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: `opts` is a fully initialised bpf_test_run_opts whose `sz` is its own size;
        // data_in is readable and data_out writable for the sizes given, during the call only.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.fd.as_raw_fd(), &mut opts) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        out.truncate(opts.data_size_out as usize);
        Ok((opts.retval, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn the_structs_match_the_c_layout() {
        let source = include_str!("../../xdp/loadgen_live.c");
        // Offsets as the C lays them out (checked against the source's field order).
        assert_eq!(size_of::<LiveConfig>(), 104 + 48 + 4 * EXP_TABLE);
        assert_eq!(std::mem::offset_of!(LiveConfig, start_ns), 32);
        assert_eq!(std::mem::offset_of!(LiveConfig, request), 104);
        assert_eq!(size_of::<LiveState>(), 32);
        assert_eq!(
            size_of::<LiveCounts>(),
            8 * (4 + KISS_KINDS + Invalid::COUNT + 4 * RTT_BUCKETS)
        );
        for (name, value) in [
            ("EXP_TABLE", EXP_TABLE),
            ("RTT_BUCKETS", RTT_BUCKETS),
            ("INVALID_KINDS", Invalid::COUNT),
            ("KISS_KINDS", KISS_KINDS),
        ] {
            assert!(source.contains(&format!("#define {name} {value}\n")), "{name}");
        }
        for (name, reason) in [
            ("INV_MALFORMED", Invalid::Malformed),
            ("INV_WRONG_SOURCE", Invalid::WrongSource),
            ("INV_UNKNOWN_ORIGIN", Invalid::UnknownOrigin),
            ("INV_BAD_MODE", Invalid::BadMode),
            ("INV_BAD_VERSION", Invalid::BadVersion),
            ("INV_STRATUM0_NOT_KISS", Invalid::Stratum0NotKiss),
            ("INV_UNSYNCHRONIZED", Invalid::Unsynchronized),
            ("INV_ZERO_TIMESTAMP", Invalid::ZeroTimestamp),
            ("INV_REVERSED", Invalid::ReversedTimestamps),
        ] {
            assert!(
                source.contains(&format!("#define {name} {}\n", reason.index())),
                "{name}"
            );
        }
        for name in [TX_PROGRAM, RX_PROGRAM] {
            assert!(
                source.contains(&format!("int {name}(struct xdp_md *ctx)")),
                "{name}"
            );
        }
        for map in [CONFIG_MAP, STATE_MAP, COUNTS_MAP] {
            assert!(source.contains(&format!("}} {map} SEC(\".maps\");")), "{map}");
        }
        assert!(source.contains(&format!("#define FLAG_POISSON {FLAG_POISSON}\n")));
        assert_eq!(&OBJECT[..4], b"\x7fELF");
    }
}
