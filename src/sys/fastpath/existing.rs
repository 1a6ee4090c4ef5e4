//! What XDP program is already on an interface, and removing a stale one.
//!
//! aya 0.14 can neither query an interface's XDP program nor detach one it did not attach, so
//! this goes through libbpf (`bpf_xdp_query`, `bpf_xdp_detach`, `bpf_prog_get_info_by_fd`),
//! which xsk-rs already links in through libxdp-sys.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use libbpf_sys as bpf;

/// An XDP program attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub id: u32,
    /// The name the kernel keeps (at most 15 bytes).
    pub name: String,
    /// XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE or XDP_FLAGS_HW_MODE: how it is attached.
    pub mode_flag: u32,
}

impl Existing {
    pub fn mode_name(&self) -> &'static str {
        match self.mode_flag {
            bpf::XDP_FLAGS_DRV_MODE => "driver",
            bpf::XDP_FLAGS_SKB_MODE => "skb",
            _ => "hardware",
        }
    }
}

fn errno(rc: i32) -> io::Error {
    io::Error::from_raw_os_error(rc.unsigned_abs() as i32)
}

/// The XDP programs attached to interface `ifindex`, in any mode.
pub fn query(ifindex: u32) -> io::Result<Vec<Existing>> {
    // SAFETY: an all-zero bpf_xdp_query_opts is valid once `sz` is set.
    let mut opts: bpf::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_xdp_query_opts>() as _;
    // SAFETY: `opts` is a valid, writable, correctly sized options struct.
    let rc = unsafe { bpf::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if rc < 0 {
        return Err(errno(rc));
    }
    let mut found = Vec::new();
    for (id, mode_flag) in [
        (opts.drv_prog_id, bpf::XDP_FLAGS_DRV_MODE),
        (opts.skb_prog_id, bpf::XDP_FLAGS_SKB_MODE),
        (opts.hw_prog_id, bpf::XDP_FLAGS_HW_MODE),
    ] {
        if id != 0 {
            found.push(Existing {
                id,
                name: program_name(id).unwrap_or_else(|e| format!("<unknown: {e}>")),
                mode_flag,
            });
        }
    }
    Ok(found)
}

/// The name of the loaded program `id`.
fn program_name(id: u32) -> io::Result<String> {
    // SAFETY: no memory is passed; a negative return is an error code.
    let fd = unsafe { bpf::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Err(errno(fd));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero bpf_prog_info is valid; the kernel fills what fits in `len`.
    let mut info: bpf::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<bpf::bpf_prog_info>() as u32;
    // SAFETY: `info` is writable for `len` bytes, and `fd` is a live program descriptor.
    let rc =
        unsafe { bpf::bpf_prog_get_info_by_fd(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut info, &mut len) };
    if rc < 0 {
        return Err(errno(rc));
    }
    let name: Vec<u8> = info.name.iter().map(|&c| c as u8).collect();
    let name = CStr::from_bytes_until_nul(&name)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(name)
}

/// Detaches the program attached in `existing.mode_flag` mode, if it is still program
/// `existing.id` (so that a program someone attached meanwhile is not removed by mistake).
///
/// Fails with EBUSY when a bpf_link holds it: links belong to a live process (they go away
/// with it), so such a program is in use, never stale.
pub fn detach(ifindex: u32, existing: &Existing) -> io::Result<()> {
    // SAFETY: an all-zero bpf_xdp_attach_opts is valid once `sz` is set.
    let mut opts: bpf::bpf_xdp_attach_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_xdp_attach_opts>() as _;
    // SAFETY: as above; fd_by_id hands us a new descriptor or an error code.
    let fd = unsafe { bpf::bpf_prog_get_fd_by_id(existing.id) };
    if fd < 0 {
        return Err(errno(fd));
    }
    // SAFETY: `fd` is new and owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    opts.old_prog_fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: `opts` is valid for the call; XDP_FLAGS_REPLACE makes the kernel compare the
    // attached program with old_prog_fd.
    let rc =
        unsafe { bpf::bpf_xdp_detach(ifindex as i32, existing.mode_flag | bpf::XDP_FLAGS_REPLACE, &opts) };
    if rc < 0 {
        return Err(errno(rc));
    }
    Ok(())
}
