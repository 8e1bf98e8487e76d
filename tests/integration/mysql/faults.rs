//! Faults on MariaDB: a statement past its rule's timeout is killed on the server (`KILL QUERY`),
//! not merely abandoned; a pool at its bound makes further rules wait and time out, never open
//! more sessions. (The database down at start and back is in [`super::kanary`].)

use std::time::Duration;

use crate::harness::api::{as_source, evaluation, Sources, Status};
use crate::harness::{once, wait, MyDb};
use crate::metric_rules::load;

/// The exporter user's sessions running a statement that contains `needle` (the server's
/// `PROCESSLIST`, as root).
fn running(my: &MyDb, needle: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'exporter' AND DB = DATABASE() \
         AND COMMAND <> 'Sleep' AND INFO LIKE '%{needle}%'"
    );
    my.mariadb(&sql).unwrap().trim().parse().unwrap()
}

/// The exporter user's sessions on this database, whatever they do.
fn sessions(my: &MyDb) -> i64 {
    let sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'exporter' AND DB = DATABASE()";
    my.mariadb(sql).unwrap().trim().parse().unwrap()
}

#[test]
fn a_statement_past_its_timeout_is_killed_and_no_session_of_ours_is_left() {
    let Some(my) = MyDb::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The second rule's 20 s timeout sets the server-side backstop (max_statement_time) to 21 s, so
    // only KILL QUERY can end the 30 s sleep within the waits below.
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        r#"version: 1
databases:
  main:
    dsn: "${DSN}"
metrics:
  - name: sleeper
    database: main
    timeout: 1s
    query: SELECT SLEEP(30) AS slept
    families: [{name: slept, help: Never., value: slept}]
  - name: patient
    database: main
    timeout: 20s
    query: SELECT 1 AS one
    families: [{name: one, help: One., value: one}]
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = once(&rules, &[("DSN", &my.dsn())]);
    assert_eq!(code, Some(1), "the sleeper failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("timed out") && stderr.contains("rule=sleeper"), "{stderr}");
    assert!(!stdout.contains("slept"), "{stdout}");
    assert!(stdout.contains("one 1"), "{stdout}");
    // --once waits for its kills before it exits: the statement is gone at once.
    assert_eq!(running(&my, "SLEEP(30)"), 0, "the statement still runs on the server");
    wait::until(Duration::from_secs(10), "every session of ours to close", || sessions(&my) == 0, String::new);
}

#[tokio::test]
async fn an_exhausted_pool_makes_rules_wait_and_time_out_without_opening_more_sessions() {
    let Some(my) = MyDb::shared() else { return };
    let yaml = r#"version: 1
databases:
  main:
    dsn: "${DSN}"
    max_connections: 1
metrics:
  - name: hog
    database: main
    timeout: 10s
    query: SELECT SLEEP(3) AS slept
    families: [{name: hog_slept, help: Slept., value: slept}]
  - name: starved
    database: main
    timeout: 500ms
    query: SELECT 1 AS one
    families: [{name: starved_one, help: One., value: one}]
"#;
    let set = load(yaml, &[("DSN", my.dsn())]);
    let mut sources = Sources::build(&set, Sources::default());
    let rule = |name: &str| set.rules.iter().find(|r| r.name == name).unwrap().clone();
    let (hog, starved) = (rule("hog"), rule("starved"));
    let slot = sources.slot("main");
    let hog_slot = slot.clone();
    let hog_run = tokio::spawn(async move { evaluation::evaluate(&hog, &[as_source(&hog_slot)]).await });
    wait::until_async(Duration::from_secs(10), "the hog to hold the one session", || running(&my, "SLEEP(3)") == 1)
        .await;
    let outcome = evaluation::evaluate(&starved, &[as_source(&slot)]).await;
    assert!(matches!(outcome.status, Status::Timeout(_)), "{:?}", outcome.status);
    assert_eq!(sessions(&my), 1, "the pool's bound holds");
    let hogged = hog_run.await.unwrap();
    assert_eq!(hogged.status, Status::Success);
    assert_eq!(evaluation::evaluate(&starved, &[as_source(&slot)]).await.status, Status::Success);
    sources.close();
}

/// A global status counter of the server (a private one: nothing else prepares statements there).
fn global_status(my: &MyDb, name: &str) -> f64 {
    let out = my.mariadb(&format!("SHOW GLOBAL STATUS LIKE '{name}'")).unwrap();
    out.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}: {out:?}"))
}

#[test]
fn one_statement_per_rule_per_interval_however_many_scrape() {
    let Some(my) = MyDb::private(Default::default()) else { return };
    crate::mysql::kanary::load_mysql_cases(&my);
    let dir = tempfile::tempdir().unwrap();
    let rules = crate::mysql::kanary::mysql_kanary_rules_with(
        dir.path(),
        &[("interval: 1m", "interval: 1s"), ("timeout: 30s", "timeout: 900ms")],
    );
    let executes_before = global_status(&my, "Com_stmt_execute");
    let ex =
        crate::harness::Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("CONNECTION_STRING", &my.dsn())]);
    ex.wait_ready();
    let key = "sql_signal_exporter_rule_evaluations_total{result=\"success\",rule=\"kanary\"}";
    let evaluated = |e: &crate::harness::Exporter| e.metrics().value(key).unwrap_or(0.0);
    let first = evaluated(&ex);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let scrapes = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..5 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    assert_eq!(ex.get("/metrics").0, 200);
                    scrapes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        ex.wait_until(Duration::from_secs(20), "four more evaluations while scraped", |e| evaluated(e) >= first + 4.0);
    });
    let before = evaluated(&ex);
    let executes = global_status(&my, "Com_stmt_execute") - executes_before;
    let after = evaluated(&ex);
    let prepares = global_status(&my, "Com_stmt_prepare");
    assert!(scrapes.into_inner() > 50, "too few scrapes");
    assert!(before <= executes && executes <= after, "statements {executes} vs evaluations {before}..{after}");
    // Prepared once per session: at most one per connection the pool opened (max_connections 4).
    assert!(prepares <= 4.0, "{prepares} prepares");
}
