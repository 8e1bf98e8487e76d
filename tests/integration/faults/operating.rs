//! Operating the binary: reload (signal and HTTP), secrets under every failure, and the log formats.

use std::time::{Duration, Instant};

use super::{
    count, evaluations, healthy, probe, probe_signal, rules_file, spawn, wait_successes, write_rules, DSN_FROM_ENV,
    QUERY_FAILED, SLEEPING_BACKENDS,
};
use crate::harness::{is_fail_safe, wait, Db, Exporter};

#[test]
fn reload_keeps_the_last_good_rules_until_the_file_is_fixed() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    // `keep` runs once an hour: a restarted task would evaluate again at once, so its count of
    // evaluations tells whether a reload kept it.
    let keep = || probe("keep", "1h", "30s", "", "");
    let rules = rules_file(dir.path(), DSN_FROM_ENV, &[keep(), probe("gone", "1s", "900ms", "", "")]);
    let ex = spawn(&db, &rules, &["--web.enable-lifecycle"]);
    let reload_ok = "sql_signal_exporter_config_last_reload_successful";
    assert_eq!(ex.metrics().value(reload_ok), Some(1.0));
    assert_eq!(evaluations(&ex.metrics(), "keep", "success"), 1.0);

    // A broken file: SIGHUP keeps the old rules, the metric says so, the log has the diagnostic.
    std::fs::write(&rules, "version: 1\nsignals:\n  - name: keep\n    windw: 3\n").unwrap();
    ex.signal("HUP");
    ex.wait_until(Duration::from_secs(10), "the failed reload", |e| e.metrics().value(reload_ok) == Some(0.0));
    ex.wait_until(Duration::from_secs(5), "the diagnostic in the log", |e| e.logs().contains("windw"));
    wait_successes(&ex, "gone", 2.0);
    let m = ex.metrics();
    assert!(healthy(&m, "keep") && healthy(&m, "gone"), "{}", m.text);

    // POST /-/reload answers 4xx with every diagnostic.
    let (status, body) = ex.post("/-/reload");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("windw") && body.contains("rules.yaml"), "{body}");

    // Fixed: one rule kept, one removed, one added. The kept rule never blinks during the reload: every
    // scrape until the added rule has run twice shows it healthy.
    write_rules(&rules, DSN_FROM_ENV, &[keep(), probe("added", "1s", "900ms", "", "")]);
    let (status, body) = ex.post("/-/reload");
    assert_eq!(status, 200, "{body}");
    ex.wait_until(Duration::from_secs(10), "the added rule to succeed twice", |e| {
        let m = e.metrics();
        assert!(healthy(&m, "keep"), "keep blinked: {}", m.text);
        healthy(&m, "added") && evaluations(&m, "added", "success") >= 2.0
    });
    let m = ex.metrics();
    assert_eq!(m.value(reload_ok), Some(1.0));
    assert!(!m.text.contains("gone_up"), "a removed rule's series remain: {}", m.text);
    assert!(!m.text.contains("rule=\"gone\""), "a removed rule's self-metrics remain: {}", m.text);
    assert_eq!(evaluations(&m, "keep", "success"), 1.0, "the kept rule was restarted");

    // Changing the kept rule restarts it: it evaluates again at once.
    write_rules(&rules, DSN_FROM_ENV, &[probe("keep", "1h", "20s", "", ""), probe("added", "1s", "900ms", "", "")]);
    assert_eq!(ex.post("/-/reload").0, 200);
    ex.wait_until(Duration::from_secs(10), "the changed rule to run again", |e| {
        evaluations(&e.metrics(), "keep", "success") == 2.0
    });
}

/// What the exporter logs when it refuses a reload.
const RELOAD_REFUSED: &str = "rules not reloaded";

#[test]
fn reload_without_the_lifecycle_flag_is_refused() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), DSN_FROM_ENV, &[probe("fast", "1s", "900ms", "", "")]);
    let ex = spawn(&db, &rules, &[]);
    assert_eq!(ex.post("/-/reload").0, 403);
}

#[test]
fn secrets_never_appear_in_logs_or_responses() {
    let mut db = Db::private_default();
    let password = db.password().to_string();
    let dir = tempfile::tempdir().unwrap();
    let dsn_file = dir.path().join("dsn");
    std::fs::write(&dsn_file, format!("{}\n", db.dsn())).unwrap();
    let database = format!("    dsn_file: {}\n", dsn_file.display());
    let signals = vec![
        probe("fast", "1s", "900ms", "", ""),
        probe("hang", "2s", "500ms", ", pg_sleep(5)", ""),
        probe("big", "1s", "900ms", ", generate_series(1, 100)", "    max_rows: 10\n"),
        probe("broken", "1s", "900ms", ", no_such_table", ""),
    ];
    let rules = rules_file(dir.path(), &database, &signals);
    let ex =
        Exporter::spawn(&["--rules", rules.to_str().unwrap(), "--web.enable-lifecycle", "--log.level", "debug"], &[]);
    ex.wait_ready();
    let mut responses = Vec::new();
    let scrape = |ex: &Exporter, responses: &mut Vec<String>| {
        for path in ["/metrics", "/-/ready", "/-/healthy", "/", "/api/v1/status", "/nope"] {
            responses.push(ex.get(path).1);
        }
    };
    scrape(&ex, &mut responses);

    // The database goes away and comes back.
    db.server_mut().stop().unwrap();
    let fail_safe = |e: &Exporter| is_fail_safe(&e.metrics(), &probe_signal("fast"), QUERY_FAILED);
    ex.wait_until(Duration::from_secs(10), "fail-safe while down", fail_safe);
    scrape(&ex, &mut responses);
    db.server_mut().restart().unwrap();
    ex.wait_until(Duration::from_secs(10), "recovery", |e| healthy(&e.metrics(), "fast"));

    // A wrong password, then a DSN that does not even parse, both with the real password inside.
    std::fs::write(&dsn_file, db.dsn().replace(&format!(":{password}@"), &format!(":{password}x@"))).unwrap();
    assert_eq!(ex.post("/-/reload").0, 200);
    ex.wait_until(Duration::from_secs(10), "fail-safe with a wrong password", fail_safe);
    scrape(&ex, &mut responses);
    // Each refused reload logs its diagnostics, read from the exporter's stderr by another thread: wait
    // for them, so that the log checked below holds them.
    let refused = |e: &Exporter| e.logs().matches(RELOAD_REFUSED).count();
    std::fs::write(&dsn_file, format!("postgresql://exporter:{password}@127.0.0.1:notaport/demo")).unwrap();
    responses.push(ex.post("/-/reload").1);
    ex.wait_until(Duration::from_secs(10), "the refused reload (a DSN that does not parse) in the log", |e| {
        refused(e) == 1
    });
    scrape(&ex, &mut responses);
    // A broken rules file whose diagnostics quote the file.
    std::fs::write(&rules, format!("version: 1\ndatabases:\n  main:\n    dsn: \"postgresql://exporter:{password}@127.0.0.1/demo\"\n    bogus: 1\n")).unwrap();
    responses.push(ex.post("/-/reload").1);
    ex.wait_until(Duration::from_secs(10), "the refused reload (a broken file) in the log", |e| refused(e) == 2);
    scrape(&ex, &mut responses);

    let logs = ex.logs();
    assert!(logs.contains("password authentication failed"), "the wrong password was not exercised: {logs}");
    assert!(logs.contains("timed out"), "{logs}");
    assert!(logs.contains("max_rows"), "{logs}");
    assert!(logs.contains("no_such_table"), "{logs}");
    assert!(!logs.contains(&password), "the password is in the log:\n{logs}");
    for r in &responses {
        assert!(!r.contains(&password), "the password is in a response:\n{r}");
    }
}

#[test]
fn logs_are_logfmt_or_json_with_one_line_per_failure() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("broken", "1s", "900ms", ", no_such_table", ""), probe("fast", "1s", "900ms", "", "")],
    );
    let ex = spawn(&db, &rules, &[]);
    wait_successes(&ex, "fast", 2.0);
    let logs = ex.logs();
    let failures: Vec<&str> = logs.lines().filter(|l| l.contains("rule=broken")).collect();
    assert!(!failures.is_empty(), "{logs}");
    for line in &failures {
        assert!(line.starts_with("ts=") && line.contains(" level=warn ") && line.contains("msg="), "{line}");
    }
    assert!(!logs.contains("rule=fast"), "successful evaluations are logged at info: {logs}");
    drop(ex);

    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap(), "--log.format", "json"], &[("TEST_DSN", &db.dsn())]);
    ex.wait_ready();
    let logs = ex.logs();
    let line = logs.lines().find(|l| l.contains("broken")).unwrap_or_else(|| panic!("{logs}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["rule"], "broken");
    assert_eq!(v["level"], "WARN");
}

/// The scrape path never waits on a source: while a rule's query sleeps on the server, every scrape
/// answers, with the other rule's fresh series.
#[test]
fn scrapes_answer_while_a_query_hangs() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("hang", "30s", "25s", ", pg_sleep(20)", ""), probe("fast", "1s", "900ms", "", "")],
    );
    // Not `spawn`: that waits for readiness, which needs the hanging rule's first evaluation.
    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("TEST_DSN", &db.dsn())]);
    let sleeping = || count(&db, SLEEPING_BACKENDS) > 0;
    wait::until(Duration::from_secs(10), "the query to sleep on the server", sleeping, || ex.logs());
    wait_successes(&ex, "fast", 1.0);
    let started = Instant::now();
    for _ in 0..50 {
        let (status, body) = ex.get("/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("fast_up{"), "{body}");
    }
    // All 50 scrapes were served while the query was still running on the server.
    assert!(sleeping(), "the query ended before the scrapes did, so they may have waited for it");
    assert!(started.elapsed() < Duration::from_secs(15), "50 scrapes took {:?}", started.elapsed());
    assert_eq!(ex.get("/-/ready").0, 503, "not ready before the hanging rule's first evaluation");
}

/// `--rules.auto-reload-interval`: a ConfigMap-style update (a new directory, the symlink swapped)
/// is picked up without SIGHUP; a broken version is reported once and the old rules keep running.
#[test]
fn rules_changed_on_disk_reload_by_themselves() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    // Kubernetes' layout: rules.yaml -> ..data/rules.yaml, ..data -> ..v1 (a directory).
    let version = |n: u32, signals: &[String]| {
        let v = dir.path().join(format!("..v{n}"));
        std::fs::create_dir(&v).unwrap();
        write_rules(&v.join("rules.yaml"), DSN_FROM_ENV, signals);
        let link = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&v, &link).unwrap();
        std::fs::rename(&link, dir.path().join("..data")).unwrap();
    };
    version(1, &[probe("first", "1s", "900ms", "", "")]);
    let rules = dir.path().join("rules.yaml");
    std::os::unix::fs::symlink(dir.path().join("..data/rules.yaml"), &rules).unwrap();
    let ex = spawn(&db, &rules, &["--rules.auto-reload-interval", "200ms"]);
    assert!(healthy(&ex.metrics(), "first"));

    version(2, &[probe("second", "1s", "900ms", "", "")]);
    ex.wait_until(Duration::from_secs(10), "the swapped rules", |e| healthy(&e.metrics(), "second"));
    assert!(!ex.metrics().text.contains("first_up"), "the old rule's series remain");

    // A broken version: one failed reload, the running rules stay.
    let broken = dir.path().join("..v3");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("rules.yaml"), "version: 1\nsignals:\n  - name: x\n    windw: 3\n").unwrap();
    let link = dir.path().join("..data_tmp");
    std::os::unix::fs::symlink(&broken, &link).unwrap();
    std::fs::rename(&link, dir.path().join("..data")).unwrap();
    let reload_ok = "sql_signal_exporter_config_last_reload_successful";
    ex.wait_until(Duration::from_secs(10), "the failed reload", |e| e.metrics().value(reload_ok) == Some(0.0));
    // Two more runs of `second`, a second apart, span several 200 ms looks at the unchanged broken file.
    wait_successes(&ex, "second", 2.0);
    assert_eq!(ex.logs().matches("windw").count(), 1, "a broken file is reported once per change:\n{}", ex.logs());
    assert!(healthy(&ex.metrics(), "second"));
}
