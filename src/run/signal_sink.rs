//! The rows a signal can judge, kept as they stream in: a [`RowSink`] that holds, per target, only
//! the rows its window can use, and of them only the columns the rule reads.
//!
//! A signal judges each target on its newest `window` rows (by `order_by`, else the first in query
//! order) and counts them against `min_rows`; no other row can change a judgement. Keeping
//! `max(window, min_rows)` rows per target therefore judges exactly as collecting every row would,
//! while a query that returns a million rows costs the memory of a few per target, not of the
//! million. Ties in `order_by` keep the query's order, as the evaluation's stable sort does, and the
//! kept rows are handed on in the order they arrived. `max_rows` still counts every row returned.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::eval::cell::{Cell, ResultSet};
use crate::eval::signal::compare_desc;
use crate::rules::model::SignalRule;
use crate::source::{FetchError, RowSink};

/// Folds a signal's rows into the few each target's window needs.
pub struct WindowSink<'a> {
    rule: &'a SignalRule,
    max_rows: usize,
    /// Rows kept per target: `max(window, min_rows)`, or 1 when a column the rule reads is missing
    /// (the evaluation then only needs to know which targets the rows name).
    keep: usize,
    columns: Vec<String>,
    /// Positions of the label columns; `None` when one is missing (no row can be judged).
    labels: Option<Vec<usize>>,
    order_by: Option<usize>,
    /// Per column: whether the rule reads it (the others are kept as NULL).
    read: Vec<bool>,
    by_target: HashMap<Vec<String>, Vec<(usize, Vec<Cell>)>>,
    seen: usize,
    /// The statement as the source rendered it, for the status page.
    sql: Option<String>,
}

impl<'a> WindowSink<'a> {
    pub fn new(rule: &'a SignalRule, max_rows: usize) -> WindowSink<'a> {
        WindowSink {
            rule,
            max_rows,
            keep: rule.window.max(rule.min_rows).max(1),
            columns: Vec::new(),
            labels: None,
            order_by: None,
            read: Vec::new(),
            by_target: HashMap::new(),
            seen: 0,
            sql: None,
        }
    }

    /// The statement as rendered, once the source announced it.
    pub fn sql(&mut self) -> Option<String> {
        self.sql.take()
    }

    /// How many rows the source returned.
    pub fn rows_seen(&self) -> usize {
        self.seen
    }

    /// The kept rows as a result the signal evaluation takes, in the order they arrived.
    pub fn finish(&mut self) -> ResultSet {
        // Taken, not drained: the map's table is freed now rather than with the sink.
        let by_target = std::mem::take(&mut self.by_target);
        let mut rows: Vec<(usize, Vec<Cell>)> = by_target.into_values().flatten().collect();
        rows.sort_unstable_by_key(|(i, _)| *i);
        ResultSet { columns: std::mem::take(&mut self.columns), rows: rows.into_iter().map(|(_, r)| r).collect() }
    }
}

impl RowSink for WindowSink<'_> {
    fn statement(&mut self, _name: &str, sql: &str) {
        self.sql = Some(sql.to_string());
    }

    fn columns(&mut self, names: Vec<String>) {
        let rule = self.rule;
        let find = |name: &str| names.iter().position(|c| c == name);
        self.labels = rule.labels.iter().map(|l| find(l)).collect();
        self.order_by = rule.order_by.as_deref().and_then(find);
        let wanted: Vec<Option<usize>> = rule
            .labels
            .iter()
            .map(String::as_str)
            .chain(rule.order_by.as_deref())
            .chain(rule.freshness.as_ref().map(|f| f.column.as_str()))
            .chain(rule.values.iter().map(|(n, _)| n.as_str()))
            .map(find)
            .collect();
        if wanted.iter().any(Option::is_none) {
            self.keep = 1;
        }
        self.read = (0..names.len()).map(|i| wanted.contains(&Some(i))).collect();
        self.columns = names;
    }

    fn row(&mut self, mut cells: Vec<Cell>) -> Result<(), FetchError> {
        if self.seen >= self.max_rows {
            return Err(FetchError::TooManyRows(self.max_rows));
        }
        if cells.len() != self.columns.len() {
            return Err(FetchError::Query("the source returned a row whose length differs from the columns".into()));
        }
        let arrived = self.seen;
        self.seen += 1;
        let Some(labels) = &self.labels else { return Ok(()) };
        // A NULL label value belongs to no target.
        let Some(key) = labels.iter().map(|&i| cells[i].label_text()).collect::<Option<Vec<String>>>() else {
            return Ok(());
        };
        let kept = self.by_target.entry(key).or_default();
        if kept.len() < self.keep {
            project(&mut cells, &self.read);
            kept.push((arrived, cells));
            return Ok(());
        }
        // Full: a row replaces the oldest kept one only if it is strictly newer (ties keep the
        // earlier rows, as the stable sort would). Without order_by the first rows are the window.
        let Some(i) = self.order_by else { return Ok(()) };
        let oldest = kept
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| compare_desc(&a.1[i], &b.1[i]).then(a.0.cmp(&b.0)))
            .map(|(at, _)| at);
        if let Some(at) = oldest {
            if compare_desc(&cells[i], &kept[at].1[i]) == Ordering::Less {
                project(&mut cells, &self.read);
                kept[at] = (arrived, cells);
            }
        }
        Ok(())
    }
}

/// Drops the values of the columns the rule does not read.
fn project(cells: &mut [Cell], read: &[bool]) {
    for (cell, &r) in cells.iter_mut().zip(read) {
        if !r {
            *cell = Cell::Null;
        }
    }
}

#[cfg(test)]
mod tests;
