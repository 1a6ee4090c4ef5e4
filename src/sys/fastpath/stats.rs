//! Read-only handles on the fast path's kernel-side counters, for the metrics exporter and
//! `strata status`, which run on their own thread while the responders own the sockets and
//! [`XdpServer`](super::XdpServer) owns the program.
//!
//! Each handle holds its own duplicate of the kernel object's descriptor, so it stays valid
//! whatever the owner does: reading after the owner closed its descriptor still reads the
//! (then final) counters instead of whatever a reused descriptor number would point to.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use serde::{Deserialize, Serialize};

use super::abi::{XdpCounter, XdpCounters};

/// The XDP program's sampled requests on one interface, for `strata clients`.
pub struct SampleReader {
    pub interface: String,
    ring: RingBuf<MapData>,
}

impl SampleReader {
    pub fn new(interface: String, ring: RingBuf<MapData>) -> SampleReader {
        SampleReader { interface, ring }
    }

    /// Hands every sample in the ring to `each`; returns how many records did not parse (none,
    /// unless the program and this build disagree on the layout).
    pub fn drain(&mut self, mut each: impl FnMut(crate::proto::admission::talkers::Sample)) -> u64 {
        let mut bad = 0;
        while let Some(item) = self.ring.next() {
            match crate::proto::admission::talkers::Sample::from_bytes(&item) {
                Some(sample) => each(sample),
                None => bad += 1,
            }
        }
        bad
    }
}

/// The XDP program's per-CPU counters on one interface.
pub struct ProgramCounterReader {
    pub interface: String,
    array: PerCpuArray<MapData, u64>,
}

impl ProgramCounterReader {
    /// A reader over `map`, a duplicate of the program's counters map descriptor.
    pub fn new(interface: String, map: OwnedFd) -> io::Result<ProgramCounterReader> {
        let data = MapData::from_fd(map).map_err(|e| io::Error::other(format!("counters map: {e}")))?;
        let array = PerCpuArray::try_from(Map::PerCpuArray(data))
            .map_err(|e| io::Error::other(format!("counters map: {e}")))?;
        Ok(ProgramCounterReader { interface, array })
    }

    /// The counters of each possible CPU, indexed by CPU number.
    pub fn per_cpu(&self) -> io::Result<Vec<XdpCounters>> {
        let mut cpus: Vec<XdpCounters> = Vec::new();
        for counter in XdpCounter::ALL {
            let values = self
                .array
                .get(&counter.index(), 0)
                .map_err(|e| io::Error::other(format!("counters map: {e}")))?;
            if cpus.is_empty() {
                cpus = vec![XdpCounters::default(); values.len()];
            }
            for (cpu, value) in values.iter().enumerate() {
                cpus[cpu].0[counter.index() as usize] = *value;
            }
        }
        Ok(cpus)
    }
}

/// An AF_XDP socket's XDP_STATISTICS, as the kernel counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XskStatistics {
    /// Frames dropped for reasons other than the two below.
    pub rx_dropped: u64,
    /// Frames dropped because a fill ring descriptor was invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel rejected as invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full (the responder fell behind).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (no frame to receive into).
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when it was woken to send.
    pub tx_ring_empty_descs: u64,
}

impl XskStatistics {
    /// Name and value of each field, in declaration order, for exporters.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_invalid_descs", self.rx_invalid_descs),
            ("tx_invalid_descs", self.tx_invalid_descs),
            ("rx_ring_full", self.rx_ring_full),
            ("rx_fill_ring_empty_descs", self.rx_fill_ring_empty_descs),
            ("tx_ring_empty_descs", self.tx_ring_empty_descs),
        ]
    }
}

/// One queue's AF_XDP socket, for reading its statistics.
pub struct XskStatsReader {
    /// The responder index (the `queue` label of the responder's own counters).
    pub index: usize,
    pub interface: String,
    pub queue: u32,
    fd: OwnedFd,
}

impl XskStatsReader {
    pub fn new(index: usize, interface: String, queue: u32, fd: OwnedFd) -> XskStatsReader {
        XskStatsReader {
            index,
            interface,
            queue,
            fd,
        }
    }

    /// The socket's statistics now (one getsockopt).
    pub fn read(&self) -> io::Result<XskStatistics> {
        // SAFETY: an all-zero xdp_statistics is a valid value (plain integers).
        let mut raw: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        let mut len = size;
        // SAFETY: `raw` is a writable xdp_statistics of `len` bytes; the kernel writes at most
        // `len` bytes and updates `len`; `fd` is an open descriptor we own.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut raw as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if len != size {
            // An older kernel fills only the first three fields: report the others as zero
            // rather than fail (they are then genuinely unknown, and zero is what they were
            // initialised to).
            log::debug!("XDP_STATISTICS returned {len} of {size} bytes");
        }
        Ok(XskStatistics {
            rx_dropped: raw.rx_dropped,
            rx_invalid_descs: raw.rx_invalid_descs,
            tx_invalid_descs: raw.tx_invalid_descs,
            rx_ring_full: raw.rx_ring_full,
            rx_fill_ring_empty_descs: raw.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: raw.tx_ring_empty_descs,
        })
    }
}
