//! Query templates see the server's identity (`server.flavour`, `server.version`,
//! `server.version_num`, `server.major`, `server.minor`) on the real harness PostgreSQL and MariaDB:
//! one rule on both takes each server's own branch, `--check-rules --db` prepares what the real
//! server's identity renders, and a `--test-rules` fixture session renders as its server does. (What
//! `--check-rules` without `--db` assumes is the corpus case `55-server-identity-assumed.yaml`.)
//!
//! The databases are declared `mysql://` although the server is MariaDB: the assumption the scheme
//! gives (MySQL) is wrong on purpose, so only the identity the server reported can pass.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::api::{as_source, evaluation, exposition, Sources};
use crate::harness::{command, labels, value, Db, MyDb};
use crate::metric_rules::{load, parse, run_once};

/// One rule for both kinds: each branch reads what only its server has (MariaDB's
/// `max_statement_time`, MySQL's `max_execution_time`, PostgreSQL's `statement_timeout`: the
/// session limit the exporter set, the rule's timeout plus a second) and echoes what the template saw.
const BRANCHING_RULE: &str = r#"
  - name: identity
    database: [pg, maria]
    timeout: 4s
    query: |
      {% if server.flavour == "mariadb" %}
      SELECT 'mariadb' AS branch, @@max_statement_time AS limit_seconds, '{{ server.version }}' = VERSION() AS same_version,
      {% elif server.flavour == "mysql" %}
      SELECT 'mysql' AS branch, @@max_execution_time / 1000 AS limit_seconds, '{{ server.version }}' = VERSION() AS same_version,
      {% else %}
      SELECT 'postgresql' AS branch, EXTRACT(epoch FROM current_setting('statement_timeout')::interval) AS limit_seconds,
             '{{ server.version }}' = current_setting('server_version') AS same_version,
      {% endif %}
             {{ server.version_num }} AS seen_num, {{ server_version_num }} AS seen_legacy_num,
             {{ server.major }} AS seen_major, {{ server.minor }} AS seen_minor
    families:
      - {name: identity_branch_info, help: The branch the template took., type: info, key_labels: [branch]}
      - {name: identity_limit_seconds, help: The session's statement limit read in the branch's own way., value: limit_seconds}
      - {name: identity_same_version, help: server.version is what the server reports., value: same_version}
      - {name: identity_version_num, help: server.version_num., value: seen_num}
      - {name: identity_legacy_version_num, help: server_version_num., value: seen_legacy_num}
      - {name: identity_major, help: server.major., value: seen_major}
      - {name: identity_minor, help: server.minor., value: seen_minor}
"#;

/// The rules file of these tests: `pg` and `maria` (declared `mysql://`), then `rules`.
fn rules_yaml(rules: &str) -> String {
    format!(
        "version: 1\ndatabases:\n  pg:\n    dsn: \"${{PG_DSN}}\"\n  maria:\n    dsn: \"${{MARIA_DSN}}\"\nmetrics:\n{rules}"
    )
}

/// Major, minor and patch at the start of a version text, as a test reads them.
fn numbers(version: &str) -> [i64; 3] {
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<i64>().unwrap_or(0));
    [parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0)]
}

#[tokio::test]
async fn one_rule_takes_each_servers_own_branch() {
    let Some(maria) = MyDb::shared() else { return };
    let pg = Db::shared();
    let set = load(&rules_yaml(BRANCHING_RULE), &[("PG_DSN", pg.dsn()), ("MARIA_DSN", maria.dsn())]);
    let (text, ok) = run_once(&set).await;
    assert!(ok, "{text}");
    let s = parse(&text);

    let maria_version = maria.mariadb("SELECT VERSION()").unwrap().trim().to_string();
    let [major, minor, patch] = numbers(&maria_version);
    assert!(maria_version.contains("MariaDB") && major >= 10, "the harness runs MariaDB: {maria_version}");
    fn on(server: &str) -> [(&str, &str); 1] {
        [("server", server)]
    }
    assert_eq!(value(&s, "identity_branch_info", &[("server", "maria"), ("branch", "mariadb")]), 1.0, "{text}");
    assert_eq!(value(&s, "identity_limit_seconds", &on("maria")), 5.0, "max_statement_time: the 4s timeout + 1s");
    assert_eq!(value(&s, "identity_same_version", &on("maria")), 1.0, "server.version is VERSION()");
    let maria_num = (major * 10_000 + minor * 100 + patch) as f64;
    assert_eq!(value(&s, "identity_version_num", &on("maria")), maria_num);
    assert_eq!(value(&s, "identity_legacy_version_num", &on("maria")), maria_num);
    assert_eq!(value(&s, "identity_major", &on("maria")), major as f64);
    assert_eq!(value(&s, "identity_minor", &on("maria")), minor as f64);

    let pg_num: f64 = pg.psql("SHOW server_version_num").unwrap().trim().parse().unwrap();
    let [pg_major, pg_minor, _] = numbers(pg.psql("SHOW server_version").unwrap().trim());
    assert_eq!(value(&s, "identity_branch_info", &[("server", "pg"), ("branch", "postgresql")]), 1.0, "{text}");
    assert_eq!(value(&s, "identity_limit_seconds", &on("pg")), 5.0, "statement_timeout: the 4s timeout + 1s");
    assert_eq!(value(&s, "identity_same_version", &on("pg")), 1.0, "server.version is server_version");
    assert_eq!(value(&s, "identity_version_num", &on("pg")), pg_num);
    assert_eq!(value(&s, "identity_legacy_version_num", &on("pg")), pg_num);
    assert_eq!(value(&s, "identity_major", &on("pg")), pg_major as f64);
    assert_eq!(value(&s, "identity_minor", &on("pg")), pg_minor as f64);
    assert_eq!(s["identity_branch_info"].len(), 2, "one branch per server: {text}");
}

#[test]
fn check_rules_with_db_prepares_what_the_real_server_renders() {
    let Some(maria) = MyDb::shared() else { return };
    let pg = Db::shared();
    // MariaDB has no max_execution_time: were the MySQL branch (the scheme's assumption) rendered,
    // the server would refuse to prepare it.
    assert!(maria.mariadb("SELECT @@max_execution_time").is_err(), "MariaDB has no max_execution_time");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("identity.yaml");
    std::fs::write(&file, rules_yaml(BRANCHING_RULE)).unwrap();
    let out = command()
        .arg("--check-rules")
        .arg(&file)
        .arg("--db")
        .arg("--strict")
        .env("PG_DSN", pg.dsn())
        .env("MARIA_DSN", maria.dsn())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("2 queries prepared on the server"), "{stderr}");

    // The same rule with the MariaDB branch removed: MariaDB now gets the MySQL SQL and refuses it.
    let mysql_only = BRANCHING_RULE
        .replace(r#"server.flavour == "mariadb""#, r#"server.flavour == "none""#)
        .replace(r#"server.flavour == "mysql""#, r#"server.flavour != "postgresql""#);
    std::fs::write(&file, rules_yaml(&mysql_only)).unwrap();
    let out = command()
        .arg("--check-rules")
        .arg(&file)
        .arg("--db")
        .env("PG_DSN", pg.dsn())
        .env("MARIA_DSN", maria.dsn())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("database 'maria': the server rejects the query: Unknown system variable 'max_execution_time'"),
        "{stdout}"
    );
    assert!(!stdout.contains("database 'pg'"), "{stdout}");
}

#[tokio::test]
async fn a_fixture_session_renders_for_its_server() {
    use sql_signal_exporter::source::fixture::{Fixture, FixtureColumn, FixtureTable};
    let Some(maria) = MyDb::shared() else { return };
    let rule = r#"
  - name: depth
    database: maria
    query: |
      {% if server.flavour == "mariadb" and server.version_num >= 100600 %}SELECT name, depth FROM queue
      {% else %}SELECT 'assumed' AS name, 0 AS depth{% endif %}
    families: [{name: depth, help: Depth., key_labels: [name], value: depth}]
"#;
    let yaml = format!("version: 1\ndatabases:\n  maria:\n    dsn: \"${{MARIA_DSN}}\"\nmetrics:\n{rule}");
    let set = load(&yaml, &[("MARIA_DSN", maria.dsn())]);
    // A fresh source: the fixture's own session is the first the source opens.
    let mut sources = Sources::build(&set, Sources::default());
    let slot = sources.slot("maria");
    let source = as_source(&slot).unwrap();
    let fixture = Fixture {
        tables: vec![FixtureTable {
            name: "queue".into(),
            columns: vec![
                FixtureColumn { name: "name".into(), sql_type: "VARCHAR(10)".into() },
                FixtureColumn { name: "depth".into(), sql_type: "INT".into() },
            ],
            rows: vec![vec!["fixture".into(), 7.into()]],
        }],
        responses: Vec::new(),
    };
    let session = source.open_fixture(&fixture, Duration::from_secs(5)).await.unwrap();
    let outcome =
        evaluation::evaluate(&set.rules[0], &[Ok(session.as_ref() as &dyn sql_signal_exporter::source::Source)]).await;
    session.finish().await.unwrap();
    sources.close();
    let text = String::from_utf8(exposition::text::render(&outcome.families)).unwrap();
    assert_eq!(parse(&text)["depth"], BTreeMap::from([(labels(&[("name", "fixture")]), 7.0)]), "{text}");
}
