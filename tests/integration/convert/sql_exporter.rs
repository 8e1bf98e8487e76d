//! burningalchemist/sql_exporter does not run here (no package): configurations written from its
//! documentation (`documentation/sql_exporter.yml` of the project: a `target` with collectors
//! inline and in `collector_files`, `jobs` with several targets) are converted, the rules pass
//! `--check-rules --strict`, and `--once` on a fixture exports what that documentation says the
//! peer exports: the metric names, types, help, key labels, `value_label` with one series per value
//! column, `static_labels`, `static_value`, `query_ref` shared by two metrics, and in `jobs` mode
//! the `job` and `instance` labels.

use std::path::Path;

use super::{assert_no_password, assert_strictly_valid, convert, ours, Families};
use crate::harness::{labels, Db};

const FIXTURE: &str = "CREATE TABLE convert_io (db text, io_stall_read float8, io_stall_write float8); \
     INSERT INTO convert_io VALUES ('sales', 1.5, 2.25), ('hr', 0, 4);";

/// The configuration: a target, an inline collector, and collector files by glob.
fn config(dsn: &str) -> String {
    format!(
        r#"
global:
  scrape_timeout: 10s
  min_interval: 0s
target:
  data_source_name: '{dsn}'
  collectors: [io_*, host]
collectors:
  - collector_name: io_standard
    min_interval: 30s
    metrics:
      - metric_name: convert_io_stall_seconds
        type: counter
        help: 'Stall time in seconds per database and I/O operation.'
        key_labels: [db]
        value_label: operation
        values: [io_stall_read, io_stall_write]
        query_ref: io_stall
      - metric_name: convert_io_stall_total_seconds
        type: counter
        help: 'Total stall time in seconds per database.'
        key_labels: [db]
        static_labels:
          env: dev
        values: [io_stall]
        query_ref: io_stall
      - metric_name: convert_io_last_seen
        type: gauge
        help: 'When the database was seen.'
        key_labels: [db]
        values: [seen]
        timestamp_value: seen_at
        query: SELECT db, 1 AS seen, now() AS seen_at FROM convert_io
    queries:
      - query_name: io_stall
        query: |
          SELECT db, io_stall_read, io_stall_write, io_stall_read + io_stall_write AS io_stall
          FROM convert_io;
collector_files:
  - "*.collector.yml"
"#
    )
}

const HOST_COLLECTOR: &str = r#"
collector_name: host
metrics:
  - metric_name: convert_hostname
    type: gauge
    help: 'Database server hostname'
    key_labels: [hostname]
    static_value: 1
    query: SELECT 'db-1' AS hostname
"#;

/// `jobs` mode: two targets of one job, with labels.
fn jobs_config(dsn: &str) -> String {
    format!(
        r#"
jobs:
  - job_name: db_targets
    collectors: [count]
    static_configs:
      - targets:
          pg1: '{dsn}'
          pg2: '{dsn}'
        labels:
          env: prod
collectors:
  - collector_name: count
    metrics:
      - metric_name: convert_io_databases
        type: gauge
        help: 'Databases with I/O statistics.'
        values: [n]
        query: SELECT count(*) AS n FROM convert_io
"#
    )
}

fn run(db: &Db, files: &[&Path], dir: &Path, env: &[(&str, &str)]) -> (super::Converted, Families) {
    let converted = convert("sql_exporter", files, dir);
    assert_no_password(&converted, db.password());
    assert_strictly_valid(&converted, env);
    let families = ours(&converted, env);
    (converted, families)
}

#[test]
fn a_burningalchemist_configuration_exports_what_its_documentation_describes() {
    let db = Db::shared();
    db.psql(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sql_exporter.yml");
    std::fs::write(&path, config(&db.dsn().replacen("postgresql://", "pg://", 1))).unwrap();
    std::fs::write(dir.path().join("host.collector.yml"), HOST_COLLECTOR).unwrap();
    let env = [("TARGET_PASSWORD", db.password())];
    let (converted, mine) = run(&db, &[&path], dir.path(), &env);
    // Left out: timestamp_value, and the `global` settings this converter does not know.
    let warned: Vec<&str> = converted.stderr.lines().filter(|l| l.contains("warning: not converted")).collect();
    assert!(
        warned.iter().any(|w| w.contains("timestamp_value") && w.starts_with(&format!("{}:32:", path.display()))),
        "{warned:?}"
    );
    assert_eq!(converted.code, Some(1));
    assert!(converted.yaml.contains("interval: \"30s\""), "min_interval is the interval:\n{}", converted.yaml);

    let stall = &mine["convert_io_stall_seconds"];
    assert_eq!(
        (stall.kind.as_str(), stall.help.as_str()),
        ("counter", "Stall time in seconds per database and I/O operation.")
    );
    assert_eq!(stall.series[&labels(&[("db", "sales"), ("operation", "io_stall_read")])], 1.5);
    assert_eq!(stall.series[&labels(&[("db", "sales"), ("operation", "io_stall_write")])], 2.25);
    assert_eq!(stall.series.len(), 4);
    let total = &mine["convert_io_stall_total_seconds"];
    assert_eq!(total.series[&labels(&[("db", "hr"), ("env", "dev")])], 4.0);
    assert_eq!(total.series.len(), 2);
    assert_eq!(mine["convert_io_last_seen"].series.len(), 2);
    let host = &mine["convert_hostname"];
    assert_eq!((host.kind.as_str(), host.series.len()), ("gauge", 1));
    assert_eq!(host.series[&labels(&[("hostname", "db-1")])], 1.0);
}

#[test]
fn burningalchemist_jobs_label_each_target_with_job_and_instance() {
    let db = Db::shared();
    db.psql(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sql_exporter.yml");
    std::fs::write(&path, jobs_config(&db.dsn())).unwrap();
    let env = [("PG1_PASSWORD", db.password()), ("PG2_PASSWORD", db.password())];
    let (converted, mine) = run(&db, &[&path], dir.path(), &env);
    assert_eq!(converted.code, Some(0), "everything converts:\n{}", converted.stderr);
    let family = &mine["convert_io_databases"];
    for instance in ["pg1", "pg2"] {
        let key = labels(&[("env", "prod"), ("instance", instance), ("job", "db_targets")]);
        assert_eq!(family.series.get(&key), Some(&2.0), "{:?}", family.series);
    }
}
