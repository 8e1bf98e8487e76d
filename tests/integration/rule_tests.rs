//! `--test-rules` through the binary: every shipped test file passes on a real PostgreSQL; a wrong
//! expectation fails with its diff at its line; a broken test file exits 2 at its `FILE:LINE:COL`;
//! each mutation of the issue fails a shipped case; endpoint cases fetch nothing; and a case leaves
//! nothing behind on the database.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::harness::{command, repo_root, wait, Db};

/// The shipped test files (`rules/tests/`, and the examples' beside them), sorted.
fn shipped_test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["rules/tests", "examples/ci-runs"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo_root().join(dir)).expect("a directory of tests"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    files.sort();
    files
}

/// `--test-rules FILES --db horreum=DSN --db postgres=DSN` for `db`.
fn test_rules(files: &[PathBuf], db: &Db) -> Output {
    let dsn = db.dsn();
    command()
        .arg("--test-rules")
        .args(files)
        .args(["--db", &format!("horreum={dsn}"), "--db", &format!("postgres={dsn}")])
        .output()
        .expect("runs --test-rules")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A copy of `rules/` (rules files and their tests) and the CA file DTR's tests name, in `dir`,
/// with `from` replaced by `to` in `file`; panics when `from` is not in it, so a mutation that no
/// longer applies cannot pass unnoticed.
fn mutated_copy(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(rules.join("tests")).expect("mkdir");
    for entry in std::fs::read_dir(repo_root().join("rules"))
        .expect("rules")
        .chain(std::fs::read_dir(repo_root().join("rules/tests")).expect("rules/tests"))
    {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let relative = path.strip_prefix(repo_root().join("rules")).expect("under rules");
            std::fs::copy(&path, rules.join(relative)).expect("copy");
        }
    }
    let ca = dir.join("tests/integration/endpoints");
    std::fs::create_dir_all(&ca).expect("mkdir");
    std::fs::copy(repo_root().join("tests/integration/endpoints/example-ca.pem"), ca.join("example-ca.pem"))
        .expect("copy the CA");
    let target = rules.join(file);
    let original = std::fs::read_to_string(&target).expect("read");
    assert_eq!(original.matches(from).count(), 1, "the mutation '{from}' applies once to {file}");
    std::fs::write(&target, original.replace(from, to)).expect("write");
    rules.join("tests")
}

#[test]
fn every_shipped_test_file_passes_on_a_real_server() {
    let db = Db::shared();
    let files = shipped_test_files();
    assert!(files.len() >= 4, "kanary, postgres, dtr and matillion have tests: {files:?}");
    for f in &files {
        let first = std::fs::read_to_string(f).expect("read").lines().next().unwrap_or_default().to_string();
        assert_eq!(first, "# yaml-language-server: $schema=../../schemas/rule-tests.schema.json", "{}", f.display());
    }
    let out = test_rules(&files, &db);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let cases: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read").lines().filter(|l| l.starts_with("  - name:")).count())
        .sum();
    assert_eq!(shown.lines().filter(|l| l.starts_with("PASS ")).count(), cases, "{shown}");
    assert!(shown.contains(&format!("{cases} case(s) passed, 0 failed")), "{shown}");
}

#[test]
fn each_mutation_of_the_issue_fails_a_shipped_case() {
    let db = Db::shared();
    let mutations = [
        ("kanary.yaml", "window: 3", "window: 2"),
        ("kanary.yaml", "max_age: 3h", "max_age: 3m"),
        ("kanary.yaml", "success: \"errors == 0\"", "success: \"errors != 0\""),
        ("dtr.yaml", "'$.query_engine.queries_per_sec', 0)    AS queries_per_sec,\n               coalesce(s.value ->> '$.query_engine.read_docs_per_sec', 0)", "'$.query_engine.queries_per_second', 0)    AS queries_per_sec,\n               coalesce(s.value ->> '$.query_engine.read_docs_per_sec', 0)"),
        ("postgres.yaml", "SELECT datname AS database, confl_tablespace", "SELECT datid::text AS database, confl_tablespace"),
    ];
    for (file, from, to) in mutations {
        let dir = tempfile::tempdir().expect("tempdir");
        let tests = mutated_copy(dir.path(), file, from, to);
        let test_file = tests.join(file.replace(".yaml", ".test.yaml"));
        let out = test_rules(&[test_file], &db);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: '{from}' → '{to}' must fail a case:\n{shown}");
        assert!(shown.lines().any(|l| l.starts_with("FAIL ")), "{shown}");
    }
}

#[test]
fn a_wrong_expectation_fails_with_its_diff_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tests =
        mutated_copy(dir.path(), "tests/matillion.test.yaml", "app_active_task_count 4", "app_active_task_count 5");
    let file = tests.join("matillion.test.yaml");
    let out = command().arg("--test-rules").arg(&file).output().expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let source = std::fs::read_to_string(&file).expect("read");
    let case_line = source.lines().position(|l| l.contains("name: \"a full actuator document\"")).expect("case") + 1;
    let series_line = source.lines().position(|l| l.trim() == "series: |").expect("series") + 1;
    let f = file.display();
    assert!(shown.contains(&format!("FAIL {f}:{case_line}:5: a full actuator document")), "{shown}");
    assert!(shown.contains(&format!("{f}:{series_line}:7: the series of the families named differ")), "{shown}");
    assert!(shown.contains("    - app_active_task_count 5\n    + app_active_task_count 4"), "{shown}");
    assert!(shown.contains("PASS ") && shown.contains("1 failed"), "the other cases still run:\n{shown}");

    let json = command().arg("--test-rules").arg(&file).args(["--format", "json"]).output().expect("runs");
    let failed: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON object per line"))
        .filter(|v| v["result"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["line"], case_line);
    assert_eq!(failed[0]["problems"][0]["line"], series_line);
    let github = command().arg("--test-rules").arg(&file).args(["--format", "github"]).output().expect("runs");
    let annotation = format!("::error file={f},line={series_line},col=7::case 'a full actuator document'");
    assert!(String::from_utf8_lossy(&github.stdout).contains(&annotation), "{}", text(&github));
}

#[test]
fn a_broken_test_file_exits_2_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.test.yaml");
    let rules = repo_root().join("rules/matillion.yaml");
    let body = format!(
        "version: 1\nrule_files: [{}]\ncases:\n  - name: one\n    rules: [no_such_rule]\n  - name: two\n    expct: {{}}\n",
        rules.display()
    );
    std::fs::write(&file, &body).expect("write");
    let out = command().arg("--test-rules").arg(&file).output().expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    let f = file.display();
    assert!(shown.contains(&format!("{f}:7:5: error:")) && shown.contains("expct"), "{shown}");

    std::fs::write(&file, body.replace("    expct: {}\n", "")).expect("write");
    let out = command().arg("--test-rules").arg(&file).output().expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!(
            "{f}:5:13: error: no rule 'no_such_rule' in the rules files; they have: matillion_agent"
        )),
        "{shown}"
    );
}

#[test]
fn endpoint_cases_fetch_nothing_and_ask_no_proxy() {
    // The endpoint and the proxies point at listeners of ours that nobody must reach.
    let endpoint = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
    endpoint.set_nonblocking(true).expect("nonblocking");
    proxy.set_nonblocking(true).expect("nonblocking");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://{}", endpoint.local_addr().expect("addr"));
    let tests = mutated_copy(
        dir.path(),
        "tests/matillion.test.yaml",
        "METRICS_ENDPOINT: http://matillion.invalid:1/actuator/info",
        &format!("METRICS_ENDPOINT: {url}/actuator/info"),
    );
    let dtr = std::fs::read_to_string(tests.join("dtr.test.yaml")).expect("read");
    std::fs::write(tests.join("dtr.test.yaml"), dtr.replace("https://dtr.invalid:1", &url.replace("http:", "https:")))
        .expect("write");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let out = command()
        .arg("--test-rules")
        .args([tests.join("dtr.test.yaml"), tests.join("matillion.test.yaml")])
        .envs([("HTTP_PROXY", &proxy_url), ("HTTPS_PROXY", &proxy_url), ("ALL_PROXY", &proxy_url)])
        .env_remove("NO_PROXY")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (what, listener) in [("the endpoint", &endpoint), ("the proxy", &proxy)] {
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{what} was reached: {other:?}"),
        }
    }
}

#[test]
fn a_case_leaves_no_table_row_or_session_behind() {
    let db = Db::shared();
    // Real rows that would make kfluxfedorap01/rpm up: the shipped case expecting it to have no rows
    // passes only if the fixture's `data` shadows this table.
    db.psql("SELECT kanary_run('kfluxfedorap01', 'rpm', make_interval(mins => m), '0') FROM generate_series(10, 30, 10) AS m")
        .expect("real rows");
    let state = || {
        db.psql(
            "SELECT (SELECT count(*) FROM data) || ',' || (SELECT count(*) FROM pg_class WHERE relpersistence = 't') || ',' || \
             (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'sql-signal-exporter')",
        )
        .expect("psql")
        .trim()
        .to_string()
    };
    assert_eq!(state(), "3,0,0");
    let out = test_rules(&[repo_root().join("rules/tests/kanary.test.yaml")], &db);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The binary has exited; its backends end as the server notices the closed connections.
    wait::until(Duration::from_secs(10), "no session, temporary table or new row left", || state() == "3,0,0", state);
}

#[test]
fn a_sequence_remembers_discovered_targets_across_a_failed_request() {
    // examples/ci-runs/ci-runs.yaml without declared targets: they are discovered from the runs.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = std::fs::read_to_string(repo_root().join("examples/ci-runs/ci-runs.yaml")).expect("read");
    let declared = "    targets:\n      - {workflow: [ci, release], branch: main}\n";
    let joined = "      SELECT t.workflow, t.branch, runs.conclusion, runs.finished\n      FROM targets AS t JOIN runs ON runs.workflow = t.workflow AND runs.branch = t.branch\n      WHERE runs.newest <= {{ window }}";
    assert!(rules.contains(declared) && rules.contains(joined), "the example changed; update this test");
    let discovering = rules
        .replace(declared, "")
        .replace(joined, "      SELECT workflow, branch, conclusion, finished FROM runs WHERE newest <= {{ window }}");
    std::fs::write(dir.path().join("ci-runs.yaml"), discovering).expect("write");
    let case = |second: &str| {
        format!(
            r#"version: 1
rule_files: [ci-runs.yaml]
env: {{CI_API_URL: "https://ci.invalid:1"}}
cases:
  - name: "targets seen once are reported fail-safe when the API fails"
    evaluations:
      - responses:
          runs:
            body: {{workflow_runs: [{{name: ci, head_branch: main, status: completed, conclusion: success, updated_at: -1h}}]}}
        expect:
          targets: [{{labels: {{workflow: ci, branch: main}}, state: up}}]
      - responses:
          runs: {{failure: refused}}
        expect:
          failing: [ci_runs]
          targets: [{{labels: {{workflow: ci, branch: main}}, state: {second}}}]
"#
        )
    };
    let file = dir.path().join("ci-runs.test.yaml");
    std::fs::write(&file, case("query_failed")).expect("write");
    let out = command().arg("--test-rules").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The same expectation wrong in the second evaluation fails there, naming it.
    std::fs::write(&file, case("up")).expect("write");
    let out = command().arg("--test-rules").arg(&file).output().expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            "evaluation 2: target {workflow=\"ci\",branch=\"main\"} of signal 'ci_runs': expected up, got query_failed"
        ),
        "{shown}"
    );
}

#[test]
fn the_rule_runs_read_only_and_no_dsn_is_printed() {
    let db = Db::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = "version: 1\ndatabases:\n  horreum: {dsn: \"${UNSET_IN_THIS_TEST}\"}\nmetrics:\n  - name: writer\n    database: horreum\n    query: WITH d AS (DELETE FROM data RETURNING 1) SELECT count(*) AS n FROM d\n    families:\n      - {name: deleted_rows, help: Rows deleted., value: n}\n";
    std::fs::write(dir.path().join("writer.yaml"), rules).expect("write");
    // The fixture shadows another table: the DELETE reaches the real `data`, and must be refused.
    let case = "version: 1\nrule_files: [writer.yaml]\ncases:\n  - name: a rule that writes\n    tables:\n      unrelated:\n        columns: [id integer]\n        rows: [[1]]\n    expect:\n      series: deleted_rows 0\n";
    let file = dir.path().join("writer.test.yaml");
    std::fs::write(&file, case).expect("write");
    let out = test_rules(std::slice::from_ref(&file), &db);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("rule 'writer' failed") && shown.contains("read-only transaction"), "{shown}");

    // A wrong password: the case fails saying why, and neither DSN nor password is printed.
    let wrong = "n0t-the-passw0rd";
    let dsn = db.dsn().replace(db.password(), wrong);
    assert_ne!(dsn, db.dsn(), "the DSN carries the password");
    let out =
        command().arg("--test-rules").arg(&file).args(["--db", &format!("horreum={dsn}")]).output().expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("cannot open the fixture on 'horreum'"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(&dsn), "{shown}");
    // Without --db and without the variable, the case says what to pass.
    let out = command().arg("--test-rules").arg(&file).output().expect("runs");
    assert!(text(&out).contains("pass --db horreum=DSN"), "{}", text(&out));
}
