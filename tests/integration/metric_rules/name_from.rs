//! Families named from a column (`name_from`) on a real PostgreSQL: `pg_settings` made one family per
//! setting as postgres_exporter does, with overrides, a sanitised key and the `untyped` type, in both
//! formats (promtool on the text format, a real Prometheus over OpenMetrics); a generated name that a declared family claims dropped
//! with its reason while the rest is served; a counter's generated names; `max_series` over the
//! generated families.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{evaluate, parse, rules_on, run_once};
use crate::harness::api::{exposition, Status};
use crate::harness::{labels, tool, wait, Db, Exporter};
use crate::prometheus::Prometheus;

/// `pg_settings`' numeric settings, one family each, plus two keys that need sanitising.
const SETTINGS: &str = r#"
  - name: settings
    database: main
    query: |
      SELECT name, setting::float8 AS value FROM pg_settings WHERE vartype IN ('integer', 'real')
      UNION ALL SELECT 'Custom.Key-One', 1.5
      UNION ALL SELECT 'other:key', 2
    families:
      - name_from: {column: name, prefix: pg_settings_}
        help: A server setting.
        type: untyped
        value: value
        key_labels: []
        overrides:
          pg_settings_max_connections: {type: gauge, help: Most concurrent connections.}
          pg_settings_custom_key_one: {help: A key with a dot and a dash.}
"#;

/// The text format's `# TYPE` lines: (name, type), in output order.
fn types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("# TYPE NAME KIND");
            (name.to_string(), kind.to_string())
        })
        .collect()
}

#[tokio::test]
async fn pg_settings_become_one_family_per_setting_in_both_formats() {
    let pg = Db::shared();
    let set = rules_on(&pg.dsn(), SETTINGS);
    let outcome = evaluate(&set, "settings").await;
    assert_eq!(outcome.status, Status::Success);
    let text = String::from_utf8(exposition::text::render(&outcome.families)).expect("UTF-8");
    let om = String::from_utf8(exposition::openmetrics::render(&outcome.families)).expect("UTF-8");

    let want: BTreeSet<String> = pg
        .psql("SELECT 'pg_settings_' || lower(name) FROM pg_settings WHERE vartype IN ('integer', 'real')")
        .expect("pg_settings")
        .lines()
        .map(str::to_string)
        .chain(["pg_settings_custom_key_one".to_string(), "pg_settings_other_key".to_string()])
        .collect();
    let typed = types(&text);
    let names: Vec<&str> = typed.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "one family per name, sorted by name");
    assert_eq!(names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(), want);

    // Types and help: the declared ones, and each override's.
    let kind_of = |name: &str| typed.iter().find(|(n, _)| n == name).map(|(_, k)| k.as_str());
    assert_eq!(kind_of("pg_settings_shared_buffers"), Some("untyped"));
    assert_eq!(kind_of("pg_settings_max_connections"), Some("gauge"));
    assert!(text.contains("# HELP pg_settings_shared_buffers A server setting.\n"), "{text}");
    assert!(text.contains("# HELP pg_settings_max_connections Most concurrent connections.\n"), "{text}");
    assert!(text.contains("# HELP pg_settings_custom_key_one A key with a dot and a dash.\n"), "{text}");
    let s = parse(&text);
    let max: f64 = pg.psql("SHOW max_connections").expect("SHOW").trim().parse().expect("a number");
    assert_eq!(s["pg_settings_max_connections"][&labels(&[])], max);
    assert_eq!(s["pg_settings_custom_key_one"][&labels(&[])], 1.5);
    assert_eq!(s["pg_settings_other_key"][&labels(&[])], 2.0);

    // OpenMetrics: the same families, untyped as unknown.
    assert!(om.contains("# TYPE pg_settings_shared_buffers unknown\n"), "{om}");
    assert!(om.contains("# TYPE pg_settings_max_connections gauge\n"), "{om}");
    assert_eq!(om.matches("# TYPE ").count(), want.len(), "one TYPE per family:\n{om}");
    assert_eq!(om.matches("# HELP ").count(), want.len(), "one HELP per family:\n{om}");
    if let Some(findings) = crate::histograms::promtool_findings(&text) {
        assert_eq!(findings.trim(), "", "promtool check metrics:\n{text}");
    }
}

#[tokio::test]
async fn a_name_that_another_family_claims_drops_only_its_rows() {
    let pg = Db::shared();
    pg.psql(
        "CREATE TABLE app_stat (k text, db text, v int);
         INSERT INTO app_stat VALUES ('rows', 'a', 1), ('Reads', 'a', 5), ('Reads', 'b', 6), ('writes', 'a', 7);",
    )
    .expect("fixture");
    let set = rules_on(
        &pg.dsn(),
        r#"
  - name: declared
    database: main
    query: SELECT 1 AS v
    families: [{name: app_stat_rows, help: Declared elsewhere., value: v}]
  - name: stats
    database: main
    query: SELECT k, db, v FROM app_stat
    families:
      - name_from: {column: k, prefix: app_stat_}
        help: A statistic.
        value: v
        key_labels: [db]
  - name: events
    database: main
    query: SELECT k, db, v FROM app_stat WHERE k <> 'rows'
    families:
      - name_from: {column: k, prefix: app_events_, suffix: _total}
        help: An event count.
        type: counter
        value: v
        key_labels: [db]
"#,
    );
    let (text, ok) = run_once(&set).await;
    assert!(!ok, "the refused key fails its rule:\n{text}");
    let s = parse(&text);
    assert_eq!(s["app_stat_rows"][&labels(&[])], 1.0, "the declared family is served as declared:\n{text}");
    assert_eq!(text.matches("# TYPE app_stat_rows ").count(), 1, "never a duplicate family:\n{text}");
    assert_eq!(s["app_stat_reads"][&labels(&[("db", "a")])], 5.0);
    assert_eq!(s["app_stat_reads"][&labels(&[("db", "b")])], 6.0);
    assert_eq!(s["app_stat_writes"][&labels(&[("db", "a")])], 7.0);
    assert_eq!(s["app_events_reads_total"][&labels(&[("db", "b")])], 6.0);
    assert!(text.contains("# TYPE app_events_reads_total counter\n"), "{text}");
    if let Some(findings) = crate::histograms::promtool_findings(&text) {
        assert_eq!(findings.trim(), "", "promtool check metrics:\n{text}");
    }

    let outcome = evaluate(&set, "stats").await;
    let Status::Error(reason) = &outcome.status else { panic!("{:?}", outcome.status) };
    assert!(
        reason.contains("family app_stat_rows: name_conflict: key 'rows' of column 'k' gives the name app_stat_rows, but rule 'declared' declares a family of that name"),
        "{reason}"
    );
    assert_eq!(outcome.series(), 3, "the other keys are served");
}

#[tokio::test]
async fn max_series_counts_every_generated_family() {
    let pg = Db::shared();
    let set = rules_on(
        &pg.dsn(),
        r#"
  - name: capped
    database: main
    max_series: 3
    query: SELECT 'k' || i AS k, i AS v FROM generate_series(1, 4) AS i
    families:
      - {name_from: {column: k, prefix: capped_}, help: One of four., value: v}
  - name: duplicated
    database: main
    query: SELECT 'k' AS k, 1 AS v UNION ALL SELECT 'K', 2
    families:
      - {name_from: {column: k, prefix: duplicated_}, help: Two rows one series., value: v}
"#,
    );
    let outcome = evaluate(&set, "capped").await;
    assert_eq!(outcome.status, Status::Error("produced 4 series, more than max_series (3); none are served".into()));
    assert!(outcome.families.is_empty(), "{:?}", outcome.families);
    let outcome = evaluate(&set, "duplicated").await;
    let Status::Error(reason) = &outcome.status else { panic!("{:?}", outcome.status) };
    assert!(reason.contains("family duplicated_k: more than one row gives the series duplicated_k"), "{reason}");
    assert!(outcome.families.is_empty(), "{:?}", outcome.families);
}

/// `--check-rules --db` checks the key column like any column the rule reads, at its `query:` line.
#[test]
fn the_db_check_finds_a_missing_key_column() {
    let pg = Db::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("named.yaml");
    let text = "version: 1\ndatabases:\n  main:\n    dsn: \"${SSE_CHECK_DSN}\"\nmetrics:\n  - name: settings\n    database: main\n    query: SELECT name AS setting_name, setting::float8 AS value FROM pg_settings WHERE vartype = 'integer'\n    families:\n      - {name_from: {column: name, prefix: pg_settings_}, help: h, type: untyped, value: value}\n";
    std::fs::write(&file, text).expect("written");
    let out = crate::harness::command()
        .arg("--check-rules")
        .arg(&file)
        .arg("--db")
        .env("SSE_CHECK_DSN", pg.dsn())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        stdout.lines().next().and_then(|l| l.strip_prefix(&format!("{}:", file.display()))),
        Some("8:5: error: the query returns no column 'name' (the key naming the families of pg_settings_<name>); it returns: setting_name, value"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
}

/// `--test-rules` asserts on generated families like on any: they are series of their names.
#[test]
fn rule_tests_assert_on_generated_families() {
    let pg = Db::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = "version: 1\ndatabases:\n  main:\n    dsn: \"${UNUSED_DSN:-postgresql://x@localhost/x}\"\nmetrics:\n  - name: status\n    database: main\n    query: SELECT variable_name, value FROM global_status\n    families:\n      - name_from: {column: variable_name, prefix: app_status_}\n        help: A status variable.\n        type: untyped\n        value: value\n        key_labels: []\n        overrides:\n          app_status_uptime: {type: gauge}\n";
    std::fs::write(dir.path().join("status.yaml"), rules).expect("written");
    let tests = r#"version: 1
rule_files: [status.yaml]
cases:
  - name: every key its own family
    rules: [status]
    tables:
      global_status:
        columns: [variable_name text, value text]
        rows: [[Uptime, "42"], [Com_select, "7"], [Innodb.Rows-Read, "3"]]
    expect:
      series: |
        app_status_uptime 42
        app_status_com_select 7
        app_status_innodb_rows_read 3
"#;
    let file = dir.path().join("status.test.yaml");
    std::fs::write(&file, tests).expect("written");
    let out = crate::harness::command()
        .arg("--test-rules")
        .arg(&file)
        .args(["--db", &format!("main={}", pg.dsn())])
        .output()
        .expect("runs");
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("PASS "), "{shown}");

    // A wrong expectation on a generated family fails, with its diff.
    std::fs::write(&file, tests.replace("app_status_com_select 7", "app_status_com_select 8")).expect("written");
    let out = crate::harness::command()
        .arg("--test-rules")
        .arg(&file)
        .args(["--db", &format!("main={}", pg.dsn())])
        .output()
        .expect("runs");
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("- app_status_com_select 8\n    + app_status_com_select 7"), "{shown}");
}

/// On two databases, a generated family is one family with each database's series, wherever its
/// keys come from; the families stay sorted by name after the declared one.
#[tokio::test]
async fn generated_families_merge_across_databases() {
    let pg = Db::shared();
    let second = pg.create_database("named");
    pg.psql("CREATE TABLE kv (k text, v int); INSERT INTO kv VALUES ('b', 1), ('c', 2);").expect("fixture");
    pg.server()
        .psql(&second, "CREATE TABLE kv (k text, v int); INSERT INTO kv VALUES ('a', 10), ('b', 20);")
        .expect("fixture");
    let yaml = r#"
version: 1
databases:
  one: {dsn: "${ONE}"}
  two: {dsn: "${TWO}"}
metrics:
  - name: kv
    database: [one, two]
    query: SELECT k, v FROM kv
    families:
      - {name: kv_rows, help: Rows., value: v, key_labels: [k]}
      - {name_from: {column: k, prefix: kv_key_}, help: A key., value: v, key_labels: []}
"#;
    let set = super::load(yaml, &[("ONE", pg.dsn()), ("TWO", pg.server().dsn(&second))]);
    let (text, ok) = run_once(&set).await;
    assert!(ok, "{text}");
    let names: Vec<String> = types(&text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["kv_rows", "kv_key_a", "kv_key_b", "kv_key_c"], "{text}");
    let s = parse(&text);
    assert_eq!(s["kv_key_a"][&labels(&[("server", "two")])], 10.0);
    assert_eq!(s["kv_key_b"][&labels(&[("server", "one")])], 1.0);
    assert_eq!(s["kv_key_b"][&labels(&[("server", "two")])], 20.0);
    assert_eq!(s["kv_key_c"][&labels(&[("server", "one")])], 2.0);
}

/// A real Prometheus scrapes the settings families with its default negotiation (OpenMetrics): the
/// target is healthy (every generated family parses), untyped arrives as `unknown`, an override's
/// type as its own.
#[test]
fn prometheus_reads_the_generated_families_over_openmetrics() {
    if !tool::program("/usr/bin/prometheus", "apt-get install prometheus (.ci/run installs it)") {
        return;
    }
    let pg = Db::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("settings.yaml");
    let rules = format!(
        "version: 1\ndatabases:\n  main:\n    dsn: \"{}\"\nmetrics:\n{}",
        pg.dsn(),
        SETTINGS.replace("database: main", "database: main\n    interval: 1s\n    timeout: 900ms")
    );
    std::fs::write(&path, rules).expect("write rules");
    let ex = Exporter::spawn(&["--rules", path.to_str().expect("UTF-8 path")], &[]);
    ex.wait_ready();
    let prom = Prometheus::scraping(dir.path(), &ex.addr.to_string());
    let custom = "pg_settings_custom_key_one";
    wait::until(
        Duration::from_secs(20),
        "a generated family in Prometheus",
        || prom.query(custom).is_ok_and(|r| r.len() == 1),
        || format!("{:?}", prom.query(custom)),
    );
    let type_of = |metric: &str| {
        let body = prom.get(&format!("/api/v1/targets/metadata?metric={metric}")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"][0]["type"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(type_of("pg_settings_shared_buffers"), "unknown");
    assert_eq!(type_of("pg_settings_max_connections"), "gauge");
}
