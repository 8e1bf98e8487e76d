//! Evaluation of a metric rule: rows in, metric families out (or the rule's error). No I/O.
//!
//! A metric rule is the generic half of the exporter: any query becomes Prometheus series by
//! declaration only. What makes that safe to run unattended is that every awkward case has one
//! declared outcome and none of them can corrupt the exposition:
//!
//! - a NULL value skips its series, or reads 0 (`on_null`);
//! - an empty result exports no series, or one zero series (`on_empty`);
//! - a value that is not a number, a missing column, or two rows that would give the same series
//!   fail the rule with a message naming the family and column: then none of the rule's series are
//!   served (for that database), so a half-read result is never mistaken for the truth;
//! - a histogram, summary or state set whose rows contradict themselves (buckets that decrease, a
//!   `le` that is no number, a `_count` other than `+Inf`, a bound twice, a state not declared) fails
//!   its own family with a named [`FamilyFailure`]; the rule's other families are served;
//! - a family named from a column (`name_from`, see `named.rs`) gives a family per key; a key whose
//!   name another family claims is refused (`name_conflict`) and the rest are served;
//! - a failed rule can still declare a zero series for label-less families (`on_error`), the way an
//!   `up` metric reads 0 when the database is unreachable.
//!
//! Rows are folded as they stream ([`RuleFold`]): a gauge keeps its series, a histogram of raw
//! values keeps a count per label set and bucket, so a query of a million observations costs the
//! memory of its buckets, not of its rows. Label text is made once per row and column and shared
//! ([`Text`]) by every series and family that carries it.
//!
//! The label set of a series is the database label (when the rule has one), the static labels, the
//! key labels (a NULL key reads as the empty string, which Prometheus treats as an absent label),
//! and, for an unpivoted family, the label naming the value column; a state set adds its state, a
//! histogram `le` and a summary `quantile`.

mod cells;
mod distribution;
mod fold;
mod named;
mod scalar;
#[cfg(test)]
mod tests;

use crate::eval::cell::{Cell, ResultSet};
use crate::eval::exposition::{Family, MetricType, Sample, Text};
use crate::rules::model::{
    AbsentKeyColumns, FamilyNaming, FamilyValues, MetricFamily, MetricKind, MetricRule, NameKey, OnEmpty, OnError,
    MAIN_QUERY,
};

use cells::RowTexts;
use distribution::DistributionFold;
pub use fold::FamilyFailure;
use fold::{Columns, FoldError};
use named::NamedFold;
use scalar::ScalarFold;

/// The families of a successful run: every family in declaration order, and why any of them failed
/// on its own (those serve what `on_error` says).
#[derive(Debug, Default)]
pub struct Folded {
    pub families: Vec<Family>,
    pub family_failures: Vec<String>,
}

/// The state of one family's fold.
enum Shape<'a> {
    Scalar(ScalarFold),
    Distribution(DistributionFold),
    /// A family per key of a column (`name_from`).
    Named(NamedFold<'a>),
}

/// One family as rows stream in.
struct FamilyFold<'a> {
    family: &'a MetricFamily,
    /// The database label and static labels: every series carries them.
    fixed: Vec<(Text, Text)>,
    key_names: Vec<Text>,
    columns: Option<Columns>,
    rows: usize,
    shape: Shape<'a>,
    failure: Option<String>,
}

impl<'a> FamilyFold<'a> {
    fn new(rule: &MetricRule, family: &'a MetricFamily, source: &str) -> FamilyFold<'a> {
        let mut fixed = Vec::with_capacity(1 + family.static_labels.len());
        if let Some(l) = &rule.database_label {
            fixed.push((Text::from(l.as_str()), Text::from(source)));
        }
        fixed.extend(family.static_labels.iter().map(|(k, v)| (Text::from(k.as_str()), Text::from(v.as_str()))));
        let shape = match (&family.naming, &family.values) {
            (FamilyNaming::FromColumn(from), _) => Shape::Named(NamedFold::new(family, from)),
            (_, FamilyValues::Histogram(_) | FamilyValues::Summary(_)) => {
                Shape::Distribution(DistributionFold::new(family))
            }
            _ => Shape::Scalar(ScalarFold::new(family)),
        };
        FamilyFold {
            family,
            fixed,
            key_names: family.key_labels.iter().map(|k| Text::from(k.as_str())).collect(),
            columns: None,
            rows: 0,
            shape,
            failure: None,
        }
    }

    /// Finds the family's columns among `names`; a missing one fails the rule.
    fn bind(&mut self, names: &[String]) -> Result<(), String> {
        let f = self.family;
        let find = |name: &str, role: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                format!(
                    "family {}: the query returns no column '{name}' ({role}); it returns: {}",
                    f.name,
                    if names.is_empty() { "no columns".to_string() } else { names.join(", ") }
                )
            })
        };
        let mut keys = Vec::with_capacity(f.key_columns.len());
        for c in &f.key_columns {
            keys.push(match (names.iter().position(|n| n == c), f.absent_key_columns) {
                (Some(i), _) => Some(i),
                (None, AbsentKeyColumns::Empty) => None,
                (None, AbsentKeyColumns::Fail) => Some(find(
                    c,
                    "a key label; key_columns names the column a label reads, absent_key_columns: empty reads one a server lacks as empty",
                )?),
            });
        }
        let values = f.values.columns().iter().map(|(c, _)| find(c, "a value")).collect::<Result<_, _>>()?;
        let created = f.created.as_deref().map(|c| find(c, "the creation time")).transpose()?;
        let (name_key, each) = match &f.naming {
            FamilyNaming::FromColumn(from) => match &from.key {
                NameKey::Column(c) => (Some(find(c, "the key naming the family")?), Vec::new()),
                // Every column but the key labels' names a family (the first of a repeated name).
                NameKey::EachColumn => {
                    let each = (0..names.len())
                        .filter(|&i| !keys.contains(&Some(i)) && names.iter().position(|n| *n == names[i]) == Some(i))
                        .map(|i| (i, names[i].clone()))
                        .collect();
                    (None, each)
                }
            },
            FamilyNaming::Declared => (None, Vec::new()),
        };
        self.columns = Some(Columns { keys, values, created, name_key, each });
        Ok(())
    }

    fn row(&mut self, row: &[Cell], texts: &mut RowTexts) -> Result<(), FoldError> {
        let Some(columns) = &self.columns else { return Ok(()) };
        self.rows += 1;
        if self.failure.is_some() {
            return Ok(());
        }
        let mut labels = Vec::with_capacity(self.fixed.len() + self.key_names.len() + 1);
        labels.extend(self.fixed.iter().cloned());
        for ((name, &i), column) in self.key_names.iter().zip(&columns.keys).zip(&self.family.key_columns) {
            let text = match i {
                Some(i) => texts.key(self.family, column, row, i)?,
                // A column the server does not have (`absent_key_columns: empty`).
                None => Text::from(""),
            };
            labels.push((name.clone(), text));
        }
        match &mut self.shape {
            Shape::Scalar(s) => s.row(self.family, labels, columns, row),
            Shape::Distribution(d) => d.row(self.family, labels, columns, row),
            Shape::Named(n) => n.row(labels, columns, row),
        }
    }

    /// The family's series into `out` (a family named from a column: each generated family), or
    /// why the rule failed; a family failing on its own is one of `out`'s failures.
    fn finish(self, rule: &MetricRule, source: &str, out: &mut Folded) -> Result<(), String> {
        let f = self.family;
        if let Some(message) = self.failure {
            out.family_failures.push(message);
            return Ok(());
        }
        let mut family = empty_family(f);
        if self.rows == 0 {
            match f.on_empty {
                OnEmpty::Zero => {
                    family.samples = zero_samples(rule, f, source);
                    out.families.push(family);
                    return Ok(());
                }
                OnEmpty::Fail => {
                    let query = f.query.as_ref().map(|q| format!(" '{q}'")).unwrap_or_default();
                    return Err(format!(
                        "family {}: the query{query} returned no rows, and the family has on_empty: fail (a renamed or mistyped field?)",
                        f.name
                    ));
                }
                OnEmpty::None => {}
            }
        }
        let finished = match self.shape {
            Shape::Scalar(s) => s.finish(f, &mut family),
            Shape::Distribution(d) => d.finish(f, self.fixed, &mut family),
            Shape::Named(n) => return n.finish(out),
        };
        match finished {
            Ok(()) => out.families.push(family),
            Err(FoldError::Family(message)) => out.family_failures.push(message),
            Err(FoldError::Rule(message)) => return Err(message),
        }
        Ok(())
    }
}

/// A metric rule's run on one source, folded as its rows stream in: feed it what a row sink
/// receives ([`RuleFold::query`], [`RuleFold::columns`], [`RuleFold::row`]), then [`RuleFold::finish`].
pub struct RuleFold<'a> {
    rule: &'a MetricRule,
    source: String,
    folds: Vec<FamilyFold<'a>>,
    /// The statement whose columns and rows arrive now, and how many statements came before it.
    current: Option<String>,
    statements: usize,
    /// The families reading the current statement.
    active: Vec<usize>,
    texts: RowTexts,
    /// Why the run's result cannot be used, once known: later rows are not folded.
    failure: Option<String>,
}

impl<'a> RuleFold<'a> {
    pub fn new(rule: &'a MetricRule, source: &str) -> RuleFold<'a> {
        RuleFold {
            rule,
            source: source.to_string(),
            folds: rule.families.iter().map(|f| FamilyFold::new(rule, f, source)).collect(),
            current: None,
            statements: 0,
            active: Vec::new(),
            texts: RowTexts::new(),
            failure: None,
        }
    }

    /// The columns and rows that follow are statement `name`'s (a rule with several named queries).
    pub fn query(&mut self, name: &str) {
        self.current = Some(name.to_string());
        self.statements += 1;
    }

    /// The current statement's columns: binds the families that read it.
    pub fn columns(&mut self, names: &[String]) {
        if self.current.is_none() {
            self.query(MAIN_QUERY);
        }
        let current = self.current.as_deref().unwrap_or(MAIN_QUERY);
        let first = self.statements == 1;
        self.active = (0..self.folds.len())
            .filter(|&i| match &self.folds[i].family.query {
                Some(q) => q == current,
                None => first,
            })
            .collect();
        for &i in &self.active {
            if let Err(message) = self.folds[i].bind(names) {
                self.failure.get_or_insert(message);
            }
        }
    }

    /// One row of the current statement.
    pub fn row(&mut self, row: &[Cell]) {
        if self.failure.is_some() {
            return;
        }
        self.texts.reset(row.len());
        for &i in &self.active {
            match self.folds[i].row(row, &mut self.texts) {
                Ok(()) => {}
                Err(FoldError::Rule(message)) => {
                    self.failure = Some(message);
                    return;
                }
                Err(FoldError::Family(message)) => self.folds[i].failure = Some(message),
            }
        }
    }

    /// The run's families, or why none of them may be served.
    pub fn finish(self) -> Result<Folded, String> {
        if let Some(message) = self.failure {
            return Err(message);
        }
        let mut out = Folded::default();
        for mut fold in self.folds {
            if fold.columns.is_none() {
                // Its statement did not run: it reads an empty result with no columns.
                fold.bind(&[])?;
            }
            fold.finish(self.rule, &self.source, &mut out)?;
        }
        for f in &self.rule.families {
            if !out.families.iter().any(|o| o.name == f.name) {
                out.families.extend(failed_family(self.rule, f, &self.source));
            }
        }
        Ok(out)
    }
}

/// [`RuleFold`] over a result already collected: the families of one run of `rule` on `source`.
pub fn evaluate(rule: &MetricRule, source: &str, rs: &ResultSet) -> Result<Folded, String> {
    let mut fold = RuleFold::new(rule, source);
    fold.columns(&rs.columns);
    for row in &rs.rows {
        fold.row(row);
    }
    fold.finish()
}

/// The families a failed run of `rule` on `database` still exports: the zero series of those that
/// declare `on_error: zero`; every other family exports nothing.
pub fn failed(rule: &MetricRule, database: &str) -> Vec<Family> {
    rule.families.iter().filter_map(|f| failed_family(rule, f, database)).collect()
}

fn failed_family(rule: &MetricRule, f: &MetricFamily, database: &str) -> Option<Family> {
    (f.on_error == OnError::Zero).then(|| {
        let mut out = empty_family(f);
        out.samples = zero_samples(rule, f, database);
        out
    })
}

/// The exposition type of a family.
pub fn exposition_type(kind: MetricKind) -> MetricType {
    match kind {
        MetricKind::Gauge => MetricType::Gauge,
        MetricKind::Info => MetricType::Info,
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Histogram => MetricType::Histogram,
        MetricKind::Summary => MetricType::Summary,
        MetricKind::StateSet => MetricType::StateSet,
        MetricKind::Untyped => MetricType::Untyped,
    }
}

/// A family of `f`'s name, help, type and unit, without series.
pub fn empty_family(f: &MetricFamily) -> Family {
    let mut out = Family::new(&f.name, &f.help, exposition_type(f.kind));
    out.unit = f.unit.clone();
    out
}

/// One series of value 0 per value column (one for a single value or an info family), for
/// `on_empty` and `on_error`; the loader allows these only on gauges and counters without key
/// labels.
fn zero_samples(rule: &MetricRule, f: &MetricFamily, database: &str) -> Vec<Sample> {
    let mut fixed = Vec::with_capacity(1 + f.static_labels.len());
    if let Some(l) = &rule.database_label {
        fixed.push((l.clone(), database.to_string()));
    }
    fixed.extend(f.static_labels.iter().cloned());
    match &f.values {
        FamilyValues::Unpivot { label, columns } => columns
            .iter()
            .map(|c| {
                let mut labels = fixed.clone();
                labels.push((label.clone(), c.clone()));
                Sample::owned(labels, 0.0)
            })
            .collect(),
        FamilyValues::Column(_) | FamilyValues::One => vec![Sample::owned(fixed, 0.0)],
        FamilyValues::Histogram(_) | FamilyValues::Summary(_) | FamilyValues::StateSet(_) => Vec::new(),
    }
}
