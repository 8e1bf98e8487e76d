//! The families whose rows are their series: gauges, counters, info families and state sets. Each
//! row gives one series (one per unpivoted column, one per declared state); two rows that give the
//! same series fail the rule, found by sorting once at the end rather than by a set of every label
//! set seen.

use super::cells::{created, describe_labels, value};
use super::fold::{Columns, FamilyFailure, FoldError};
use crate::eval::cell::Cell;
use crate::eval::exposition::{Family, Sample, Text};
use crate::rules::model::{FamilyValues, MetricFamily};

/// The series of one scalar family so far.
pub(super) struct ScalarFold {
    samples: Vec<Sample>,
    /// Per sample, when declared (`created:`), its creation time (NaN: unknown).
    created: Vec<f64>,
    /// The label an unpivoted family or a state set adds, and its values (the value columns, or
    /// the states), made once.
    added_label: Option<Text>,
    added_values: Vec<Text>,
}

impl ScalarFold {
    pub(super) fn new(f: &MetricFamily) -> ScalarFold {
        let (added_label, added_values): (Option<Text>, Vec<Text>) = match &f.values {
            FamilyValues::Unpivot { label, columns } => {
                (Some(label.as_str().into()), columns.iter().map(|c| c.as_str().into()).collect())
            }
            FamilyValues::StateSet(s) => {
                (Some(f.name.as_str().into()), s.states.iter().map(|c| c.as_str().into()).collect())
            }
            _ => (None, Vec::new()),
        };
        ScalarFold { samples: Vec::new(), created: Vec::new(), added_label, added_values }
    }

    /// One series, with its creation time when the family declares one.
    pub(super) fn push(&mut self, labels: Vec<(Text, Text)>, value: f64, created: Option<f64>) {
        self.samples.push(Sample { labels, value });
        if let Some(c) = created {
            self.created.push(c);
        }
    }

    pub(super) fn row(
        &mut self,
        f: &MetricFamily,
        labels: Vec<(Text, Text)>,
        columns: &Columns,
        row: &[Cell],
    ) -> Result<(), FoldError> {
        let created = f.created.as_ref().map(|_| columns.created.and_then(|i| created(&row[i])).unwrap_or(f64::NAN));
        match &f.values {
            FamilyValues::One => self.push(labels, 1.0, created),
            FamilyValues::Column(column) => {
                if let Some(v) = value(f, column, &row[columns.values[0]])? {
                    self.push(labels, v, created);
                }
            }
            FamilyValues::Unpivot { columns: names, .. } => {
                let label = self.added_label.clone().unwrap_or_else(|| Text::from(""));
                for (j, (column, &i)) in names.iter().zip(&columns.values).enumerate() {
                    if let Some(v) = value(f, column, &row[i])? {
                        let mut l = labels.clone();
                        l.push((label.clone(), self.added_values[j].clone()));
                        self.push(l, v, created);
                    }
                }
            }
            FamilyValues::StateSet(s) => self.state(f, &s.column, labels, &row[columns.values[0]])?,
            FamilyValues::Histogram(_) | FamilyValues::Summary(_) => {}
        }
        Ok(())
    }

    /// A state set's row: one series per state, 1 for the one the cell holds; NULL gives none.
    fn state(
        &mut self,
        f: &MetricFamily,
        column: &str,
        labels: Vec<(Text, Text)>,
        cell: &Cell,
    ) -> Result<(), FoldError> {
        let Some(state) = cell.label_text() else {
            if let Cell::Unsupported(_) = cell {
                return Err(FoldError::Rule(format!(
                    "family {}: state column '{column}' holds {}",
                    f.name,
                    cell.describe()
                )));
            }
            return Ok(());
        };
        let Some(current) = self.added_values.iter().position(|s| **s == *state) else {
            let states: Vec<&str> = self.added_values.iter().map(|s| &**s).collect();
            let detail = format!(
                "column '{column}' holds '{state}' for {}{}, which is none of its states ({}); add it to stateset.states, or map it in the query",
                f.name,
                describe_labels(&labels),
                states.join(", ")
            );
            return Err(FamilyFailure::BadValue.of(f, detail));
        };
        let label = self.added_label.clone().unwrap_or_else(|| Text::from(""));
        for (j, s) in self.added_values.iter().enumerate() {
            let mut l = labels.clone();
            l.push((label.clone(), s.clone()));
            self.samples.push(Sample { labels: l, value: if j == current { 1.0 } else { 0.0 } });
        }
        Ok(())
    }

    /// The series into `out`, or the rule's error when two rows gave the same series.
    pub(super) fn finish(self, f: &MetricFamily, out: &mut Family) -> Result<(), FoldError> {
        // Every series of a family names its labels in the same order: compare the values.
        let mut order: Vec<u32> = (0..self.samples.len() as u32).collect();
        let values = |i: u32| self.samples[i as usize].labels.iter().map(|(_, v)| &**v);
        order.sort_unstable_by(|&a, &b| values(a).cmp(values(b)));
        if let Some(w) = order.windows(2).find(|w| values(w[0]).eq(values(w[1]))) {
            return Err(FoldError::Rule(format!(
                "family {}: more than one row gives the series {}{}; add a key label column that tells them apart, or aggregate in the query",
                f.name,
                f.name,
                describe_labels(&self.samples[w[0] as usize].labels)
            )));
        }
        out.samples = self.samples;
        out.created = self.created;
        Ok(())
    }
}
