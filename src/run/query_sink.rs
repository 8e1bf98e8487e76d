//! The sink of a metric rule: each named statement's result kept apart, failing past `max_rows`
//! rows in all, and the statements as rendered, for the status page.

use crate::eval::cell::{Cell, ResultSet};
use crate::rules::model::MAIN_QUERY;
use crate::source::{FetchError, RowSink};

/// Keeps each named statement's result.
#[derive(Debug, Default)]
pub struct QuerySink {
    /// Each statement's result, in the order the source ran them.
    pub results: Vec<(String, ResultSet)>,
    /// Each statement as rendered, in the order the source announced them.
    statements: Vec<(String, String)>,
    max_rows: usize,
    /// Rows received, over every statement.
    pub rows: usize,
}

impl QuerySink {
    pub fn new(max_rows: usize) -> QuerySink {
        QuerySink { max_rows, ..QuerySink::default() }
    }

    /// The result of statement `name`; `None` for a statement that did not run.
    pub fn result(&self, name: &str) -> Option<&ResultSet> {
        self.results.iter().find(|(n, _)| n == name).map(|(_, rs)| rs)
    }

    /// The first statement's name: what a family reads when it names none.
    pub fn first(&self) -> Option<&str> {
        self.results.first().map(|(n, _)| n.as_str())
    }

    /// The SQL the status page shows: the one statement, or each under its name.
    pub fn sql(&self) -> Option<String> {
        match self.statements.as_slice() {
            [] => None,
            [(name, sql)] if name == MAIN_QUERY => Some(sql.clone()),
            all => Some(all.iter().map(|(name, q)| format!("-- {name}\n{q}")).collect::<Vec<_>>().join("\n\n")),
        }
    }
}

impl RowSink for QuerySink {
    fn statement(&mut self, name: &str, sql: &str) {
        self.statements.push((name.to_string(), sql.to_string()));
    }

    fn query(&mut self, name: &str) {
        self.results.push((name.to_string(), ResultSet::default()));
    }

    fn columns(&mut self, names: Vec<String>) {
        if self.results.is_empty() {
            self.query(MAIN_QUERY);
        }
        if let Some((_, rs)) = self.results.last_mut() {
            rs.columns = names;
        }
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<(), FetchError> {
        self.rows += 1;
        if self.rows > self.max_rows {
            return Err(FetchError::TooManyRows(self.max_rows));
        }
        match self.results.last_mut() {
            // The evaluations index rows by column position; hold rows to that shape here, once.
            Some((_, rs)) if rs.columns.len() == cells.len() => {
                rs.rows.push(cells);
                Ok(())
            }
            _ => Err(FetchError::Query("the source returned a row whose length differs from the columns".into())),
        }
    }
}
