//! MySQL values decoded into [`Cell`]s, by one table of column types ([`mysql_decoded`]) that row
//! decoding and `--check-rules --db` share.
//!
//! Choices, each tested: `TINYINT(1)` and `BIT(1)` are booleans (MySQL's `BOOLEAN` is `TINYINT(1)`);
//! `BIGINT UNSIGNED` beyond `i64` is a float, as every sample value is; `DECIMAL` is an integer when
//! it has no fraction, else a float; `DATETIME` has no zone and is read as UTC, `TIMESTAMP` is
//! converted by the server to the session's `time_zone`, which the source sets to UTC; a binary
//! string is text when it is UTF-8 and otherwise a value the exporter cannot read, so a rule that
//! reads it fails for that target (`bad_value`) instead of exporting mangled text.

use mysql_async::consts::{ColumnFlags, ColumnType as MyType};
use mysql_async::{Column, Row, Value};

use crate::eval::cell::Cell;
use crate::source::seam::Decoded;

/// MySQL's character set number of binary strings (`BINARY`, `VARBINARY`, `BLOB`).
const BINARY_CHARSET: u16 = 63;

/// How a column is decoded; `None`: it is not (cast it in the query). The one list of supported
/// types.
pub(super) fn mysql_decoded(column: &Column) -> Option<Decoded> {
    use MyType::*;
    Some(match column.column_type() {
        MYSQL_TYPE_TINY | MYSQL_TYPE_BIT if column.column_length() == 1 => Decoded::Bool,
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_YEAR | MYSQL_TYPE_BIT => Decoded::Int,
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE | MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Decoded::Float,
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_NULL => Decoded::Text,
        MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_DATE
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP2 => Decoded::Timestamp,
        MYSQL_TYPE_JSON => Decoded::Json,
        _ => return None,
    })
}

/// The type's name as MySQL's documentation spells it, for messages.
pub(super) fn mysql_type_name(column: &Column) -> String {
    use MyType::*;
    let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let binary = column.character_set() == BINARY_CHARSET;
    let name = match column.column_type() {
        MYSQL_TYPE_TINY if column.column_length() == 1 => "TINYINT(1)",
        MYSQL_TYPE_TINY => "TINYINT",
        MYSQL_TYPE_SHORT => "SMALLINT",
        MYSQL_TYPE_INT24 => "MEDIUMINT",
        MYSQL_TYPE_LONG => "INT",
        MYSQL_TYPE_LONGLONG => "BIGINT",
        MYSQL_TYPE_YEAR => "YEAR",
        MYSQL_TYPE_BIT => "BIT",
        MYSQL_TYPE_FLOAT => "FLOAT",
        MYSQL_TYPE_DOUBLE => "DOUBLE",
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => "DECIMAL",
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING if binary => "VARBINARY",
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => "VARCHAR",
        MYSQL_TYPE_STRING if binary => "BINARY",
        MYSQL_TYPE_STRING => "CHAR",
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB if binary => "BLOB",
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB => "TEXT",
        MYSQL_TYPE_ENUM => "ENUM",
        MYSQL_TYPE_SET => "SET",
        MYSQL_TYPE_NULL => "NULL",
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => "DATETIME",
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => "TIMESTAMP",
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "DATE",
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => "TIME",
        MYSQL_TYPE_JSON => "JSON",
        MYSQL_TYPE_GEOMETRY => "GEOMETRY",
        _ => "an unknown type",
    };
    if unsigned {
        format!("{name} UNSIGNED")
    } else {
        name.to_string()
    }
}

/// Decodes a row into cells; a type we do not decode becomes [`Cell::Unsupported`], which fails
/// only the rule or target that reads it.
pub(super) fn mysql_cells(row: Row) -> Vec<Cell> {
    let columns = row.columns();
    row.unwrap().into_iter().zip(columns.iter()).map(|(v, c)| mysql_cell(v, c)).collect()
}

fn mysql_cell(value: Value, column: &Column) -> Cell {
    let Some(kind) = mysql_decoded(column) else {
        return match value {
            Value::NULL => Cell::Null,
            _ => Cell::Unsupported(mysql_type_name(column)),
        };
    };
    match (kind, value) {
        (_, Value::NULL) => Cell::Null,
        (Decoded::Bool, Value::Int(i)) => Cell::Bool(i != 0),
        (Decoded::Bool, Value::UInt(u)) => Cell::Bool(u != 0),
        (Decoded::Bool, Value::Bytes(b)) => Cell::Bool(b.iter().any(|x| *x != 0)),
        (Decoded::Int, Value::Bytes(b)) if column.column_type() == MyType::MYSQL_TYPE_BIT => {
            // BIT(n) arrives as big-endian bytes.
            if b.len() > 8 {
                Cell::Unsupported("BIT wider than 64 bits".into())
            } else {
                let n = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
                unsigned(n)
            }
        }
        (_, Value::Int(i)) => Cell::Int(i),
        (_, Value::UInt(u)) => unsigned(u),
        (_, Value::Float(f)) => Cell::Float(f.into()),
        (_, Value::Double(f)) => Cell::Float(f),
        (Decoded::Float, Value::Bytes(b)) => decimal(&b),
        (Decoded::Timestamp, Value::Date(y, mo, d, h, mi, s, us)) => {
            let date = chrono::NaiveDate::from_ymd_opt(y.into(), mo.into(), d.into());
            match date.and_then(|d| d.and_hms_micro_opt(h.into(), mi.into(), s.into(), us)) {
                Some(t) => Cell::Timestamp(t.and_utc()),
                None => Cell::Unsupported(format!(
                    "{} {y:04}-{mo:02}-{d:02} (not a calendar date)",
                    mysql_type_name(column)
                )),
            }
        }
        (Decoded::Text | Decoded::Json, Value::Bytes(b)) => match String::from_utf8(b) {
            Ok(s) if kind == Decoded::Json => json_text_cell(s),
            Ok(s) => Cell::Text(s),
            Err(_) => Cell::Unsupported(format!("{} that is not UTF-8 text", mysql_type_name(column))),
        },
        (_, other) => Cell::Unsupported(format!("{} ({other:?})", mysql_type_name(column))),
    }
}

/// An unsigned integer: exact up to `i64::MAX`, a float beyond (as every sample value is).
fn unsigned(n: u64) -> Cell {
    match i64::try_from(n) {
        Ok(i) => Cell::Int(i),
        Err(_) => Cell::Float(n as f64),
    }
}

/// A `DECIMAL` as MySQL sends it (text): an integer when it has no fraction and fits, else a float.
fn decimal(bytes: &[u8]) -> Cell {
    let Ok(text) = std::str::from_utf8(bytes) else { return Cell::Unsupported("DECIMAL that is not text".into()) };
    if let Ok(i) = text.parse::<i64>() {
        return Cell::Int(i);
    }
    match text.parse::<rust_decimal::Decimal>() {
        Ok(d) if d.is_integer() => {
            use rust_decimal::prelude::ToPrimitive;
            d.to_i64().map(Cell::Int).unwrap_or_else(|| Cell::Float(d.to_f64().unwrap_or(f64::NAN)))
        }
        _ => text.parse::<f64>().map(Cell::Float).unwrap_or_else(|_| Cell::Unsupported(format!("DECIMAL {text:?}"))),
    }
}

/// A MySQL `JSON` value: a scalar as its value, anything else as its text.
fn json_text_cell(text: String) -> Cell {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Null) => Cell::Null,
        Ok(serde_json::Value::Bool(b)) => Cell::Bool(b),
        Ok(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Ok(serde_json::Value::String(s)) => Cell::Text(s),
        _ => Cell::Text(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_unsigned() {
        assert_eq!(decimal(b"42"), Cell::Int(42));
        assert_eq!(decimal(b"42.000"), Cell::Int(42));
        assert_eq!(decimal(b"1.5"), Cell::Float(1.5));
        assert_eq!(unsigned(u64::MAX), Cell::Float(u64::MAX as f64));
        assert_eq!(json_text_cell("\"x\"".into()), Cell::Text("x".into()));
    }
}
