//! The mapping of rows to every kind of family, and each run-time failure, without a database.

use super::*;
use crate::rules::model::*;

fn fam(name: &str, kind: MetricKind, keys: &[&str], values: FamilyValues) -> MetricFamily {
    MetricFamily {
        name: name.into(),
        naming: FamilyNaming::Declared,
        help: format!("help of {name}"),
        kind,
        key_labels: keys.iter().map(|k| k.to_string()).collect(),
        key_columns: keys.iter().map(|k| k.to_string()).collect(),
        absent_key_columns: AbsentKeyColumns::Fail,
        text_values: TextValues::default(),
        static_labels: Vec::new(),
        values,
        on_null: OnNull::Skip,
        on_empty: OnEmpty::None,
        query: None,
        on_error: OnError::None,
        unit: None,
        created: None,
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
    String::from_utf8(crate::eval::exposition::text::render(families)).unwrap()
}

fn series(families: &[Family]) -> Vec<String> {
    render(families).lines().filter(|l| !l.starts_with('#')).map(String::from).collect()
}

#[test]
fn one_value_column_with_key_and_static_labels() {
    let mut f = fam("db_size_bytes", MetricKind::Gauge, &["database"], FamilyValues::Column("bytes".into()));
    f.static_labels = vec![("env".into(), "prod".into())];
    let r = rule(vec![f]);
    let out = eval(
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
    let out = eval(
        &rule(vec![f]),
        "main",
        &rs(&["checkpoints_timed", "buffers_alloc", "ignored"], vec![vec![Cell::Int(130), Cell::Int(1429), text("x")]]),
    )
    .unwrap();
    assert_eq!(series(&out), ["bgwriter{type=\"buffers_alloc\"} 1429", "bgwriter{type=\"checkpoints_timed\"} 130"]);
}

#[test]
fn counter_and_info_types() {
    let c = fam("deadlocks_total", MetricKind::Counter, &["database"], FamilyValues::Column("deadlocks".into()));
    let i = fam("version_info", MetricKind::Info, &["version"], FamilyValues::One);
    let out = eval(
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
    let err = eval(&rule(vec![c]), "main", &rs(&["n"], vec![vec![Cell::Int(-1)]])).unwrap_err();
    assert!(err.contains("x_total") && err.contains("'n'") && err.contains("negative"), "{err}");
}

#[test]
fn null_values_skip_or_read_zero() {
    let skip = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
    let mut zero = fam("b", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
    zero.on_null = OnNull::Zero;
    let out = eval(
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
    let out = eval(&rule(vec![f]), "main", &rs(&["k", "v"], vec![vec![Cell::Null, Cell::Int(1)]])).unwrap();
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
    let out = eval(&rule(vec![none, zero]), "main", &rs(&["v", "w"], vec![])).unwrap();
    assert_eq!(out[0].samples.len(), 0);
    assert_eq!(series(&out), ["b{t=\"v\"} 0", "b{t=\"w\"} 0"]);
}

#[test]
fn text_values_parse_and_garbage_is_a_rule_error_naming_the_column() {
    let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
    let r = rule(vec![f]);
    let out = eval(&r, "main", &rs(&["k", "v"], vec![vec![text("x"), text(" 1.5 ")]])).unwrap();
    assert_eq!(series(&out), ["a{k=\"x\"} 1.5"]);
    let err = eval(&r, "main", &rs(&["k", "v"], vec![vec![text("x"), text("lots")]])).unwrap_err();
    assert_eq!(err, "family a: value column 'v' holds 'lots', which is not a number; convert it in the query, or map such texts to numbers with text_values");
    let err = eval(&r, "main", &rs(&["k", "v"], vec![vec![text("x"), Cell::Unsupported("inet".into())]])).unwrap_err();
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
    let out = eval(&rule(vec![f]), "main", &rs(&["b", "t"], vec![vec![Cell::Bool(true), Cell::Timestamp(t)]])).unwrap();
    assert_eq!(series(&out), ["a{c=\"b\"} 1", "a{c=\"t\"} 1700000000.5"]);
}

#[test]
fn missing_column_is_a_rule_error() {
    let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
    let err = eval(&rule(vec![f]), "main", &rs(&["k", "value"], vec![])).unwrap_err();
    assert_eq!(err, "family a: the query returns no column 'v' (a value); it returns: k, value");
}

#[test]
fn duplicate_label_sets_are_a_rule_error() {
    let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
    let err = eval(
        &rule(vec![f]),
        "main",
        &rs(&["k", "v"], vec![vec![text("x"), Cell::Int(1)], vec![text("x"), Cell::Int(2)]]),
    )
    .unwrap_err();
    assert!(err.contains("a{k=\"x\"}"), "{err}");
    // A NULL key and an empty text key are the same series to Prometheus.
    let f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
    let err = eval(
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
    let out = eval(&r, "a", &rs(&["up", "k", "v"], vec![vec![Cell::Int(1), text("x"), Cell::Int(2)]])).unwrap();
    assert_eq!(series(&out), ["up{server=\"a\"} 1", "other{k=\"x\",server=\"a\"} 2"]);
    let failed = failed(&r, "b");
    assert_eq!(series(&failed), ["up{server=\"b\"} 0"]);
}

fn eval(rule: &MetricRule, source: &str, rs: &ResultSet) -> Result<Vec<Family>, String> {
    let folded = evaluate(rule, source, rs)?;
    match folded.family_failures.as_slice() {
        [] => Ok(folded.families),
        failures => Err(failures.join("; ")),
    }
}

fn histogram_family(name: &str, keys: &[&str], h: Histogram) -> MetricFamily {
    fam(name, MetricKind::Histogram, keys, FamilyValues::Histogram(h))
}

fn bucket_rows(counts: BucketCounts, count: Option<&str>) -> Histogram {
    Histogram::BucketRows(BucketRows {
        le: "le".into(),
        bucket: "n".into(),
        counts,
        sum: "s".into(),
        count: count.map(String::from),
    })
}

fn le_rows(rows: &[(&str, Cell, i64)]) -> ResultSet {
    let rows = rows.iter().map(|(db, le, n)| vec![text(db), le.clone(), Cell::Int(*n), Cell::Float(7.5)]).collect();
    rs(&["db", "le", "n", "s"], rows)
}

#[test]
fn raw_values_are_counted_into_buckets_per_label_set() {
    let h = Histogram::Observations { column: "v".into(), buckets: vec![1.0, 10.0] };
    let f = histogram_family("age_seconds", &["db"], h);
    let rows = [("a", 0.5), ("a", 1.0), ("a", 5.0), ("b", 50.0), ("a", 11.0)];
    let out = eval(
        &rule(vec![f]),
        "main",
        &rs(&["db", "v"], rows.iter().map(|(d, v)| vec![text(d), Cell::Float(*v)]).collect()),
    )
    .unwrap();
    assert_eq!(
        series(&out),
        [
            "age_seconds_bucket{db=\"a\",le=\"1\"} 2",
            "age_seconds_bucket{db=\"a\",le=\"10\"} 3",
            "age_seconds_bucket{db=\"a\",le=\"+Inf\"} 4",
            "age_seconds_sum{db=\"a\"} 17.5",
            "age_seconds_count{db=\"a\"} 4",
            "age_seconds_bucket{db=\"b\",le=\"1\"} 0",
            "age_seconds_bucket{db=\"b\",le=\"10\"} 0",
            "age_seconds_bucket{db=\"b\",le=\"+Inf\"} 1",
            "age_seconds_sum{db=\"b\"} 50",
            "age_seconds_count{db=\"b\"} 1",
        ]
    );
}

#[test]
fn raw_values_without_key_labels_report_zero_observations() {
    let h = Histogram::Observations { column: "v".into(), buckets: vec![1.0] };
    let out = eval(&rule(vec![histogram_family("h", &[], h)]), "main", &rs(&["v"], vec![])).unwrap();
    assert_eq!(series(&out), ["h_bucket{le=\"1\"} 0", "h_bucket{le=\"+Inf\"} 0", "h_sum 0", "h_count 0"]);
}

#[test]
fn bucket_rows_in_any_order_derive_inf_and_count() {
    let f = histogram_family("h", &["db"], bucket_rows(BucketCounts::Cumulative, None));
    let rows = le_rows(&[("a", text("10"), 3), ("a", Cell::Float(0.5), 1)]);
    let out = eval(&rule(vec![f]), "main", &rows).unwrap();
    assert_eq!(
        series(&out),
        [
            "h_bucket{db=\"a\",le=\"0.5\"} 1",
            "h_bucket{db=\"a\",le=\"10\"} 3",
            "h_bucket{db=\"a\",le=\"+Inf\"} 3",
            "h_sum{db=\"a\"} 7.5",
            "h_count{db=\"a\"} 3"
        ]
    );
}

#[test]
fn per_bucket_rows_are_summed_and_inf_rows_are_read() {
    let f = histogram_family("h", &["db"], bucket_rows(BucketCounts::PerBucket, None));
    let rows = le_rows(&[("a", text("1"), 2), ("a", text("+Inf"), 1), ("a", text("5"), 4)]);
    let out = eval(&rule(vec![f]), "main", &rows).unwrap();
    assert_eq!(
        series(&out)[..3],
        ["h_bucket{db=\"a\",le=\"1\"} 2", "h_bucket{db=\"a\",le=\"5\"} 6", "h_bucket{db=\"a\",le=\"+Inf\"} 7"]
    );
}

/// Each run-time failure fails its own family, named, and the rule's other families are served.
#[test]
fn each_bucket_failure_fails_its_family_only() {
    type BucketRow<'a> = (&'a str, Cell, i64);
    let cases: [(Vec<BucketRow>, Option<&str>, &str); 4] = [
        (vec![("a", text("1"), 5), ("a", text("2"), 3)], None, "decreasing_buckets"),
        (vec![("a", text("lots"), 5)], None, "bad_le"),
        (vec![("a", text("1"), 2), ("a", text("1"), 3)], None, "duplicate_bucket"),
        (vec![("a", text("1"), 2), ("a", text("+Inf"), 3)], Some("c"), "count_mismatch"),
    ];
    for (rows, count, reason) in cases {
        let h = histogram_family("h", &["db"], bucket_rows(BucketCounts::Cumulative, count));
        let g = fam("g", MetricKind::Gauge, &["db", "le", "n"], FamilyValues::Column("c".into()));
        let rows: Vec<Vec<Cell>> = rows
            .iter()
            .map(|(db, le, n)| vec![text(db), le.clone(), Cell::Int(*n), Cell::Float(1.0), Cell::Int(4)])
            .collect();
        let folded = evaluate(&rule(vec![h, g]), "main", &rs(&["db", "le", "n", "s", "c"], rows)).unwrap();
        assert_eq!(folded.family_failures.len(), 1, "{reason}: {:?}", folded.family_failures);
        assert!(
            folded.family_failures[0].starts_with(&format!("family h: {reason}: ")),
            "{:?}",
            folded.family_failures
        );
        assert_eq!(folded.families.len(), 1, "{reason}: only the gauge is served");
        assert_eq!(folded.families[0].name, "g");
        assert!(!folded.families[0].samples.is_empty());
    }
}

#[test]
fn summaries_read_quantile_rows() {
    let s = Summary { quantile: "q".into(), value: "v".into(), sum: "s".into(), count: "c".into() };
    let f = fam("lat_seconds", MetricKind::Summary, &[], FamilyValues::Summary(s));
    let rows = vec![
        vec![Cell::Float(0.99), Cell::Float(2.0), Cell::Int(30), Cell::Int(10)],
        vec![Cell::Float(0.5), Cell::Float(0.5), Cell::Int(30), Cell::Int(10)],
    ];
    let out = eval(&rule(vec![f.clone()]), "main", &rs(&["q", "v", "s", "c"], rows)).unwrap();
    assert_eq!(
        series(&out),
        [
            "lat_seconds{quantile=\"0.5\"} 0.5",
            "lat_seconds{quantile=\"0.99\"} 2",
            "lat_seconds_sum 30",
            "lat_seconds_count 10"
        ]
    );
    let bad = vec![vec![Cell::Float(1.5), Cell::Float(2.0), Cell::Int(30), Cell::Int(10)]];
    let err = eval(&rule(vec![f]), "main", &rs(&["q", "v", "s", "c"], bad)).unwrap_err();
    assert!(err.starts_with("family lat_seconds: bad_quantile: "), "{err}");
}

#[test]
fn state_sets_give_one_series_per_state_and_unknown_is_bad_value() {
    let s = StateSet { column: "state".into(), states: vec!["active".into(), "idle".into()] };
    let f = fam("backend_state", MetricKind::StateSet, &["pid"], FamilyValues::StateSet(s));
    let rows = vec![vec![text("1"), text("idle")], vec![text("2"), Cell::Null]];
    let out = eval(&rule(vec![f.clone()]), "main", &rs(&["pid", "state"], rows)).unwrap();
    assert_eq!(
        series(&out),
        ["backend_state{backend_state=\"active\",pid=\"1\"} 0", "backend_state{backend_state=\"idle\",pid=\"1\"} 1"]
    );
    let err = eval(&rule(vec![f]), "main", &rs(&["pid", "state"], vec![vec![text("1"), text("gone")]])).unwrap_err();
    assert!(err.starts_with("family backend_state: bad_value: column 'state' holds 'gone'"), "{err}");
    assert!(err.contains("(active, idle)"), "{err}");
}

#[test]
fn created_column_gives_openmetrics_created_series() {
    let mut c = fam("x_total", MetricKind::Counter, &[], FamilyValues::Column("n".into()));
    c.created = Some("since".into());
    let out =
        eval(&rule(vec![c]), "main", &rs(&["n", "since"], vec![vec![Cell::Int(3), Cell::Int(1_700_000_000)]])).unwrap();
    let om = String::from_utf8(crate::eval::exposition::openmetrics::render(&out)).unwrap();
    assert!(om.contains("x_total 3\nx_created 1700000000\n"), "{om}");
    assert!(!render(&out).contains("created"));
}

#[test]
fn label_texts_of_few_distinct_values_are_shared_between_rows_and_many_stand_alone() {
    let f = fam("pod_restarts", MetricKind::Gauge, &["cluster", "pod"], FamilyValues::Column("restarts".into()));
    let rows: Vec<Vec<Cell>> =
        (0..10_000).map(|i| vec![text(&format!("c{}", i % 3)), text(&format!("p{i}")), Cell::Int(i)]).collect();
    let out = eval(&rule(vec![f]), "main", &rs(&["cluster", "pod", "restarts"], rows)).unwrap();
    let samples = &out[0].samples;
    assert_eq!(samples.len(), 10_000);
    let value = |i: usize, name: &str| samples[i].labels.iter().find(|(k, _)| &**k == name).unwrap().1.clone();
    let row = |n: f64| samples.iter().position(|s| s.value == n).unwrap();
    // Rows 0 and 3 are both in cluster c0: one text. Every pod is its own, and all are right.
    assert!(std::sync::Arc::ptr_eq(&value(row(0.0), "cluster"), &value(row(3.0), "cluster")));
    assert!(!std::sync::Arc::ptr_eq(&value(row(0.0), "cluster"), &value(row(1.0), "cluster")));
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(&*value(i, "pod"), format!("p{}", s.value as usize));
        assert_eq!(&*value(i, "cluster"), format!("c{}", s.value as usize % 3));
    }
}

#[test]
fn declared_texts_read_as_numbers_in_any_case_and_others_still_fail_the_rule() {
    let mut f = fam("a", MetricKind::Gauge, &["k"], FamilyValues::Column("v".into()));
    f.text_values = TextValues::new([("Yes".to_string(), 1.0), ("no".to_string(), 0.0)]);
    let r = rule(vec![f]);
    let rows = vec![vec![text("x"), text("YES")], vec![text("y"), text(" No ")], vec![text("z"), text("2.5")]];
    let out = eval(&r, "main", &rs(&["k", "v"], rows)).unwrap();
    assert_eq!(series(&out), ["a{k=\"x\"} 1", "a{k=\"y\"} 0", "a{k=\"z\"} 2.5"]);
    let err = eval(&r, "main", &rs(&["k", "v"], vec![vec![text("x"), text("Connecting")]])).unwrap_err();
    assert!(err.contains("'Connecting'") && err.contains("nor one of its text_values"), "{err}");
}

/// `name_from: {columns: each}` over a `SHOW SLAVE STATUS`-like row: a family per column that is
/// not a key label's, texts mapped or parsed, the rest (and NULL) skipped; key labels read from
/// columns spelled otherwise, and a column the result lacks as the empty label.
#[test]
fn each_column_names_a_family_and_unreadable_cells_give_no_series() {
    let mut f = fam("s_<each column>", MetricKind::Untyped, &["master_host", "master_uuid"], FamilyValues::One);
    f.key_columns = vec!["Master_Host".into(), "Master_UUID".into()];
    f.absent_key_columns = AbsentKeyColumns::Empty;
    f.text_values = TextValues::new([("yes".to_string(), 1.0), ("connecting".to_string(), 0.0)]);
    let from = NameFrom {
        key: NameKey::EachColumn,
        prefix: "s_".into(),
        suffix: String::new(),
        overrides: Default::default(),
        taken: Default::default(),
    };
    f.naming = FamilyNaming::FromColumn(std::sync::Arc::new(from));
    let r = rule(vec![f]);
    let columns = [
        "Master_Host",
        "Slave_IO_Running",
        "Slave_SQL_Running",
        "Read_Master_Log_Pos",
        "Gtid_IO_Pos",
        "Seconds_Behind_Master",
    ];
    let row = vec![text("10.0.0.1"), text("Connecting"), text("Yes"), Cell::Int(1234), text("0-1-5"), Cell::Null];
    let out = eval(&r, "main", &rs(&columns, vec![row])).unwrap();
    let names: Vec<&str> = out.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["s_read_master_log_pos", "s_slave_io_running", "s_slave_sql_running"]);
    assert_eq!(
        series(&out),
        [
            "s_read_master_log_pos{master_host=\"10.0.0.1\",master_uuid=\"\"} 1234",
            "s_slave_io_running{master_host=\"10.0.0.1\",master_uuid=\"\"} 0",
            "s_slave_sql_running{master_host=\"10.0.0.1\",master_uuid=\"\"} 1",
        ]
    );
    // No row (a server that is no replica): no family, no failure.
    let out = eval(&r, "main", &rs(&columns, Vec::new())).unwrap();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_key_column_the_result_lacks_fails_the_rule_unless_declared_absent_as_empty() {
    let mut f = fam("a", MetricKind::Gauge, &["host"], FamilyValues::Column("v".into()));
    f.key_columns = vec!["Host".into()];
    let r = rule(vec![f.clone()]);
    let err = eval(&r, "main", &rs(&["v"], vec![vec![Cell::Int(1)]])).unwrap_err();
    assert!(err.contains("no column 'Host'") && err.contains("absent_key_columns"), "{err}");
    let out = eval(&r, "main", &rs(&["Host", "v"], vec![vec![text("h"), Cell::Int(1)]])).unwrap();
    assert_eq!(series(&out), ["a{host=\"h\"} 1"]);
    f.absent_key_columns = AbsentKeyColumns::Empty;
    let out = eval(&rule(vec![f]), "main", &rs(&["v"], vec![vec![Cell::Int(1)]])).unwrap();
    assert_eq!(series(&out), ["a{host=\"\"} 1"]);
}

/// A family named from column `k`, prefix `p_`, with `taken` names claimed elsewhere.
fn named(taken: &[(&str, &str)], overrides: &[(&str, NameOverride)]) -> MetricFamily {
    let from = NameFrom {
        key: NameKey::Column("k".into()),
        prefix: "p_".into(),
        suffix: String::new(),
        overrides: overrides.iter().map(|(n, o)| (n.to_string(), o.clone())).collect(),
        taken: taken.iter().map(|(n, r)| (n.to_string(), r.to_string())).collect(),
    };
    let mut f = fam(&from.pattern(), MetricKind::Untyped, &[], FamilyValues::Column("v".into()));
    f.naming = FamilyNaming::FromColumn(std::sync::Arc::new(from));
    f
}

#[test]
fn a_family_per_key_sorted_with_its_override() {
    let counter = NameOverride { kind: Some(MetricKind::Counter), help: Some("Reads.".into()) };
    let r = rule(vec![named(&[], &[("p_reads_total", counter)])]);
    let rows = vec![
        vec![text("Writes"), Cell::Int(2)],
        vec![text("reads.total"), Cell::Int(5)],
        vec![text("Writes"), Cell::Null],
    ];
    let out = eval(&r, "m", &rs(&["k", "v"], rows)).unwrap();
    assert_eq!(
        render(&out),
        "# HELP p_reads_total Reads.\n# TYPE p_reads_total counter\np_reads_total 5\n\
         # HELP p_writes help of p_<k>\n# TYPE p_writes untyped\np_writes 2\n"
    );
}

#[test]
fn claimed_reserved_and_null_keys_are_refused_once_and_the_rest_served() {
    let r = rule(vec![named(&[("p_rows", "declared")], &[])]);
    let rows = vec![
        vec![text("rows"), Cell::Int(1)],
        vec![text("rows"), Cell::Int(2)],
        vec![Cell::Null, Cell::Int(3)],
        vec![text("ok"), Cell::Int(4)],
    ];
    let folded = evaluate(&r, "m", &rs(&["k", "v"], rows)).unwrap();
    assert_eq!(series(&folded.families), ["p_ok 4"]);
    assert_eq!(folded.family_failures.len(), 2, "{:?}", folded.family_failures);
    assert!(folded.family_failures.iter().any(|m| m.starts_with("family p_<k>: bad_value: column 'k' holds NULL")));
    assert!(folded.family_failures.iter().any(|m| m.starts_with(
        "family p_rows: name_conflict: key 'rows' of column 'k' gives the name p_rows, but rule 'declared' declares a family of that name"
    )));
    // A prefix that is no reserved name can still give one with its key: refused per row.
    let mut reserved = named(&[], &[]);
    if let FamilyNaming::FromColumn(from) = &mut reserved.naming {
        std::sync::Arc::make_mut(from).prefix = "process".into();
    }
    let folded =
        evaluate(&rule(vec![reserved]), "m", &rs(&["k", "v"], vec![vec![text("_fds"), Cell::Int(1)]])).unwrap();
    assert!(folded.families.is_empty());
    assert!(
        folded.family_failures[0].contains("name_conflict") && folded.family_failures[0].contains("process_*"),
        "{:?}",
        folded.family_failures
    );
}
