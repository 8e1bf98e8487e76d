//! `rules/mysql.yaml` beside the exporter it reproduces: Debian's `prometheus-mysqld-exporter`
//! (0.14, its default collectors) and the rules run (`--once`) on the same MariaDB.
//!
//! - Every family the rules export is in the peer's output with the same type, help and label sets.
//! - Variables (`mysql_global_variables_*`, and the text variables as labels) are equal; counters are
//!   equal or have moved forward between the peer's reading just before ours and just after.
//! - The test prints the families the peer exports and the rules do not, and fails when one of
//!   them is not in the file's list of deliberate omissions (its `# omitted: NAME -- reason`
//!   lines), or when an omission names a family the rules do export (a stale list).
//! - The same on a replica (a private MariaDB following another), where both add the replica status
//!   (`mysql_slave_status_*`, one family per column of `SHOW ALL SLAVES STATUS`): every family of
//!   the peer's is ours, with its labels; values equal, or between the peer's two readings where
//!   they move (log positions, heartbeats); `seconds_behind_master` within the seconds between them.
//!
//! The exporter user gets `SLAVE MONITOR` (MariaDB 10.5+), which `rules/mysql.yaml` asks for; the peer
//! reads the replica status with the same grant.
//!
//! The peer gets its password from a `--config.my-cnf` file (mode 0600) in a temporary directory,
//! never on its command line. It is a tool from outside the repository: outside CI a missing one
//! skips the test; under CI it fails it ([`crate::harness::tool`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::convert::{families, port, Families, Family, Peer};
use tempdb::TempMariaDbOptions;

use crate::harness::{once, repo_root, tool, wait, Labels, MyDb};

const PEER: &str = "prometheus-mysqld-exporter";
const INSTALL: &str = "apt-get install prometheus-mysqld-exporter (.ci/run does)";

/// The peer's metrics about itself: not families of MySQL, so never reproduced (the exporter has its
/// own, `sql_signal_exporter_*`).
const PEER_SELF_PREFIXES: &[&str] = &["mysql_exporter_", "mysqld_exporter_", "go_", "process_", "promhttp_"];

/// What the rules file says it leaves out: `# omitted: NAME -- reason`, where a NAME ending in `*` is
/// a prefix.
const OMITTED_MARK: &str = "# omitted: ";

/// At least this many families are compared (~800 on MariaDB 10.11: its status and variables keys).
const MIN_FAMILIES: usize = 700;

/// One deliberate omission of `rules/mysql.yaml`.
#[derive(Debug)]
struct Omission {
    pattern: String,
    reason: String,
}

impl Omission {
    fn covers(&self, family: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => family.starts_with(prefix),
            None => family == self.pattern,
        }
    }
}

/// The omissions listed in the rules file's text.
fn omissions(rules: &str) -> Vec<Omission> {
    rules
        .lines()
        .filter_map(|l| l.strip_prefix(OMITTED_MARK))
        .map(|rest| {
            let (pattern, reason) = rest
                .split_once(" -- ")
                .unwrap_or_else(|| panic!("an omission line is `{OMITTED_MARK}NAME -- reason`: {rest}"));
            Omission { pattern: pattern.trim().to_string(), reason: reason.trim().to_string() }
        })
        .collect()
}

/// Starts the peer on `my`'s server with its credentials in `dir/my.cnf`.
fn start_peer(my: &MyDb, dir: &Path) -> Peer {
    let cnf = dir.join("my.cnf");
    let server = my.server();
    fs::write(
        &cnf,
        format!(
            "[client]\nuser={}\npassword={}\nhost=127.0.0.1\nport={}\n",
            server.user(),
            my.password(),
            server.port()
        ),
    )
    .expect("write my.cnf");
    fs::set_permissions(&cnf, fs::Permissions::from_mode(0o600)).expect("chmod my.cnf");
    let port = port();
    let mut cmd = Command::new(PEER);
    cmd.arg(format!("--config.my-cnf={}", cnf.display())).arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Peer::start(cmd, port, dir)
}

fn is_peer_self_metric(name: &str) -> bool {
    PEER_SELF_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The label names of a family's series.
fn label_names(family: &Family) -> BTreeSet<BTreeSet<String>> {
    family.series.keys().map(|l| l.keys().cloned().collect()).collect()
}

/// The replica status family whose value is time, not a position: it may differ by the seconds
/// between the readings.
const SECONDS_BEHIND: &str = "mysql_slave_status_seconds_behind_master";

/// Whether `name`'s values must be equal (variables, and the text variables carried as labels).
fn is_variable(name: &str) -> bool {
    name.starts_with("mysql_global_variables_")
        || ["mysql_version_info", "mysql_transaction_isolation", "mysql_galera_variables_info"].contains(&name)
}

/// What differs between one family of ours and the peer's readings before and after ours.
fn family_differences(name: &str, mine: &Family, before: &Family, after: Option<&Family>, elapsed: f64) -> Vec<String> {
    let mut out = Vec::new();
    if mine.kind != before.kind {
        out.push(format!("{name}: type {} here, {} in the peer", mine.kind, before.kind));
    }
    if mine.help != before.help {
        out.push(format!("{name}: help {:?} here, {:?} in the peer", mine.help, before.help));
    }
    if label_names(mine) != label_names(before) {
        out.push(format!("{name}: label names {:?} here, {:?} in the peer", label_names(mine), label_names(before)));
    }
    let keys = |f: &Family| f.series.keys().cloned().collect::<BTreeSet<Labels>>();
    if keys(mine) != keys(before) {
        let only_peer: Vec<_> = keys(before).difference(&keys(mine)).cloned().collect();
        let only_mine: Vec<_> = keys(mine).difference(&keys(before)).cloned().collect();
        out.push(format!("{name}: label sets differ; only in the peer: {only_peer:?}; only here: {only_mine:?}"));
        return out;
    }
    for (labels, ours) in &mine.series {
        let then = before.series[labels];
        let later = after.and_then(|f| f.series.get(labels)).copied().unwrap_or(then);
        let agrees = if is_variable(name) {
            *ours == then && then == later
        } else if name == SECONDS_BEHIND {
            (*ours - then).abs() <= elapsed.ceil()
        } else if mine.kind == "counter"
            || name == "mysql_global_status_uptime"
            || name.starts_with("mysql_slave_status_")
        {
            // Replica status: equal where the peer's two readings are, else between them.
            then <= *ours && *ours <= later
        } else {
            // Gauges and untyped status (threads connected, open tables) move with the readers.
            true
        };
        if !agrees {
            out.push(format!("{name}{labels:?}: {ours} here; the peer read {then} before and {later} after"));
        }
    }
    out
}

/// Every difference between the rules' families and the peer's, and the peer's families the rules
/// do not export (with the pattern of the omission that covers each, if any).
fn compare(
    mine: &Families,
    peer: (&Families, &Families),
    omitted: &[Omission],
    elapsed: f64,
) -> (Vec<String>, BTreeMap<String, Option<String>>) {
    let (before, after) = peer;
    let mut differences = Vec::new();
    for (name, family) in mine {
        match before.get(name) {
            None => differences.push(format!("{name}: exported by the rules, not by {PEER}")),
            Some(theirs) => differences.extend(family_differences(name, family, theirs, after.get(name), elapsed)),
        }
        if let Some(o) = omitted.iter().find(|o| o.covers(name)) {
            differences.push(format!("{name}: exported by the rules but listed as omitted ({})", o.pattern));
        }
    }
    let peer_only = before
        .iter()
        .filter(|(name, f)| !f.series.is_empty() && !mine.contains_key(*name) && !is_peer_self_metric(name))
        .map(|(name, _)| (name.clone(), omitted.iter().find(|o| o.covers(name)).map(|o| o.pattern.clone())))
        .collect();
    (differences, peer_only)
}

/// One reading side by side: the peer's families just before and just after ours, ours (without the
/// exporter's own), our stdout, and the file's omissions.
struct Readings {
    /// Seconds from the peer's first reading to its second.
    elapsed: f64,
    before: Families,
    after: Families,
    mine: Families,
    stdout: String,
    omitted: Vec<Omission>,
}

/// Whether the peer is installed; when not, skips (outside CI) or fails (under CI).
fn peer_installed() -> bool {
    tool::program(PEER, INSTALL)
}

/// Starts the peer on `my`'s server, reads it once it exports `wanted`, runs `rules/mysql.yaml` once,
/// reads the peer again.
fn read_side_by_side(my: &MyDb, wanted: &[&str]) -> Readings {
    let rules = repo_root().join("rules/mysql.yaml");
    let omitted = omissions(&fs::read_to_string(&rules).expect("rules/mysql.yaml"));
    assert!(omitted.iter().all(|o| !o.reason.is_empty()), "every omission gives its reason: {omitted:?}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let peer = start_peer(my, dir.path());
    grant_replica_status(my);
    let before = peer.families_when(wanted);
    let started = std::time::Instant::now();
    assert_eq!(before["mysql_up"].series.values().next(), Some(&1.0), "the peer cannot reach the server");
    let dsn = my.dsn();
    let (code, stdout, stderr) = once(&rules, &[("MYSQL_URL", dsn.as_str())]);
    assert_eq!(code, Some(0), "every rule of rules/mysql.yaml succeeds:\n{stderr}");
    assert!(!stderr.contains(my.password()) && !stdout.contains(my.password()), "the password was printed");
    let after = peer.families();
    let elapsed = started.elapsed().as_secs_f64();
    let mut mine = families(&stdout);
    mine.retain(|name, _| !name.starts_with(sql_signal_exporter::SELF_METRIC_PREFIX));
    Readings { elapsed, before, after, mine, stdout, omitted }
}

/// Lets the exporter user read the replica status (MariaDB 10.5+), as `rules/mysql.yaml` asks.
fn grant_replica_status(my: &MyDb) {
    my.mariadb(&format!("GRANT SLAVE MONITOR ON *.* TO '{}'@'%'", my.server().user()))
        .expect("grant SLAVE MONITOR to the exporter user");
}

/// What the peer exports on any server once it has read it.
const PEER_ALWAYS: &[&str] = &["mysql_up", "mysql_global_status_commands_total", "mysql_version_info"];

#[test]
fn every_family_of_rules_mysql_yaml_is_mysqld_exporters_with_its_type_help_labels_and_values() {
    if !peer_installed() {
        return;
    }
    let Some(my) = MyDb::shared() else { return };
    let r = read_side_by_side(&my, PEER_ALWAYS);
    let (differences, _) = compare(&r.mine, (&r.before, &r.after), &r.omitted, r.elapsed);
    assert!(differences.is_empty(), "rules/mysql.yaml differs from {PEER}:\n{}", differences.join("\n"));
    // What the comparison rests on: both sides read the same server, the grouped families included.
    for name in
        ["mysql_up", "mysql_version_info", "mysql_global_status_commands_total", "mysql_global_status_handlers_total"]
    {
        assert!(r.mine.get(name).is_some_and(|f| !f.series.is_empty()), "no {name} here:\n{}", r.stdout);
    }
    assert!(r.mine.len() >= MIN_FAMILIES, "only {} families compared, expected {MIN_FAMILIES}", r.mine.len());
}

/// The peer's families that the rules do not export, each with the omission pattern that covers it
/// (printed, with the reasons); fails when one is not covered.
fn assert_peer_only_omitted(r: &Readings) -> BTreeMap<String, Option<String>> {
    let (_, peer_only) = compare(&r.mine, (&r.before, &r.after), &r.omitted, r.elapsed);
    eprintln!("families {PEER} exports and rules/mysql.yaml does not ({}):", peer_only.len());
    for (name, pattern) in &peer_only {
        eprintln!(
            "  {name}: {}",
            pattern.as_deref().map_or("NOT LISTED AS OMITTED".to_string(), |p| format!("omitted ({p})"))
        );
    }
    for o in r.omitted.iter().filter(|o| peer_only.values().any(|p| p.as_deref() == Some(o.pattern.as_str()))) {
        eprintln!("omitted {}: {}", o.pattern, o.reason);
    }
    let unlisted: Vec<&String> = peer_only.iter().filter(|(_, r)| r.is_none()).map(|(n, _)| n).collect();
    assert!(
        unlisted.is_empty(),
        "{PEER} exports {} families rules/mysql.yaml neither exports nor lists as omitted (first 20): {:?}",
        unlisted.len(),
        unlisted.iter().take(20).collect::<Vec<_>>()
    );
    peer_only
}

#[test]
fn every_family_of_mysqld_exporter_is_in_rules_mysql_yaml_or_listed_as_omitted() {
    if !peer_installed() {
        return;
    }
    let Some(my) = MyDb::shared() else { return };
    let r = read_side_by_side(&my, PEER_ALWAYS);
    assert_peer_only_omitted(&r);
}

/// On a replica both add the replica status (`mysql_slave_status_*`, from `SHOW ALL SLAVES STATUS`):
/// every family of the rules is the peer's, with its labels and values, and the peer has none of
/// the replica status that the rules lack (no omission covers it).
#[test]
fn on_a_replica_every_family_of_mysqld_exporter_is_in_the_rules_or_listed_as_omitted() {
    if !peer_installed() {
        return;
    }
    let server = |args: &[&str]| TempMariaDbOptions { server_args: args.iter().map(|a| a.to_string()).collect() };
    let Some(primary) = MyDb::private(server(&["--log-bin=primary-bin", "--server-id=1"])) else { return };
    let replica = MyDb::private(server(&["--server-id=2"])).expect("a second MariaDB");
    primary
        .mariadb("CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-secret'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'; RESET MASTER;")
        .expect("a replication user on the primary");
    replica
        .mariadb(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', \
             MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=no; START SLAVE;",
            primary.server().port()
        ))
        .expect("the replica follows the primary");
    primary.mariadb("CREATE TABLE replicated (id INT)").expect("a table on the primary");
    wait::until(
        Duration::from_secs(60),
        "the table made on the primary to reach the replica",
        || replica.mariadb("SHOW TABLES LIKE 'replicated'").is_ok_and(|t| !t.trim().is_empty()),
        || replica.mariadb("SHOW SLAVE STATUS\\G").unwrap_or_default(),
    );
    let wanted: Vec<&str> = PEER_ALWAYS.iter().copied().chain(["mysql_slave_status_slave_io_running"]).collect();
    let r = read_side_by_side(&replica, &wanted);
    let (differences, _) = compare(&r.mine, (&r.before, &r.after), &r.omitted, r.elapsed);
    assert!(differences.is_empty(), "on a replica, rules/mysql.yaml differs from {PEER}:\n{}", differences.join("\n"));
    let peer_only = assert_peer_only_omitted(&r);
    let replica_status = |f: &Families| f.keys().filter(|n| n.starts_with("mysql_slave_status_")).count();
    assert!(!peer_only.keys().any(|n| n.starts_with("mysql_slave_status_")), "{:?}", peer_only.keys());
    assert_eq!(replica_status(&r.mine), replica_status(&r.before), "{}", r.stdout);
    assert!(replica_status(&r.mine) >= 20, "the replica status has some 27 numeric columns:\n{}", r.stdout);
    for name in ["mysql_slave_status_slave_io_running", "mysql_slave_status_slave_sql_running"] {
        assert_eq!(r.before[name].series.values().next(), Some(&1.0), "{name}: replication runs");
        assert_eq!(r.mine[name].series.values().next(), Some(&1.0), "{name}: {}", r.stdout);
    }
}

/// `--check-rules --db` prepares every statement of `rules/mysql.yaml` on MariaDB (never runs it).
#[test]
fn rules_mysql_yaml_prepares_on_mariadb() {
    let Some(my) = MyDb::shared() else { return };
    grant_replica_status(&my);
    let out = crate::harness::command()
        .args(["--check-rules", "rules/mysql.yaml", "--db", "--strict"])
        .env("MYSQL_URL", my.dsn())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), String::new()),
        "{stderr}"
    );
    // "checked 1 file(s), N rule(s): ...; N queries prepared on the server"
    let number_before =
        |marker: &str| -> Option<usize> { stderr.split(marker).next()?.rsplit(' ').next()?.parse().ok() };
    let rules = number_before(" rule(s)");
    assert!(rules.is_some_and(|n| n >= 5), "{stderr}");
    assert_eq!(rules, number_before(" queries prepared"), "every rule prepared once: {stderr}");
    assert!(!stderr.contains(my.password()), "the password was printed: {stderr}");
}

/// Without `SLAVE MONITOR` (MariaDB 10.5+) the replica status rule fails with error 1227 on its own,
/// as the peer's slave_status collector does with the same grants: the other rules are served, and
/// `--once` names the failed rule and the server's error.
#[test]
fn without_slave_monitor_only_the_replica_status_rule_fails() {
    let Some(my) = MyDb::shared() else { return };
    let (user, password) = ("without_monitor", "without-monitor-secret");
    my.mariadb(&format!(
        "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'; \
         GRANT SELECT, PROCESS, REPLICATION CLIENT, CREATE TEMPORARY TABLES ON *.* TO '{user}'@'%';"
    ))
    .expect("a user without SLAVE MONITOR");
    let dsn =
        my.dsn().replacen(&format!("{}:{}@", my.server().user(), my.password()), &format!("{user}:{password}@"), 1);
    assert_ne!(dsn, my.dsn(), "the DSN names the user");
    let (code, stdout, stderr) = once(&repo_root().join("rules/mysql.yaml"), &[("MYSQL_URL", dsn.as_str())]);
    assert_eq!(code, Some(1), "one rule failed:\n{stderr}");
    let denied: Vec<&str> = stderr.lines().filter(|l| l.contains("1227")).collect();
    assert!(!denied.is_empty() && denied.iter().all(|l| l.contains("mysql_slave_status")), "{stderr}");
    let mine = families(&stdout);
    for name in ["mysql_up", "mysql_version_info", "mysql_global_status_uptime", "mysql_global_status_commands_total"] {
        assert!(mine.get(name).is_some_and(|f| !f.series.is_empty()), "no {name}:\n{stdout}\n{stderr}");
    }
    assert!(!mine.keys().any(|n| n.starts_with("mysql_slave_status_")), "{stdout}");
    assert!(!stderr.contains(password) && !stdout.contains(password), "the password was printed");
}
