//! The PHC lines a path maps hardware receive stamps through, by the interface a request came in
//! on. An AF_XDP responder serves one interface: it has one line, used for every request. The
//! socket path serves every interface through one socket: each datagram's ingress interface
//! (its pktinfo ifindex) picks that interface's line.
//!
//! The table is built at start and only read afterwards: each batch copies every line once out of
//! its seqlock, and a request's line is found by a scan of a few entries, with no allocation and
//! no lock.

use crate::proto::clock::phc::{PhcLine, PhcLineReader};

/// An entry for every interface: the line of a path that serves one interface.
pub const ANY_INTERFACE: u32 = 0;

/// The lines, and the copies the current batch is answered with.
pub struct PhcLines {
    /// (ifindex, the line its PHC publishes); ifindex [`ANY_INTERFACE`] matches every request.
    readers: Box<[(u32, PhcLineReader)]>,
    /// `readers`' lines as read at the start of the batch, in the same order.
    lines: Box<[PhcLine]>,
}

/// The line of an interface without one: every hardware stamp through it is `no_mapping`.
static NO_LINE: PhcLine = PhcLine::NONE;

impl PhcLines {
    pub fn none() -> PhcLines {
        PhcLines::by_interface(Vec::new())
    }

    /// One line for every request (a path serving one interface).
    pub fn single(reader: PhcLineReader) -> PhcLines {
        PhcLines::by_interface(vec![(ANY_INTERFACE, reader)])
    }

    /// A line per interface index; requests from any other interface have none.
    pub fn by_interface(readers: Vec<(u32, PhcLineReader)>) -> PhcLines {
        let lines = vec![PhcLine::NONE; readers.len()].into_boxed_slice();
        PhcLines {
            readers: readers.into_boxed_slice(),
            lines,
        }
    }

    /// A batch begins: every line is read once for all its requests.
    #[inline]
    pub fn refresh(&mut self) {
        for (line, (_, reader)) in self.lines.iter_mut().zip(self.readers.iter()) {
            *line = reader.read();
        }
    }

    /// The line for a request that came in on `ifindex` (None: the path does not know), as the
    /// batch read it.
    #[inline]
    pub fn line(&self, ifindex: Option<u32>) -> &PhcLine {
        self.readers
            .iter()
            .position(|(index, _)| *index == ANY_INTERFACE || Some(*index) == ifindex)
            .map_or(&NO_LINE, |i| &self.lines[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::clock::seqlock::seqlock;

    fn line(phc_ref_ns: i64) -> PhcLine {
        PhcLine {
            phc_ref_ns,
            ..PhcLine::NONE
        }
    }

    #[test]
    fn each_interface_gets_its_own_line_and_others_none() {
        let (mut a_writer, a) = seqlock(PhcLine::NONE);
        let (mut b_writer, b) = seqlock(PhcLine::NONE);
        let mut lines = PhcLines::by_interface(vec![(3, a), (7, b)]);
        a_writer.publish(&line(11));
        b_writer.publish(&line(22));
        // Nothing is seen before the batch reads the lines.
        assert_eq!(lines.line(Some(3)), &PhcLine::NONE);
        lines.refresh();
        assert_eq!(lines.line(Some(3)).phc_ref_ns, 11);
        assert_eq!(lines.line(Some(7)).phc_ref_ns, 22);
        assert_eq!(lines.line(Some(5)), &PhcLine::NONE);
        assert_eq!(lines.line(None), &PhcLine::NONE);
        assert_eq!(PhcLines::none().line(Some(3)), &PhcLine::NONE);
    }

    #[test]
    fn a_single_line_serves_every_request() {
        let (mut writer, reader) = seqlock(PhcLine::NONE);
        let mut lines = PhcLines::single(reader);
        writer.publish(&line(5));
        lines.refresh();
        assert_eq!(lines.line(None).phc_ref_ns, 5);
        assert_eq!(lines.line(Some(9)).phc_ref_ns, 5);
    }
}
