//! The IERS/IETF `leap-seconds.list` (the copy tzdata ships): every leap second so far as
//! (NTP second from which it counts, TAI − UTC from then on), when the list was last updated
//! and when it expires, and a SHA-1 over its data that says it arrived whole.
//!
//! The format: `#$ SECONDS` the last update, `#@ SECONDS` the expiry, data lines
//! `SECONDS OFFSET # comment`, and `#h HASH` (five groups of eight hex digits): the SHA-1 of the
//! digits of the update and expiry times and of every data line's two numbers, concatenated
//! without separators. Every other `#` line is a comment.
//!
//! Parsing is strict (a line that is none of these is an error naming it) and never panics; the
//! list then answers what TAI − UTC is at an instant and which leap comes next.

use sha1::{Digest, Sha1};

/// One leap second: from NTP second `start` on, TAI − UTC is `tai_minus_utc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub start: u64,
    pub tai_minus_utc: i32,
}

/// A list whose hash verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeapList {
    /// NTP seconds (era 0) of the last update and of the expiry.
    pub updated: u64,
    pub expires: u64,
    /// In time order; the offsets change by one second from each entry to the next.
    pub entries: Vec<Entry>,
}

/// Why a list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeapListError {
    /// A line that is not one of the known kinds, or a number that does not parse (1-based).
    Syntax { line: usize, why: &'static str },
    /// No `#$`, `#@` or `#h` line, or no data line.
    Missing(&'static str),
    /// The SHA-1 does not match the data: the file is damaged or was edited.
    HashMismatch,
    /// The data lines are not in time order, or an offset changes by more than one second.
    Inconsistent { line: usize },
}

impl std::fmt::Display for LeapListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeapListError::Syntax { line, why } => write!(f, "line {line}: {why}"),
            LeapListError::Missing(what) => write!(f, "no {what}"),
            LeapListError::HashMismatch => {
                write!(
                    f,
                    "its SHA-1 (#h line) does not match its data: damaged or edited"
                )
            }
            LeapListError::Inconsistent { line } => write!(
                f,
                "line {line}: not in time order, or TAI-UTC changes by more than one second"
            ),
        }
    }
}

/// The largest list accepted: the real one has a few dozen entries.
const MAX_ENTRIES: usize = 1000;

fn number(text: &str, line: usize) -> Result<u64, LeapListError> {
    let why = "expected a decimal number";
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LeapListError::Syntax { line, why });
    }
    text.parse().map_err(|_| LeapListError::Syntax { line, why })
}

impl LeapList {
    /// Parses and checks the text of a `leap-seconds.list`.
    pub fn parse(text: &str) -> Result<LeapList, LeapListError> {
        let mut updated = None;
        let mut expires = None;
        let mut hash: Option<[u8; 20]> = None;
        let mut entries: Vec<Entry> = Vec::new();
        let mut hasher = Sha1::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix("#$") {
                let n = number(rest.trim(), line)?;
                hasher.update(n.to_string().as_bytes());
                updated = Some(n);
            } else if let Some(rest) = trimmed.strip_prefix("#@") {
                let n = number(rest.trim(), line)?;
                hasher.update(n.to_string().as_bytes());
                expires = Some(n);
            } else if let Some(rest) = trimmed.strip_prefix("#h") {
                hash = Some(parse_hash(rest, line)?);
            } else if trimmed.starts_with('#') {
                continue;
            } else {
                let data = trimmed.split('#').next().unwrap_or("");
                let mut fields = data.split_whitespace();
                let (Some(start), Some(offset), None) = (fields.next(), fields.next(), fields.next()) else {
                    return Err(LeapListError::Syntax {
                        line,
                        why: "expected `SECONDS OFFSET [# comment]`",
                    });
                };
                let start = number(start, line)?;
                let offset = number(offset, line)?;
                // The digits as written: leading zeros would change the hash, so keep the text.
                hasher.update(data.split_whitespace().collect::<String>().as_bytes());
                let offset = i32::try_from(offset).map_err(|_| LeapListError::Syntax {
                    line,
                    why: "offset out of range",
                })?;
                if let Some(last) = entries.last() {
                    if start <= last.start || (offset - last.tai_minus_utc).abs() != 1 {
                        return Err(LeapListError::Inconsistent { line });
                    }
                }
                if entries.len() == MAX_ENTRIES {
                    return Err(LeapListError::Syntax {
                        line,
                        why: "too many entries",
                    });
                }
                entries.push(Entry {
                    start,
                    tai_minus_utc: offset,
                });
            }
        }
        let updated = updated.ok_or(LeapListError::Missing("#$ (last update) line"))?;
        let expires = expires.ok_or(LeapListError::Missing("#@ (expiry) line"))?;
        let hash = hash.ok_or(LeapListError::Missing("#h (SHA-1) line"))?;
        if entries.is_empty() {
            return Err(LeapListError::Missing("leap second entry"));
        }
        if hasher.finalize().as_slice() != hash {
            return Err(LeapListError::HashMismatch);
        }
        Ok(LeapList {
            updated,
            expires,
            entries,
        })
    }

    /// TAI − UTC at NTP second `t` (era 0), or `None` before the first entry (1972).
    pub fn tai_minus_utc_at(&self, t: u64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start <= t);
        i.checked_sub(1).map(|i| self.entries[i].tai_minus_utc)
    }

    /// The first leap after NTP second `t`: when it takes effect and by how much TAI − UTC
    /// changes (+1 an inserted second, −1 a deleted one).
    pub fn next_leap_after(&self, t: u64) -> Option<(u64, i32)> {
        let i = self.entries.partition_point(|e| e.start <= t);
        let next = self.entries.get(i)?;
        let before = i
            .checked_sub(1)
            .map_or(next.tai_minus_utc, |j| self.entries[j].tai_minus_utc);
        Some((next.start, next.tai_minus_utc - before))
    }

    /// Whether the list has expired at NTP second `t`: it then says nothing about leaps after
    /// its expiry, and a newer one is needed.
    pub fn expired_at(&self, t: u64) -> bool {
        t >= self.expires
    }
}

fn parse_hash(text: &str, line: usize) -> Result<[u8; 20], LeapListError> {
    let why = "expected five groups of eight hex digits";
    let mut out = [0u8; 20];
    let mut groups = 0;
    for (g, word) in text.split_whitespace().enumerate() {
        if g >= 5 || word.len() != 8 {
            return Err(LeapListError::Syntax { line, why });
        }
        let value = u32::from_str_radix(word, 16).map_err(|_| LeapListError::Syntax { line, why })?;
        out[g * 4..g * 4 + 4].copy_from_slice(&value.to_be_bytes());
        groups += 1;
    }
    if groups != 5 {
        return Err(LeapListError::Syntax { line, why });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The data of tzdata's leap-seconds.list (2025 edition, expiring 2026-06-28), comments cut
    /// short: the hash covers only the numbers.
    const LIST: &str = "\
#	This file is a copy of the IERS/IETF list (test data).
#$	 3960835200
#@	3991593600
2272060800	10	# 1 Jan 1972
2287785600	11	# 1 Jul 1972
2303683200	12	# 1 Jan 1973
2335219200	13	# 1 Jan 1974
2366755200	14	# 1 Jan 1975
2398291200	15	# 1 Jan 1976
2429913600	16	# 1 Jan 1977
2461449600	17	# 1 Jan 1978
2492985600	18	# 1 Jan 1979
2524521600	19	# 1 Jan 1980
2571782400	20	# 1 Jul 1981
2603318400	21	# 1 Jul 1982
2634854400	22	# 1 Jul 1983
2698012800	23	# 1 Jul 1985
2776982400	24	# 1 Jan 1988
2840140800	25	# 1 Jan 1990
2871676800	26	# 1 Jan 1991
2918937600	27	# 1 Jul 1992
2950473600	28	# 1 Jul 1993
2982009600	29	# 1 Jul 1994
3029443200	30	# 1 Jan 1996
3076704000	31	# 1 Jul 1997
3124137600	32	# 1 Jan 1999
3345062400	33	# 1 Jan 2006
3439756800	34	# 1 Jan 2009
3550089600	35	# 1 Jul 2012
3644697600	36	# 1 Jul 2015
3692217600	37	# 1 Jan 2017
#h	49db2447 571e5e1b 2f002a53 9c8da8e4 39b8e49e
";

    #[test]
    fn the_real_list_parses_and_answers() {
        let list = LeapList::parse(LIST).unwrap();
        assert_eq!(
            (list.updated, list.expires, list.entries.len()),
            (3960835200, 3991593600, 28)
        );
        assert_eq!(list.tai_minus_utc_at(2272060799), None, "before 1972");
        assert_eq!(list.tai_minus_utc_at(2272060800), Some(10));
        assert_eq!(
            list.tai_minus_utc_at(3692217599),
            Some(36),
            "the last second of 2016"
        );
        assert_eq!(list.tai_minus_utc_at(3692217600), Some(37));
        assert_eq!(list.tai_minus_utc_at(u64::MAX), Some(37));
        assert_eq!(list.next_leap_after(3644697600), Some((3692217600, 1)));
        assert_eq!(list.next_leap_after(3692217600), None);
        // 2026-06-28 00:00 UTC is the expiry.
        assert!(!list.expired_at(3991593599));
        assert!(list.expired_at(3991593600));
    }

    #[test]
    fn the_copy_on_this_machine_parses_when_there_is_one() {
        // tzdata's own file, whatever its edition: the hash scheme is the same.
        if let Ok(text) = std::fs::read_to_string("/usr/share/zoneinfo/leap-seconds.list") {
            let list = LeapList::parse(&text).expect("tzdata's list");
            assert!(list.tai_minus_utc_at(list.entries.last().unwrap().start).unwrap() >= 37);
        }
    }

    #[test]
    fn damage_is_refused_with_the_reason() {
        let edited = LIST.replace("3692217600\t37", "3692217600\t38");
        assert_eq!(
            LeapList::parse(&edited),
            Err(LeapListError::Inconsistent { line: 31 }),
            "an offset jumping by two"
        );
        let later = LIST.replace("#@\t3991593600", "#@\t3991593601");
        assert_eq!(LeapList::parse(&later), Err(LeapListError::HashMismatch));
        let unhashed: String = LIST
            .lines()
            .filter(|l| !l.starts_with("#h"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            LeapList::parse(&unhashed),
            Err(LeapListError::Missing("#h (SHA-1) line"))
        );
        let garbage = LIST.replace("2287785600\t11", "2287785600\televen");
        assert_eq!(
            LeapList::parse(&garbage).unwrap_err().to_string(),
            "line 5: expected a decimal number"
        );
        let swapped = LIST.replace("2287785600\t11", "2272060700\t11");
        assert_eq!(
            LeapList::parse(&swapped),
            Err(LeapListError::Inconsistent { line: 5 })
        );
        assert_eq!(
            LeapList::parse(""),
            Err(LeapListError::Missing("#$ (last update) line"))
        );
        let short_hash = LIST.replace("39b8e49e\n", "39b8e4\n");
        assert!(matches!(
            LeapList::parse(&short_hash),
            Err(LeapListError::Syntax { line: 32, .. })
        ));
    }

    #[test]
    fn the_fixture_file_is_the_same_list() {
        let file = include_str!("../../tests/data/leap-seconds.list");
        assert_eq!(LeapList::parse(file).unwrap(), LeapList::parse(LIST).unwrap());
    }

    #[test]
    fn a_truncated_list_is_refused_wherever_it_was_cut() {
        // Cut anywhere (the hash line lost, cut short, or a number cut short), a shortened
        // list never passes for a whole one.
        let whole = LIST.trim_end();
        for cut in 0..whole.len() {
            let Some(text) = whole.get(..cut) else { continue };
            let result = LeapList::parse(text);
            assert!(result.is_err(), "cut at {cut}: {result:?}");
        }
        let without_hash = &whole[..whole.rfind("#h").unwrap()];
        assert_eq!(
            LeapList::parse(without_hash),
            Err(LeapListError::Missing("#h (SHA-1) line"))
        );
        // A line lost (a partial copy that kept its hash line): the last leap, whose loss
        // leaves the data consistent, fails the hash.
        let lost: String = LIST
            .lines()
            .filter(|l| !l.starts_with("3692217600"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(LeapList::parse(&lost), Err(LeapListError::HashMismatch));
    }

    #[test]
    fn expiry_is_judged_against_the_instant_asked_about() {
        let list = LeapList::parse(LIST).unwrap();
        // Valid up to the second before 2026-06-28T00:00:00Z, expired from it on; what it
        // says of the past stays true (TAI-UTC 37 s), and it knows of no leap to come.
        assert!(!list.expired_at(list.expires - 1));
        assert!(list.expired_at(list.expires));
        assert_eq!(list.tai_minus_utc_at(list.expires + 86_400 * 365), Some(37));
        assert_eq!(list.next_leap_after(list.expires - 1), None);
    }

    #[test]
    fn a_deleted_second_is_a_leap_of_minus_one() {
        // A list with a negative leap, its hash computed as the format says.
        let data = ["3900000000", "3990000000", "3692217600", "37", "3950000000", "36"];
        let hash = Sha1::digest(data.concat().as_bytes());
        let hex: Vec<String> = hash
            .chunks(4)
            .map(|c| format!("{:08x}", u32::from_be_bytes(c.try_into().unwrap())))
            .collect();
        let text = format!(
            "#$ 3900000000\n#@ 3990000000\n3692217600 37\n3950000000 36 # a deleted second\n#h {}\n",
            hex.join(" ")
        );
        let list = LeapList::parse(&text).unwrap();
        assert_eq!(list.next_leap_after(3940000000), Some((3950000000, -1)));
        assert_eq!(list.tai_minus_utc_at(3950000000), Some(36));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_fails_without_panicking(text in "[#$@h0-9a-f \\t\\n]{0,400}") {
            let _ = LeapList::parse(&text);
        }

        #[test]
        fn edits_to_a_digit_are_caught(line in 3usize..31, col in 0usize..10, digit in 0u8..10) {
            let mut lines: Vec<String> = LIST.lines().map(String::from).collect();
            let l = &mut lines[line - 1];
            let old = l.as_bytes()[col];
            prop_assume!(old.is_ascii_digit() && old != b'0' + digit);
            l.replace_range(col..col + 1, &((b'0' + digit) as char).to_string());
            let text = lines.join("\n");
            prop_assert!(LeapList::parse(&text).is_err());
        }
    }
}
