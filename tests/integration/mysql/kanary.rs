//! `examples/kanary/mysql/kanary.yaml` on MariaDB gives the same 72 series as `rules/kanary.yaml` on
//! PostgreSQL (the same golden files), on the same scenarios: the cases of [`crate::kanary`] are
//! loaded into PostgreSQL by their own SQL, and their rows copied into MariaDB as they are, so
//! both engines judge identical data.

use std::time::Duration;

use crate::harness::{
    assert_fail_safe, golden, is_fail_safe, kanary_signal, once, repo_root, Db, Exporter, Exposition, MyDb,
    KANARY_DB_ERROR,
};
use crate::kanary::{cases, load_cases, DOWN_TARGET, GOLDEN, GOLDEN_DB_ERROR};

/// The MySQL Kanary rules.
fn mysql_kanary_rules() -> std::path::PathBuf {
    repo_root().join("examples/kanary/mysql/kanary.yaml")
}

/// The MySQL Kanary rules with textual replacements, written into `dir`.
pub(crate) fn mysql_kanary_rules_with(dir: &std::path::Path, replacements: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(mysql_kanary_rules()).expect("the MySQL Kanary rules");
    for (from, to) in replacements {
        assert!(text.contains(from), "examples/kanary/mysql/kanary.yaml no longer contains {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join("kanary.yaml");
    std::fs::write(&path, text).expect("write the rules");
    path
}

/// Loads the Kanary cases into `my`: through PostgreSQL, whose `kanary_run` makes the rows, then
/// copied row by row (times in UTC, the JSON as text).
pub(crate) fn load_mysql_cases(my: &MyDb) {
    let pg = Db::shared();
    load_cases(&pg, &cases());
    let inserts = pg
        .psql(
            "SELECT format('INSERT INTO data (horreum_testid, start, stop, label_values) VALUES (%s, %L, %L, %L);', \
             horreum_testid, to_char(start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
             to_char(stop AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), label_values::text) FROM data ORDER BY dataset_id",
        )
        .expect("the cases' rows");
    // %L doubles quotes as standard SQL does; backslashes stay literal.
    my.mariadb(&format!("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');\n{inserts}"))
        .expect("copy the cases into MariaDB");
}

#[test]
fn kanary_on_mariadb_gives_the_postgresql_series_for_series() {
    let Some(my) = MyDb::shared() else { return };
    load_mysql_cases(&my);
    let (code, stdout, stderr) = once(&mysql_kanary_rules(), &[("CONNECTION_STRING", &my.dsn())]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(Exposition::parse(&stdout).series.len(), 72);
    assert_eq!(stdout, golden::read(GOLDEN), "the MySQL Kanary differs from the PostgreSQL golden file");
}

#[test]
fn the_full_pass_gives_the_same_series_as_the_first_pass() {
    // recent_rows 0: every target is looked for in every run; 7: some targets are served by the first
    // pass and the others by the full one, the boundary falling inside targets' windows.
    let Some(my) = MyDb::shared() else { return };
    load_mysql_cases(&my);
    for recent in ["0", "7"] {
        let dir = tempfile::tempdir().unwrap();
        let rules = mysql_kanary_rules_with(dir.path(), &[("recent_rows: 1000", &format!("recent_rows: {recent}"))]);
        let (code, stdout, stderr) = once(&rules, &[("CONNECTION_STRING", &my.dsn())]);
        assert_eq!(code, Some(0), "recent_rows {recent}: {stderr}");
        assert_eq!(stdout, golden::read(GOLDEN), "recent_rows {recent} differs from the PostgreSQL golden file");
    }
}

#[test]
fn a_failed_mysql_query_reports_db_error_for_every_target() {
    let Some(my) = MyDb::shared() else { return };
    load_mysql_cases(&my);
    let dir = tempfile::tempdir().unwrap();
    let rules = mysql_kanary_rules_with(dir.path(), &[("FROM data d", "FROM no_such_table d")]);
    let (code, stdout, stderr) = once(&rules, &[("CONNECTION_STRING", &my.dsn())]);
    assert_eq!(code, Some(1), "--once exits non-zero when a rule failed");
    assert!(stderr.contains("no_such_table") && stderr.contains("error 1146"), "{stderr}");
    assert!(!stderr.contains(my.password()), "the password leaked: {stderr}");
    assert_eq!(Exposition::parse(&stdout).text, golden::read(GOLDEN_DB_ERROR));
}

#[test]
fn mariadb_down_at_start_serves_fail_safe_then_recovers_without_restart() {
    let Some(my) = MyDb::private(Default::default()) else { return };
    load_mysql_cases(&my);
    my.private_server().stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules =
        mysql_kanary_rules_with(dir.path(), &[("interval: 1m", "interval: 1s"), ("timeout: 30s", "timeout: 900ms")]);
    let dsn = my.dsn();
    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("CONNECTION_STRING", &dsn)]);
    ex.wait_ready();
    assert_fail_safe(&ex.metrics(), &kanary_signal(), KANARY_DB_ERROR);

    my.private_server().restart().unwrap();
    ex.wait_until(Duration::from_secs(20), "the real signal after MariaDB came back", |e| {
        e.metrics().value(DOWN_TARGET) == Some(0.0)
    });
    assert_eq!(ex.metrics().family_text("kanary_"), golden::read(GOLDEN));

    my.private_server().stop().unwrap();
    ex.wait_until(Duration::from_secs(10), "fail-safe after MariaDB stopped", |e| {
        is_fail_safe(&e.metrics(), &kanary_signal(), KANARY_DB_ERROR)
    });
    assert!(!ex.logs().contains(my.password()), "the password leaked into a log line");
}
