//! A family named from a column (`name_from`): each row's key names the family its series belong
//! to, so one declaration gives a family per key, each with its own HELP and TYPE (an override may
//! give a name its own). With `columns: each` the keys are the result's column names and each
//! cell is its family's value: for statements whose columns are the server's, not declared
//! (`SHOW SLAVE STATUS`); a cell that reads as no number gives no series, as mysqld_exporter skips
//! it.
//!
//! A generated name is checked once, when a row first gives it: a name another family of the loaded
//! rules claims, or a reserved one, is refused (`name_conflict`) and its rows are dropped, so
//! `/metrics` never holds a family twice; the rule's other series are served. The series of each
//! generated family are folded as a scalar family's are ([`ScalarFold`]), so two rows giving the same
//! name and labels fail the rule as a duplicate series does.

use std::collections::BTreeMap;

use super::cells::each_column_value;
use super::fold::{Columns, FamilyFailure, FoldError};
use super::scalar::ScalarFold;
use super::{empty_family, Folded};
use crate::eval::cell::Cell;
use crate::eval::exposition::Text;
use crate::rules::model::{FamilyNaming, MetricFamily, NameFrom, NameKey};
use crate::rules::names::reserved_metric_name;

/// One generated family: the declared one under its generated name, help and type, and its series
/// so far.
struct Generated {
    family: MetricFamily,
    fold: ScalarFold,
}

/// The families one `name_from` declaration has generated so far.
pub(super) struct NamedFold<'a> {
    declared: &'a MetricFamily,
    from: &'a NameFrom,
    generated: BTreeMap<String, Generated>,
    /// Keys whose rows are refused, each with its message (once however many rows give it).
    refused: BTreeMap<String, String>,
}

impl<'a> NamedFold<'a> {
    pub(super) fn new(declared: &'a MetricFamily, from: &'a NameFrom) -> NamedFold<'a> {
        NamedFold { declared, from, generated: BTreeMap::new(), refused: BTreeMap::new() }
    }

    /// One row: its key names its family (made on first sight, or refused); with `columns: each`,
    /// each column other than the key labels' names one.
    pub(super) fn row(&mut self, labels: Vec<(Text, Text)>, columns: &Columns, row: &[Cell]) -> Result<(), FoldError> {
        let column = match &self.from.key {
            NameKey::Column(column) => column,
            NameKey::EachColumn => return self.each_column(labels, columns, row),
        };
        let cell = columns.name_key.map(|i| &row[i]).unwrap_or(&Cell::Null);
        let key = match cell {
            Cell::Unsupported(_) => {
                return Err(FoldError::Rule(format!(
                    "family {}: name column '{column}' holds {}",
                    self.declared.name,
                    cell.describe()
                )))
            }
            other => other.label_text().unwrap_or_default(),
        };
        match self.family_of(&key) {
            Some(g) => g.fold.row(&g.family, labels, columns, row),
            None => Ok(()),
        }
    }

    /// A row of `columns: each`: a series in the family of each column whose cell reads as a number.
    fn each_column(&mut self, labels: Vec<(Text, Text)>, columns: &Columns, row: &[Cell]) -> Result<(), FoldError> {
        for (i, column) in &columns.each {
            let Some(v) = each_column_value(self.declared, column, &row[*i])? else { continue };
            if let Some(g) = self.family_of(column) {
                g.fold.push(labels.clone(), v, None);
            }
        }
        Ok(())
    }

    /// The family `key` names, made on first sight; `None` when its name is refused.
    fn family_of(&mut self, key: &str) -> Option<&mut Generated> {
        let name = self.from.family_name(key);
        if self.refused.contains_key(&name) {
            return None;
        }
        if !self.generated.contains_key(&name) {
            if let Some(why) = self.refusal(key, &name) {
                self.refused.insert(name, why);
                return None;
            }
            let family = self.generate(&name);
            let fold = ScalarFold::new(&family);
            self.generated.insert(name.clone(), Generated { family, fold });
        }
        self.generated.get_mut(&name)
    }

    /// Why the rows of `key` (giving `name`) are not exposed, if they are not.
    fn refusal(&self, key: &str, name: &str) -> Option<String> {
        let column = match &self.from.key {
            NameKey::Column(c) => c.as_str(),
            NameKey::EachColumn => key,
        };
        if key.is_empty() {
            let detail = format!(
                "column '{column}' holds NULL or an empty text, which names no family of {}; filter such rows out in the query",
                self.declared.name
            );
            return Some(FamilyFailure::BadValue.message(&self.declared.name, detail));
        }
        let owner = match self.from.taken.get(name) {
            Some(rule) => format!("rule '{rule}' declares a family of that name"),
            None => reserved_metric_name(name)?,
        };
        let detail = format!(
            "key '{key}' of column '{column}' gives the name {name}, but {owner}; its rows are not exposed (filter the key out in the query, or change the prefix of {})",
            self.declared.name
        );
        Some(FamilyFailure::NameConflict.message(name, detail))
    }

    /// The declared family under `name`, with the help and type an override gives that name.
    fn generate(&self, name: &str) -> MetricFamily {
        let mut family = self.declared.clone();
        family.name = name.to_string();
        family.naming = FamilyNaming::Declared;
        if let Some(o) = self.from.overrides.get(name) {
            family.kind = o.kind.unwrap_or(family.kind);
            family.help = o.help.clone().unwrap_or(family.help);
        }
        family
    }

    /// Every generated family, by name, into `out`; each refused key as a family failure. Two rows
    /// giving one series fail the rule.
    pub(super) fn finish(self, out: &mut Folded) -> Result<(), String> {
        for (_, Generated { family, fold }) in self.generated {
            let mut exposed = empty_family(&family);
            fold.finish(&family, &mut exposed).map_err(FoldError::into_message)?;
            out.families.push(exposed);
        }
        out.family_failures.extend(self.refused.into_values());
        Ok(())
    }
}
