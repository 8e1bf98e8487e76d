//! Operating it for real: every fault ends with the fail-safe signal correct, other rules unaffected and
//! `/metrics` answering; reload, secrets and shutdown. All against a real PostgreSQL and the real binary.
//! Each test has its own database; only those that stop the server have a server of their own, so
//! every look at `pg_stat_activity` is limited to the test's database.

mod operating;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{wait, Db, Exporter, Exposition};

/// A health signal over targets `a` and `b` that is up when the query says `ok = 1`.
/// `from` is appended to the query's FROM list (e.g. `, pg_sleep(30)`).
pub(super) fn probe(name: &str, interval: &str, timeout: &str, from: &str, extra: &str) -> String {
    format!(
        r#"  - name: {name}
    database: main
    interval: {interval}
    timeout: {timeout}
{extra}    labels: [target]
    targets: [{{ target: [a, b] }}]
    window: 1
    values: {{ ok: integer }}
    success: "ok == 1"
    metrics:
      up: {{ name: {name}_up, help: "Probe {name}." }}
      error: {{ name: {name}_error, help: "Probe {name} failed." }}
    query: |
      SELECT t.target, 1 AS ok FROM unnest($1::text[]) AS t(target){from}
"#
    )
}

pub(super) fn rules_file(dir: &Path, database: &str, signals: &[String]) -> std::path::PathBuf {
    let path = dir.join("rules.yaml");
    write_rules(&path, database, signals);
    path
}

pub(super) fn write_rules(path: &Path, database: &str, signals: &[String]) {
    let text = format!("version: 1\ndatabases:\n  main:\n{database}signals:\n{}", signals.concat());
    // Write then rename, so a reload never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(super) const DSN_FROM_ENV: &str = "    dsn: \"${TEST_DSN}\"\n";

pub(super) fn spawn(db: &Db, rules: &Path, extra_args: &[&str]) -> Exporter {
    let mut args = vec!["--rules", rules.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    let ex = Exporter::spawn(&args, &[("TEST_DSN", &db.dsn())]);
    ex.wait_ready();
    ex
}

pub(super) fn evaluations(m: &Exposition, rule: &str, result: &str) -> f64 {
    m.value(&format!("sql_signal_exporter_rule_evaluations_total{{result=\"{result}\",rule=\"{rule}\"}}"))
        .unwrap_or(0.0)
}

pub(super) fn healthy(m: &Exposition, rule: &str) -> bool {
    ["a", "b"].iter().all(|t| {
        m.value(&format!("{rule}_up{{target=\"{t}\"}}")) == Some(1.0)
            && m.value(&format!("{rule}_error{{reason=\"query_failed\",target=\"{t}\"}}")) == Some(0.0)
    })
}

pub(super) fn fail_safe(m: &Exposition, rule: &str) -> bool {
    ["a", "b"].iter().all(|t| {
        m.value(&format!("{rule}_up{{target=\"{t}\"}}")) == Some(1.0)
            && m.value(&format!("{rule}_error{{reason=\"query_failed\",target=\"{t}\"}}")) == Some(1.0)
    })
}

pub(super) fn count(db: &Db, sql: &str) -> i64 {
    db.psql(sql).unwrap().trim().parse().unwrap()
}

pub(super) const SLEEPING_BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE application_name = 'sql-signal-exporter' AND state = 'active' AND query LIKE '%pg_sleep%' \
     AND datname = current_database()";

/// Waits until `rule` has succeeded `n` more times than it had in `from`.
pub(super) fn wait_successes(ex: &Exporter, rule: &str, n: f64) {
    let start = evaluations(&ex.metrics(), rule, "success");
    ex.wait_until(Duration::from_secs(15), &format!("{n} more successes of {rule}"), |e| {
        evaluations(&e.metrics(), rule, "success") >= start + n
    });
}

#[test]
fn fault_backend_killed_with_pg_terminate_backend() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("fast", "1s", "900ms", "", ""), probe("slow", "1s", "900ms", ", pg_sleep(0.6)", "")],
    );
    let ex = spawn(&db, &rules, &[]);
    wait_successes(&ex, "fast", 1.0);

    // Kill every idle session of the exporter's pool. The pool may hold a single connection, busy
    // with the slow rule, at a given moment: wait for a moment when one is idle.
    let kill_idle = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = \
                     'sql-signal-exporter' AND state = 'idle' AND datname = current_database()";
    wait::until(
        Duration::from_secs(10),
        "an idle exporter session to kill",
        || count(&db, kill_idle) >= 1,
        || ex.logs(),
    );
    // Kill the slow rule's backend in the middle of its query.
    let kill_sleeping = SLEEPING_BACKENDS.replace("count(*)", "count(pg_terminate_backend(pid))");
    wait::until(
        Duration::from_secs(10),
        "the slow rule to run (it never ran)",
        || count(&db, &kill_sleeping) > 0,
        || ex.logs(),
    );
    ex.wait_until(Duration::from_secs(10), "the killed query to count as an error", |e| {
        evaluations(&e.metrics(), "slow", "error") >= 1.0
    });
    // Both rules recover by themselves, on new connections.
    wait_successes(&ex, "slow", 2.0);
    wait_successes(&ex, "fast", 2.0);
    let m = ex.metrics();
    assert!(healthy(&m, "fast") && healthy(&m, "slow"), "{}", m.text);
}

#[test]
fn fault_query_past_its_timeout_is_cancelled_on_the_server() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("hang", "6s", "1s", ", pg_sleep(30)", ""), probe("fast", "1s", "900ms", "", "")],
    );
    let ex = spawn(&db, &rules, &[]);
    let m = ex.metrics();
    assert_eq!(evaluations(&m, "hang", "timeout"), 1.0, "{}", ex.logs());
    assert!(fail_safe(&m, "hang"), "{}", m.text);
    // No backend is left running the query (the next run starts ~5 s later).
    wait::until(
        Duration::from_secs(3),
        "the timed-out query to go (it still runs on the server)",
        || count(&db, SLEEPING_BACKENDS) == 0,
        || ex.logs(),
    );
    // The other rule is unaffected and fresh.
    wait_successes(&ex, "fast", 2.0);
    let m = ex.metrics();
    assert!(healthy(&m, "fast"), "{}", m.text);
    assert_eq!(m.value("sql_signal_exporter_rule_up{rule=\"hang\"}"), Some(0.0));
    assert!(ex.logs().contains("rule=hang") && ex.logs().contains("timed out"), "{}", ex.logs());
}

#[test]
fn fault_more_rules_due_than_the_pool_holds_queue_without_a_connection_storm() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let signals: Vec<String> =
        (1..=6).map(|i| probe(&format!("q{i}"), "3s", "2500ms", ", pg_sleep(0.3)", "")).collect();
    let rules = rules_file(dir.path(), &format!("{DSN_FROM_ENV}    max_connections: 2\n"), &signals);
    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("TEST_DSN", &db.dsn())]);
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        peak = peak
            .max(count(&db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sql-signal-exporter' AND datname = current_database()"));
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!((1..=2).contains(&peak), "peak of {peak} sessions with max_connections: 2");
    ex.wait_ready();
    let m = ex.metrics();
    for i in 1..=6 {
        assert!(healthy(&m, &format!("q{i}")), "q{i} did not complete: {}", m.text);
    }
}

#[test]
fn fault_a_result_over_max_rows_fails_only_that_rule() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[
            probe("big", "1s", "900ms", ", generate_series(1, 100000)", "    max_rows: 1000\n"),
            probe("fast", "1s", "900ms", "", ""),
        ],
    );
    let ex = spawn(&db, &rules, &[]);
    let m = ex.metrics();
    assert!(fail_safe(&m, "big"), "{}", m.text);
    assert!(healthy(&m, "fast"), "{}", m.text);
    // The log line is written before the snapshot is, but read from the pipe by another thread.
    ex.wait_until(Duration::from_secs(10), "the max_rows failure in the log", |e| e.logs().contains("max_rows"));
}

#[test]
fn fault_a_rule_over_max_series_serves_none_and_fails_alone() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    // Two targets, each an up series and one error series per reason (five by default): twelve series.
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("wide", "1s", "900ms", "", "    max_series: 11\n"), probe("fast", "1s", "900ms", "", "")],
    );
    let ex = spawn(&db, &rules, &[]);
    let m = ex.metrics();
    assert!(!m.text.contains("wide_up"), "{}", m.text);
    assert_eq!(m.value("sql_signal_exporter_rule_up{rule=\"wide\"}"), Some(0.0));
    assert!(healthy(&m, "fast"), "{}", m.text);
    assert!(ex.logs().contains("max_series"), "{}", ex.logs());
}

#[test]
fn fault_discovered_targets_stay_fail_safe_when_the_database_goes_away() {
    let mut db = Db::private_default();
    let dir = tempfile::tempdir().unwrap();
    // No `targets:`: the query names them (a and b), and the rule binds no parameters.
    let discovering = probe("disc", "1s", "900ms", "", "")
        .replace("    targets: [{ target: [a, b] }]\n", "")
        .replace("FROM unnest($1::text[]) AS t(target)", "FROM (VALUES ('a'), ('b')) AS t(target)");
    let rules = rules_file(dir.path(), DSN_FROM_ENV, &[discovering]);
    let ex = spawn(&db, &rules, &[]);
    assert!(healthy(&ex.metrics(), "disc"), "{}", ex.metrics().text);
    db.server_mut().stop().unwrap();
    ex.wait_until(Duration::from_secs(10), "the discovered targets fail-safe", |e| fail_safe(&e.metrics(), "disc"));
    db.server_mut().restart().unwrap();
    ex.wait_until(Duration::from_secs(10), "recovery", |e| healthy(&e.metrics(), "disc"));
}

#[test]
fn fault_a_thousand_concurrent_scrapes_all_answer() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), DSN_FROM_ENV, &[probe("fast", "1s", "900ms", "", "")]);
    let ex = spawn(&db, &rules, &[]);
    let ok = std::sync::atomic::AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(1000);
    std::thread::scope(|s| {
        for _ in 0..1000 {
            s.spawn(|| {
                barrier.wait();
                let (status, body) = ex.get("/metrics");
                if status == 200 && body.contains("fast_up{target=\"b\"} 1\n") {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(ok.into_inner(), 1000);
    assert_eq!(ex.get("/-/healthy").0, 200);
}

#[test]
fn fault_sigterm_during_a_scrape_finishes_it_and_exits_within_five_seconds() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("fast", "1s", "900ms", "", ""), probe("hang", "30s", "20s", ", pg_sleep(60)", "")],
    );
    let mut ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("TEST_DSN", &db.dsn())]);
    ex.wait_until(Duration::from_secs(10), "the hanging query to run", |_| count(&db, SLEEPING_BACKENDS) == 1);
    ex.wait_until(Duration::from_secs(10), "fast to succeed", |e| healthy(&e.metrics(), "fast"));

    let mut conn = TcpStream::connect(ex.addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let sent = Instant::now();
    ex.signal("TERM");
    let mut response = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("fast_up{target=\"b\"} 1\n"), "{response}");

    let code = ex.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", ex.logs());
    assert!(sent.elapsed() < Duration::from_secs(5));
    // The in-flight query was cancelled on the server, not left to run out its timeout.
    wait::until(
        Duration::from_secs(3),
        "the query to go (it outlived the exporter)",
        || count(&db, SLEEPING_BACKENDS) == 0,
        || ex.logs(),
    );
}
