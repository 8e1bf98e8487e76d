//! Histograms, summaries and state sets on a real PostgreSQL, and OpenMetrics: every family kind in
//! both formats against golden files (`every_kind.prom`, `every_kind.openmetrics`), the same bytes
//! served over HTTP to a scraper that asks for each format, `promtool check metrics` on the text
//! format, and each run-time failure of a histogram, summary or state set failing its own family
//! only. A real Prometheus scraping with its default negotiation is in [`prometheus`]; the memory of a
//! raw-value histogram over a million rows in [`memory`].

mod memory;
mod prometheus;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::api::{as_source, evaluation, exposition, rules, LoadOptions, RuleSet, Sources, Status};
use crate::harness::{golden, tool, Db, Exporter};

/// The fixture every test here reads: raw observations, bucket rows (cumulative and per bucket),
/// quantile rows, backend states, a counter with its start time.
pub(super) const FIXTURE: &str = "
CREATE TABLE observations (db text, age float8);
INSERT INTO observations SELECT 'a', g FROM generate_series(1, 100) g;
INSERT INTO observations VALUES ('b', 0.5), ('b', 1000), ('b', NULL);
CREATE TABLE cumulative (route text, le text, n bigint, total float8, calls bigint);
INSERT INTO cumulative VALUES ('/a', '0.1', 5, 12.5, 20), ('/a', '1', 15, 12.5, 20), ('/a', '+Inf', 20, 12.5, 20),
                              ('/b', '1', 2, 0.75, 2);
CREATE TABLE per_bucket (route text, le float8, n bigint, total float8);
INSERT INTO per_bucket VALUES ('/c', 2, 1, 4.0), ('/c', 0.5, 3, 4.0);
CREATE TABLE quantiles (q float8, v float8, s float8, c bigint);
INSERT INTO quantiles VALUES (0.5, 0.25, 100, 400), (0.9, 0.75, 100, 400), (0.99, 1.5, 100, 400);
CREATE TABLE backends (pid int, state text);
INSERT INTO backends VALUES (1, 'active'), (2, 'idle'), (3, 'idle in transaction');
";

/// Rules with a family of every kind over [`FIXTURE`].
pub(super) const EVERY_KIND: &str = r#"
  - name: gauges_and_counters
    database: main
    query: SELECT 'a' AS db, 3 AS waiting, 42 AS bytes, timestamptz '2024-01-01 00:00:00Z' AS since, '15.4' AS version
    key_labels: [db]
    families:
      - {name: fixture_waiting, help: A gauge., value: waiting}
      - {name: fixture_read_bytes_total, help: A counter with a unit and a start., type: counter, unit: bytes, value: bytes, created: since}
      - {name: fixture_version_info, help: An info family., type: info, key_labels: [version]}
  - name: raw_values
    database: main
    query: SELECT db, age FROM observations
    families:
      - name: fixture_age_seconds
        help: Raw values counted into buckets.
        type: histogram
        unit: seconds
        key_labels: [db]
        histogram: {observe: age, buckets: [1, 10, 50, 100]}
  - name: cumulative_rows
    database: main
    query: SELECT route, le, n, total, calls FROM cumulative
    families:
      - name: fixture_request_seconds
        help: Cumulative bucket rows with a count column.
        type: histogram
        key_labels: [route]
        histogram: {le: le, bucket: n, sum: total, count: calls}
  - name: per_bucket_rows
    database: main
    query: SELECT route, le, n, total FROM per_bucket
    families:
      - name: fixture_wait_seconds
        help: Per-bucket rows, +Inf derived.
        type: histogram
        key_labels: [route]
        histogram: {le: le, bucket: n, counts: per_bucket, sum: total}
  - name: quantile_rows
    database: main
    query: SELECT q, v, s, c FROM quantiles
    families:
      - {name: fixture_latency_seconds, help: A summary., type: summary, summary: {quantile: q, value: v, sum: s, count: c}}
  - name: states
    database: main
    query: SELECT pid, state FROM backends
    families:
      - name: fixture_backend_state
        help: A state set.
        type: stateset
        key_labels: [pid]
        stateset: {column: state, states: [active, idle, idle in transaction]}
"#;

/// A rules file on the database at `dsn` with `metrics` (YAML list items).
pub(super) fn rules_file(dsn: &str, metrics: &str) -> String {
    format!("version: 1\ndatabases:\n  main:\n    dsn: \"{dsn}\"\nmetrics:\n{metrics}")
}

fn load(yaml: &str) -> RuleSet {
    let opts = LoadOptions { env: std::sync::Arc::new(|_| None), unset_env_is_error: true };
    match rules::load_sources(&[(std::path::PathBuf::from("test.yaml"), yaml.to_string())], &opts) {
        Ok(loaded) => loaded.rules,
        Err(d) => panic!("rules do not load:\n{d}\n---\n{yaml}"),
    }
}

/// Every rule of `set` evaluated once, in order: the families of each and its status.
async fn evaluate_all(set: &RuleSet) -> Vec<(Vec<exposition::Family>, Status)> {
    let mut sources = Sources::build(set, Sources::default());
    let mut out = Vec::new();
    for r in &set.rules {
        let slots = sources.slots_of(r);
        let refs: Vec<_> = slots.iter().map(as_source).collect();
        let outcome = evaluation::evaluate(r, &refs).await;
        out.push((outcome.families, outcome.status));
    }
    sources.close();
    out
}

/// Both formats of every rule's families, concatenated in rule order (without `# EOF`).
fn render_both(evaluated: &[(Vec<exposition::Family>, Status)]) -> (String, String) {
    let (mut text, mut om) = (Vec::new(), Vec::new());
    for (families, status) in evaluated {
        assert_eq!(*status, Status::Success, "every fixture rule succeeds");
        text.extend(exposition::text::render(families));
        om.extend(exposition::openmetrics::render(families));
    }
    (String::from_utf8(text).expect("UTF-8"), String::from_utf8(om).expect("UTF-8"))
}

/// `promtool check metrics` on `text`: its findings (empty when clean); `None` without promtool.
pub(crate) fn promtool_findings(text: &str) -> Option<String> {
    if !tool::program("promtool", "apt-get install prometheus (.ci/run installs it)") {
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let findings = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some(if out.status.success() { findings } else { format!("exit {}: {findings}", out.status) })
}

#[tokio::test]
async fn every_kind_in_both_formats_matches_the_golden_files_and_promtool() {
    let pg = Db::shared();
    pg.psql(FIXTURE).expect("load the fixture");
    let set = load(&rules_file(&pg.dsn(), EVERY_KIND));
    let (text, om) = render_both(&evaluate_all(&set).await);
    golden::check("every_kind.prom", &text);
    golden::check("every_kind.openmetrics", &om);
    if let Some(findings) = promtool_findings(&text) {
        assert_eq!(findings.trim(), "", "promtool check metrics:\n{text}");
    }
}

#[test]
fn the_binary_serves_each_format_to_the_scraper_that_asks_for_it() {
    let pg = Db::shared();
    pg.psql(FIXTURE).expect("load the fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("every_kind.yaml");
    std::fs::write(&path, rules_file(&pg.dsn(), EVERY_KIND)).expect("write rules");
    let ex = Exporter::spawn(&["--rules", path.to_str().expect("UTF-8 path")], &[]);
    ex.wait_ready();
    let prometheus_default = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, content_type, body) = ex.get_accepting("/metrics", prometheus_default);
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(body.starts_with(&golden::read("every_kind.openmetrics")), "{body}");
    assert!(body.ends_with("\n# EOF\n"), "{body}");
    assert!(body.contains("# TYPE sql_signal_exporter_rule_evaluations counter\n"), "own metrics in OpenMetrics too");
    assert_eq!(body.matches("# EOF").count(), 1);
    for accept in ["text/plain;version=0.0.4", "*/*"] {
        let (status, content_type, body) = ex.get_accepting("/metrics", accept);
        assert_eq!(status, 200);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8", "{accept}");
        assert!(body.starts_with(&golden::read("every_kind.prom")), "{accept}: {body}");
        assert!(!body.contains("# EOF"));
    }
}

/// Each run-time failure fails its own family with its named reason; the rule's other family and
/// the other rules are served.
#[tokio::test]
async fn each_run_time_failure_fails_its_family_only() {
    let pg = Db::shared();
    pg.psql(FIXTURE).expect("load the fixture");
    let cases = [
        (
            "decreasing_buckets",
            "SELECT 'x' AS k, le, n, 1.0 AS s FROM (VALUES ('1', 5), ('2', 3)) b(le, n)",
            "{le: le, bucket: n, sum: s}",
        ),
        ("bad_le", "SELECT 'x' AS k, 'lots' AS le, 1 AS n, 1.0 AS s", "{le: le, bucket: n, sum: s}"),
        (
            "count_mismatch",
            "SELECT 'x' AS k, '+Inf' AS le, 3 AS n, 1.0 AS s, 4 AS c",
            "{le: le, bucket: n, sum: s, count: c}",
        ),
        (
            "duplicate_bucket",
            "SELECT 'x' AS k, le, n, 1.0 AS s FROM (VALUES ('1', 1), ('1.0', 2)) b(le, n)",
            "{le: le, bucket: n, sum: s}",
        ),
    ];
    let mut metrics = String::new();
    for (i, (_, query, histogram)) in cases.iter().enumerate() {
        metrics.push_str(&format!(
            "  - name: case{i}\n    database: main\n    query: \"{query}\"\n    key_labels: [k]\n    families:\n\
             \x20     - {{name: case{i}_seconds, help: Broken., type: histogram, histogram: {histogram}}}\n\
             \x20     - {{name: case{i}_rows, help: Healthy beside it., key_labels: [k, le], value: n}}\n"
        ));
    }
    metrics.push_str(
        "  - name: unknown_state\n    database: main\n    query: SELECT 'gone' AS state, 1 AS n\n    families:\n\
         \x20     - {name: unknown_state, help: Broken., type: stateset, stateset: {column: state, states: [active, idle]}}\n\
         \x20     - {name: unknown_state_rows, help: Healthy beside it., value: n}\n",
    );
    let set = load(&rules_file(&pg.dsn(), &metrics));
    let evaluated = evaluate_all(&set).await;
    let reasons = cases.iter().map(|c| c.0).chain(["bad_value"]);
    for ((families, status), reason) in evaluated.iter().zip(reasons) {
        let Status::Error(message) = status else { panic!("{reason}: {status:?}") };
        assert!(message.contains(&format!(": {reason}: ")), "{reason}: {message}");
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), 1, "{reason}: only the healthy family is served: {names:?}");
        assert!(names[0].ends_with("_rows"), "{reason}: {names:?}");
    }
}
