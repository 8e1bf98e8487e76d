//! What does not convert is said, never dropped: a comment at its place in the rules file, a warning
//! naming the file and line on stderr, exit 1; and a password is never copied.

use super::{assert_strictly_valid, convert};

/// query-exporter features with no counterpart, and a password in the DSN.
const UNCONVERTIBLE: &str = r#"databases:
  app:
    dsn: postgresql://monitor:s3cr3t-pw@db.example:5432/app?sslmode=require
    connect-sql:
      - SET search_path TO app
metrics:
  job_state:
    type: enum
    description: Job state
    states: [ok, failed]
  jobs_done:
    type: counter
    description: Jobs done
  queue_size:
    type: gauge
    description: Queue size
queries:
  states:
    databases: [app]
    metrics: [job_state]
    sql: SELECT state AS job_state FROM jobs
  by_param:
    databases: [app]
    metrics: [queue_size]
    sql: SELECT count(*) AS queue_size FROM jobs WHERE queue = :queue
    parameters:
      - queue: mail
  uneven:
    schedule: "0 3 * * 1-5"
    databases: [app]
    metrics: [jobs_done, queue_size]
    sql: SELECT count(*) AS jobs_done, count(*) AS queue_size FROM jobs
"#;

#[test]
fn what_does_not_convert_is_a_comment_at_its_place_and_a_warning_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, UNCONVERTIBLE).unwrap();
    let converted = convert("query-exporter", &[&path], dir.path());
    assert_eq!(converted.code, Some(1), "{}", converted.stderr);
    assert!(!converted.yaml.contains("s3cr3t-pw") && !converted.stderr.contains("s3cr3t-pw"), "password copied");
    let file = path.display().to_string();
    for (line, what) in
        [(4, "connect-sql"), (7, "job_state"), (11, "jobs_done_total"), (26, "parameters"), (29, "0 3 * * 1-5")]
    {
        let warning = format!("{file}:{line}: warning: not converted: ");
        assert!(
            converted.stderr.lines().any(|l| l.starts_with(&warning) && l.contains(what)),
            "no warning at line {line} about {what}:\n{}",
            converted.stderr
        );
        assert!(
            converted.yaml.lines().any(|l| l.trim_start().starts_with(&format!("# NOT CONVERTED ({file}:{line})"))),
            "no comment for line {line}:\n{}",
            converted.yaml
        );
    }
    assert!(converted.stderr.contains("set APP_PASSWORD"), "{}", converted.stderr);
    // What did convert is valid, and the rule of `uneven` kept its gauge.
    assert_strictly_valid(&converted, &[("APP_PASSWORD", "x")]);
    assert!(converted.yaml.contains("name: \"queue_size\""), "{}", converted.yaml);
}

#[test]
fn an_unknown_format_or_an_unreadable_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::harness::command().args(["--convert", "prometheus", "x.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres_exporter, sql_exporter, justwatch, query-exporter"));
    let missing = dir.path().join("missing.yaml");
    let out = crate::harness::command().arg("--convert").arg("justwatch").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml: cannot read the file"));
}

/// burningalchemist: one collector in two jobs, whose series the peer labels `job="a"` and `job="b"`.
const SHARED_COLLECTOR: &str = r#"jobs:
  - job_name: a
    collectors: [count]
    static_configs:
      - targets: { pg1: 'postgres://monitor@db1.example/app' }
  - job_name: b
    collectors: [count]
    static_configs:
      - targets: { pg2: 'postgres://monitor@db2.example/app' }
collectors:
  - collector_name: count
    metrics:
      - metric_name: rows
        type: gauge
        help: Rows.
        values: [n]
        query: SELECT count(*) AS n FROM t
"#;

#[test]
fn a_collector_shared_by_jobs_with_other_labels_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sql_exporter.yml");
    std::fs::write(&path, SHARED_COLLECTOR).unwrap();
    let converted = convert("sql_exporter", &[&path], dir.path());
    assert_eq!(converted.code, Some(1), "{}", converted.stderr);
    let warning = format!("{}:1: warning: not converted: collector 'count'", path.display());
    assert!(converted.stderr.lines().any(|l| l.starts_with(&warning)), "{}", converted.stderr);
    assert!(converted.yaml.contains(r#"database: ["pg1", "pg2"]"#), "{}", converted.yaml);
}
