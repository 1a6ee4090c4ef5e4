//! The socket path's sampled requests on their way to the control side (talkers.rs): a fixed
//! ring that any responder thread writes without a lock and one reader drains. It is lossy by
//! design: a reader that falls more than a ring behind skips what was overwritten, and a slot
//! being rewritten while read is skipped too (a per-slot sequence number says so), so writers
//! never wait. Writers take a slot with one atomic add, only for sampled requests. (Two writers
//! a whole ring apart writing one slot at once could mix their samples; that takes a ring's
//! worth of samples written during one write, which a ring of thousands never sees.)

use std::sync::atomic::{AtomicU64, Ordering};

use super::talkers::{Sample, SampleVerdict};

struct Slot {
    /// 2 * index + 1 while being written, 2 * index + 2 once written.
    seq: AtomicU64,
    hi: AtomicU64,
    lo: AtomicU64,
    verdict: AtomicU64,
}

/// The ring.
pub struct SampleRing {
    slots: Box<[Slot]>,
    head: AtomicU64,
}

impl SampleRing {
    /// A ring of `capacity` slots (at least 1).
    pub fn new(capacity: usize) -> SampleRing {
        SampleRing {
            slots: (0..capacity.max(1))
                .map(|_| Slot {
                    seq: AtomicU64::new(0),
                    hi: AtomicU64::new(0),
                    lo: AtomicU64::new(0),
                    verdict: AtomicU64::new(0),
                })
                .collect(),
            head: AtomicU64::new(0),
        }
    }

    /// Adds a sample, overwriting the oldest when the ring is full.
    #[inline]
    pub fn push(&self, sample: Sample) {
        let i = self.head.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(i % self.slots.len() as u64) as usize];
        slot.seq.store(2 * i + 1, Ordering::Relaxed);
        // The data may not be seen before the odd sequence number.
        std::sync::atomic::fence(Ordering::Release);
        slot.hi.store(sample.key.0, Ordering::Relaxed);
        slot.lo.store(sample.key.1, Ordering::Relaxed);
        slot.verdict
            .store(sample.verdict.code() as u64, Ordering::Relaxed);
        slot.seq.store(2 * i + 2, Ordering::Release);
    }

    /// The samples written since `*next` (the reader's position, advanced), oldest first; the
    /// ones overwritten or being written are skipped and counted in the second value.
    pub fn drain(&self, next: &mut u64, mut each: impl FnMut(Sample)) -> u64 {
        let head = self.head.load(Ordering::Acquire);
        let len = self.slots.len() as u64;
        let mut lost = 0;
        if head.saturating_sub(*next) > len {
            lost += head - len - *next;
            *next = head - len;
        }
        while *next < head {
            let i = *next;
            let slot = &self.slots[(i % len) as usize];
            let before = slot.seq.load(Ordering::Acquire);
            let sample = (
                slot.hi.load(Ordering::Relaxed),
                slot.lo.load(Ordering::Relaxed),
                slot.verdict.load(Ordering::Relaxed),
            );
            std::sync::atomic::fence(Ordering::Acquire);
            let after = slot.seq.load(Ordering::Relaxed);
            match SampleVerdict::from_code(sample.2 as u8) {
                Some(verdict) if before == 2 * i + 2 && after == before => each(Sample {
                    key: (sample.0, sample.1),
                    verdict,
                }),
                _ => lost += 1,
            }
            *next += 1;
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u64) -> Sample {
        Sample {
            key: (n, n * 3),
            verdict: SampleVerdict::from_code((n % 5) as u8).unwrap(),
        }
    }

    #[test]
    fn a_reader_gets_every_sample_in_order_or_counts_what_it_missed() {
        let ring = SampleRing::new(8);
        let mut next = 0;
        for n in 0..5 {
            ring.push(sample(n));
        }
        let mut got = vec![];
        assert_eq!(ring.drain(&mut next, |s| got.push(s)), 0);
        assert_eq!(got, (0..5).map(sample).collect::<Vec<_>>());
        // 20 more than the ring holds: the last 8 are there, 12 are lost.
        for n in 5..25 {
            ring.push(sample(n));
        }
        got.clear();
        assert_eq!(ring.drain(&mut next, |s| got.push(s)), 12);
        assert_eq!(got, (17..25).map(sample).collect::<Vec<_>>());
        assert_eq!(ring.drain(&mut next, |s| got.push(s)), 0);
        assert_eq!(next, 25);
    }

    #[test]
    fn writers_on_several_threads_never_hand_the_reader_a_torn_sample() {
        let ring = std::sync::Arc::new(SampleRing::new(64));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        ring.push(sample(w * 1_000_000 + n));
                    }
                })
            })
            .collect();
        let (mut next, mut seen, mut lost) = (0, 0u64, 0u64);
        while writers.iter().any(|w| !w.is_finished()) {
            lost += ring.drain(&mut next, |s| {
                assert_eq!(s, sample(s.key.0), "torn");
                seen += 1;
            });
        }
        lost += ring.drain(&mut next, |s| {
            assert_eq!(s, sample(s.key.0), "torn");
            seen += 1;
        });
        assert_eq!(seen + lost, 60_000);
        assert!(seen > 0);
    }
}
