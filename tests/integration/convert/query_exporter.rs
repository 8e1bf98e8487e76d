//! query-exporter (PyPI, pinned, in a venv under `target/`) beside its converted configuration:
//! gauges with labels, a counter that is set (`increment: false`), database labels, and what does
//! not convert (an incrementing counter, a histogram, an enum) reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{assert_no_password, assert_same, assert_strictly_valid, convert, ours, port, Comparison, Peer, Values};
use crate::harness::{repo_root, tool, Db};

/// `target/peers-venv/bin/query-exporter`: query-exporter 5.0.2 with psycopg 3.3.9, which `.ci/run`
/// installs there (the benchmark's venv, the same pin).
fn query_exporter() -> PathBuf {
    repo_root().join("target/peers-venv/bin/query-exporter")
}

const FIXTURE: &str = "CREATE TABLE convert_jobs (queue text, state text, n int, seconds float8); \
     INSERT INTO convert_jobs VALUES ('mail', 'done', 5, 0.5), ('mail', 'failed', 1, 2.0), ('sms', 'done', 3, 7.5);";

fn config(dsn: &str) -> String {
    format!(
        r#"
databases:
  app:
    dsn: "{dsn}"
    labels:
      region: eu
metrics:
  convert_jobs_by_state:
    type: gauge
    description: Jobs per queue and state
    labels: [queue, state]
  convert_jobs_seen:
    type: counter
    description: Jobs seen so far
    increment: false
  convert_jobs_added:
    type: counter
    description: Jobs added per run
  convert_job_seconds:
    type: histogram
    description: Job durations
    buckets: [1, 5, 10]
queries:
  by_state:
    interval: 5
    databases: [app]
    metrics: [convert_jobs_by_state]
    sql: SELECT queue, state, n AS convert_jobs_by_state FROM convert_jobs
  seen:
    interval: 10s
    timeout: 2
    databases: [app]
    metrics: [convert_jobs_seen, convert_jobs_added]
    sql: SELECT sum(n) AS convert_jobs_seen, sum(n) AS convert_jobs_added FROM convert_jobs
  durations:
    schedule: "*/2 * * * *"
    databases: [app]
    metrics: [convert_job_seconds]
    sql: SELECT seconds AS convert_job_seconds FROM convert_jobs
"#
    )
}

fn start_peer(config: &Path, dir: &Path) -> Peer {
    let port = port();
    let mut cmd = Command::new(query_exporter());
    cmd.arg("--config").arg(config).args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    Peer::start(cmd, port, dir)
}

#[test]
fn a_query_exporter_configuration_exports_the_same_series_as_query_exporter() {
    if !query_exporter().exists() {
        tool::missing("query-exporter in target/peers-venv", "bash .ci/run creates the venv with pip");
        return;
    }
    let db = Db::shared();
    db.psql(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // SQLAlchemy picks psycopg 3 by the scheme.
    let dsn = db.dsn().replacen("postgresql://", "postgresql+psycopg://", 1).replace("?sslmode=disable", "");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&dsn)).unwrap();
    let converted = convert("query-exporter", &[&path], dir.path());
    assert_no_password(&converted, db.password());
    assert_eq!(converted.code, Some(1), "{}", converted.stderr);
    let warned: Vec<&str> = converted.stderr.lines().filter(|l| l.contains("warning: not converted")).collect();
    assert_eq!(warned.len(), 2, "{}", converted.stderr);
    assert!(warned.iter().any(|w| w.contains(":16:") && w.contains("convert_jobs_added_total")), "{warned:?}");
    assert!(warned.iter().any(|w| w.contains(":19:") && w.contains("convert_job_seconds")), "{warned:?}");
    let env = [("APP_PASSWORD", db.password())];
    assert_strictly_valid(&converted, &env);
    let peer = start_peer(&path, dir.path());
    let before = peer.families_when(&["convert_jobs_by_state", "convert_jobs_seen_total"]);
    let mine = ours(&converted, &env);
    let cmp = Comparison {
        families: [
            "convert_jobs_by_state",
            "convert_jobs_seen_total",
            "convert_jobs_added_total",
            "convert_job_seconds",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<BTreeSet<_>>(),
        peer_only_labels: &[],
        warnings: &converted.stderr,
        values: |_| Values::Equal,
    };
    assert_same(&cmp, (&before, &before), &mine, 2);
    let labels = mine["convert_jobs_by_state"].series.keys().next().unwrap().clone();
    let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(keys, ["database", "queue", "region", "state"]);
}
