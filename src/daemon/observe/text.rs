//! The classic Prometheus text format (version 0.0.4) from the OpenMetrics text that
//! prometheus-client writes.
//!
//! Why: prometheus-client writes only OpenMetrics, where a counter family `x` is declared as
//! `# TYPE x counter` and its sample is `x_total`. Parsers of the classic format (Prometheus
//! before it negotiates OpenMetrics, `promtool check metrics` as Debian ships it, most ad-hoc
//! scrapers) take the TYPE line's name as the sample's name, so they see an untyped, undocumented
//! `x_total` and a counter without samples. The HTTP endpoint therefore serves OpenMetrics to
//! clients that ask for it (`Accept: application/openmetrics-text`) and this conversion to
//! everyone else.
//!
//! The conversion covers what the exporter writes: HELP/TYPE renamed for counters (`_total`)
//! and infos (`_info`, typed gauge), `# UNIT` lines and `# EOF` dropped, samples unchanged.

/// The Content-Type of the classic text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The Content-Type of OpenMetrics text.
pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Converts OpenMetrics text (as prometheus-client writes it) into the 0.0.4 text format.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // prometheus-client writes HELP before TYPE; the HELP line is held until the TYPE line
    // says what the family's sample name is.
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (sample_name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            if let Some((help_name, help)) = pending_help.take() {
                if help_name == name {
                    out.push_str(&format!("# HELP {sample_name} {help}\n"));
                }
            }
            out.push_str(&format!("# TYPE {sample_name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_infos_units_and_eof() {
        let om = "# HELP strata_requests Requests.\n\
                  # TYPE strata_requests counter\n\
                  strata_requests_total{path=\"socket\"} 3\n\
                  # HELP strata_sent_bytes Bytes sent.\n\
                  # TYPE strata_sent_bytes counter\n\
                  # UNIT strata_sent_bytes bytes\n\
                  strata_sent_bytes_total 96\n\
                  # HELP strata_build Build.\n\
                  # TYPE strata_build info\n\
                  strata_build_info{version=\"1\"} 1\n\
                  # HELP strata_rt Response.\n\
                  # TYPE strata_rt histogram\n\
                  strata_rt_sum 0.5\n\
                  # EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP strata_requests_total Requests.\n\
             # TYPE strata_requests_total counter\n\
             strata_requests_total{path=\"socket\"} 3\n\
             # HELP strata_sent_bytes_total Bytes sent.\n\
             # TYPE strata_sent_bytes_total counter\n\
             strata_sent_bytes_total 96\n\
             # HELP strata_build_info Build.\n\
             # TYPE strata_build_info gauge\n\
             strata_build_info{version=\"1\"} 1\n\
             # HELP strata_rt Response.\n\
             # TYPE strata_rt histogram\n\
             strata_rt_sum 0.5\n"
        );
    }
}
