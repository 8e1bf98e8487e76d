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
//! - a failed rule can still declare a zero series for label-less families (`on_error`), the way an
//!   `up` metric reads 0 when the database is unreachable.
//!
//! The label set of a series is the database label (when the rule has one), the static labels, the
//! key labels (a NULL key reads as the empty string, which Prometheus treats as an absent label)
//! and, for an unpivoted family, the label naming the value column.

use std::collections::HashSet;

use crate::eval::cell::{Cell, ResultSet};
use crate::eval::exposition::{Family, MetricType, Sample};
use crate::rules::model::{FamilyValues, MetricFamily, MetricKind, MetricRule, OnEmpty, OnError, OnNull};

/// The families of one run of `rule` on `database`, in declaration order, or why the result cannot
/// be used (then no series of this run may be served).
pub fn evaluate(rule: &MetricRule, database: &str, rs: &ResultSet) -> Result<Vec<Family>, String> {
    rule.families.iter().map(|f| family(rule, f, database, rs)).collect()
}

/// [`evaluate`] for a rule with several named queries (an endpoint rule): each family reads the
/// result of the query it names.
pub fn evaluate_queries<'a>(
    rule: &MetricRule,
    source: &str,
    result_of: impl Fn(&MetricFamily) -> Option<&'a ResultSet>,
) -> Result<Vec<Family>, String> {
    let empty = ResultSet::default();
    rule.families
        .iter()
        .map(|f| match result_of(f) {
            Some(rs) => family(rule, f, source, rs),
            None => family(rule, f, source, &empty),
        })
        .collect()
}

/// The families a failed run of `rule` on `database` still exports: the zero series of those that
/// declare `on_error: zero`; every other family exports nothing.
pub fn failed(rule: &MetricRule, database: &str) -> Vec<Family> {
    rule.families
        .iter()
        .filter(|f| f.on_error == OnError::Zero)
        .map(|f| {
            let mut out = empty_family(f);
            out.samples = zero_samples(rule, f, database);
            out
        })
        .collect()
}

/// The exposition type of a family: info families are gauges of value 1.
pub fn exposition_type(kind: MetricKind) -> MetricType {
    match kind {
        MetricKind::Gauge | MetricKind::Info => MetricType::Gauge,
        MetricKind::Counter => MetricType::Counter,
    }
}

fn empty_family(f: &MetricFamily) -> Family {
    Family::new(&f.name, &f.help, exposition_type(f.kind))
}

/// The labels every series of `f` carries whatever the row: database label, then static labels.
fn fixed_labels(rule: &MetricRule, f: &MetricFamily, database: &str) -> Vec<(String, String)> {
    let mut labels = Vec::with_capacity(1 + f.static_labels.len() + f.key_labels.len() + 1);
    if let Some(l) = &rule.database_label {
        labels.push((l.clone(), database.to_string()));
    }
    labels.extend(f.static_labels.iter().cloned());
    labels
}

/// One series of value 0 per value column (one for a single value or an info family), for
/// `on_empty` and `on_error`; the loader allows these only on families without key labels.
fn zero_samples(rule: &MetricRule, f: &MetricFamily, database: &str) -> Vec<Sample> {
    let fixed = fixed_labels(rule, f, database);
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
    }
}

fn family(rule: &MetricRule, f: &MetricFamily, database: &str, rs: &ResultSet) -> Result<Family, String> {
    let find = |name: &str, role: &str| {
        rs.column(name).ok_or_else(|| {
            format!(
                "family {}: the query returns no column '{name}' ({role}); it returns: {}",
                f.name,
                if rs.columns.is_empty() { "no columns".to_string() } else { rs.columns.join(", ") }
            )
        })
    };
    let keys: Vec<(&String, usize)> =
        f.key_labels.iter().map(|k| find(k, "a key label").map(|i| (k, i))).collect::<Result<_, _>>()?;
    let values: Vec<(&String, usize)> =
        f.values.columns().iter().map(|c| find(c, "a value").map(|i| (c, i))).collect::<Result<_, _>>()?;

    let mut out = empty_family(f);
    if rs.rows.is_empty() {
        match f.on_empty {
            OnEmpty::Zero => out.samples = zero_samples(rule, f, database),
            OnEmpty::Fail => {
                let query = f.query.as_ref().map(|q| format!(" '{q}'")).unwrap_or_default();
                return Err(format!(
                    "family {}: the query{query} returned no rows, and the family has on_empty: fail (a renamed or mistyped field?)",
                    f.name
                ));
            }
            OnEmpty::None => {}
        }
        return Ok(out);
    }

    let fixed = fixed_labels(rule, f, database);
    let mut seen: HashSet<Vec<(String, String)>> = HashSet::with_capacity(rs.rows.len());
    for row in &rs.rows {
        let mut labels = fixed.clone();
        for (name, i) in &keys {
            labels.push(((*name).clone(), key_value(f, name, &row[*i])?));
        }
        let mut push = |labels: Vec<(String, String)>, value: f64| -> Result<(), String> {
            let mut key = labels.clone();
            key.sort_unstable();
            if !seen.insert(key) {
                return Err(format!(
                    "family {}: more than one row gives the series {}{}; add a key label column that tells them apart, or aggregate in the query",
                    f.name,
                    f.name,
                    describe_labels(&labels)
                ));
            }
            out.samples.push(Sample::owned(labels, value));
            Ok(())
        };
        match &f.values {
            FamilyValues::One => push(labels, 1.0)?,
            FamilyValues::Column(_) => {
                let (column, i) = values[0];
                if let Some(v) = value(f, column, &row[i])? {
                    push(labels, v)?;
                }
            }
            FamilyValues::Unpivot { label, .. } => {
                for (column, i) in &values {
                    if let Some(v) = value(f, column, &row[*i])? {
                        let mut l = labels.clone();
                        l.push((label.clone(), (*column).clone()));
                        push(l, v)?;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A key label's value: the cell's text; NULL is the empty string (an absent label).
fn key_value(f: &MetricFamily, column: &str, cell: &Cell) -> Result<String, String> {
    match cell {
        Cell::Null => Ok(String::new()),
        Cell::Unsupported(_) => {
            Err(format!("family {}: key label column '{column}' holds {}", f.name, cell.describe()))
        }
        other => Ok(other.label_text().unwrap_or_default()),
    }
}

/// A sample value, `None` for a NULL that `on_null` skips.
fn value(f: &MetricFamily, column: &str, cell: &Cell) -> Result<Option<f64>, String> {
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
        Cell::Text(s) => match s.trim().parse::<f64>() {
            Ok(x) => x,
            Err(_) => {
                return Err(format!(
                    "family {}: value column '{column}' holds {}, which is not a number",
                    f.name,
                    cell.describe()
                ))
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
            crate::eval::exposition::format_value(v)
        ));
    }
    Ok(Some(v))
}

fn describe_labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort_unstable();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::{OnEmpty, OnError, OnNull};

    fn fam(name: &str, kind: MetricKind, keys: &[&str], values: FamilyValues) -> MetricFamily {
        MetricFamily {
            name: name.into(),
            help: format!("help of {name}"),
            kind,
            key_labels: keys.iter().map(|k| k.to_string()).collect(),
            static_labels: Vec::new(),
            values,
            on_null: OnNull::Skip,
            on_empty: OnEmpty::None,
            query: None,
            on_error: OnError::None,
        }
    }

    fn rule(families: Vec<MetricFamily>) -> MetricRule {
        MetricRule { database_label: None, families }
    }

    fn rs(columns: &[&str], rows: Vec<Vec<Cell>>) -> ResultSet {
        ResultSet { columns: columns.iter().map(|c| c.to_string()).collect(), rows }
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    fn render(families: &[Family]) -> String {
        String::from_utf8(crate::eval::exposition::render(families)).unwrap()
    }

    fn series(families: &[Family]) -> Vec<String> {
        render(families).lines().filter(|l| !l.starts_with('#')).map(String::from).collect()
    }

    #[test]
    fn one_value_column_with_key_and_static_labels() {
        let mut f = fam("db_size_bytes", MetricKind::Gauge, &["database"], FamilyValues::Column("bytes".into()));
        f.static_labels = vec![("env".into(), "prod".into())];
        let r = rule(vec![f]);
        let out = evaluate(
            &r,
            "main",
            &rs(&["database", "bytes"], vec![vec![text("a"), Cell::Int(10)], vec![text("b"), Cell::Float(2.5)]]),
        )
        .unwrap();
        assert_eq!(
            render(&out),
            "# HELP db_size_bytes help of db_size_bytes\n# TYPE db_size_bytes gauge\n\
             db_size_bytes{database=\"a\",env=\"prod\"} 10\ndb_size_bytes{database=\"b\",env=\"prod\"} 2.5\n"
        );
    }

    #[test]
    fn unpivot_names_the_column_in_a_label() {
        let f = fam(
            "bgwriter",
            MetricKind::Gauge,
            &[],
            FamilyValues::Unpivot {
                label: "type".into(),
                columns: vec!["checkpoints_timed".into(), "buffers_alloc".into()],
            },
        );
        let out = evaluate(
            &rule(vec![f]),
            "main",
            &rs(
                &["checkpoints_timed", "buffers_alloc", "ignored"],
                vec![vec![Cell::Int(130), Cell::Int(1429), text("x")]],
            ),
        )
        .unwrap();
        assert_eq!(series(&out), ["bgwriter{type=\"buffers_alloc\"} 1429", "bgwriter{type=\"checkpoints_timed\"} 130"]);
    }

    #[test]
    fn counter_and_info_types() {
        let c = fam("deadlocks_total", MetricKind::Counter, &["database"], FamilyValues::Column("deadlocks".into()));
        let i = fam("version_info", MetricKind::Info, &["version"], FamilyValues::One);
        let out = evaluate(
            &rule(vec![c, i]),
            "main",
            &rs(&["database", "deadlocks", "version"], vec![vec![text("a"), Cell::Int(3), text("15.4")]]),
        )
        .unwrap();
        let text = render(&out);
        assert!(text.contains("# TYPE deadlocks_total counter\ndeadlocks_total{database=\"a\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE version_info gauge\nversion_info{version=\"15.4\"} 1\n"), "{text}");
    }

    #[test]
    fn negative_counter_is_a_rule_error() {
        let c = fam("x_total", MetricKind::Counter, &[], FamilyValues::Column("n".into()));
        let err = evaluate(&rule(vec![c]), "main", &rs(&["n"], vec![vec![Cell::Int(-1)]])).unwrap_err();
        assert!(err.contains("x_total") && err.contains("'n'") && err.contains("negative"), "{err}");
    }

    #[test]
    fn null_values_skip_or_read_zero() {
        let skip = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        let mut zero = fam("b", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        zero.on_null = OnNull::Zero;
        let out = evaluate(
            &rule(vec![skip, zero]),
            "main",
            &rs(&["k", "v"], vec![vec![text("x"), Cell::Null], vec![text("y"), Cell::Int(4)]]),
        )
        .unwrap();
        assert_eq!(series(&out), ["a{k=\"y\"} 4", "b{k=\"x\"} 0", "b{k=\"y\"} 4"]);
    }

    #[test]
    fn null_key_is_an_empty_label_value() {
        let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        let out = evaluate(&rule(vec![f]), "main", &rs(&["k", "v"], vec![vec![Cell::Null, Cell::Int(1)]])).unwrap();
        assert_eq!(series(&out), ["a{k=\"\"} 1"]);
    }

    #[test]
    fn empty_result_gives_nothing_or_zero() {
        let none = fam("a", MetricKind::Gauge, &[], FamilyValues::Column("v".into()));
        let mut zero = fam(
            "b",
            MetricKind::Gauge,
            &[],
            FamilyValues::Unpivot { label: "t".into(), columns: vec!["v".into(), "w".into()] },
        );
        zero.on_empty = OnEmpty::Zero;
        let out = evaluate(&rule(vec![none, zero]), "main", &rs(&["v", "w"], vec![])).unwrap();
        assert_eq!(out[0].samples.len(), 0);
        assert_eq!(series(&out), ["b{t=\"v\"} 0", "b{t=\"w\"} 0"]);
    }

    #[test]
    fn text_values_parse_and_garbage_is_a_rule_error_naming_the_column() {
        let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        let r = rule(vec![f]);
        let out = evaluate(&r, "main", &rs(&["k", "v"], vec![vec![text("x"), text(" 1.5 ")]])).unwrap();
        assert_eq!(series(&out), ["a{k=\"x\"} 1.5"]);
        let err = evaluate(&r, "main", &rs(&["k", "v"], vec![vec![text("x"), text("lots")]])).unwrap_err();
        assert_eq!(err, "family a: value column 'v' holds 'lots', which is not a number");
        let err = evaluate(&r, "main", &rs(&["k", "v"], vec![vec![text("x"), Cell::Unsupported("inet".into())]]))
            .unwrap_err();
        assert!(err.contains("'v'") && err.contains("inet"), "{err}");
    }

    #[test]
    fn bools_and_timestamps_are_numbers() {
        let f = fam(
            "a",
            MetricKind::Gauge,
            &[],
            FamilyValues::Unpivot { label: "c".into(), columns: vec!["b".into(), "t".into()] },
        );
        let t = chrono::DateTime::from_timestamp_millis(1_700_000_000_500).unwrap();
        let out = evaluate(&rule(vec![f]), "main", &rs(&["b", "t"], vec![vec![Cell::Bool(true), Cell::Timestamp(t)]]))
            .unwrap();
        assert_eq!(series(&out), ["a{c=\"b\"} 1", "a{c=\"t\"} 1700000000.5"]);
    }

    #[test]
    fn missing_column_is_a_rule_error() {
        let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        let err = evaluate(&rule(vec![f]), "main", &rs(&["k", "value"], vec![])).unwrap_err();
        assert_eq!(err, "family a: the query returns no column 'v' (a value); it returns: k, value");
    }

    #[test]
    fn duplicate_label_sets_are_a_rule_error() {
        let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        let err = evaluate(
            &rule(vec![f]),
            "main",
            &rs(&["k", "v"], vec![vec![text("x"), Cell::Int(1)], vec![text("x"), Cell::Int(2)]]),
        )
        .unwrap_err();
        assert!(err.contains("a{k=\"x\"}"), "{err}");
        // A NULL key and an empty text key are the same series to Prometheus.
        let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        let err = evaluate(
            &rule(vec![f]),
            "main",
            &rs(&["k", "v"], vec![vec![Cell::Null, Cell::Int(1)], vec![text(""), Cell::Int(2)]]),
        );
        assert!(err.is_err());
    }

    #[test]
    fn database_label_on_every_series_and_on_error_zero() {
        let mut up = fam("up", MetricKind::Gauge, &[], FamilyValues::Column("up".into()));
        up.on_error = OnError::Zero;
        let other = fam("other", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
        let r = MetricRule { database_label: Some("server".into()), families: vec![up, other] };
        let out = evaluate(&r, "a", &rs(&["up", "k", "v"], vec![vec![Cell::Int(1), text("x"), Cell::Int(2)]])).unwrap();
        assert_eq!(series(&out), ["up{server=\"a\"} 1", "other{k=\"x\",server=\"a\"} 2"]);
        let failed = failed(&r, "b");
        assert_eq!(series(&failed), ["up{server=\"b\"} 0"]);
    }
}
