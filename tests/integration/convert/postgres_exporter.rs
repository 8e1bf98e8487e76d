//! postgres_exporter 0.11 (Debian's `prometheus-postgres-exporter`, `--extend.query-path`) beside
//! its converted `queries.yaml`: the example file its package ships, and a file that uses every
//! `usage`, `cache_seconds`, `master` and `runonserver` on a fixture table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{assert_same, assert_strictly_valid, convert, ours, port, Comparison, Peer, Values};
use crate::harness::{tool, Db};

const PEER: &str = "prometheus-postgres-exporter";
const INSTALL: &str = "apt-get install prometheus-postgres-exporter (.ci/run does)";

/// The peer adds `server="host:port"` to every series of a queries.yaml query; rules do not.
const PEER_ONLY_LABELS: &[&str] = &["server"];

/// The example queries.yaml of the Debian package, found with `dpkg -L`.
fn debian_example() -> Option<PathBuf> {
    let out = Command::new("dpkg").args(["-L", "prometheus-postgres-exporter"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find(|l| l.ends_with("examples/queries.yaml")).map(PathBuf::from)
}

fn start_peer(db: &Db, queries: &Path, dir: &Path) -> Peer {
    let port = port();
    let mut cmd = Command::new(PEER);
    cmd.args([
        "--disable-default-metrics",
        "--disable-settings-metrics",
        "--no-collector.database",
        "--no-collector.bgwriter",
    ])
    .arg(format!("--extend.query-path={}", queries.display()))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .env("DATA_SOURCE_NAME", db.dsn());
    Peer::start(cmd, port, dir)
}

/// The families a queries.yaml declares: `<namespace>_<column>` (and `_milliseconds` for DURATION).
fn declared_families(queries: &Path) -> BTreeSet<String> {
    let doc: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(queries).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for (namespace, spec) in doc.as_object().unwrap() {
        for item in spec["metrics"].as_array().unwrap() {
            for (column, mapping) in item.as_object().unwrap() {
                let usage = mapping["usage"].as_str().unwrap_or_default();
                let suffix = if usage == "DURATION" { "_milliseconds" } else { "" };
                out.insert(format!("{namespace}_{column}{suffix}"));
            }
        }
    }
    out
}

#[test]
fn the_debian_example_queries_export_the_same_series_as_postgres_exporter() {
    if !tool::program(PEER, INSTALL) {
        return;
    }
    let Some(example) = debian_example() else {
        tool::missing("the example queries.yaml of prometheus-postgres-exporter", INSTALL);
        return;
    };
    let db = Db::shared();
    // Rows and statistics in pg_stat_user_tables and pg_statio_user_tables.
    db.psql("CREATE TABLE convert_stats (id int PRIMARY KEY, v text); INSERT INTO convert_stats SELECT g, 'x' FROM generate_series(1, 100) g; ANALYZE convert_stats;")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let converted = convert("postgres_exporter", &[&example], dir.path());
    assert_eq!(converted.code, Some(1), "the example's histogram does not convert: exit 1\n{}", converted.stderr);
    assert!(
        converted.stderr.contains("queries.yaml:") && converted.stderr.contains("HISTOGRAM"),
        "{}",
        converted.stderr
    );
    assert!(converted.yaml.contains("NOT CONVERTED"), "{}", converted.yaml);
    let env = [("DATA_SOURCE_NAME", db.dsn())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_strictly_valid(&converted, &env);
    let peer = start_peer(&db, &example, dir.path());
    let before = peer.families_when(&["pg_stat_user_tables_n_live_tup", "pg_postmaster_start_time_seconds"]);
    let mine = ours(&converted, &env);
    let after = peer.families();
    let cmp = Comparison {
        families: declared_families(&example),
        peer_only_labels: PEER_ONLY_LABELS,
        warnings: &converted.stderr,
        values: |_| Values::Between,
    };
    assert_same(&cmp, (&before, &after), &mine, 29);
}

/// Every usage on a fixture table; `runonserver` both admitting and refusing this server.
const EVERY_USAGE: &str = r#"
convert_fixture:
  query: "SELECT kind, hits, level, state, uptime, ignored, seconds, seconds_bucket, seconds_sum, seconds_count FROM convert_fixture"
  cache_seconds: 30
  master: true
  metrics:
    - kind: { usage: "LABEL", description: "Kind of row" }
    - hits: { usage: "COUNTER", description: "Hits so far" }
    - level: { usage: "GAUGE", description: "Fill level" }
    - state: { usage: "MAPPEDMETRIC", description: "State", mapping: { "on": 1, "off": 0 } }
    - uptime: { usage: "DURATION", description: "Uptime" }
    - ignored: { usage: "DISCARD", description: "Not exported" }
    - seconds: { usage: "HISTOGRAM", description: "Seconds taken" }
convert_new_servers:
  query: "SELECT count(*) AS rows_total FROM convert_fixture"
  runonserver: ">=10.0.0"
  metrics:
    - rows_total: { usage: "GAUGE", description: "Rows in the fixture" }
convert_old_servers:
  query: "SELECT count(*) AS rows FROM convert_fixture"
  runonserver: ">=9.0.0 <9.6.0 || <8.0.0"
  metrics:
    - rows: { usage: "GAUGE", description: "Rows on old servers" }
"#;

const FIXTURE: &str =
    "CREATE TABLE convert_fixture (kind text, hits bigint, level float8, state text, uptime text, ignored int, \
     seconds float8[], seconds_bucket bigint[], seconds_sum float8, seconds_count bigint); \
     INSERT INTO convert_fixture VALUES \
     ('a', 3, 2.5, '1', '1500', 7, '{1,5}', '{1,2}', 3.5, 2), \
     ('b', 12, -0.25, 'on', 'not a number', 8, '{1,5}', '{0,1}', 4, 1), \
     ('c', 0, 1e10, '0.5', '20', 9, '{1,5}', '{1,1}', 0.5, 1);";

#[test]
fn every_usage_of_a_queries_file_exports_the_same_series_as_postgres_exporter() {
    if !tool::program(PEER, INSTALL) {
        return;
    }
    let db = Db::shared();
    db.psql(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("queries.yaml");
    std::fs::write(&queries, EVERY_USAGE).unwrap();
    let converted = convert("postgres_exporter", &[&queries], dir.path());
    // Left out: the histogram. Differing: the mapping (which 0.11 does not apply either) and
    // runonserver (which 0.11 ignores).
    assert_eq!(converted.code, Some(1), "{}", converted.stderr);
    let file = queries.display().to_string();
    let warned = |kind: &str| -> Vec<String> {
        converted.stderr.lines().filter(|l| l.contains(&format!("warning: {kind}:"))).map(String::from).collect()
    };
    let left_out = warned("not converted");
    assert_eq!(left_out.len(), 1, "{}", converted.stderr);
    assert!(left_out[0].starts_with(&format!("{file}:13:")) && left_out[0].contains("convert_fixture_seconds"));
    let differs = warned("differs from the peer");
    for (line, what) in [(10, "MAPPEDMETRIC"), (16, "runonserver"), (21, "convert_old_servers_rows")] {
        assert!(differs.iter().any(|w| w.starts_with(&format!("{file}:{line}:")) && w.contains(what)), "{differs:?}");
    }
    assert!(converted.yaml.contains("interval: \"30s\""), "cache_seconds is the interval:\n{}", converted.yaml);
    let env = [("DATA_SOURCE_NAME", db.dsn())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_strictly_valid(&converted, &env);
    let peer = start_peer(&db, &queries, dir.path());
    let before = peer.families_when(&["convert_fixture_hits", "convert_new_servers_rows_total"]);
    let mine = ours(&converted, &env);
    let cmp = Comparison {
        families: declared_families(&queries),
        peer_only_labels: PEER_ONLY_LABELS,
        warnings: &converted.stderr,
        values: |_| Values::Equal,
    };
    assert_same(&cmp, (&before, &before), &mine, 5);
    // What the comparison rests on, spelled out: a counter keeps its name, DURATION and
    // MAPPEDMETRIC read numbers (a text that is not one exports nothing), the old-server query
    // runs here only on old servers (the peer ignores runonserver), and the histogram is the
    // peer's only.
    let value = |family: &str, kind: &str| mine[family].series.iter().find(|(l, _)| l["kind"] == kind).map(|(_, v)| *v);
    assert_eq!(mine["convert_fixture_hits"].kind, "counter");
    assert_eq!(value("convert_fixture_hits", "b"), Some(12.0));
    assert_eq!(value("convert_fixture_uptime_milliseconds", "a"), Some(1500.0));
    assert_eq!(value("convert_fixture_uptime_milliseconds", "b"), None);
    assert_eq!(value("convert_fixture_state", "c"), Some(0.5));
    assert_eq!(value("convert_fixture_state", "b"), None);
    assert_eq!(mine["convert_new_servers_rows_total"].series.values().next(), Some(&3.0));
    assert!(!mine.contains_key("convert_old_servers_rows") && before.contains_key("convert_old_servers_rows"));
    assert_eq!(before["convert_fixture_seconds"].kind, "histogram");
    assert!(!mine.contains_key("convert_fixture_seconds") && !mine.contains_key("convert_fixture_ignored"));
}
