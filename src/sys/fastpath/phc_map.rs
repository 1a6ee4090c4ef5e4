//! The XDP program's PHC map: the interface's PHC-to-TAI line for the program's own answers,
//! written by the PHC thread (`crate::sys::ptp::tracker`) with every line it publishes to the
//! responders, in the same encoding (`struct strata_phc`: a sequence word, then the
//! [`PhcLine`]'s `Words`), under a sequence lock ([`super::mapped`]).

use std::io;
use std::os::fd::BorrowedFd;

use super::abi::PHC_WORDS;
use super::mapped::MappedEntry;
use crate::proto::clock::phc::PhcLine;
use crate::proto::clock::seqlock::Words;
use crate::sys::ptp::tracker::LineMirror;

/// A writable mapping of one interface's PHC map.
pub struct PhcMap {
    entry: MappedEntry,
}

impl PhcMap {
    pub fn map(map: BorrowedFd<'_>, interface: &str) -> io::Result<PhcMap> {
        let entry = MappedEntry::map(map, PHC_WORDS, &format!("the XDP PHC map of {interface}"))?;
        let mut map = PhcMap { entry };
        // Zeroed memory would read as a usable line through the origin: no mapping until the
        // first line.
        map.mirror(&PhcLine::NONE);
        Ok(map)
    }

    /// The words after the sequence, as the program reads them.
    pub fn encode(line: &PhcLine) -> [u64; PHC_WORDS - 1] {
        let mut w = [0u64; PHC_WORDS - 1];
        line.encode(&mut w);
        w
    }

    pub fn read(&self) -> PhcLine {
        PhcLine::decode(&self.entry.read()[1..])
    }
}

impl LineMirror for PhcMap {
    fn mirror(&mut self, line: &PhcLine) {
        self.entry.write(&PhcMap::encode(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_fills_the_words_after_the_sequence() {
        assert_eq!(PhcLine::WORDS, PHC_WORDS - 1);
        let line = PhcLine {
            phc_ref_ns: 1,
            offset_ns: -2,
            slope_q48: 3,
            fitted_tai_ns: 4,
            unusable: None,
        };
        assert_eq!(PhcMap::encode(&line), [1, (-2i64) as u64, 3, 4, 0]);
        assert_eq!(PhcMap::encode(&PhcLine::NONE)[4], 1, "no mapping");
    }
}
