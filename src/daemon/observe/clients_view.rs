//! `strata clients` as text: the most active clients, like `chronyc clients`.

use std::fmt::Write;

use super::report::{ClientsReport, Report};

/// The table of the `n` most active clients, or why there is none.
pub fn render(r: &Report, n: usize) -> String {
    let Some(c) = &r.clients else {
        return "No client list: sampling is off on this server (clients_sample = 0).\n".into();
    };
    let mut out = String::new();
    header(&mut out, c);
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>10} {:>8} {:>10} {:>9} {:>9}",
        "client", "requests", "served", "kod", "dropped", "rate/s", "last"
    );
    for t in c.clients.iter().take(n) {
        let dropped = t.limited + t.denied + t.over_quota;
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>10} {:>8} {:>10} {:>9.1} {:>8.0}s{}",
            t.client,
            t.requests,
            t.served,
            t.kissed,
            dropped,
            t.rate,
            t.last_seen_ago,
            if dropped > 0 { "  limited" } else { "" }
        );
    }
    if c.clients.is_empty() {
        out.push_str("(no client sampled yet)\n");
    }
    out
}

fn header(out: &mut String, c: &ClientsReport) {
    let _ = writeln!(
        out,
        "Most active clients, estimated from 1 in {} requests sampled ({} sample(s) lost); \
         dropped = rate limited, denied or over the total cap",
        1u64 << c.sample_shift,
        c.samples_lost
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::admission::talkers::Talker;

    #[test]
    fn the_table_lists_clients_and_says_when_sampling_is_off() {
        let (observed, _writer) = super::super::report::test_observed();
        let mut report = observed.report();
        assert!(render(&report, 10).contains("sampling is off"));
        report.clients = Some(ClientsReport {
            sample_shift: 4,
            samples_lost: 0,
            clients: vec![Talker {
                client: "198.51.100.7".into(),
                requests: 1600,
                served: 400,
                kissed: 0,
                limited: 1200,
                denied: 0,
                over_quota: 0,
                rate: 160.0,
                last_seen_ago: 0.2,
                error: 0,
            }],
        });
        let text = render(&report, 10);
        assert!(text.contains("1 in 16"), "{text}");
        let row = text.lines().find(|l| l.starts_with("198.51.100.7")).unwrap();
        assert!(
            row.contains("1600") && row.contains("1200") && row.contains("limited"),
            "{row}"
        );
    }
}
