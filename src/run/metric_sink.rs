//! The sink of a metric rule: rows folded into the rule's families as they stream in
//! ([`crate::eval::metric::RuleFold`]), never kept, failing past `max_rows` rows in all; and the
//! statements as rendered, for the status page.
//!
//! Collecting a result and mapping it afterwards held every row of it at once: a raw-value histogram
//! over a million rows held a million rows. Folded, it holds its buckets.

use crate::eval::cell::Cell;
use crate::eval::metric::{Folded, RuleFold};
use crate::rules::model::{MetricRule, MAIN_QUERY};
use crate::source::{FetchError, RowSink};

/// Folds a metric rule's rows on one source.
pub struct MetricSink<'a> {
    fold: RuleFold<'a>,
    /// Each statement as rendered, in the order the source announced them.
    statements: Vec<(String, String)>,
    /// The current statement's number of columns: every row must have as many.
    width: Option<usize>,
    max_rows: usize,
    /// Rows received, over every statement.
    rows: usize,
}

impl<'a> MetricSink<'a> {
    pub fn new(rule: &'a MetricRule, source: &str, max_rows: usize) -> MetricSink<'a> {
        MetricSink { fold: RuleFold::new(rule, source), statements: Vec::new(), width: None, max_rows, rows: 0 }
    }

    /// Rows received, over every statement.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The SQL the status page shows: the one statement, or each under its name.
    pub fn sql(&self) -> Option<String> {
        match self.statements.as_slice() {
            [] => None,
            [(name, sql)] if name == MAIN_QUERY => Some(sql.clone()),
            all => Some(all.iter().map(|(name, q)| format!("-- {name}\n{q}")).collect::<Vec<_>>().join("\n\n")),
        }
    }

    /// The run's families (after a fetch that succeeded), or why none may be served.
    pub fn finish(self) -> Result<Folded, String> {
        self.fold.finish()
    }
}

impl RowSink for MetricSink<'_> {
    fn statement(&mut self, name: &str, sql: &str) {
        self.statements.push((name.to_string(), sql.to_string()));
    }

    fn query(&mut self, name: &str) {
        self.fold.query(name);
    }

    fn columns(&mut self, names: Vec<String>) {
        self.width = Some(names.len());
        self.fold.columns(&names);
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<(), FetchError> {
        self.rows += 1;
        if self.rows > self.max_rows {
            return Err(FetchError::TooManyRows(self.max_rows));
        }
        // The folds index rows by column position; hold rows to that shape here, once.
        if self.width != Some(cells.len()) {
            return Err(FetchError::Query("the source returned a row whose length differs from the columns".into()));
        }
        self.fold.row(&cells);
        Ok(())
    }
}
