//! Times relative to now in fixtures (`now`, `-2h`, `now - 3h 1m`), so that freshness can be
//! tested without dates that go stale.
//!
//! Where they are read: every value of a column of a time type (`timestamptz`, `timestamp`,
//! `date`, `datetime`), and every string inside a JSON value (a `json`/`jsonb` cell, a response
//! body), where rules read times as text. Anywhere a value is written, the object
//! `{relative_time: -2h, format: "%Y-%m-%dT%H:%M:%S,%3fZ"}` gives the time in a chosen
//! strftime format, or `format: epoch` as seconds since the epoch. A resolved time is RFC 3339 with
//! milliseconds, in UTC.

use chrono::{DateTime, SecondsFormat, Utc};

/// The key of the object form.
pub(super) const RELATIVE_TIME_KEY: &str = "relative_time";
/// The key of the object form's format.
pub(super) const FORMAT_KEY: &str = "format";
/// The format that gives seconds since the epoch (a number).
pub(super) const EPOCH_FORMAT: &str = "epoch";

/// What the grammar of a relative time is, for messages.
pub(super) const GRAMMAR: &str = "write now, -2h, now - 3h 1m or +30s";

/// The offset `text` means, when it is a relative time.
pub(super) fn parse_relative(text: &str) -> Option<chrono::Duration> {
    let t = text.trim();
    let rest = t.strip_prefix("now").unwrap_or(t).trim_start();
    if rest.is_empty() {
        return (t == "now").then_some(chrono::Duration::zero());
    }
    let (sign, amount) = match rest.as_bytes()[0] {
        b'-' => (-1, &rest[1..]),
        b'+' => (1, &rest[1..]),
        _ => return None,
    };
    let d = humantime::parse_duration(amount.trim()).ok()?;
    let d = chrono::Duration::from_std(d).ok()?;
    Some(if sign < 0 { -d } else { d })
}

/// Whether `sql_type` holds times.
pub(super) fn is_time_type(sql_type: &str) -> bool {
    let t = sql_type.to_ascii_lowercase();
    t.starts_with("timestamp") || t == "date" || t.starts_with("datetime")
}

/// Where a value is, which decides whether its strings are read as relative times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// A time column, or inside a JSON value: a relative-time string is resolved.
    Resolving,
    /// Any other column: only the object form is resolved.
    Literal,
}

/// `value` with its relative times resolved against `now`; an object form that does not parse is
/// an error worded for the test's author.
pub(super) fn resolve(
    value: &serde_json::Value,
    now: DateTime<Utc>,
    place: Place,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    match value {
        Value::String(s) if place == Place::Resolving => Ok(match parse_relative(s) {
            Some(offset) => Value::String(rfc3339(now + offset)),
            None => value.clone(),
        }),
        Value::Object(map) if map.contains_key(RELATIVE_TIME_KEY) => object_form(map, now),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), resolve(v, now, Place::Resolving)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            let inner = if place == Place::Resolving { Place::Resolving } else { Place::Literal };
            items.iter().map(|v| resolve(v, now, inner)).collect::<Result<_, _>>().map(Value::Array)
        }
        other => Ok(other.clone()),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `{relative_time: -2h, format: ...}` as a string (or a number for `epoch`).
fn object_form(
    map: &serde_json::Map<String, serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, String> {
    let text = map.get(RELATIVE_TIME_KEY).and_then(|v| v.as_str()).unwrap_or_default();
    let Some(offset) = parse_relative(text) else {
        return Err(format!("{RELATIVE_TIME_KEY} '{text}' is not a time relative to now; {GRAMMAR}"));
    };
    let at = now + offset;
    match map.get(FORMAT_KEY).and_then(|v| v.as_str()) {
        None => Ok(serde_json::Value::String(rfc3339(at))),
        Some(EPOCH_FORMAT) => Ok(serde_json::json!(at.timestamp_millis() as f64 / 1000.0)),
        Some(f) => {
            let items: Vec<chrono::format::Item> = chrono::format::StrftimeItems::new(f).collect();
            if items.iter().any(|i| matches!(i, chrono::format::Item::Error)) {
                return Err(format!(
                    "{FORMAT_KEY} '{f}' is not a strftime format; write e.g. %Y-%m-%dT%H:%M:%S%.3fZ, or {EPOCH_FORMAT}"
                ));
            }
            Ok(serde_json::Value::String(at.format_with_items(items.into_iter()).to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_and_resolve() {
        assert_eq!(parse_relative("now"), Some(chrono::Duration::zero()));
        assert_eq!(parse_relative("-2h"), Some(chrono::Duration::hours(-2)));
        assert_eq!(parse_relative("now - 3h 1m"), Some(-chrono::Duration::minutes(181)));
        assert_eq!(parse_relative("+30s"), Some(chrono::Duration::seconds(30)));
        assert_eq!(parse_relative("2h"), None);
        assert_eq!(parse_relative("nowhere"), None);
        assert_eq!(parse_relative("-2 apples"), None);
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        let doc = serde_json::json!({"ended": "-1h", "n": "-1", "at": {"relative_time": "-1h", "format": "%Y-%m-%dT%H:%M:%S,%3fZ"}});
        let out = resolve(&doc, now, Place::Literal).unwrap();
        assert_eq!(out["ended"], "2026-01-02T02:04:05.000Z");
        assert_eq!(out["n"], "-1");
        assert_eq!(out["at"], "2026-01-02T02:04:05,000Z");
        assert_eq!(resolve(&serde_json::json!("-1h"), now, Place::Literal).unwrap(), "-1h");
        let epoch = serde_json::json!({"relative_time": "now", "format": "epoch"});
        assert_eq!(resolve(&epoch, now, Place::Literal).unwrap(), serde_json::json!(1767323045.0));
        assert!(resolve(&serde_json::json!({"relative_time": "soon"}), now, Place::Literal).is_err());
    }
}
