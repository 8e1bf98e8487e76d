//! `rules/postgres.yaml`, the ISH PostgreSQL exporter's families in rules, through the real binary
//! on a private server (it reads every database and session of the server).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::{load, parse, run_once};
use crate::harness::{once, repo_root, tool, value, wait, Db, Samples};

// ---------------------------------------------------------------------------------------------
// rules/postgres.yaml: the ISH PostgreSQL exporter, in rules

const LOCK_MODES: [&str; 8] = [
    "accesssharelock",
    "rowsharelock",
    "rowexclusivelock",
    "shareupdateexclusivelock",
    "sharelock",
    "sharerowexclusivelock",
    "exclusivelock",
    "accessexclusivelock",
];
const STATES: [&str; 6] =
    ["active", "idle", "idle in transaction", "idle in transaction (aborted)", "fastpath function call", "disabled"];
const BGWRITER: [&str; 10] = [
    "checkpoints_timed",
    "checkpoints_req",
    "checkpoint_write_time",
    "checkpoint_sync_time",
    "buffers_checkpoint",
    "buffers_clean",
    "maxwritten_clean",
    "buffers_backend",
    "buffers_backend_fsync",
    "buffers_alloc",
];
const STAT_DATABASE: [&str; 15] = [
    "numbackends",
    "xact_commit",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "conflicts",
    "temp_files",
    "temp_bytes",
    "deadlocks",
    "blk_read_time",
    "blk_write_time",
];
const CONFLICTS: [&str; 5] = ["confl_tablespace", "confl_lock", "confl_snapshot", "confl_bufferpin", "confl_deadlock"];

fn postgres_yaml() -> PathBuf {
    repo_root().join("rules/postgres.yaml")
}

/// The label names of every series of a family.
fn label_names(s: &Samples, name: &str) -> BTreeSet<Vec<String>> {
    s[name].keys().map(|l| l.keys().cloned().collect()).collect()
}

#[tokio::test]
async fn postgres_yaml_reproduces_the_ish_exporter() {
    // It reads every database and session of the server: a private server.
    let db = Db::private_default();
    let pg = db.server();
    pg.create_database("shop").unwrap();
    pg.psql("shop", "CREATE TABLE orders (id int);").unwrap();
    let databases: BTreeSet<String> =
        pg.psql("postgres", "SELECT datname FROM pg_database").unwrap().lines().map(String::from).collect();
    assert!(databases.contains("shop") && databases.contains("template0"), "{databases:?}");

    // A value we control: a transaction on `shop`, from another session, holding a lock of a mode
    // nothing else takes, left open (idle in transaction) while the exporter runs.
    let (holder, connection) = tokio_postgres::connect(&pg.superuser_dsn("shop"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    holder.batch_execute("BEGIN; LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;").await.unwrap();
    // postgresql_longest_transaction_seconds must read at least 1 below: wait until the server says
    // the transaction is that old.
    let aged = "SELECT count(*) FROM pg_stat_activity a JOIN pg_database d ON a.datid = d.oid \
                WHERE d.datname = 'shop' AND now() - a.xact_start >= interval '1 second'";
    wait::until_async(Duration::from_secs(10), "the transaction on shop to be a second old", || {
        pg.psql("postgres", aged).is_ok_and(|n| n.trim() == "1")
    })
    .await;

    let dsn = pg.dsn("postgres");
    let (code, text, stderr) =
        tokio::task::spawn_blocking(move || once(&postgres_yaml(), &[("DATABASE_URL", &dsn)])).await.unwrap();
    assert!(code == Some(0), "--once failed: {stderr}\n{text}");
    let s = parse(&text);

    // postgresql_lock{database,mode}: every mode of every database, ours counted.
    assert_eq!(label_names(&s, "postgresql_lock"), BTreeSet::from([vec!["database".to_string(), "mode".to_string()]]));
    for db in &databases {
        for mode in LOCK_MODES {
            value(&s, "postgresql_lock", &[("database", db), ("mode", mode)]);
        }
    }
    assert_eq!(s["postgresql_lock"].len(), databases.len() * LOCK_MODES.len());
    assert_eq!(value(&s, "postgresql_lock", &[("database", "shop"), ("mode", "sharerowexclusivelock")]), 1.0);
    assert_eq!(value(&s, "postgresql_lock", &[("database", "template1"), ("mode", "accessexclusivelock")]), 0.0);

    // postgresql_stat_activity{database,state}: every state of every database.
    assert_eq!(s["postgresql_stat_activity"].len(), databases.len() * STATES.len());
    for db in &databases {
        for state in STATES {
            value(&s, "postgresql_stat_activity", &[("database", db), ("state", state)]);
        }
    }
    assert_eq!(value(&s, "postgresql_stat_activity", &[("database", "shop"), ("state", "idle in transaction")]), 1.0);
    assert!(value(&s, "postgresql_stat_activity", &[("database", "postgres"), ("state", "active")]) >= 1.0);

    // postgresql_stat_bgwriter{type}.
    assert_eq!(label_names(&s, "postgresql_stat_bgwriter"), BTreeSet::from([vec!["type".to_string()]]));
    for t in BGWRITER {
        value(&s, "postgresql_stat_bgwriter", &[("type", t)]);
    }
    let bgwriter_types: BTreeSet<&str> = s["postgresql_stat_bgwriter"].keys().map(|l| l["type"].as_str()).collect();
    let allowed: BTreeSet<&str> = BGWRITER.iter().copied().chain(["last_stats_reset_min"]).collect();
    assert!(bgwriter_types.is_subset(&allowed), "{bgwriter_types:?}");

    // postgresql_stat_database{database,type} and _conflicts{database,type}.
    for db in &databases {
        for t in STAT_DATABASE {
            value(&s, "postgresql_stat_database", &[("database", db), ("type", t)]);
        }
        for t in CONFLICTS {
            value(&s, "postgresql_stat_database_conflicts", &[("database", db), ("type", t)]);
        }
    }
    assert_eq!(s["postgresql_stat_database_conflicts"].len(), databases.len() * CONFLICTS.len());
    assert!(value(&s, "postgresql_stat_database", &[("database", "postgres"), ("type", "xact_commit")]) >= 1.0);

    // postgresql_up and postgresql_uptime (whole days: this server is seconds old).
    assert_eq!(value(&s, "postgresql_up", &[]), 1.0);
    assert_eq!(value(&s, "postgresql_uptime", &[]), 0.0);

    // What an operator misses next to them.
    let max_connections: f64 = pg.psql("postgres", "SHOW max_connections").unwrap().parse().unwrap();
    assert_eq!(value(&s, "postgresql_max_connections", &[]), max_connections);
    assert!(value(&s, "postgresql_connections", &[]) >= 2.0, "the exporter's session and the lock holder");
    assert!(value(&s, "postgresql_longest_transaction_seconds", &[("database", "shop")]) >= 1.0);
    assert_eq!(value(&s, "postgresql_longest_transaction_seconds", &[("database", "template1")]), 0.0);
    // The histogram of transaction ages: ours on shop is at least a second old; template1 has none.
    let age =
        |db: &str, le: &str| value(&s, "postgresql_transaction_age_seconds_bucket", &[("database", db), ("le", le)]);
    assert_eq!(age("shop", "0.1"), 0.0);
    assert_eq!(age("shop", "+Inf"), 1.0);
    assert_eq!(age("template1", "+Inf"), 0.0);
    assert_eq!(value(&s, "postgresql_transaction_age_seconds_count", &[("database", "template1")]), 0.0);
    assert!(value(&s, "postgresql_database_size_bytes", &[("database", "shop")]) > 1e6);
    assert!(!s.contains_key("postgresql_replication_lag_seconds"), "a primary has no replication lag series");
    assert_eq!(value(&s, "postgresql_in_recovery", &[]), 0.0);
    let version_num = pg.psql("postgres", "SHOW server_version_num").unwrap();
    let info = &s["postgresql_version_info"];
    assert_eq!(info.len(), 1);
    assert_eq!(info.keys().next().unwrap()["server_version_num"], version_num);
    assert!(value(&s, "postgresql_transactions_total", &[("database", "postgres"), ("result", "commit")]) >= 1.0);
    value(&s, "postgresql_deadlocks_total", &[("database", "shop")]);
    let started = value(&s, "postgresql_start_time_seconds", &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started <= now && now - started < 600.0, "started {started}, now {now}");

    // The exposition passes promtool's checks (a skip outside CI where promtool is missing).
    if tool::program("promtool", "apt-get install prometheus (.ci/run installs it)") {
        use std::io::Write;
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let result = child.wait_with_output().unwrap();
        let findings =
            format!("{}{}", String::from_utf8_lossy(&result.stdout), String::from_utf8_lossy(&result.stderr));
        assert!(result.status.success() && findings.trim().is_empty(), "promtool check metrics:\n{findings}");
    }
    drop(holder);
}

#[tokio::test]
async fn postgres_yaml_reads_up_zero_and_serves_nothing_else_when_the_server_is_down() {
    let mut db = Db::private_default();
    let pg = db.server_mut();
    let text = std::fs::read_to_string(postgres_yaml()).unwrap();
    let set = load(&text, &[("DATABASE_URL", pg.dsn("postgres"))]);
    pg.stop().unwrap();
    let (text, ok) = run_once(&set).await;
    assert!(!ok);
    let s = parse(&text);
    assert_eq!(s.keys().collect::<Vec<_>>(), ["postgresql_up"], "{text}");
    assert_eq!(value(&s, "postgresql_up", &[]), 0.0);
}
