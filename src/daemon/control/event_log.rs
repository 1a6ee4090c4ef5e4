//! The control engine's events as log lines: the message the event's Display writes, and its
//! fields (`event`, `source`, `stratum`, ...) for `--log-format json` and for anyone grepping
//! `event=` in the text format. One line per event.

use log::kv::Value;
use log::Level;

use crate::proto::control::events::{Event, KissAction};

/// A field's value, owned until the line is written.
enum Field {
    Str(String),
    Unsigned(u64),
    Float(f64),
}

impl Field {
    fn value(&self) -> Value<'_> {
        match self {
            Field::Str(s) => Value::from(s.as_str()),
            Field::Unsigned(n) => Value::from(*n),
            Field::Float(x) => Value::from(*x),
        }
    }
}

/// The event's name and fields.
fn describe(event: &Event) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::*;
    let source = |addr: &std::net::SocketAddr| ("source", Str(addr.to_string()));
    match event {
        Event::Reachable { addr } => ("source_reachable", vec![source(addr)]),
        Event::Unreachable { addr } => ("source_unreachable", vec![source(addr)]),
        Event::Kiss { addr, code, action } => (
            "kiss_of_death",
            vec![
                source(addr),
                ("code", Str(String::from_utf8_lossy(code).into_owned())),
                (
                    "action",
                    Str(match action {
                        KissAction::SlowedDown { .. } => "slowed_down",
                        KissAction::Dropped => "dropped",
                        KissAction::Ignored => "ignored",
                    }
                    .into()),
                ),
            ],
        ),
        Event::Unusable { addr, why } => (
            "source_unusable",
            vec![source(addr), ("why", Str(format!("{why:?}")))],
        ),
        Event::Falseticker { addr } => ("source_falseticker", vec![source(addr)]),
        Event::Selected { addr, stratum } => (
            "source_selected",
            vec![source(addr), ("stratum", Unsigned(*stratum as u64))],
        ),
        Event::Step { seconds } => ("clock_step", vec![("seconds", Float(*seconds))]),
        Event::CorrectionRefused { refusal } => (
            "correction_refused",
            vec![("seconds", Float(refusal.error)), ("limit", Float(refusal.limit))],
        ),
        Event::ConstraintRefused { seconds, low, high } => (
            "correction_outside_constraints",
            vec![
                ("seconds", Float(*seconds)),
                ("low", Float(*low)),
                ("high", Float(*high)),
            ],
        ),
        Event::Overridden { seconds } => ("correction_overridden", vec![("seconds", Float(*seconds))]),
        Event::Synchronized { addr, stratum } => (
            "sync_state",
            vec![
                ("state", Str("synchronized".into())),
                source(addr),
                ("stratum", Unsigned(*stratum as u64)),
            ],
        ),
        Event::Holdover { reason } => (
            "sync_state",
            vec![("state", Str("holdover".into())), ("reason", Str(reason.clone()))],
        ),
        Event::Unsynchronized { reason } => (
            "sync_state",
            vec![
                ("state", Str("unsynchronized".into())),
                ("reason", Str(reason.clone())),
            ],
        ),
        Event::Local { stratum } => (
            "sync_state",
            vec![
                ("state", Str("local".into())),
                ("stratum", Unsigned(*stratum as u64)),
            ],
        ),
        Event::LeapScheduled {
            midnight,
            delta,
            source,
        } => (
            "leap_scheduled",
            vec![
                ("midnight", Unsigned((*midnight).max(0) as u64)),
                (
                    "kind",
                    Str(if *delta > 0 { "inserted" } else { "deleted" }.into()),
                ),
                ("decided_by", Str(source.label().into())),
            ],
        ),
        Event::LeapCancelled => ("leap_cancelled", vec![]),
        Event::LeapDone { delta } => (
            "leap_done",
            vec![(
                "kind",
                Str(if *delta > 0 { "inserted" } else { "deleted" }.into()),
            )],
        ),
        Event::Measurement(_) => ("measurement", vec![]),
        Event::Statistics(_) => ("statistics", vec![]),
        #[allow(unreachable_patterns)]
        _ => ("control", vec![]),
    }
}

/// Writes the event at `level` under `target` (the caller's module, which RUST_LOG filters
/// name), with its fields.
pub fn log(event: &Event, level: Level, target: &str) {
    if level > log::max_level() {
        return;
    }
    let (name, fields) = describe(event);
    let mut kvs: Vec<(&str, Value)> = Vec::with_capacity(fields.len() + 1);
    kvs.push(("event", Value::from(name)));
    kvs.extend(fields.iter().map(|(k, f)| (*k, f.value())));
    log::logger().log(
        &log::Record::builder()
            .level(level)
            .target(target)
            .args(format_args!("{event}"))
            .key_values(&kvs)
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_state_changes_and_selections_have_their_fields() {
        let addr = "192.0.2.1:123".parse().unwrap();
        let (name, fields) = describe(&Event::Synchronized { addr, stratum: 2 });
        assert_eq!(name, "sync_state");
        let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["state", "source", "stratum"]);
        assert_eq!(fields[0].1.value().to_string(), "synchronized");
        assert_eq!(fields[1].1.value().to_string(), "192.0.2.1:123");
        let (name, fields) = describe(&Event::Selected { addr, stratum: 1 });
        assert_eq!((name, fields.len()), ("source_selected", 2));
        let (name, fields) = describe(&Event::Step { seconds: -0.5 });
        assert_eq!(name, "clock_step");
        assert_eq!(fields[0].1.value().to_f64(), Some(-0.5));
    }
}
