//! PostgreSQL values decoded into [`Cell`]s, by one table of supported types ([`decoded`]) that row
//! decoding and `--check-rules --db` share.

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::eval::cell::Cell;
use crate::source::seam::Decoded;

/// Decodes a row into cells; a type we do not decode becomes [`Cell::Unsupported`], which fails only
/// the rule or target that reads it.
pub(super) fn cells(row: &Row) -> Vec<Cell> {
    (0..row.len()).map(|i| cell(row, i)).collect()
}

/// How a PostgreSQL type is decoded; `None`: it is not (cast it in the query). The one list of
/// supported types.
pub fn decoded(ty: &Type) -> Option<Decoded> {
    Some(match *ty {
        Type::BOOL => Decoded::Bool,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Decoded::Int,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => Decoded::Float,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Decoded::Text,
        Type::TIMESTAMPTZ | Type::TIMESTAMP | Type::DATE => Decoded::Timestamp,
        Type::JSON | Type::JSONB => Decoded::Json,
        _ => return None,
    })
}

fn cell(row: &Row, i: usize) -> Cell {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize, f: impl FnOnce(T) -> Cell) -> Cell {
        match row.try_get::<_, Option<T>>(i) {
            Ok(Some(v)) => f(v),
            Ok(None) => Cell::Null,
            Err(e) => Cell::Unsupported(e.to_string()),
        }
    }
    let ty = row.columns()[i].type_().clone();
    // The kind comes from `decoded`; within a kind, the concrete type picks the Rust type to read.
    match decoded(&ty) {
        None => Cell::Unsupported(ty.name().to_string()),
        Some(Decoded::Bool) => get(row, i, Cell::Bool),
        Some(Decoded::Int) => match ty {
            Type::INT2 => get(row, i, |v: i16| Cell::Int(v.into())),
            Type::INT4 => get(row, i, |v: i32| Cell::Int(v.into())),
            Type::OID => get(row, i, |v: u32| Cell::Int(v.into())),
            _ => get(row, i, Cell::Int),
        },
        Some(Decoded::Float) => match ty {
            Type::FLOAT4 => get(row, i, |v: f32| Cell::Float(v.into())),
            Type::NUMERIC => get(row, i, |v: rust_decimal::Decimal| {
                use rust_decimal::prelude::ToPrimitive;
                if v.is_integer() {
                    v.to_i64().map(Cell::Int).unwrap_or_else(|| Cell::Float(v.to_f64().unwrap_or(f64::NAN)))
                } else {
                    v.to_f64().map(Cell::Float).unwrap_or(Cell::Unsupported("numeric out of range".into()))
                }
            }),
            _ => get(row, i, Cell::Float),
        },
        Some(Decoded::Text) => get(row, i, Cell::Text),
        Some(Decoded::Timestamp) => match ty {
            Type::TIMESTAMP => get(row, i, |v: chrono::NaiveDateTime| Cell::Timestamp(v.and_utc())),
            Type::DATE => get(row, i, |v: chrono::NaiveDate| match v.and_hms_opt(0, 0, 0) {
                Some(t) => Cell::Timestamp(t.and_utc()),
                None => Cell::Null,
            }),
            _ => get(row, i, Cell::Timestamp),
        },
        Some(Decoded::Json) => get(row, i, json_cell),
    }
}

fn json_cell(v: serde_json::Value) -> Cell {
    match v {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::Bool(b) => Cell::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Cell::Text(s),
        other => Cell::Text(other.to_string()),
    }
}
