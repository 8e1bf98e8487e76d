//! Metric rules against a real PostgreSQL (a database of the shared server): every mapping feature, every
//! declared awkward case, templates that branch on the real server version, one rule on two
//! databases, a failing rule beside healthy ones, and the shipped `rules/postgres.yaml` (the ISH
//! PostgreSQL exporter's families), run through the real binary on a private server
//! ([`postgres_yaml`]); families named from each column and texts read as numbers ([`columns_each`]).

mod columns_each;
mod name_from;
mod postgres_yaml;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::api::{app, as_source, evaluation, exposition, rules, LoadOptions, Rule, RuleSet, Sources, Status};
use crate::harness::{golden, labels, value, wait, Db, Exposition, Labels, Samples};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Loads `yaml` with `${VAR}`s from `env`; panics with every diagnostic if it does not load.
pub(crate) fn load(yaml: &str, env: &[(&str, String)]) -> RuleSet {
    let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let opts = LoadOptions { env: Arc::new(move |name| map.get(name).cloned()), unset_env_is_error: true };
    match rules::load_sources(&[(PathBuf::from("test.yaml"), yaml.to_string())], &opts) {
        Ok(loaded) => loaded.rules,
        Err(d) => panic!("rules do not load:\n{d}\n---\n{yaml}"),
    }
}

/// Rules on the database `main` at `dsn`, with `metrics` (YAML list items) appended.
pub(crate) fn rules_on(dsn: &str, metrics: &str) -> RuleSet {
    let yaml = format!("version: 1\ndatabases:\n  main:\n    dsn: \"${{DSN}}\"\nmetrics:\n{metrics}");
    load(&yaml, &[("DSN", dsn.to_string())])
}

fn rule<'a>(set: &'a RuleSet, name: &str) -> &'a Rule {
    set.rules.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no rule {name}"))
}

/// Runs every rule once through the library, as `--once` does.
pub(crate) async fn run_once(set: &RuleSet) -> (String, bool) {
    let (bytes, ok) = app::run_once(set).await;
    (String::from_utf8(bytes).expect("exposition is UTF-8"), ok)
}

/// Evaluates one rule against its database(s), for the status message.
async fn evaluate(set: &RuleSet, name: &str) -> sql_signal_exporter::publish::outcome::Outcome {
    let r = rule(set, name);
    let mut sources = Sources::build(set, Sources::default());
    let slots = sources.slots_of(r);
    let refs: Vec<_> = slots.iter().map(as_source).collect();
    let outcome = evaluation::evaluate(r, &refs).await;
    sources.close();
    outcome
}

/// The exposition's samples (the harness parser).
pub(crate) fn parse(text: &str) -> Samples {
    Exposition::parse(text).samples
}

/// Polls `cond` (letting the runtime's other tasks run) until it holds; fails after 15 s.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    wait::until_async(Duration::from_secs(15), what, cond).await
}

// ---------------------------------------------------------------------------------------------
// Mapping features

/// A rule using every mapping feature over a table `jobs` (the MySQL tests run it too, on the same
/// rows, into the same golden file).
pub(crate) const MAPPING_RULES: &str = r#"
  - name: jobs
    database: main
    interval: 30s
    timeout: 5s
    query: SELECT queue, waiting, running, done, ratio, paused, last_run, version FROM jobs
    key_labels: [queue]
    families:
      - name: jobs_waiting
        help: Jobs waiting.
        value: waiting
        static_labels: {team: ops}
      - name: jobs
        help: Jobs by state.
        values: [waiting, running]
        value_label: state
      - name: jobs_done_total
        help: Jobs done.
        type: counter
        value: done
      - name: jobs_ratio
        help: A float.
        value: ratio
      - name: jobs_paused
        help: A bool.
        value: paused
      - name: jobs_last_run_timestamp_seconds
        help: A timestamp.
        value: last_run
      - name: jobs_worker_info
        help: Worker version.
        type: info
        key_labels: [queue, version]
"#;

/// The exposition of [`MAPPING_RULES`].
pub(crate) const MAPPING_GOLDEN: &str = "metric_rules_mapping.prom";

#[tokio::test]
async fn every_mapping_feature_on_a_real_server() {
    let pg = Db::shared();
    pg.psql(
        "CREATE TABLE jobs (queue text, waiting int, running bigint, done numeric, ratio float8, paused bool, last_run timestamptz, version text);
         INSERT INTO jobs VALUES ('mail', 3, 1, 1200, 0.5, false, '2024-01-01T00:00:00Z', '1.2'),
                                 ('sms', 0, 2, 7, 0.25, true, '2024-01-01T00:00:01.5Z', '1.3');",
    )
    .unwrap();
    let set = rules_on(&pg.dsn(), MAPPING_RULES);
    let (text, ok) = run_once(&set).await;
    assert!(ok, "{text}");
    golden::check(MAPPING_GOLDEN, &text);
}

// ---------------------------------------------------------------------------------------------
// Declared behaviour of the awkward cases

#[tokio::test]
async fn nulls_and_empty_results_follow_the_declaration() {
    let pg = Db::shared();
    pg.psql("CREATE TABLE readings (k text, v int); INSERT INTO readings VALUES ('a', NULL), ('b', 2), (NULL, 5);")
        .unwrap();
    let set = rules_on(
        &pg.dsn(),
        r#"
  - name: readings
    database: main
    query: SELECT k, v FROM readings
    key_labels: [k]
    families:
      - {name: skipped, help: NULL skipped., value: v}
      - {name: zeroed, help: NULL as zero., value: v, on_null: zero}
  - name: nothing
    database: main
    query: SELECT 1 AS v, 2 AS w WHERE false
    families:
      - {name: empty_none, help: No rows no series., value: v}
      - {name: empty_zero, help: No rows one zero., value: v, on_empty: zero}
      - {name: empty_zero_unpivot, help: No rows zero per column., values: [v, w], value_label: c, on_empty: zero}
"#,
    );
    let (text, ok) = run_once(&set).await;
    assert!(ok, "{text}");
    let s = parse(&text);
    // The NULL key reads as the empty label value, i.e. no label to Prometheus.
    assert_eq!(s["skipped"], BTreeMap::from([(labels(&[("k", "b")]), 2.0), (labels(&[("k", "")]), 5.0)]));
    assert_eq!(
        s["zeroed"],
        BTreeMap::from([(labels(&[("k", "a")]), 0.0), (labels(&[("k", "b")]), 2.0), (labels(&[("k", "")]), 5.0)])
    );
    assert!(!s.contains_key("empty_none"), "{text}");
    assert!(!text.contains("# HELP empty_none"), "no bare HELP for a family without series:\n{text}");
    assert_eq!(s["empty_zero"], BTreeMap::from([(Labels::new(), 0.0)]));
    assert_eq!(s["empty_zero_unpivot"], BTreeMap::from([(labels(&[("c", "v")]), 0.0), (labels(&[("c", "w")]), 0.0)]));
}

#[tokio::test]
async fn bad_values_failed_queries_and_duplicates_fail_only_their_rule() {
    let pg = Db::shared();
    let set = rules_on(
        &pg.dsn(),
        r#"
  - name: healthy
    database: main
    query: SELECT 'x' AS k, 42 AS v
    families: [{name: healthy_value, help: Fine., key_labels: [k], value: v}]
  - name: not_a_number
    database: main
    query: SELECT 'a' AS k, '7' AS good, 'lots' AS v
    key_labels: [k]
    families:
      - {name: parsed_value, help: Text holding a number is fine., value: good}
      - {name: nan_value, help: Text that is not., value: v}
  - name: broken_query
    database: main
    query: SELECT v FROM no_such_table
    families: [{name: broken_value, help: Never., value: v}]
  - name: duplicates
    database: main
    query: SELECT 'x' AS k, 1 AS v UNION ALL SELECT 'x', 2
    families: [{name: dup_value, help: Two rows one series., key_labels: [k], value: v}]
  - name: missing_column
    database: main
    query: SELECT 1 AS value
    families: [{name: missing_value, help: Wrong column., value: v}]
  - name: negative_counter
    database: main
    query: SELECT -1 AS v
    families: [{name: negative_total, help: Counters do not go down., type: counter, value: v}]
  - name: cancelled
    database: main
    interval: 5s
    timeout: 300ms
    # pg_sleep is the case under test (a query slower than its timeout), not synchronisation.
    query: SELECT 1 AS v FROM pg_sleep(3)
    families: [{name: slow_value, help: Too slow., value: v}]
"#,
    );
    let (text, ok) = run_once(&set).await;
    assert!(!ok, "failed rules must make --once fail");
    let s = parse(&text);
    assert_eq!(value(&s, "healthy_value", &[("k", "x")]), 42.0);
    for gone in
        ["parsed_value", "nan_value", "broken_value", "dup_value", "missing_value", "negative_total", "slow_value"]
    {
        assert!(!s.contains_key(gone), "{gone} must not be served after its rule failed:\n{text}");
    }

    let expect_error = |outcome: sql_signal_exporter::publish::outcome::Outcome, needles: &[&str]| {
        assert!(outcome.families.is_empty(), "{:?}", outcome.families);
        match outcome.status {
            Status::Error(msg) => {
                for n in needles {
                    assert!(msg.contains(n), "{msg:?} lacks {n:?}");
                }
            }
            other => panic!("expected an error, got {other:?}"),
        }
    };
    expect_error(evaluate(&set, "not_a_number").await, &["nan_value", "'v'", "'lots'", "not a number"]);
    expect_error(evaluate(&set, "broken_query").await, &["query failed", "no_such_table"]);
    expect_error(evaluate(&set, "duplicates").await, &["dup_value", "dup_value{k=\"x\"}", "more than one row"]);
    expect_error(evaluate(&set, "missing_column").await, &["no column 'v'", "it returns: value"]);
    expect_error(evaluate(&set, "negative_counter").await, &["negative_total", "negative"]);
    let slow = evaluate(&set, "cancelled").await;
    assert!(matches!(slow.status, Status::Timeout(_)), "{:?}", slow.status);
    assert!(slow.families.is_empty());
    assert_eq!(evaluate(&set, "healthy").await.status, Status::Success);
}

/// Through the real scheduler: a rule that starts failing loses its series at once (never served
/// stale), while every other rule's series keep being refreshed.
#[tokio::test]
async fn a_failing_rule_leaves_other_rules_series_intact_and_fresh() {
    let pg = Db::shared();
    pg.psql("CREATE TABLE counter (n int); INSERT INTO counter VALUES (1); CREATE TABLE flaky (v text); INSERT INTO flaky VALUES ('5');")
        .unwrap();
    let set = rules_on(
        &pg.dsn(),
        r#"
  - name: good
    database: main
    interval: 1s
    timeout: 800ms
    query: SELECT n FROM counter
    families: [{name: good_value, help: Keeps working., value: n}]
  - name: flaky
    database: main
    interval: 1s
    timeout: 800ms
    query: SELECT v FROM flaky
    families: [{name: flaky_value, help: Breaks., value: v}]
"#,
    );
    let exporter = app::Exporter::start(Vec::new(), &set).await;
    let snapshot = || {
        parse(
            std::str::from_utf8(&exporter.publisher.snapshot.load().body_in(exposition::Format::Text).concat())
                .unwrap(),
        )
    };
    let self_metrics = || String::from_utf8(exporter.publisher.metrics.render()).unwrap();
    let good = || snapshot().get("good_value").and_then(|f| f.get(&Labels::new()).copied());

    wait_until("both rules", || snapshot().contains_key("good_value") && snapshot().contains_key("flaky_value")).await;
    assert_eq!(value(&snapshot(), "flaky_value", &[]), 5.0);
    assert_eq!(good(), Some(1.0));

    pg.psql("UPDATE flaky SET v = 'broken'; UPDATE counter SET n = 2;").unwrap();
    wait_until("the good rule's new value", || good() == Some(2.0)).await;
    wait_until("the flaky rule's series to go", || !snapshot().contains_key("flaky_value")).await;
    let m = self_metrics();
    assert!(m.contains("sql_signal_exporter_rule_up{rule=\"flaky\"} 0"), "{m}");
    assert!(m.contains("sql_signal_exporter_rule_up{rule=\"good\"} 1"), "{m}");

    // A query that fails outright, and the good rule still moves on.
    pg.psql("DROP TABLE flaky; UPDATE counter SET n = 3;").unwrap();
    wait_until("the good rule's third value", || good() == Some(3.0)).await;
    assert!(!snapshot().contains_key("flaky_value"));
    assert!(self_metrics().contains("sql_signal_exporter_rule_up{rule=\"flaky\"} 0"));
    exporter.scheduler.shutdown(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------------------------------------
// Templates by server version

#[tokio::test]
async fn query_templates_branch_on_the_real_server_version() {
    let pg = Db::shared();
    let actual: i64 = pg.psql("SHOW server_version_num").unwrap().trim().parse().unwrap();
    let set = rules_on(
        &pg.dsn(),
        r#"
  - name: fifteen_or_later
    database: main
    query: |
      {% if server_version_num >= 150000 %}
      SELECT 'v15+' AS branch, {{ server_version_num }} AS seen, current_setting('server_version_num')::int AS actual
      {% else %}
      SELECT 'older' AS branch, {{ server_version_num }} AS seen, current_setting('server_version_num')::int AS actual
      {% endif %}
    families:
      - {name: branch_info, help: The branch taken., type: info, key_labels: [branch]}
      - {name: seen_version, help: The version the template saw., value: seen}
      - {name: actual_version, help: The server's., value: actual}
  - name: future_only
    database: main
    vars: {since: 990000}
    query: |
      {% if server_version_num >= vars.since %}SELECT 'future' AS branch{% else %}SELECT 'today' AS branch{% endif %}
    families:
      - {name: future_branch_info, help: The branch taken., type: info, key_labels: [branch]}
"#,
    );
    let (text, ok) = run_once(&set).await;
    assert!(ok, "{text}");
    let s = parse(&text);
    assert!(actual >= 150000, "the test server is PostgreSQL 15 or later, got {actual}");
    assert_eq!(value(&s, "seen_version", &[]), actual as f64, "the template saw the server's own version");
    assert_eq!(value(&s, "actual_version", &[]), actual as f64);
    assert_eq!(value(&s, "branch_info", &[("branch", "v15+")]), 1.0);
    assert_eq!(value(&s, "future_branch_info", &[("branch", "today")]), 1.0);
}

// ---------------------------------------------------------------------------------------------
// Several databases

#[tokio::test]
async fn one_rule_runs_on_each_of_two_databases() {
    let pg = Db::shared();
    let second = pg.create_database("second");
    pg.psql("CREATE TABLE items (kind text, n int); INSERT INTO items VALUES ('a', 1), ('b', 2);").unwrap();
    pg.server().psql(&second, "CREATE TABLE items (kind text, n int); INSERT INTO items VALUES ('a', 10);").unwrap();
    let yaml = r#"
version: 1
databases:
  one: {dsn: "${ONE}"}
  two: {dsn: "${TWO}"}
metrics:
  - name: items
    database: [one, two]
    query: SELECT kind, n, current_database() AS datname FROM items
    families:
      - {name: items, help: Items by kind., key_labels: [kind], value: n}
  - name: items_named
    database: [one, two]
    database_label: origin
    query: SELECT count(*) AS n, current_database() AS database FROM items
    families:
      - {name: items_count, help: Items per database., key_labels: [database], value: n}
"#;
    let env = [("ONE", pg.dsn()), ("TWO", pg.server().dsn(&second))];
    let set = load(yaml, &env);
    let (text, ok) = run_once(&set).await;
    assert!(ok, "{text}");
    let s = parse(&text);
    assert_eq!(
        s["items"],
        BTreeMap::from([
            (labels(&[("kind", "a"), ("server", "one")]), 1.0),
            (labels(&[("kind", "b"), ("server", "one")]), 2.0),
            (labels(&[("kind", "a"), ("server", "two")]), 10.0),
        ])
    );
    assert_eq!(
        s["items_count"],
        BTreeMap::from([
            (labels(&[("database", pg.name()), ("origin", "one")]), 2.0),
            (labels(&[("database", &second), ("origin", "two")]), 1.0),
        ])
    );
    assert_eq!(text.matches("# TYPE items gauge").count(), 1, "one family, not one per database:\n{text}");

    // One database failing withdraws its own series only.
    pg.server().psql(&second, "DROP TABLE items;").unwrap();
    let (text, ok) = run_once(&set).await;
    assert!(!ok);
    let s = parse(&text);
    assert_eq!(s["items"].len(), 2, "{text}");
    assert!(s["items"].keys().all(|l| l["server"] == "one"), "{text}");
    match evaluate(&set, "items").await.status {
        Status::Error(msg) => {
            assert!(msg.starts_with("database 'two': query failed") && msg.contains("items"), "{msg}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
