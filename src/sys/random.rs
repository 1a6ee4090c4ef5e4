//! Random bytes from the kernel (getrandom(2)), for keys, secrets and seeds.

use std::io;

/// Fills `buf` from the kernel's random source (blocking only until it is initialized at boot).
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of `buf`, which is valid for
        // writes for that length; getrandom writes at most that many bytes.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// 32 random bytes, for a seed; the process cannot serve safely without them.
pub fn seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    fill(&mut s).expect("the kernel's random source (getrandom) is available on Linux >= 3.17");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_differ() {
        assert_ne!(super::seed(), super::seed());
    }
}
