//! Reading strata's exit log, where the XDP program's and the responders' counters are printed
//! as `label N` lists ("xdp program on srv0: seen 10, redirected 4, answered 6, ...").

/// The first line of `log` that contains `start`.
pub fn log_line<'a>(log: &'a str, start: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(start))
        .unwrap_or_else(|| panic!("no line with {start:?} in the log:\n{log}"))
}

/// The number after ` label ` in `line` ("redirected 5" -> 5).
pub fn log_field(line: &str, label: &str) -> u64 {
    let at = line
        .find(&format!(" {label} "))
        .unwrap_or_else(|| panic!("no {label:?} in {line}"));
    line[at + label.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {line}"))
}
