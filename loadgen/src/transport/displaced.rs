//! Making room on an interface for the generator's own XDP program: a program attached in
//! driver mode through netlink (as `bench/lab` puts an XDP_PASS program on cli0, so that replies
//! a server sends with XDP_TX reach the sockets there) is detached for the run and put back when
//! the [`Displaced`] is dropped. A program attached through a bpf_link (another process's) is
//! left alone, and the generator's attach then fails with a message saying so.
//!
//! aya neither queries nor detaches programs it did not attach, so this goes through
//! libbpf-sys.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A driver-mode XDP program taken off an interface, re-attached on drop.
pub struct Displaced {
    ifindex: u32,
    id: u32,
    fd: OwnedFd,
}

fn errno(rc: i32) -> io::Error {
    io::Error::from_raw_os_error(-rc)
}

impl Displaced {
    /// Detaches the driver-mode program of `ifindex` if it has one attached through netlink.
    /// None when there is none (or it cannot be detached: attached through a link, or in another
    /// mode), so that the caller's attach reports the conflict in its own words.
    pub fn take(ifindex: u32) -> io::Result<Option<Displaced>> {
        let mut query = libbpf_sys::bpf_xdp_query_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as libbpf_sys::size_t,
            ..Default::default()
        };
        // SAFETY: `query` is a zero-initialised bpf_xdp_query_opts whose sz is its own size; the
        // kernel's answer is written into it.
        let rc = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut query) };
        if rc < 0 {
            return Err(errno(rc));
        }
        let id = query.drv_prog_id;
        if id == 0 || u32::from(query.attach_mode) != libbpf_sys::XDP_ATTACHED_DRV {
            return Ok(None);
        }
        // SAFETY: a plain syscall wrapper; it returns a new descriptor or -errno.
        let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
        if fd < 0 {
            return Err(errno(fd));
        }
        // SAFETY: `fd` was just returned to us and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a plain syscall wrapper; null options are allowed.
        let rc = unsafe {
            libbpf_sys::bpf_xdp_detach(ifindex as i32, libbpf_sys::XDP_FLAGS_DRV_MODE, std::ptr::null())
        };
        if rc < 0 {
            // Attached through a bpf_link (EBUSY): not ours to move.
            return Ok(None);
        }
        Ok(Some(Displaced { ifindex, id, fd }))
    }

    /// The id of the program taken off.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for Displaced {
    fn drop(&mut self) {
        // SAFETY: a plain syscall wrapper with a live program descriptor; null options.
        let rc = unsafe {
            libbpf_sys::bpf_xdp_attach(
                self.ifindex as i32,
                self.fd.as_raw_fd(),
                libbpf_sys::XDP_FLAGS_DRV_MODE | libbpf_sys::XDP_FLAGS_UPDATE_IF_NOEXIST,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            eprintln!(
                "strata-loadgen: could not put XDP program {} back on interface {}: {}",
                self.id,
                self.ifindex,
                errno(rc)
            );
        }
    }
}
