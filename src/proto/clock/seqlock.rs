//! A single-writer, many-reader sequence lock over plain words. Readers never block and never
//! write shared memory: they copy the words and retry if a write overlapped. The writer is a
//! separate handle so that the type system, not a convention, keeps it single.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

/// Values that can be published through a [`SeqLock`]: encoded into at most `MAX_WORDS` u64s.
pub trait Words: Copy {
    /// How many words `encode` writes and `decode` reads (at most [`MAX_WORDS`]).
    const WORDS: usize;
    fn encode(&self, words: &mut [u64]);
    fn decode(words: &[u64]) -> Self;
}

/// The most words a published value may take.
pub const MAX_WORDS: usize = 16;

struct Shared {
    /// Odd while a write is in progress.
    sequence: AtomicU64,
    words: [AtomicU64; MAX_WORDS],
}

/// The reading side; cheap to clone, one per responder.
pub struct SeqLockReader<T: Words> {
    shared: Arc<Shared>,
    _value: std::marker::PhantomData<fn() -> T>,
}

/// The one writing side.
pub struct SeqLockWriter<T: Words> {
    shared: Arc<Shared>,
    _value: std::marker::PhantomData<fn() -> T>,
}

/// Makes a lock holding `initial`, returning its writer and a first reader.
pub fn seqlock<T: Words>(initial: T) -> (SeqLockWriter<T>, SeqLockReader<T>) {
    assert!(T::WORDS <= MAX_WORDS, "published value too large for the seqlock");
    let shared = Arc::new(Shared {
        sequence: AtomicU64::new(0),
        words: std::array::from_fn(|_| AtomicU64::new(0)),
    });
    let mut writer = SeqLockWriter {
        shared: shared.clone(),
        _value: std::marker::PhantomData,
    };
    writer.publish(&initial);
    (
        writer,
        SeqLockReader {
            shared,
            _value: std::marker::PhantomData,
        },
    )
}

impl<T: Words> SeqLockWriter<T> {
    pub fn publish(&mut self, value: &T) {
        let mut buf = [0u64; MAX_WORDS];
        value.encode(&mut buf[..T::WORDS]);
        let s = &self.shared;
        let seq = s.sequence.load(Ordering::Relaxed);
        s.sequence.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd sequence before the data stores.
        fence(Ordering::Release);
        for (slot, word) in s.words.iter().zip(&buf[..T::WORDS]) {
            slot.store(*word, Ordering::Relaxed);
        }
        s.sequence.store(seq.wrapping_add(2), Ordering::Release);
    }

    pub fn reader(&self) -> SeqLockReader<T> {
        SeqLockReader {
            shared: self.shared.clone(),
            _value: std::marker::PhantomData,
        }
    }
}

impl<T: Words> Clone for SeqLockReader<T> {
    fn clone(&self) -> Self {
        SeqLockReader {
            shared: self.shared.clone(),
            _value: std::marker::PhantomData,
        }
    }
}

impl<T: Words> SeqLockReader<T> {
    /// The latest complete value. Retries only while a write overlaps the copy, which the single
    /// writer finishes in a few nanoseconds; it never waits on a lock.
    #[inline]
    pub fn read(&self) -> T {
        let s = &self.shared;
        let mut buf = [0u64; MAX_WORDS];
        loop {
            let before = s.sequence.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            for (word, slot) in buf[..T::WORDS].iter_mut().zip(&s.words) {
                *word = slot.load(Ordering::Relaxed);
            }
            // Orders the data loads before the second sequence load.
            fence(Ordering::Acquire);
            if s.sequence.load(Ordering::Relaxed) == before {
                return T::decode(&buf[..T::WORDS]);
            }
        }
    }

    /// The write generation; changes whenever a new value is published.
    pub fn generation(&self) -> u64 {
        self.shared.sequence.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Debug)]
    struct Pair(u64, u64);

    impl Words for Pair {
        const WORDS: usize = 2;
        fn encode(&self, w: &mut [u64]) {
            w[0] = self.0;
            w[1] = self.1;
        }
        fn decode(w: &[u64]) -> Self {
            Pair(w[0], w[1])
        }
    }

    #[test]
    fn reads_what_was_published() {
        let (mut w, r) = seqlock(Pair(1, 2));
        assert_eq!(r.read(), Pair(1, 2));
        let g = r.generation();
        w.publish(&Pair(3, 4));
        assert_eq!(r.read(), Pair(3, 4));
        assert_ne!(r.generation(), g);
    }

    #[test]
    fn readers_never_see_a_torn_value() {
        let (mut w, r) = seqlock(Pair(0, 0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) || n < 1000 {
                        let v = r.read();
                        assert_eq!(v.1, v.0.wrapping_mul(3), "torn read");
                        n += 1;
                    }
                })
            })
            .collect();
        for i in 0..200_000u64 {
            w.publish(&Pair(i, i.wrapping_mul(3)));
        }
        stop.store(true, Ordering::Relaxed);
        for t in readers {
            t.join().unwrap();
        }
    }
}
