//! Time constraints (OpenNTPD's idea): the `Date` header of an HTTPS server strata trusts says,
//! to a second, what time it is; with the round trip of the request, that bounds the true time
//! independently of NTP. A source whose offset falls outside the bounds is not used, and a
//! correction outside them is refused, so that one forged or broken upstream cannot move the
//! served time by minutes or hours even when it is the only source.
//!
//! Pure: the URL, the response head and the bounds; fetching is in src/daemon.

use std::fmt;

const SECOND: f64 = 1e9;
/// The Date header has one-second resolution and servers' clocks are not perfect: the true time
/// is taken to be within this of the Date (plus half the round trip).
pub const DATE_UNCERTAINTY: f64 = 1.0;
/// How fast a bound widens as it ages (s/s): the largest frequency error a kernel clock may
/// have (the kernel's own limit of adjustment).
pub const MAX_DRIFT: f64 = 500e-6;

/// An `https://HOST[:PORT][/PATH]` URL to fetch the Date of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintUrl {
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

impl ConstraintUrl {
    pub fn parse(text: &str) -> Result<ConstraintUrl, String> {
        let rest = text
            .strip_prefix("https://")
            .ok_or_else(|| format!("{text:?}: a constraint is an https:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let bad = |what: &str| format!("{text:?}: {what}");
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("not [ADDR]:PORT")),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("bad port"))?,
            None => 443,
        };
        let host_ok = !host.is_empty()
            && host.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok {
            return Err(bad("bad host"));
        }
        // The path goes into the request line as it is: no spaces or control characters.
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') || path.contains('#') {
            return Err(bad("bad path"));
        }
        Ok(ConstraintUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The request: a minimal HTTP/1.1 GET that closes the connection.
    pub fn request(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let host = if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: strata\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path
        )
    }
}

impl fmt::Display for ConstraintUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "https://{host}:{}{}", self.port, self.path)
    }
}

/// Where a response's head ends (after the blank line), if it has.
pub fn head_end(response: &[u8]) -> Option<usize> {
    response.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The Date header of a response head (status line and headers), as Unix seconds.
pub fn response_date(head: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(head).map_err(|_| "the response head is not text".to_string())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1 response: {:?}",
            status.chars().take(40).collect::<String>()
        ));
    }
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("date") {
                return parse_http_date(value.trim());
            }
        }
    }
    Err("the response has no Date header".to_string())
}

/// An IMF-fixdate (RFC 9110 5.6.7), `Sun, 06 Nov 1994 08:49:37 GMT`, as Unix seconds. (The
/// obsolete formats are not accepted: every current server sends this one.)
pub fn parse_http_date(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an HTTP date");
    let w: Vec<&str> = text.split(' ').collect();
    if w.len() != 6 || w[5] != "GMT" || w[0].len() != 4 || !w[0].ends_with(',') {
        return Err(bad());
    }
    let number = |s: &str, len: usize| -> Result<i64, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let day = number(w[1], 2)?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == w[2]).ok_or_else(bad)? as i64 + 1;
    let year = number(w[3], 4)?;
    let hms: Vec<&str> = w[4].split(':').collect();
    if hms.len() != 3 {
        return Err(bad());
    }
    let (h, m, s) = (number(hms[0], 2)?, number(hms[1], 2)?, number(hms[2], 2)?);
    let leap_year = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap_year => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    // 60 seconds: a leap second, as the date grammar allows.
    if !(1..=days_in_month).contains(&day) || h > 23 || m > 59 || s > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One fetched Date: it bounds the offset of the true time from the kernel clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constraint {
    /// The offset it says (true time minus kernel time, seconds) at kernel time `at` (ns, the
    /// middle of the exchange), and how far off it may be then.
    offset: f64,
    half_width: f64,
    at: i64,
}

impl Constraint {
    /// A Date (`date_s`, Unix seconds) received in answer to a request sent at kernel time
    /// `sent` and answered at `received` (ns, CLOCK_REALTIME).
    pub fn new(date_s: i64, sent: i64, received: i64) -> Constraint {
        let (sent, received) = (sent.min(received), sent.max(received));
        let at = sent + (received - sent) / 2;
        let rtt = (received - sent) as f64 / SECOND;
        Constraint {
            // The Date is truncated: the server's time was within the second after it.
            offset: date_s as f64 + 0.5 - at as f64 / SECOND,
            half_width: DATE_UNCERTAINTY + rtt / 2.0,
            at,
        }
    }

    /// The bounds on the offset (true minus kernel time, seconds) at kernel time `now`, widened
    /// by the drift since it was fetched.
    pub fn bounds(&self, now: i64) -> (f64, f64) {
        let width = self.half_width + MAX_DRIFT * ((now - self.at).abs() as f64 / SECOND);
        (self.offset - width, self.offset + width)
    }

    /// The kernel clock was stepped by `step` seconds at kernel time `at` (before the step).
    pub fn clock_stepped(&mut self, step: f64) {
        self.offset -= step;
        self.at += (step * SECOND) as i64;
    }
}

/// The constraints in force: an offset passes when it is within a majority of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints(Vec<Constraint>);

/// What the constraints say of an offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// No constraint: nothing is checked.
    Unconstrained,
    Inside,
    /// Outside; the bounds of the median constraint, for the log.
    Outside {
        low: f64,
        high: f64,
    },
}

impl Constraints {
    pub fn new(list: Vec<Constraint>) -> Constraints {
        Constraints(list)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Judges `offset` (true minus kernel time, seconds) at kernel time `now`.
    pub fn check(&self, offset: f64, now: i64) -> Verdict {
        if self.0.is_empty() {
            return Verdict::Unconstrained;
        }
        let inside = self
            .0
            .iter()
            .filter(|c| {
                let (lo, hi) = c.bounds(now);
                (lo..=hi).contains(&offset)
            })
            .count();
        if inside * 2 > self.0.len() {
            return Verdict::Inside;
        }
        let (low, high) = self.median_bounds(now).expect("not empty");
        Verdict::Outside { low, high }
    }

    /// The bounds of the constraint whose offset is the median, at kernel time `now`.
    pub fn median_bounds(&self, now: i64) -> Option<(f64, f64)> {
        let mut sorted: Vec<&Constraint> = self.0.iter().collect();
        sorted.sort_by(|a, b| a.offset.total_cmp(&b.offset));
        sorted.get(sorted.len() / 2).map(|c| c.bounds(now))
    }

    pub fn clock_stepped(&mut self, step: f64) {
        for c in &mut self.0 {
            c.clock_stepped(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    /// 2023-11-14 22:13:20 UTC.
    const T: i64 = 1_700_000_000;

    #[test]
    fn urls_parse_and_make_requests() {
        let u = ConstraintUrl::parse("https://www.example.org").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("www.example.org", 443, "/")
        );
        assert!(u
            .request()
            .starts_with("GET / HTTP/1.1\r\nHost: www.example.org\r\n"));
        assert!(u.request().ends_with("Connection: close\r\n\r\n"));
        let u = ConstraintUrl::parse("https://198.18.0.1:8443/time?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("198.18.0.1", 8443, "/time?x=1")
        );
        assert!(u.request().contains("Host: 198.18.0.1:8443\r\n"));
        let u = ConstraintUrl::parse("https://[2001:db8::1]:444/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 444));
        assert_eq!(u.to_string(), "https://[2001:db8::1]:444/");
        for bad in [
            "http://example.org",
            "https://",
            "https://a:0/",
            "https://a:x/",
            "https://u@a/",
            "https://a/b c",
            "https://a/\r\nX: y",
            "https://[::1/",
        ] {
            assert!(ConstraintUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Ok(784_111_777));
        assert_eq!(parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"), Ok(T));
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"), Ok(951_782_400));
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "",
        ] {
            assert!(parse_http_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_date_header_of_a_response_head() {
        let head = b"HTTP/1.1 200 OK\r\nServer: x\r\ndate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(response_date(head), Ok(T));
        assert!(response_date(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n")
            .unwrap_err()
            .contains("no Date"));
        assert!(response_date(b"SSH-2.0-x\r\n\r\n").is_err());
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn a_date_bounds_the_offset_and_widens_with_age() {
        // The kernel clock is 3 s behind; the Date was produced in a 200 ms round trip.
        let sent = (T - 3) * S + 300_000_000;
        let received = sent + 200_000_000;
        let c = Constraint::new(T, sent, received);
        let (lo, hi) = c.bounds(received);
        assert!(lo < 3.0 && 3.0 < hi, "[{lo}, {hi}]");
        // ±(1 s + half the round trip), and 100 ms of drift allowance.
        assert!(hi - lo <= 2.0 * (DATE_UNCERTAINTY + 0.1) + 2e-4, "[{lo}, {hi}]");
        let cs = Constraints::new(vec![c]);
        assert_eq!(cs.check(3.0, received), Verdict::Inside);
        assert!(matches!(cs.check(3600.0, received), Verdict::Outside { .. }));
        assert!(matches!(cs.check(0.0, received), Verdict::Outside { .. }));
        // A day later the bound is 43 s wider each way.
        let (lo2, hi2) = c.bounds(received + 86_400 * S);
        assert!(((hi2 - hi) - 86_400.0 * MAX_DRIFT).abs() < 1e-6 && ((lo - lo2) - 43.2).abs() < 1e-6);
        assert_eq!(
            Constraints::default().check(1e6, received),
            Verdict::Unconstrained
        );
    }

    #[test]
    fn a_majority_of_constraints_decides_and_a_step_moves_them() {
        let at = T * S;
        let right = Constraint::new(T, at, at);
        let wrong = Constraint::new(T + 3600, at, at);
        let cs = Constraints::new(vec![right, wrong, right]);
        assert_eq!(cs.check(0.5, at), Verdict::Inside);
        assert!(matches!(cs.check(3600.5, at), Verdict::Outside { .. }));
        // Two of two needed: one bad constraint of two blocks everything (better than guessing).
        let two = Constraints::new(vec![right, wrong]);
        assert!(matches!(two.check(0.5, at), Verdict::Outside { .. }));
        // The kernel clock stepped 10 s forward: the offset to it is 10 s less.
        let mut one = Constraints::new(vec![right]);
        one.clock_stepped(10.0);
        assert_eq!(one.check(-9.5, at + 10 * S), Verdict::Inside);
        assert!(matches!(one.check(0.5, at + 10 * S), Verdict::Outside { .. }));
    }
}
