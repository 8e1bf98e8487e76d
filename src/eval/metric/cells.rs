//! Reading a metric rule's cells: label text (shared between the families of one row), values,
//! bucket bounds and creation times, each failing with a message that names the family and column.

use crate::eval::cell::Cell;
use crate::eval::exposition::{format_value, LabelValueInterner, Text};
use crate::rules::model::{MetricFamily, MetricKind, OnNull};

/// The label text of one row's cells, made once however many families and series use it, and
/// shared with earlier rows for columns of few distinct values (a cluster, a namespace, a state):
/// at 100,000 series, one text per distinct value rather than one per row.
pub(super) struct RowTexts {
    texts: Vec<Option<Text>>,
    columns: Vec<LabelValueInterner>,
}

impl RowTexts {
    pub(super) fn new() -> RowTexts {
        RowTexts { texts: Vec::new(), columns: Vec::new() }
    }

    /// Forgets the previous row's texts.
    pub(super) fn reset(&mut self, columns: usize) {
        self.texts.clear();
        self.texts.resize(columns, None);
        if self.columns.len() < columns {
            self.columns.resize_with(columns, LabelValueInterner::default);
        }
    }

    /// Column `i` of `row` as a key label's value: its text; NULL is the empty string (an absent
    /// label).
    pub(super) fn key(&mut self, f: &MetricFamily, column: &str, row: &[Cell], i: usize) -> Result<Text, String> {
        if let Some(t) = &self.texts[i] {
            return Ok(t.clone());
        }
        let text: Text = match &row[i] {
            Cell::Null => self.columns[i].share(""),
            cell @ Cell::Unsupported(_) => {
                return Err(format!("family {}: key label column '{column}' holds {}", f.name, cell.describe()))
            }
            Cell::Text(s) => self.columns[i].share(s),
            other => self.columns[i].share(&other.label_text().unwrap_or_default()),
        };
        self.texts[i] = Some(text.clone());
        Ok(text)
    }
}

/// A sample value, `None` for a NULL that `on_null` skips. A counter's is never negative.
pub(super) fn value(f: &MetricFamily, column: &str, cell: &Cell) -> Result<Option<f64>, String> {
    let v = match cell {
        Cell::Null => {
            return Ok(match f.on_null {
                OnNull::Skip => None,
                OnNull::Zero => Some(0.0),
            })
        }
        Cell::Int(i) => *i as f64,
        Cell::Float(x) => *x,
        Cell::Bool(b) => f64::from(u8::from(*b)),
        Cell::Timestamp(t) => t.timestamp_micros() as f64 / 1e6,
        Cell::Text(s) => match f.text_values.number(s) {
            Some(x) => x,
            None => {
                let fix = if f.text_values.is_empty() { "" } else { " nor one of its text_values" };
                return Err(format!(
                    "family {}: value column '{column}' holds {}, which is not a number{fix}; convert it in the query, or map such texts to numbers with text_values",
                    f.name,
                    cell.describe()
                ));
            }
        },
        Cell::Unsupported(_) => {
            return Err(format!("family {}: value column '{column}' holds {}", f.name, cell.describe()))
        }
    };
    // NaN is refused too: no counter can be it.
    if f.kind == MetricKind::Counter && (v < 0.0 || v.is_nan()) {
        return Err(format!(
            "family {}: counter value column '{column}' holds {}; a counter is never negative (make the family a gauge)",
            f.name,
            format_value(v)
        ));
    }
    Ok(Some(v))
}

/// A value of a family named from each column (`name_from: {columns: each}`): as [`value`], but a
/// cell that is neither a number nor a declared text gives no series, as mysqld_exporter skips
/// what it cannot parse (the columns are the server's, not declared).
pub(super) fn each_column_value(f: &MetricFamily, column: &str, cell: &Cell) -> Result<Option<f64>, String> {
    match cell {
        Cell::Text(s) if f.text_values.number(s).is_none() => Ok(None),
        Cell::Unsupported(_) => Ok(None),
        other => value(f, column, other),
    }
}

/// A bucket's upper bound: a number, or `+Inf` written as text (`+Inf`, `Inf`, `Infinity`) or as a
/// float infinity; `None` for anything else (NULL, NaN, text that is no number).
pub(super) fn bound(cell: &Cell) -> Option<f64> {
    let v = match cell {
        Cell::Int(i) => *i as f64,
        Cell::Float(x) => *x,
        Cell::Text(s) => match s.trim() {
            t if ["+inf", "inf", "+infinity", "infinity"].contains(&t.to_ascii_lowercase().as_str()) => f64::INFINITY,
            t => t.parse::<f64>().ok()?,
        },
        _ => return None,
    };
    (!v.is_nan()).then_some(v)
}

/// When a series started counting, in seconds since the epoch: a time or a number; `None` for
/// NULL or anything else.
pub(super) fn created(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Timestamp(t) => Some(t.timestamp_micros() as f64 / 1e6),
        other => other.as_float().filter(|v| v.is_finite()),
    }
}

/// Label pairs as `{a="x",b="y"}`, sorted by name, for messages.
pub(super) fn describe_labels(labels: &[(Text, Text)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<&(Text, Text)> = labels.iter().collect();
    sorted.sort_unstable();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}
