//! Loading one metric rule (an entry of the top-level `metrics:` list) into the typed model.
//!
//! The JSON Schema has already checked the shape (keys, types, which of `value` / `values` a family
//! has); this module checks what a schema cannot say well and what an operator should hear about
//! before the first scrape rather than in a log at 3 a.m.: Prometheus naming conventions (a counter
//! ends in `_total`, an info family in `_info`), label names that would collide within a series, and
//! `on_empty` / `on_error` zero series that could not carry their key labels.

use std::path::Path;
use std::sync::Arc;

use super::endpoint::{RuleAt, SourceSpec};
use super::limits::{DEFAULT_MAX_ROWS, DEFAULT_MAX_SERIES};
use super::loader::Ctx;
use super::metric_family::FamilyAt;
use super::model::*;
use super::spec::{MetricRuleSpec, OneOrMany};

/// The label that names the database when a rule runs on several and `database_label` is not set.
/// Not `database`: that name usually holds a `datname` of the server (as in `postgresql_lock`).
pub const DEFAULT_DATABASE_LABEL: &str = "server";

impl Ctx<'_> {
    /// Validates `metrics[index]` of `path` and adds it to the rule set (also when it has errors, so
    /// later checks such as "database declared" still run; the load fails on any error anyway).
    pub(super) fn metric_rule(&mut self, path: &Path, index: usize, s: MetricRuleSpec) {
        let base = format!("/metrics/{index}");
        let ptr = |k: &str| format!("{base}/{k}");
        self.claim_rule_name(path, ptr("name"), &s.name);

        let (interval, timeout) = self.interval_and_timeout(path, &base, s.interval.as_deref(), s.timeout.as_deref());

        let on_endpoint = self.rule_source(
            RuleAt { path, base: &base, name: &s.name },
            SourceSpec {
                database_named: s.database.is_some(),
                on_endpoint: s.on_endpoint,
                query: s.query.clone(),
                queries: s.queries,
            },
        );
        let (placement, several, health) = match (on_endpoint, s.database) {
            (Some((e, health)), _) => (Placement::Endpoint(e), false, health),
            (None, Some(OneOrMany::One(d))) => (Placement::Databases(vec![d]), false, RuleHealth::default()),
            (None, Some(OneOrMany::Many(ds))) => (Placement::Databases(ds), true, RuleHealth::default()),
            (None, None) => (Placement::Databases(Vec::new()), false, RuleHealth::default()),
        };
        let query = match (&placement, s.query) {
            (Placement::Endpoint(r), _) => r.queries.first().map(|(_, q)| q.clone()).unwrap_or_default(),
            (Placement::Databases(_), Some(q)) => q,
            (Placement::Databases(databases), None) => {
                if !databases.is_empty() {
                    self.error(path, base.clone(), "the rule needs a `query`");
                }
                String::new()
            }
        };
        let query_names: Vec<String> = match &placement {
            Placement::Endpoint(r) => r.queries.iter().map(|(n, _)| n.clone()).collect(),
            Placement::Databases(_) => Vec::new(),
        };
        let database_label = match (s.database_label, several) {
            (Some(l), _) => Some(l),
            (None, true) => Some(DEFAULT_DATABASE_LABEL.to_string()),
            (None, false) => None,
        };
        if let Some(l) = &database_label {
            self.check_label_name(path, ptr("database_label"), l);
        }

        let mut families = Vec::with_capacity(s.families.len());
        for (i, mut f) in s.families.into_iter().enumerate() {
            // The rule's on_empty is its families' default.
            f.on_empty = f.on_empty.or(s.on_empty);
            let fptr = format!("{base}/families/{i}");
            let at = FamilyAt {
                path,
                fptr: &fptr,
                rule: &s.name,
                rule_key_labels: &s.key_labels,
                database_label: database_label.as_deref(),
            };
            let mut family = self.metric_family(&at, f);
            family.query = self.family_query(path, &fptr, &query_names, family.query.take());
            families.push(family);
        }

        let rule = Rule {
            name: s.name,
            file: path.to_path_buf(),
            placement,
            health,
            interval,
            timeout,
            max_rows: s.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
            max_series: s.max_series.unwrap_or(DEFAULT_MAX_SERIES),
            query,
            vars: s.vars,
            kind: RuleKind::Metric(MetricRule { database_label, families }),
        };
        // A rule on databases renders its query once every file is read (`query_renders`).
        if let Placement::Endpoint(_) = &rule.placement {
            self.request_templates(path, &base, &rule);
            self.query_templates(path, &base, &rule);
        }
        self.set.rules.push(Arc::new(rule));
    }

    /// The query a family reads: one of its endpoint rule's `queries`, named unless there is one.
    fn family_query(&mut self, path: &Path, fptr: &str, names: &[String], query: Option<String>) -> Option<String> {
        match (query, names.len()) {
            (None, 0 | 1) => names.first().cloned(),
            (None, _) => {
                let msg = format!(
                    "the rule has several queries; name the one this family reads with `query:` (one of: {})",
                    names.join(", ")
                );
                self.error(path, fptr.to_string(), msg);
                None
            }
            (Some(_), 0) => {
                self.error(
                    path,
                    format!("{fptr}/query"),
                    "`query` in a family names one of an endpoint rule's `queries`; this rule has one query",
                );
                None
            }
            (Some(q), _) if !names.contains(&q) => {
                self.error(
                    path,
                    format!("{fptr}/query"),
                    format!("the rule has no query '{q}' (it has: {})", names.join(", ")),
                );
                None
            }
            (Some(q), _) => Some(q),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::rules::model::*;
    use crate::rules::{load_sources, Diagnostics, LoadOptions, Loaded};

    const HEAD: &str = "version: 1\ndatabases:\n  a: {dsn: 'host=a'}\n  b: {dsn: 'host=b'}\nmetrics:\n";

    fn load(metrics: &str) -> Result<Loaded, Diagnostics> {
        let opts = LoadOptions { env: Arc::new(|_| None), unset_env_is_error: true };
        load_sources(&[(PathBuf::from("t.yaml"), format!("{HEAD}{metrics}"))], &opts)
    }

    /// Every diagnostic as `at POINTER: MESSAGE`, a line each.
    fn errors(metrics: &str) -> String {
        match load(metrics) {
            Ok(_) => panic!("loaded without errors:\n{metrics}"),
            Err(d) => d.0.iter().map(|d| format!("at {}: {}\n", d.pointer, d.message)).collect(),
        }
    }

    fn metric(loaded: &Loaded, i: usize) -> &MetricRule {
        match &loaded.rules.rules[i].kind {
            RuleKind::Metric(m) => m,
            other => panic!("not a metric rule: {other:?}"),
        }
    }

    #[test]
    fn a_full_rule_loads_into_the_model() {
        let loaded = load(
            "  - name: r\n    database: a\n    interval: 30s\n    timeout: 5s\n    key_labels: [database]\n    query: select 1\n    families:\n\
             \x20     - {name: x_bytes, help: h, value: v, static_labels: {env: prod}, on_null: zero}\n\
             \x20     - {name: y, help: h, values: [p, q], value_label: type, key_labels: []}\n\
             \x20     - {name: z_total, help: h, type: counter, value: c}\n\
             \x20     - {name: v_info, help: h, type: info, key_labels: [version]}\n",
        )
        .unwrap();
        let rule = &loaded.rules.rules[0];
        assert_eq!(rule.placement.sources().collect::<Vec<_>>(), ["a"]);
        assert_eq!(rule.interval, std::time::Duration::from_secs(30));
        let m = metric(&loaded, 0);
        assert_eq!(m.database_label, None);
        let f = &m.families;
        assert_eq!(f[0].key_labels, ["database"]);
        assert_eq!(f[0].static_labels, [("env".to_string(), "prod".to_string())]);
        assert_eq!(f[0].values, FamilyValues::Column("v".into()));
        assert_eq!(f[0].on_null, OnNull::Zero);
        assert!(f[1].key_labels.is_empty());
        assert_eq!(f[1].values, FamilyValues::Unpivot { label: "type".into(), columns: vec!["p".into(), "q".into()] });
        assert_eq!(f[2].kind, MetricKind::Counter);
        assert_eq!(f[3].kind, MetricKind::Info);
        assert_eq!(f[3].values, FamilyValues::One);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn a_list_of_databases_gets_the_server_label_unless_named() {
        let loaded =
            load("  - {name: r, database: [a, b], query: select 1, families: [{name: x, help: h, value: v}]}\n")
                .unwrap();
        let m = metric(&loaded, 0);
        assert_eq!(m.database_label.as_deref(), Some("server"));
        assert_eq!(loaded.rules.rules[0].placement.sources().collect::<Vec<_>>(), ["a", "b"]);
        let loaded = load("  - {name: r, database: [a, b], database_label: instance_db, query: select 1, families: [{name: x, help: h, value: v}]}\n").unwrap();
        assert_eq!(metric(&loaded, 0).database_label.as_deref(), Some("instance_db"));
        let e =
            errors("  - {name: r, database: [a, nope], query: select 1, families: [{name: x, help: h, value: v}]}\n");
        assert!(e.contains("at /metrics/0/database/1: rule 'r' uses database 'nope'"), "{e}");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let e = errors(
            "  - {name: r, database: a, query: select 1, families: [{name: x, help: h, type: counter, value: v}]}\n",
        );
        assert!(e.contains("/metrics/0/families/0/name: counter 'x' must end in _total"), "{e}");
        load("  - {name: r, database: a, query: select 1, families: [{name: x, help: h, type: counter, value: v, require_total_suffix: false}]}\n").unwrap();
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: x, help: h, type: info, key_labels: [v]}]}\n");
        assert!(e.contains("info metric 'x' must end in _info"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: x, help: h, value: v, require_total_suffix: false}]}\n");
        assert!(e.contains("require_total_suffix applies to counters only"), "{e}");
        let loaded =
            load("  - {name: r, database: a, query: select 1, families: [{name: x_total, help: h, value: v}]}\n")
                .unwrap();
        assert!(loaded.warnings[0].message.contains("gauge 'x_total' ends in _total"), "{:?}", loaded.warnings);
        let loaded =
            load("  - {name: r, database: a, query: select 1, families: [{name: rows_count, help: h, value: v}]}\n")
                .unwrap();
        assert!(loaded.warnings[0].message.contains("ends in _count"), "{:?}", loaded.warnings);
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: sql_signal_exporter_x, help: h, value: v}]}\n");
        assert!(e.contains("reserved"), "{e}");
    }

    #[test]
    fn metric_names_are_unique_across_rules_and_families() {
        let e = errors(
            "  - {name: r, database: a, query: select 1, families: [{name: x, help: h, value: v}]}\n\
             \x20 - {name: s, database: a, query: select 1, families: [{name: x, help: h, value: v}]}\n",
        );
        assert!(e.contains("/metrics/1/families/0/name: metric name 'x' is already produced by rule 'r'"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: x, help: h, value: v}, {name: x, help: h, value: w}]}\n");
        assert!(e.contains("metric name 'x'"), "{e}");
    }

    #[test]
    fn value_shapes_are_checked_by_the_schema() {
        // Both a value and values; neither; values without value_label; a value on an info family.
        for family in [
            "{name: x, help: h, value: v, values: [w], value_label: t}",
            "{name: x, help: h}",
            "{name: x, help: h, values: [w]}",
            "{name: x_info, help: h, type: info, value: v}",
            "{name: x, help: h, value: v, on_null: maybe}",
            "{name: x, help: ''}",
        ] {
            let e = errors(&format!("  - {{name: r, database: a, query: select 1, families: [{family}]}}\n"));
            assert!(e.contains("/metrics/0/families/0"), "{family}: {e}");
        }
    }

    #[test]
    fn zero_series_need_a_family_without_key_labels() {
        let e = errors("  - {name: r, database: a, query: select 1, key_labels: [k], families: [{name: x, help: h, value: v, on_empty: zero}]}\n");
        assert!(e.contains("/metrics/0/families/0/on_empty: on_empty: zero needs a family without key labels"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: x, help: h, value: v, key_labels: [k], on_error: zero}]}\n");
        assert!(e.contains("on_error: zero needs a family without key labels"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: x_info, help: h, type: info, on_null: zero}]}\n");
        assert!(e.contains("on_null does not apply to an info family"), "{e}");
    }

    #[test]
    fn labels_of_a_series_must_not_collide() {
        let e = errors("  - {name: r, database: [a, b], query: select 1, families: [{name: x, help: h, value: v, key_labels: [server]}]}\n");
        assert!(e.contains("label 'server' is both the database label and a key label"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: x, help: h, values: [v], value_label: k, key_labels: [k]}]}\n");
        assert!(e.contains("label 'k' is both a key label and the value_label"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: x, help: h, value: v, key_labels: [__k]}]}\n");
        assert!(e.contains("'__k' starts with '__'"), "{e}");
    }

    #[test]
    fn templates_and_timeouts_are_checked_at_load() {
        let e = errors(
            "  - {name: r, database: a, query: 'select {{ nope }}', families: [{name: x, help: h, value: v}]}\n",
        );
        assert!(e.contains("/metrics/0/query: the query template does not render"), "{e}");
        let e = errors("  - {name: r, database: a, interval: 10s, timeout: 10s, query: select 1, families: [{name: x, help: h, value: v}]}\n");
        assert!(e.contains("/metrics/0/timeout"), "{e}");
        load("  - {name: r, database: a, vars: {n: 3}, query: 'select {{ vars.n }} {% if server_version_num >= 170000 %}1{% endif %}', families: [{name: x, help: h, value: v}]}\n").unwrap();
    }

    #[test]
    fn the_shipped_postgres_rules_load() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/postgres.yaml")).unwrap();
        let opts = LoadOptions {
            env: Arc::new(|_| Some("postgresql://x@localhost/postgres".into())),
            unset_env_is_error: true,
        };
        let loaded =
            load_sources(&[(PathBuf::from("rules/postgres.yaml"), text)], &opts).unwrap_or_else(|d| panic!("{d}"));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(loaded.rules.rules.len() >= 8);
    }

    #[test]
    fn histograms_summaries_and_state_sets_load() {
        let loaded = load(
            "  - name: r\n    database: a\n    query: select 1\n    families:\n\
             \x20     - {name: age_seconds, help: h, type: histogram, unit: seconds, key_labels: [db], histogram: {observe: v, buckets: [1, 10]}}\n\
             \x20     - {name: dur_seconds, help: h, type: histogram, histogram: {le: le, bucket: n, counts: per_bucket, sum: s, count: c}, created: since}\n\
             \x20     - {name: lat, help: h, type: summary, summary: {quantile: q, value: v, sum: s, count: c}}\n\
             \x20     - {name: state, help: h, type: stateset, stateset: {column: st, states: [a, b]}}\n",
        )
        .unwrap();
        let f = &metric(&loaded, 0).families;
        assert_eq!(
            f[0].values,
            FamilyValues::Histogram(Histogram::Observations { column: "v".into(), buckets: vec![1.0, 10.0] })
        );
        assert_eq!(f[0].unit.as_deref(), Some("seconds"));
        let FamilyValues::Histogram(Histogram::BucketRows(b)) = &f[1].values else { panic!("{:?}", f[1].values) };
        assert_eq!((b.counts, b.count.as_deref()), (BucketCounts::PerBucket, Some("c")));
        assert_eq!(f[1].created.as_deref(), Some("since"));
        assert_eq!(f[2].kind, MetricKind::Summary);
        assert_eq!(
            f[3].values,
            FamilyValues::StateSet(StateSet { column: "st".into(), states: vec!["a".into(), "b".into()] })
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn static_mistakes_of_histograms_are_caught_at_their_key() {
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: h, help: h, type: histogram, histogram: {observe: v, buckets: [1, 10, 5]}}]}\n");
        assert!(
            e.contains("at /metrics/0/families/0/histogram/buckets/2: bucket 5 is below the bucket before it (10)"),
            "{e}"
        );
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: h, help: h, type: histogram, histogram: {observe: v, buckets: [1, 1]}}]}\n");
        assert!(e.contains("bucket 1 repeats"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: h, help: h, type: histogram, histogram: {le: le, bucket: n}}]}\n");
        assert!(e.contains("at /metrics/0/families/0/histogram") && e.contains("'sum'"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: h, help: h, type: histogram, key_labels: [le], histogram: {le: le, bucket: n, sum: s}}]}\n");
        assert!(e.contains("label 'le' is both the histogram's bucket label and a key label"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: s, help: h, type: summary, key_labels: [quantile], summary: {quantile: q, value: v, sum: s, count: c}}]}\n");
        assert!(e.contains("label 'quantile' is both the summary's quantile label and a key label"), "{e}");
        let e = errors(
            "  - {name: r, database: a, query: select 1, families: [{name: h, help: h, type: histogram, value: v}]}\n",
        );
        assert!(e.contains("/metrics/0/families/0"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: h_total, help: h, type: counter, unit: seconds, value: v}]}\n");
        assert!(e.contains("so its name must end in _seconds_total"), "{e}");
        let e = errors(
            "  - {name: r, database: a, query: select 1, families: [{name: h, help: h, value: v, created: c}]}\n",
        );
        assert!(e.contains("created applies to counters, histograms and summaries"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: h, help: h, type: histogram, on_error: zero, histogram: {observe: v, buckets: [1]}}]}\n");
        assert!(e.contains("on_error does not apply to a histogram"), "{e}");
        let e = errors("  - {name: r, database: a, query: select 1, families: [{name: h, help: h, type: histogram, histogram: {observe: v, buckets: [1]}}, {name: h_count, help: h, value: v}]}\n");
        assert!(e.contains("metric name 'h_count'"), "{e}");
    }

    const NAMED: &str = "  - name: r\n    database: a\n    query: select 1\n    families:\n";

    #[test]
    fn families_named_from_a_column_load() {
        let loaded = load(&format!(
            "{NAMED}      - name_from: {{column: k, prefix: p_, suffix: _total}}\n        help: h\n        type: counter\n        value: v\n        overrides:\n          p_x_total: {{help: x}}\n          p_y_total: {{type: untyped}}\n      - {{name: p_declared_total, help: h, type: counter, value: v}}\n      - {{name: q, help: h, type: untyped, value: v}}\n"
        ))
        .unwrap_or_else(|d| panic!("{d}"));
        let f = &metric(&loaded, 0).families;
        let FamilyNaming::FromColumn(from) = &f[0].naming else { panic!("{:?}", f[0].naming) };
        assert_eq!(f[0].name, "p_<k>_total");
        assert_eq!(from.family_name("Com.Select-1"), "p_com_select_1_total");
        assert_eq!(from.overrides["p_x_total"], NameOverride { kind: None, help: Some("x".into()) });
        assert_eq!(from.overrides["p_y_total"].kind, Some(MetricKind::Untyped));
        // A declared name the family could generate is refused at run time, not twice in /metrics.
        assert_eq!(from.taken.get("p_declared_total").map(String::as_str), Some("r"));
        assert_eq!(f[1].naming, FamilyNaming::Declared);
        assert_eq!(f[2].kind, MetricKind::Untyped);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn families_named_from_a_column_are_checked_at_their_key() {
        let family = |yaml: &str| errors(&format!("{NAMED}      - {yaml}\n"));
        let e = family("{name_from: {column: k, prefix: p_}, help: h, type: counter, value: v}");
        assert!(e.contains("at /metrics/0/families/0/name_from: counter 'p_<k>' must end in _total (the Prometheus convention promtool checks); give name_from a suffix ending in _total"), "{e}");
        let e = family("{name_from: {column: k, prefix: p_}, help: h, value: v, overrides: {p_x: {type: counter}}}");
        assert!(e.contains("at /metrics/0/families/0/overrides/p_x: counter 'p_x' must end in _total"), "{e}");
        let e = family("{name: x, name_from: {column: k, prefix: p_}, help: h, value: v}");
        assert!(
            e.contains("at /metrics/0/families/0: families[0]: give only one of 'name' or 'name_from', not several"),
            "{e}"
        );
        let e = family("{name_from: {column: k, prefix: 9p_}, help: h, value: v}");
        assert!(e.contains("at /metrics/0/families/0/name_from/prefix"), "{e}");
        let e = family("{name_from: {column: k, prefix: process_}, help: h, value: v}");
        assert!(e.contains("prefix 'process_': metric name 'process_' clashes"), "{e}");
        let e = family("{name_from: {column: k, prefix: p_}, help: h, type: info}");
        assert!(e.contains("at /metrics/0/families/0"), "{e}");
        let e = family("{name_from: {column: k, prefix: p_}, help: h, value: v, on_empty: zero}");
        assert!(
            e.contains(
                "at /metrics/0/families/0/on_empty: on_empty: zero does not apply to a family named from a column"
            ),
            "{e}"
        );
        let e = family("{name: x, help: h, value: v, overrides: {x: {help: y}}}");
        assert!(e.contains("at /metrics/0/families/0"), "{e}");
        let e = errors(&format!(
            "{NAMED}      - {{name_from: {{column: k, prefix: p_}}, help: h, value: v}}\n  - {{name: s, database: a, query: select 1, families: [{{name_from: {{column: k, prefix: p_x_}}, help: h, value: v}}]}}\n"
        ));
        assert!(e.contains("at /metrics/1/families/0/name_from: the names of this family (p_x_<k>) may be the same as those of a family of rule 'r' (p_<k>)"), "{e}");
        let loaded = load(&format!(
            "{NAMED}      - {{name_from: {{column: k, prefix: p_}}, help: h, value: v, overrides: {{q_x: {{help: y}}}}}}\n"
        ))
        .unwrap_or_else(|d| panic!("{d}"));
        assert!(
            loaded.warnings[0]
                .message
                .contains("override 'q_x' is not a name this family can give (its names are p_<k>)"),
            "{:?}",
            loaded.warnings
        );
    }
}
