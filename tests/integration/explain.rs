//! `--check-rules --db --explain` against a real server: a sequential scan over a big table warns
//! at the rule's `query:` line, naming the table and the filter; with an index it does not; and the
//! rule's query is only planned, never run (the table's scan counters do not move).

use crate::harness::{command, wait, Db};
use std::time::Duration;

const QUERY: &str = "SELECT name, at, ok FROM big WHERE name = ANY($1::text[]) AND ok IS NOT NULL";

fn rules() -> String {
    format!(
        "version: 1\ndatabases:\n  db:\n    dsn: \"${{SSE_EXPLAIN_DSN}}\"\nsignals:\n  - name: scan\n    database: db\n    labels: [name]\n    targets:\n      - {{ name: [n1, n2] }}\n    window: 3\n    values: {{ok: bool}}\n    success: \"ok\"\n    metrics:\n      up: {{name: scan_up, help: h}}\n      error: {{name: scan_error, help: h}}\n    query: |\n      {QUERY}\n"
    )
}

/// (seq_scan, idx_scan) of table `big`, as the statistics collector has them.
fn scans(db: &Db) -> String {
    db.psql("SELECT pg_stat_force_next_flush(); SELECT seq_scan || ',' || coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'big'")
        .expect("stats read")
        .trim()
        .to_string()
}

fn check(db: &Db, file: &std::path::Path) -> (Option<i32>, String, String) {
    let out = command()
        .arg("--check-rules")
        .arg(file)
        .args(["--db", "--explain"])
        .env("SSE_EXPLAIN_DSN", db.dsn())
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_big_sequential_scan_warns_an_index_silences_it_and_nothing_runs() {
    let db = Db::shared();
    db.psql(
        "CREATE TABLE big (name text, at timestamptz, ok boolean);
         INSERT INTO big SELECT 'n' || (i % 2000), now() - i * interval '1 s', i % 7 <> 0 FROM generate_series(1, 200000) i;
         ANALYZE big;
         GRANT SELECT ON big TO exporter;",
    )
    .expect("table made");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("explain.yaml");
    let text = rules();
    std::fs::write(&file, &text).expect("written");
    let query_line = text.lines().position(|l| l.trim_start().starts_with("query:")).expect("query line") + 1;

    let before = scans(&db);
    let (code, stdout, stderr) = check(&db, &file);
    assert_eq!(code, Some(0), "warnings only:\n{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one warning:\n{stdout}");
    let at = format!("{}:{query_line}:5: warning: the plan scans table public.big (about 200000 rows", file.display());
    assert!(lines[0].starts_with(&at), "{}\nwanted it to start with {at}", lines[0]);
    // The planner orders the conditions as it likes.
    for condition in ["`big.name = ANY ('{n1,n2}'::text[])`", "`big.ok IS NOT NULL`"] {
        assert!(lines[0].contains(condition), "{} lacks {condition}", lines[0]);
    }
    assert!(!stdout.contains(db.password()) && !stderr.contains(db.password()));

    // Planned only: the check's sessions have ended (and flushed their statistics), yet the table
    // was not scanned; running the query once does move the counter, so the comparison can fail.
    wait::until(
        Duration::from_secs(5),
        "the check's backends to exit",
        || sessions(&db) == 0,
        || sessions(&db).to_string(),
    );
    assert_eq!(scans(&db), before, "the check ran the query");
    db.psql(&QUERY.replace("$1::text[]", "'{n1}'")).expect("query runs");
    assert_ne!(scans(&db), before, "the scan counters do not count");

    // With an index the plan reads the few rows it needs, and nothing warns, also strictly.
    db.psql("CREATE INDEX ON big (name); ANALYZE big;").expect("index made");
    let (code, stdout, stderr) = check(&db, &file);
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "{stderr}");
    // A cost limit below the plan's cost warns whatever the plan.
    let out = command()
        .arg("--check-rules")
        .arg(&file)
        .args(["--db", "--explain", "--explain.max-cost", "1", "--strict"])
        .env("SSE_EXPLAIN_DSN", db.dsn())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!(":{query_line}:5: error: the plan's estimated total cost is ")), "{stdout}");
}

/// The exporter's sessions open on the server now.
fn sessions(db: &Db) -> usize {
    db.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sql-signal-exporter'")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(usize::MAX)
}
