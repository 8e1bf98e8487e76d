//! Database values, decoupled from the driver.
//!
//! The source turns each PostgreSQL value into a [`Cell`]; evaluation reads cells. Keeping the driver's
//! types out of evaluation is what lets evaluation be unit-tested with plain data.

use chrono::{DateTime, NaiveDateTime, Utc};

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Timestamp(DateTime<Utc>),
    /// A value of a PostgreSQL type the exporter does not decode; holds the type name.
    Unsupported(String),
}

/// A query's result: column names and rows of cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl ResultSet {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

impl Cell {
    /// Short description for messages: the value, truncated, or the type.
    pub fn describe(&self) -> String {
        match self {
            Cell::Null => "NULL".to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Text(s) => {
                let mut t: String = s.chars().take(40).collect();
                if t.len() < s.len() {
                    t.push('…');
                }
                format!("'{t}'")
            }
            Cell::Timestamp(t) => t.to_rfc3339(),
            Cell::Unsupported(ty) => format!("a value of unsupported type {ty} (cast it in the query)"),
        }
    }

    /// The text of a label value, or `None` for NULL.
    pub fn label_text(&self) -> Option<String> {
        match self {
            Cell::Null | Cell::Unsupported(_) => None,
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) => Some(crate::eval::exposition::format_value(*f)),
            Cell::Text(s) => Some(s.clone()),
            Cell::Timestamp(t) => Some(t.to_rfc3339()),
        }
    }

    /// An integer: integer cells, integral floats, and text holding an integer (e.g. from `->>`).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            Cell::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e15 => Some(*f as i64),
            Cell::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A float: numbers, and text holding a number.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            Cell::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Cell::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A truth value: booleans, text `true`/`false`, and the integers 0 and 1 (SQLite, which has no
    /// boolean type, gives JSON `true` as 1).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Cell::Bool(b) => Some(*b),
            Cell::Int(0) => Some(false),
            Cell::Int(1) => Some(true),
            Cell::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" => Some(true),
                "false" | "f" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A point in time: timestamps, epoch seconds, or text in RFC 3339 (a comma as decimal
    /// separator is accepted, as some tools write it) or PostgreSQL's own text form.
    ///
    /// A number of magnitude [`EPOCH_MILLIS_FROM`] or more is epoch milliseconds, as JSON APIs
    /// commonly give them: read as seconds it would be a date after the year 5000.
    pub fn as_timestamp(&self) -> Option<DateTime<Utc>> {
        match self {
            Cell::Timestamp(t) => Some(*t),
            Cell::Int(ms) if ms.unsigned_abs() >= EPOCH_MILLIS_FROM as u64 => DateTime::from_timestamp_millis(*ms),
            Cell::Int(secs) => DateTime::from_timestamp(*secs, 0),
            Cell::Float(ms) if ms.is_finite() && ms.abs() >= EPOCH_MILLIS_FROM => {
                DateTime::from_timestamp_millis(ms.round() as i64)
            }
            Cell::Float(secs) if secs.is_finite() => DateTime::from_timestamp_millis((secs * 1000.0).round() as i64),
            Cell::Text(s) => parse_timestamp_text(s),
            _ => None,
        }
    }
}

/// Epoch numbers from this magnitude on are milliseconds (10^11 s is the year 5138; 10^11 ms is 1973).
pub const EPOCH_MILLIS_FROM: f64 = 1.0e11;

fn parse_timestamp_text(text: &str) -> Option<DateTime<Utc>> {
    let s = text.trim().replace(',', ".");
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Some(t.with_timezone(&Utc));
    }
    // PostgreSQL's text form: "2025-06-01 10:00:00.123+00".
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(&s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    // No zone at all: read as UTC.
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_decimal_timestamps_parse() {
        let t = Cell::Text("2025-06-01T10:00:00,123Z".into()).as_timestamp().unwrap();
        assert_eq!(t.timestamp_millis(), 1748772000123);
        let t = Cell::Text("2025-06-01T10:00:00.5+02:00".into()).as_timestamp().unwrap();
        assert_eq!(t.timestamp_millis(), 1748764800500);
        let t = Cell::Text("2025-06-01 10:00:00+00".into()).as_timestamp().unwrap();
        assert_eq!(t.timestamp(), 1748772000);
        assert_eq!(Cell::Text("yesterday".into()).as_timestamp(), None);
        assert_eq!(Cell::Null.as_timestamp(), None);
    }

    #[test]
    fn integers_are_read_strictly() {
        assert_eq!(Cell::Text("0".into()).as_integer(), Some(0));
        assert_eq!(Cell::Text("-3".into()).as_integer(), Some(-3));
        assert_eq!(Cell::Text("1.5".into()).as_integer(), None);
        assert_eq!(Cell::Text("abc".into()).as_integer(), None);
        assert_eq!(Cell::Float(2.0).as_integer(), Some(2));
        assert_eq!(Cell::Float(2.5).as_integer(), None);
        assert_eq!(Cell::Null.as_integer(), None);
    }

    #[test]
    fn sqlite_shapes_read_as_their_json() {
        assert_eq!(Cell::Int(1).as_bool(), Some(true));
        assert_eq!(Cell::Int(0).as_bool(), Some(false));
        assert_eq!(Cell::Int(2).as_bool(), None);
        let ms = Cell::Int(1748772000123).as_timestamp().unwrap();
        assert_eq!(ms.timestamp_millis(), 1748772000123);
        assert_eq!(Cell::Int(1748772000).as_timestamp().unwrap().timestamp(), 1748772000);
        assert_eq!(Cell::Float(1748772000123.0).as_timestamp().unwrap().timestamp_millis(), 1748772000123);
    }
}
