//! One entry of a `BPF_F_MMAPABLE` array map, mapped into user space and written under a
//! sequence lock: word 0 is the sequence (odd while writing), the rest the value. The program
//! keeps a copy only when it read the same even sequence before and after it (`read_state`,
//! `read_phc` in `xdp-prog/strata_answer.h`). Shared by the state map and the PHC map.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// A writable mapping of a map's first entry of `words` 8-byte words.
pub struct MappedEntry {
    entry: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is process-wide shared memory that only this handle writes (one writer,
// by ownership); moving the handle to another thread moves the writer with it.
unsafe impl Send for MappedEntry {}

impl MappedEntry {
    fn len(words: usize) -> usize {
        4096usize.max(words * 8)
    }

    /// Maps the first entry of `map`, `words` words long; `what` names it in errors. The mapping
    /// outlives the descriptor and keeps the map alive.
    pub fn map(map: BorrowedFd<'_>, words: usize, what: &str) -> io::Result<MappedEntry> {
        // SAFETY: a fresh shared mapping of a map descriptor, no address hint; the kernel checks
        // that the map is mmapable and at least this long, and the result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MappedEntry::len(words),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot map {what}: {e}")));
        }
        let entry = NonNull::new(addr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(MappedEntry { entry, words })
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.words);
        // SAFETY: the mapping is at least a page, page-aligned, so every one of the `words`
        // 8-byte words is in bounds and aligned; the kernel's readers use plain loads, user
        // space only these atomics.
        unsafe { &*self.entry.as_ptr().add(index) }
    }

    /// Writes `value` (the words after the sequence) under the sequence lock.
    pub fn write(&mut self, value: &[u64]) {
        assert_eq!(value.len() + 1, self.words);
        let seq = self.word(0).load(Ordering::Relaxed);
        // Odd: a reader that starts now, or is copying, throws its copy away.
        self.word(0).store(seq | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, v) in value.iter().enumerate() {
            self.word(i + 1).store(*v, Ordering::Relaxed);
        }
        self.word(0).store((seq | 1) + 1, Ordering::Release);
    }

    /// What the entry holds now, the sequence first.
    pub fn read(&self) -> Vec<u64> {
        (0..self.words)
            .map(|i| self.word(i).load(Ordering::Acquire))
            .collect()
    }
}

impl Drop for MappedEntry {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of that length, unmapped once.
        unsafe {
            libc::munmap(self.entry.as_ptr().cast(), MappedEntry::len(self.words));
        }
    }
}
