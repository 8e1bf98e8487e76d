//! rules/kanary.yaml against a real PostgreSQL: every branch of the Kanary judgement, the fail-safe under
//! a failed query and a database that goes away, and the database's cost (one statement per interval).
//! The expected expositions are golden files (`tests/integration/golden/kanary*.prom`).

use std::time::{Duration, Instant};

use tempdb::TempPostgresOptions;

use crate::harness::{
    assert_fail_safe, golden, is_fail_safe, kanary_rules, kanary_signal, once, repo_root, Db, Exporter, Exposition,
    KANARY_DB_ERROR,
};

const SINGLE: &str = "container-single-arch";
const MULTI: &str = "container-multi-arch";
const RPM: &str = "rpm";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Up,
    Down,
    DbError,
    NoTestResults,
}

/// One target's runs (SQL calls of `kanary_run`) and the state the Go exporter's rules give it.
pub(crate) struct Case {
    cluster: &'static str,
    kind: &'static str,
    runs: Vec<String>,
    want: Want,
}

/// `kanary_run` for run `i` (0 = newest): started 30 + 60*i minutes ago, ended 20 minutes later.
fn run(cluster: &str, kind: &str, i: usize, errors: &str) -> String {
    format!("SELECT kanary_run('{cluster}', '{kind}', make_interval(mins => {}), {errors});", 30 + 60 * i)
}

fn runs(cluster: &str, kind: &str, errors: &[&str]) -> Vec<String> {
    errors.iter().enumerate().map(|(i, e)| run(cluster, kind, i, e)).collect()
}

fn case(cluster: &'static str, kind: &'static str, runs: Vec<String>, want: Want) -> Case {
    Case { cluster, kind, runs, want }
}

/// 24 targets, one scenario each, covering every branch of the evaluation.
pub(crate) fn cases() -> Vec<Case> {
    use Want::*;
    let int = |n: i64| format!("to_jsonb({n})");
    let ok3 = |c, k| runs(c, k, &["to_jsonb(0)", "to_jsonb(0)", "to_jsonb(0)"]);
    vec![
        // A zero among the newest three -> up.
        case("stone-stage-p01", SINGLE, runs("stone-stage-p01", SINGLE, &[&int(5), &int(0), &int(5)]), Up),
        // All non-zero -> down, even with an older success.
        case("stone-stage-p01", MULTI, runs("stone-stage-p01", MULTI, &[&int(1), &int(2), &int(3), &int(0)]), Down),
        // Negative counts are non-zero -> down.
        case("stone-prod-p01", SINGLE, runs("stone-prod-p01", SINGLE, &[&int(-1), &int(-2), &int(-3)]), Down),
        // Fewer rows than the window -> db_error.
        case("stone-prod-p01", MULTI, runs("stone-prod-p01", MULTI, &[&int(0), &int(0)]), DbError),
        // Newest run ended 3h10m ago -> no_test_results.
        case(
            "stone-prod-p02",
            SINGLE,
            (0..3)
                .map(|i| {
                    format!(
                        "SELECT kanary_run('stone-prod-p02', '{SINGLE}', make_interval(mins => {}), to_jsonb(0));",
                        210 + 60 * i
                    )
                })
                .collect(),
            NoTestResults,
        ),
        // `.ended` with a comma as decimal separator and microseconds, 10 minutes ago -> read correctly, up.
        case(
            "stone-prod-p02",
            MULTI,
            {
                let mut r = vec![format!(
                    "SELECT kanary_run('stone-prod-p02', '{MULTI}', interval '30 minutes', to_jsonb(0), \
                     to_jsonb(to_char((now() - interval '10 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS,US\"Z\"')));"
                )];
                r.extend(runs("stone-prod-p02", MULTI, &[&int(1), &int(1), &int(1)]).into_iter().skip(1));
                r
            },
            Up,
        ),
        // A non-integer in the window -> db_error.
        case("stone-prod-p02", RPM, runs("stone-prod-p02", RPM, &[&int(0), "to_jsonb('1.5'::text)", &int(0)]), DbError),
        // A missing error count in the window -> db_error.
        case("kflux-rhel-p01", SINGLE, runs("kflux-rhel-p01", SINGLE, &[&int(0), &int(0), "NULL"]), DbError),
        // A bad value older than the window is ignored (the Go exporter said db_error here).
        case(
            "kflux-rhel-p01",
            MULTI,
            runs("kflux-rhel-p01", MULTI, &[&int(0), &int(1), &int(1), "to_jsonb('garbage'::text)"]),
            Up,
        ),
        // No rows at all for an expected target -> db_error, not silence.
        case("kflux-rhel-p01", RPM, vec![], DbError),
        // The newest run has no `.ended` -> db_error.
        case(
            "kflux-ocp-p01",
            SINGLE,
            {
                let mut r = vec![format!("SELECT kanary_run('kflux-ocp-p01', '{SINGLE}', interval '30 minutes', to_jsonb(0), 'null'::jsonb);")];
                r.extend(runs("kflux-ocp-p01", SINGLE, &[&int(0), &int(0), &int(0)]).into_iter().skip(1));
                r
            },
            DbError,
        ),
        // Error counts written as JSON text -> read as integers.
        case(
            "kflux-ocp-p01",
            MULTI,
            runs("kflux-ocp-p01", MULTI, &["to_jsonb('3'::text)", "to_jsonb('0'::text)", "to_jsonb('2'::text)"]),
            Up,
        ),
        // Too few rows wins over stale.
        case(
            "stone-stg-rh01",
            SINGLE,
            (0..2)
                .map(|i| {
                    format!(
                        "SELECT kanary_run('stone-stg-rh01', '{SINGLE}', make_interval(hours => {}), to_jsonb(0));",
                        5 + i
                    )
                })
                .collect(),
            DbError,
        ),
        // Stale wins over a bad value.
        case(
            "stone-stg-rh01",
            MULTI,
            (0..3)
                .map(|i| {
                    let e = if i == 0 { "to_jsonb('x'::text)" } else { "to_jsonb(0)" };
                    format!("SELECT kanary_run('stone-stg-rh01', '{MULTI}', make_interval(hours => {}), {e});", 5 + i)
                })
                .collect(),
            NoTestResults,
        ),
        case("stone-prd-rh01", SINGLE, ok3("stone-prd-rh01", SINGLE), Up),
        case("stone-prd-rh01", MULTI, ok3("stone-prd-rh01", MULTI), Up),
        case("stone-prd-rh01", RPM, ok3("stone-prd-rh01", RPM), Up),
        case("kflux-prd-rh02", SINGLE, ok3("kflux-prd-rh02", SINGLE), Up),
        case("kflux-prd-rh02", MULTI, ok3("kflux-prd-rh02", MULTI), Up),
        // Runs of another repository are not this target's.
        case(
            "kflux-prd-rh03",
            SINGLE,
            {
                let mut r = runs("kflux-prd-rh03", SINGLE, &[&int(2), &int(2), &int(2)]);
                r.push("INSERT INTO data (horreum_testid, start, label_values) SELECT 372, now() - interval '1 minute', \
                        jsonb_build_object('.metadata.env.MEMBER_CLUSTER', 'kflux-prd-rh03', '.parameters.options.ComponentRepoUrl', 'https://example.com/other', \
                        '__parameters_options_PipelineRepoTemplatingSourceDir', 'nodejs-devfile-sample-SingleArch/', '.ended', '2099-01-01T00:00:00Z', \
                        '__results_measurements_KPI_errors', 0) FROM generate_series(1, 3);"
                    .to_string());
                r
            },
            Down,
        ),
        case("kflux-prd-rh03", MULTI, ok3("kflux-prd-rh03", MULTI), Up),
        case("kfluxfedorap01", SINGLE, ok3("kfluxfedorap01", SINGLE), Up),
        case("kfluxfedorap01", MULTI, ok3("kfluxfedorap01", MULTI), Up),
        // Runs of another Horreum test are ignored.
        case(
            "kfluxfedorap01",
            RPM,
            {
                let mut r = runs("kfluxfedorap01", RPM, &[&int(0), &int(4), &int(4)]);
                r.push("SELECT kanary_run('kfluxfedorap01', 'rpm', make_interval(mins => i), to_jsonb(9), NULL, 999) FROM generate_series(1, 5) i;".to_string());
                r
            },
            Up,
        ),
    ]
}

/// The exposition the Go exporter prints for these cases, built independently of the exporter's code:
/// client_golang sorts label names, then series by label values. The golden files hold the exporter's
/// actual output; [`golden_kanary_files_agree_with_the_go_exporter_rules`] keeps the two in step.
fn expected_exposition(cases: &[Case]) -> String {
    let mut up: Vec<String> = Vec::new();
    let mut err: Vec<String> = Vec::new();
    for c in cases {
        let (u, db, stale) = match c.want {
            Want::Up => (1, 0, 0),
            Want::Down => (0, 0, 0),
            Want::DbError => (1, 1, 0),
            Want::NoTestResults => (1, 0, 1),
        };
        up.push(format!("kanary_up{{tested_cluster=\"{}\",type=\"{}\"}} {u}", c.cluster, c.kind));
        err.push(format!(
            "kanary_error{{reason=\"db_error\",tested_cluster=\"{}\",type=\"{}\"}} {db}",
            c.cluster, c.kind
        ));
        err.push(format!(
            "kanary_error{{reason=\"no_test_results\",tested_cluster=\"{}\",type=\"{}\"}} {stale}",
            c.cluster, c.kind
        ));
    }
    up.sort();
    err.sort();
    format!(
        "# HELP kanary_up Kanary signal: 1 if at least one of last 3 error readings is 0 or less, 0 if all last 3 error readings are greater than 0. Only updated when 3 valid data points are available.\n\
         # TYPE kanary_up gauge\n{}\n\
         # HELP kanary_error Binary indicator of an error in processing for Kanary signal (1 if interrupted, 0 otherwise). An error prevents kanary_up from being updated. The 'reason' label provides details on the error type.\n\
         # TYPE kanary_error gauge\n{}\n",
        up.join("\n"),
        err.join("\n")
    )
}

pub(crate) fn load_cases(db: &Db, cases: &[Case]) {
    let sql: Vec<String> = cases.iter().flat_map(|c| c.runs.clone()).collect();
    db.psql(&sql.join("\n")).expect("load cases");
}

/// Every case in the state of a failed query.
pub(crate) fn all_db_error() -> Vec<Case> {
    cases().into_iter().map(|c| Case { want: Want::DbError, ..c }).collect()
}

/// The exporter's output for the cases.
pub(crate) const GOLDEN: &str = "kanary.prom";
/// The exporter's output when the query fails.
pub(crate) const GOLDEN_DB_ERROR: &str = "kanary_db_error.prom";

/// The checked-in outputs are what the Go exporter's rules say, so regenerating them cannot bless a
/// regression.
#[test]
fn golden_kanary_files_agree_with_the_go_exporter_rules() {
    assert_eq!(golden::read(GOLDEN), expected_exposition(&cases()));
    assert_eq!(golden::read(GOLDEN_DB_ERROR), expected_exposition(&all_db_error()));
}

#[test]
fn kanary_rules_reproduce_the_go_exporter_series_for_series() {
    let db = Db::shared();
    let cases = cases();
    assert_eq!(cases.len(), 24, "every target of the Go exporter has a case");
    load_cases(&db, &cases);
    let (code, stdout, stderr) = once(&repo_root().join("rules/kanary.yaml"), &[("CONNECTION_STRING", &db.dsn())]);
    assert_eq!(code, Some(0), "{stderr}");
    let got = Exposition::parse(&stdout);
    assert_eq!(got.series.len(), 72);
    golden::check(GOLDEN, &stdout);
}

/// The same cases through the rule's other branch: `examples/kanary/indexes.sql`'s index created and
/// `use_run_group_index: true`, so the run groups come from a walk of the index instead of a scan.
#[test]
fn kanary_rules_on_the_run_group_index_reproduce_the_go_exporter_series_for_series() {
    let db = Db::shared();
    load_cases(&db, &cases());
    let index = std::fs::read_to_string(repo_root().join("examples/kanary/indexes.sql")).expect("indexes.sql");
    db.psql(&index).expect("create the run group index");
    db.psql("ANALYZE data").expect("analyze");
    let dir = tempfile::tempdir().unwrap();
    let rules = kanary_rules(dir.path(), &[("use_run_group_index: false", "use_run_group_index: true")]);
    let (code, stdout, stderr) = once(&rules, &[("CONNECTION_STRING", &db.dsn())]);
    assert_eq!(code, Some(0), "{stderr}");
    golden::check(GOLDEN, &stdout);
}

#[test]
fn a_failed_query_reports_db_error_for_every_target_and_fails_once() {
    let db = Db::shared();
    load_cases(&db, &cases());
    let dir = tempfile::tempdir().unwrap();
    let rules = kanary_rules(dir.path(), &[("FROM data d", "FROM no_such_table d")]);
    let (code, stdout, stderr) = once(&rules, &[("CONNECTION_STRING", &db.dsn())]);
    assert_eq!(code, Some(1), "--once exits non-zero when a rule failed");
    assert!(stderr.contains("no_such_table"), "{stderr}");
    let got = Exposition::parse(&stdout);
    golden::check(GOLDEN_DB_ERROR, &got.text);
}

/// A fast-cycling copy of rules/kanary.yaml for the tests that watch the running exporter.
fn fast_rules(dir: &std::path::Path) -> std::path::PathBuf {
    kanary_rules(dir, &[("interval: 1m", "interval: 1s"), ("timeout: 30s", "timeout: 900ms")])
}

pub(crate) const DOWN_TARGET: &str = "kanary_up{tested_cluster=\"stone-stage-p01\",type=\"container-multi-arch\"}";

#[test]
fn database_down_at_start_serves_fail_safe_then_recovers_without_restart() {
    let mut db = Db::private_default();
    load_cases(&db, &cases());
    db.server_mut().stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = fast_rules(dir.path());
    let dsn = db.dsn();
    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("CONNECTION_STRING", &dsn)]);
    ex.wait_ready();
    let m = ex.metrics();
    assert_fail_safe(&m, &kanary_signal(), KANARY_DB_ERROR);
    assert_eq!(m.value("sql_signal_exporter_rule_up{rule=\"kanary\"}"), Some(0.0));

    db.server_mut().restart().unwrap();
    ex.wait_until(Duration::from_secs(15), "the real signal after the database came back", |e| {
        e.metrics().value(DOWN_TARGET) == Some(0.0)
    });
    let m = ex.metrics();
    assert_eq!(m.family_text("kanary_"), golden::read(GOLDEN));

    // Stop it again: within an interval or two every target is fail-safe, and /metrics still answers.
    db.server_mut().stop().unwrap();
    ex.wait_until(Duration::from_secs(10), "fail-safe after the database stopped", |e| {
        is_fail_safe(&e.metrics(), &kanary_signal(), KANARY_DB_ERROR)
    });
    db.server_mut().restart().unwrap();
    ex.wait_until(Duration::from_secs(15), "recovery after the second outage", |e| {
        e.metrics().value(DOWN_TARGET) == Some(0.0)
    });
    assert!(!ex.logs().contains(db.password()), "the password leaked into a log line");
}

#[test]
fn one_statement_per_rule_per_interval_however_many_scrape() {
    // pg_stat_statements is server-wide: a private server.
    let db = Db::private(TempPostgresOptions { pg_stat_statements: true, ..Default::default() });
    load_cases(&db, &cases());
    db.psql("SELECT pg_stat_statements_reset();").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = fast_rules(dir.path());
    let dsn = db.dsn();
    let started = Instant::now();
    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("CONNECTION_STRING", &dsn)]);
    ex.wait_ready();

    // Ten scrapers, scraping while the rule evaluates four more times.
    let key = "sql_signal_exporter_rule_evaluations_total{result=\"success\",rule=\"kanary\"}";
    let evaluated = |e: &Exporter| e.metrics().value(key).unwrap_or(0.0);
    let first = evaluated(&ex);
    let scrapes = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..10 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (status, body) = ex.get("/metrics");
                    assert_eq!(status, 200);
                    assert!(body.contains("kanary_up{"));
                    scrapes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        // The scrapers stop however the wait ends, so that a failed wait fails instead of hanging.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        ex.wait_until(Duration::from_secs(20), "four more evaluations while scraped", |e| evaluated(e) >= first + 4.0);
    });
    let scrapes = scrapes.into_inner();
    let before = ex.metrics().value(key).unwrap();
    let calls: f64 = db
        .psql(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
             WHERE r.rolname = 'exporter' AND s.query LIKE '%unnest($1::text[], $2::text[])%'",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let after = ex.metrics().value(key).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(scrapes > 100, "only {scrapes} scrapes");
    assert!(before <= calls && calls <= after, "statements {calls} vs evaluations {before}..{after}");
    assert!(calls <= elapsed + 2.0, "{calls} statements in {elapsed:.1}s at a 1s interval");
    // Nothing else runs per interval: other statements of the exporter's role are per-connection one-offs at most.
    let others: f64 = db
        .psql(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
             WHERE r.rolname = 'exporter' AND s.query NOT LIKE '%unnest($1::text[], $2::text[])%'",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(others <= 4.0, "{others} other statements");
}

/// The benchmark's set-based peer SQL (examples/bench/peers/kanary_signal.sql) gives the peers the same
/// 72 series as rules/kanary.yaml, on every branch of the judgement.
#[test]
fn the_peers_set_based_kanary_sql_gives_the_same_series() {
    let db = Db::shared();
    load_cases(&db, &cases());
    let (code, stdout, stderr) = once(&repo_root().join("rules/kanary.yaml"), &[("CONNECTION_STRING", &db.dsn())]);
    assert_eq!(code, Some(0), "{stderr}");
    let ours = Exposition::parse(&stdout).series;
    let sql = std::fs::read_to_string(repo_root().join("examples/bench/peers/kanary_signal.sql")).unwrap();
    let rows = db.psql(&format!("\\pset fieldsep ' '\n{sql}")).expect("peer SQL");
    let mut peer = std::collections::BTreeMap::new();
    for row in rows.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = row.split(' ').collect();
        assert_eq!(f.len(), 5, "{row:?}");
        // Labels in our exposition's order (sorted); an empty reason is no label.
        let reason = if f[3].is_empty() { String::new() } else { format!("reason=\"{}\",", f[3]) };
        let key = format!("{}{{{reason}tested_cluster=\"{}\",type=\"{}\"}}", f[0], f[1], f[2]);
        peer.insert(key, f[4].parse::<f64>().unwrap());
    }
    assert_eq!(peer.len(), 72);
    assert_eq!(peer, ours);
}
