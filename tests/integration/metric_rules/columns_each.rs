//! Families named from each column (`name_from: {columns: each}`), texts read as numbers
//! (`text_values`) and key labels read from other columns (`key_columns`, `absent_key_columns`) on
//! a real PostgreSQL: the generic half of mysqld_exporter's `SHOW SLAVE STATUS`, proved on another
//! kind of source.

use super::{evaluate, parse, rules_on};
use crate::harness::api::{exposition, Status};
use crate::harness::{labels, Db};

/// One row of `pg_database` and `pg_stat_database` whose columns become families: a number, a
/// boolean as Yes/No text, a text that is no number, a NULL; the key label read from a column
/// spelled otherwise, and one from a column the result lacks.
const EACH_COLUMN: &str = r#"
  - name: database_columns
    database: main
    query: |
      SELECT d.datname AS "Database_Name", s.xact_commit, d.datconnlimit AS conn_limit,
             CASE WHEN d.datallowconn THEN 'Yes' ELSE 'No' END AS allows_connections,
             CASE WHEN d.datistemplate THEN ' YES ' ELSE 'no' END AS is_template,
             'n/a' AS note, NULL::int AS nothing
      FROM pg_database d JOIN pg_stat_database s USING (datname)
      WHERE d.datname = current_database()
    families:
      - name_from: {columns: each, prefix: pgdb_}
        help: A column of pg_database.
        type: untyped
        key_labels: [datname, master_uuid]
        key_columns: {datname: Database_Name}
        absent_key_columns: empty
        text_values: {yes: 1, no: 0}
        overrides:
          pgdb_xact_commit: {type: gauge, help: Transactions committed.}
  - name: no_rows
    database: main
    query: SELECT 1 AS v WHERE false
    families:
      - {name_from: {columns: each, prefix: none_}, help: No row., type: untyped}
  - name: strict_texts
    database: main
    query: SELECT 'Connecting' AS state
    families:
      - {name: strict_state, help: A text no number., value: state, text_values: {yes: 1}}
"#;

#[tokio::test]
async fn each_column_of_a_row_becomes_a_family_and_texts_read_as_declared() {
    let pg = Db::shared();
    let set = rules_on(&pg.dsn(), EACH_COLUMN);
    let outcome = evaluate(&set, "database_columns").await;
    assert_eq!(outcome.status, Status::Success);
    let text = String::from_utf8(exposition::text::render(&outcome.families)).expect("UTF-8");
    let names: Vec<&str> = outcome.families.iter().map(|f| f.name.as_str()).collect();
    // The key label's column names no family; 'n/a' and NULL give no series, so no family.
    assert_eq!(names, ["pgdb_allows_connections", "pgdb_conn_limit", "pgdb_is_template", "pgdb_xact_commit"], "{text}");
    let db = pg.psql("SELECT current_database()").expect("psql").trim().to_string();
    let l = labels(&[("datname", db.as_str()), ("master_uuid", "")]);
    let s = parse(&text);
    assert_eq!(s["pgdb_allows_connections"][&l], 1.0, "{text}");
    assert_eq!(s["pgdb_is_template"][&l], 0.0, "{text}");
    assert_eq!(s["pgdb_conn_limit"][&l], -1.0, "{text}");
    assert!(s["pgdb_xact_commit"][&l] > 0.0, "{text}");
    assert!(
        text.contains("# HELP pgdb_xact_commit Transactions committed.\n# TYPE pgdb_xact_commit gauge\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE pgdb_conn_limit untyped\n"), "{text}");
    assert!(text.contains("master_uuid=\"\""), "the absent column reads as the empty label: {text}");

    // No row (a server that is not a replica): no family and no failure.
    let outcome = evaluate(&set, "no_rows").await;
    assert_eq!(outcome.status, Status::Success);
    assert!(outcome.families.is_empty(), "{:?}", outcome.families);

    // Outside `columns: each`, a text that is neither a number nor declared fails the rule.
    let outcome = evaluate(&set, "strict_texts").await;
    let Status::Error(reason) = &outcome.status else { panic!("{:?}", outcome.status) };
    assert!(reason.contains("holds 'Connecting', which is not a number nor one of its text_values"), "{reason}");
}

/// `--check-rules --db` accepts a key column declared absent-as-empty, and names a missing one at
/// the query's line otherwise.
#[test]
fn the_db_check_reads_key_columns() {
    let pg = Db::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("each.yaml");
    let rule = |name: &str, absent: &str| {
        format!("  - name: {name}\n    database: main\n    query: SELECT 1 AS v\n    families:\n      - {{name_from: {{columns: each, prefix: {name}_}}, help: h, key_labels: [host], key_columns: {{host: Master_Host}}{absent}}}\n")
    };
    let text = format!(
        "version: 1\ndatabases:\n  main:\n    dsn: \"${{SSE_CHECK_DSN}}\"\nmetrics:\n{}{}",
        rule("lenient", ", absent_key_columns: empty"),
        rule("strict", "")
    );
    std::fs::write(&file, text).expect("written");
    let out = crate::harness::command()
        .arg("--check-rules")
        .arg(&file)
        .arg("--db")
        .env("SSE_CHECK_DSN", pg.dsn())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let found: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix(&format!("{}:", file.display()))).collect();
    assert_eq!(
        found,
        ["13:5: error: the query returns no column 'Master_Host' (key label 'host' of strict_<each column>); it returns: v"],
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
}
