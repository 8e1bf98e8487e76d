//! `--check-rules --db` on MariaDB: every statement is prepared on the server (never run), each
//! broken rule is reported at its `query:` line with the server's error code, a type the exporter
//! cannot read gets MySQL's cast as the fix, and neither the DSN nor its password is printed.

use crate::harness::{command, MyDb};

#[test]
fn db_check_prepares_every_mysql_query_on_the_server() {
    let Some(my) = MyDb::shared() else { return };
    my.mariadb("CREATE TABLE backups (cluster VARCHAR(64), finished DATETIME, failures INT, spot POINT, ok BOOLEAN)")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    let signal = |name: &str, values: &str, labels: &str, query: &str| {
        format!(
            "  - name: {name}\n    database: checks\n    labels: [{labels}]\n    window: 3\n    freshness: {{column: finished, max_age: 2h}}\n    values: {{{values}}}\n    success: \"true\"\n    metrics:\n      up: {{name: {name}_up, help: h}}\n      error: {{name: {name}_error, help: h}}\n    query: |\n      {query}\n"
        )
    };
    let good = "SELECT b.cluster, b.finished, b.failures FROM backups b JOIN JSON_TABLE(?, '$[*]' COLUMNS (cluster VARCHAR(64) PATH '$.cluster')) t ON t.cluster = b.cluster";
    let mut text = String::from("version: 1\ndatabases:\n  checks:\n    dsn: \"${SSE_CHECK_DSN}\"\nsignals:\n");
    text += &signal("good", "failures: integer", "cluster", good);
    text += &signal(
        "wrong_column",
        "failures: integer",
        "cluster",
        &good.replace("b.failures FROM", "b.failures AS fails FROM"),
    );
    text += &signal("syntax", "failures: integer", "cluster", &good.replace("SELECT", "SELEC"));
    text += &signal("point_label", "failures: integer", "spot", &good.replace("b.cluster,", "b.spot,"));
    text += &signal("two_params", "failures: integer", "cluster", &format!("{good} WHERE b.cluster = ?"));
    text += &signal("no_table", "failures: integer", "cluster", &good.replace("FROM backups", "FROM backupz"));
    std::fs::write(&file, &text).unwrap();
    let query_line = |rule: &str| {
        let start = text.find(&format!("name: {rule}\n")).expect("rule in text");
        text[..start].lines().count() + 10
    };
    let dsn = my.dsn();
    let out = command().arg("--check-rules").arg(&file).arg("--db").env("SSE_CHECK_DSN", &dsn).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stdout.contains(my.password()) && !stderr.contains(my.password()), "a password leaked:\n{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let want = [
        ("wrong_column", "error: the query returns no column 'failures' (a value of type integer); it returns: cluster, finished, fails"),
        ("syntax", "error: the server rejects the query: You have an error in your SQL syntax"),
        ("point_label", "error: column 'spot' (a target label) has type GEOMETRY, which the exporter cannot read; cast it in the query (e.g. CAST(spot AS CHAR))"),
        ("two_params", "error: the query uses 2 parameters (?) but the rule binds one"),
        ("no_table", "error: the server rejects the query: Table '"),
    ];
    let prefix = format!("{}:", file.display());
    let got: Vec<String> = stdout.lines().map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string()).collect();
    for (i, (rule, message)) in want.iter().enumerate() {
        let start = format!("{}:5: {message}", query_line(rule));
        assert!(
            got.get(i).is_some_and(|l| l.starts_with(&start)),
            "diagnostic {i} ({rule}): want {start:?}; all:\n{stdout}"
        );
    }
    assert!(got[1].contains("(error 1064, SQLSTATE 42000)") && got[1].contains("at line 1"), "{}", got[1]);
    assert!(got[4].contains("backupz' doesn't exist (error 1146, SQLSTATE 42S02)"), "{}", got[4]);
    assert_eq!(got.len(), want.len(), "one diagnostic per broken rule:\n{stdout}");
}
