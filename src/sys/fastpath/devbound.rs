//! Loading the device-bound variant of the program through libbpf.
//!
//! Why not aya: aya 0.14 (and 0.15/0.16, which also need a newer Rust than this project's)
//! has no way to pass `prog_ifindex` and `BPF_F_XDP_DEV_BOUND_ONLY` to BPF_PROG_LOAD, and it
//! cannot resolve the `__ksym` extern of the `bpf_xdp_metadata_rx_timestamp` kfunc against the
//! kernel's BTF. libbpf does both, and it is already linked into strata (xsk-rs -> libxdp-sys
//! -> libbpf-sys), so this adds no library. The maps stay aya's: libbpf reuses their
//! descriptors, so the rest of the fast path sees one set of maps whichever program runs.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libbpf_sys as bpf;

use super::abi::{MAPS, PROGRAM_NAME};
use super::program::DEVICE_BOUND;

/// `BPF_F_XDP_DEV_BOUND_ONLY` (Linux 6.3); Debian 12's headers predate it.
pub const BPF_F_XDP_DEV_BOUND_ONLY: u32 = 1 << 6;

fn errno(rc: i32) -> io::Error {
    io::Error::from_raw_os_error(rc.unsigned_abs() as i32)
}

/// A bpf_object, closed when dropped.
struct Object(*mut bpf::bpf_object);

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: the pointer came from bpf_object__open_mem and is closed once.
        unsafe { bpf::bpf_object__close(self.0) };
    }
}

/// Loads the device-bound program for interface `ifindex`, its maps being `map_fds` (by name,
/// as aya created them). Returns the program's descriptor.
pub fn load(ifindex: u32, map_fds: &[(&str, i32)]) -> io::Result<OwnedFd> {
    // libbpf prints its diagnostics to stderr by default; the error code returned here is
    // what strata reports, so keep the log clean.
    // SAFETY: setting the print callback to none is always valid.
    unsafe { bpf::libbpf_set_print(None) };
    let name = CString::new(PROGRAM_NAME).expect("no NUL in the program name");
    // SAFETY: an all-zero options struct is valid once `sz` is set.
    let mut opts: bpf::bpf_object_open_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_object_open_opts>() as _;
    opts.object_name = name.as_ptr();
    // SAFETY: DEVICE_BOUND is a static byte slice; libbpf copies what it needs from it.
    let obj =
        unsafe { bpf::bpf_object__open_mem(DEVICE_BOUND.as_ptr().cast(), DEVICE_BOUND.len() as _, &opts) };
    if obj.is_null() {
        return Err(io::Error::last_os_error());
    }
    let obj = Object(obj);
    for map in MAPS {
        let fd = map_fds
            .iter()
            .find(|(n, _)| *n == map)
            .map(|(_, fd)| *fd)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no descriptor for map {map}")))?;
        let c_map = CString::new(map).expect("no NUL in map names");
        // SAFETY: `obj` is open and `c_map` is a valid string.
        let handle = unsafe { bpf::bpf_object__find_map_by_name(obj.0, c_map.as_ptr()) };
        if handle.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("map {map} is not in the object"),
            ));
        }
        // SAFETY: `handle` belongs to `obj`; libbpf duplicates `fd`, which stays ours.
        let rc = unsafe { bpf::bpf_map__reuse_fd(handle, fd) };
        if rc < 0 {
            return Err(errno(rc));
        }
    }
    // SAFETY: `obj` is open and `name` is a valid string.
    let prog = unsafe { bpf::bpf_object__find_program_by_name(obj.0, name.as_ptr()) };
    if prog.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "program strata_xdp is not in the object",
        ));
    }
    // SAFETY: `prog` belongs to the open, not yet loaded `obj`.
    unsafe { bpf::bpf_program__set_ifindex(prog, ifindex) };
    // SAFETY: as above.
    let rc = unsafe { bpf::bpf_program__set_flags(prog, BPF_F_XDP_DEV_BOUND_ONLY) };
    if rc < 0 {
        return Err(errno(rc));
    }
    // SAFETY: `obj` is open; load creates nothing but the program (its maps are reused).
    let rc = unsafe { bpf::bpf_object__load(obj.0) };
    if rc < 0 {
        return Err(errno(rc));
    }
    // SAFETY: `prog` was loaded with `obj`; its descriptor lives until `obj` is closed, so dup
    // it into one we own.
    let fd = unsafe { libc::fcntl(bpf::bpf_program__fd(prog), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches `prog` to `ifindex` in driver mode (the only mode a device-bound program has)
/// through a bpf_link, which detaches when its descriptor is closed, also when the process
/// dies.
pub fn attach(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero options struct is valid once `sz` is set.
    let mut opts: bpf::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_link_create_opts>() as _;
    opts.flags = bpf::XDP_FLAGS_DRV_MODE;
    // SAFETY: `prog` is a live program descriptor and `opts` is valid for the call.
    let fd = unsafe { bpf::bpf_link_create(prog.as_raw_fd(), ifindex as i32, bpf::BPF_XDP, &opts) };
    if fd < 0 {
        return Err(errno(fd));
    }
    // SAFETY: `fd` is a new link descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
