//! justwatchcom/sql_exporter 0.4.5 (Debian's `prometheus-sql-exporter`) beside its converted
//! configuration: a job with an interval, inline queries with labels and several values, a
//! `query_ref`, and a second job on a cron schedule.

use std::collections::BTreeSet;
use std::process::Command;

use super::{assert_no_password, assert_same, assert_strictly_valid, convert, ours, port, Comparison, Peer, Values};
use crate::harness::{tool, Db};

const PEER: &str = "prometheus-sql-exporter";
const INSTALL: &str = "apt-get install prometheus-sql-exporter (.ci/run does)";

const FIXTURE: &str = "CREATE TABLE convert_orders (state text, amount numeric, region text); \
     INSERT INTO convert_orders VALUES ('open', 2.5, 'eu'), ('open', 4, 'us'), ('closed', 1.25, 'eu'), ('closed', NULL, 'us');";

fn config(dsn: &str) -> String {
    format!(
        r#"
jobs:
  - name: orders_job
    interval: 15s
    connections:
      - "{dsn}"
    startup_sql:
      - "SET lock_timeout = 1000"
    queries:
      - name: "convert_orders"
        help: "Orders by state and region"
        labels: ["state", "region"]
        values: ["count", "amount"]
        query: "SELECT state, region, count(*) AS count, sum(amount) AS amount FROM convert_orders GROUP BY state, region"
      - name: "convert_orders_total"
        help: "All orders"
        values: ["n"]
        query_ref: "all_orders"
  - name: cron_job
    cron_schedule: "* * * * *"
    connections:
      - "{dsn}"
    queries:
      - name: "convert_regions"
        help: "Regions"
        labels: ["region"]
        values: ["n"]
        query: "SELECT region, count(*) AS n FROM convert_orders GROUP BY region"
queries:
  all_orders: "SELECT count(*) AS n FROM convert_orders"
"#
    )
}

#[test]
fn a_justwatch_configuration_exports_the_same_series_as_sql_exporter() {
    if !tool::program(PEER, INSTALL) {
        return;
    }
    let db = Db::shared();
    db.psql(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Its driver (lib/pq) knows the `postgres://` scheme.
    let dsn = db.dsn().replacen("postgresql://", "postgres://", 1);
    let path = dir.path().join("sql_exporter.yaml");
    std::fs::write(&path, config(&dsn)).unwrap();
    let converted = convert("justwatch", &[&path], dir.path());
    assert_no_password(&converted, db.password());
    // startup_sql is the only thing left out.
    assert_eq!(converted.code, Some(1), "{}", converted.stderr);
    let warned: Vec<&str> = converted.stderr.lines().filter(|l| l.contains("warning: not converted")).collect();
    assert_eq!(warned.len(), 1, "{}", converted.stderr);
    assert!(
        warned[0].starts_with(&format!("{}:7:", path.display())) && warned[0].contains("startup_sql"),
        "{warned:?}"
    );
    assert!(
        converted.yaml.contains("interval: \"15s\"") && converted.yaml.contains("interval: \"1m\""),
        "{}",
        converted.yaml
    );
    assert!(converted.stderr.contains("set ORDERS_JOB_PASSWORD"), "{}", converted.stderr);
    let env = [("ORDERS_JOB_PASSWORD", db.password()), ("CRON_JOB_PASSWORD", db.password())];
    assert_strictly_valid(&converted, &env);
    let port = port();
    let mut cmd = Command::new(PEER);
    cmd.arg(format!("-config.file={}", path.display())).arg(format!("-web.listen-address=127.0.0.1:{port}"));
    let peer = Peer::start(cmd, port, dir.path());
    let wanted = ["sql_convert_orders", "sql_convert_orders_total", "sql_convert_regions"];
    // The cron job first runs at the next whole minute.
    let before = peer.families_when(&wanted);
    let mine = ours(&converted, &env);
    let cmp = Comparison {
        families: wanted.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        peer_only_labels: &[],
        warnings: &converted.stderr,
        values: |_| Values::Equal,
    };
    assert_same(&cmp, (&before, &before), &mine, 3);
    // The labels the peer adds from the connection are there, with the peer's values.
    let labels = mine["sql_convert_orders_total"].series.keys().next().unwrap().clone();
    let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(keys, ["col", "database", "driver", "host", "sql_job", "user"]);
    // A NULL value is no series in both.
    assert_eq!(mine["sql_convert_orders"].series.len(), 7);
}
