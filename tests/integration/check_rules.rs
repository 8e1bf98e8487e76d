//! `--check-rules` end to end, with the real binary: a corpus of broken rules files, each asserting
//! its diagnostics exactly; every rules file the repository ships; the output formats; and `--db`
//! against a throwaway PostgreSQL. The corpus stays in `tests/check_rules/` because its paths are part
//! of the expected output.
//!
//! A corpus case is `tests/check_rules/NN-what.yaml`. Its leading comment lines carry:
//! - `# expect: LINE:COL: SEVERITY: MESSAGE` (or `# expect: SEVERITY: MESSAGE` without a position, or
//!   `# expect: OTHER-FILE:LINE:COL: …` for a diagnostic in a file given with `with`), one per
//!   diagnostic, in output order: the output must be exactly these lines;
//! - `# args: ARG…` extra arguments; `# with: FILE` another file (relative to the corpus) checked in
//!   the same run, before the case; `# env: NAME=VALUE`;
//! - the expected exit code is 1 when an error is expected, else 0 (`# exit: N` overrides).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{command, repo_root as root, Db};

const MODELINE_PREFIX: &str = "# yaml-language-server: $schema=";

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

struct Case {
    /// Relative to the repository root, as passed to the binary.
    path: String,
    expects: Vec<String>,
    args: Vec<String>,
    with: Vec<String>,
    env: Vec<(String, String)>,
    exit: i32,
}

fn read_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut case = Case {
        path: path.to_string_lossy().into_owned(),
        expects: Vec::new(),
        args: Vec::new(),
        with: Vec::new(),
        env: Vec::new(),
        exit: -1,
    };
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(e) = line.strip_prefix("# expect: ") {
            case.expects.push(e.to_string());
        } else if let Some(a) = line.strip_prefix("# args: ") {
            case.args.extend(a.split_whitespace().map(str::to_string));
        } else if let Some(w) = line.strip_prefix("# with: ") {
            case.with.push(format!("tests/check_rules/{}", w.trim()));
        } else if let Some(kv) = line.strip_prefix("# env: ") {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{}: bad env line {line}", case.path));
            case.env.push((k.trim().to_string(), v.trim().to_string()));
        } else if let Some(n) = line.strip_prefix("# exit: ") {
            case.exit = n.trim().parse().unwrap_or_else(|_| panic!("{}: bad exit line {line}", case.path));
        }
    }
    if case.exit < 0 {
        case.exit = i32::from(case.expects.iter().any(|e| e.contains("error: ")));
    }
    case
}

fn corpus() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("tests/check_rules"))
        .expect("tests/check_rules exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.strip_prefix(root()).expect("under the root").to_path_buf())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_corpus_case_reports_exactly_its_expected_diagnostics() {
    let cases = corpus();
    assert!(cases.len() >= 25, "the corpus has only {} cases", cases.len());
    let mut failures = Vec::new();
    for path in &cases {
        let case = read_case(path);
        assert!(!case.expects.is_empty(), "{}: a corpus case must expect at least one diagnostic", case.path);
        let out = command()
            .arg("--check-rules")
            .args(&case.with)
            .arg(&case.path)
            .args(&case.args)
            .envs(case.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("the binary runs");
        let prefix = format!("{}:", case.path);
        let got: Vec<String> = stdout_lines(&out)
            .into_iter()
            .map(|l| match l.strip_prefix(&prefix) {
                Some(rest) => rest.trim_start().to_string(),
                None => l,
            })
            .collect();
        let code = out.status.code().unwrap_or(-1);
        if got != case.expects || code != case.exit {
            failures.push(format!(
                "{}\n  exit {code} (want {})\n  got:\n    {}\n  want:\n    {}\n  stderr: {}",
                case.path,
                case.exit,
                got.join("\n    "),
                case.expects.join("\n    "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

/// Every `${VAR}` in `text`.
fn env_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        out.push(name.split_once(":-").map_or(name, |(n, _)| n).to_string());
        rest = &after[end + 1..];
    }
    out
}

/// The rules files below `dir`: YAML files with a top-level `version:` and `signals:` or `metrics:`
/// (the other YAML under examples/ is Kubernetes, Prometheus and peer configuration).
/// `examples/kubernetes/` is skipped: its rules are generated copies of `rules/` (checked equal by
/// `.ci/validate-deploy.sh`).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("readable dir entry").path();
        if path.is_dir() {
            if !path.ends_with("examples/kubernetes") {
                yaml_files(&path, out);
            }
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let top = |key: &str| text.lines().any(|l| l.starts_with(key));
            if top("version:") && (top("signals:") || top("metrics:")) {
                out.push(path);
            }
        }
    }
}

#[test]
fn shipped_rules_files_pass_strictly_and_carry_the_schema_modeline() {
    let mut files = Vec::new();
    yaml_files(&root().join("rules"), &mut files);
    yaml_files(&root().join("examples"), &mut files);
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("rules/kanary.yaml")), "{files:?}");
    for file in &files {
        let rel = file.strip_prefix(root()).expect("under the root");
        let text = std::fs::read_to_string(file).expect("readable");
        // The modeline names the schema relative to the file, so editors find it.
        let depth = rel.components().count() - 1;
        let want = format!("{MODELINE_PREFIX}{}schemas/rules.schema.json", "../".repeat(depth));
        assert_eq!(text.lines().next(), Some(want.as_str()), "{}: first line must be the modeline", rel.display());
        let mut cmd = command();
        cmd.arg("--check-rules").arg(rel).arg("--strict");
        for var in env_refs(&text) {
            cmd.env(var, "postgresql://exporter@127.0.0.1:9/check");
        }
        // The file's own values (.ci/rules-env), as CI checks it.
        let listed = std::fs::read_to_string(root().join(".ci/rules-env")).expect(".ci/rules-env");
        for line in listed.lines().filter(|l| l.split_whitespace().next() == rel.to_str()) {
            for (var, value) in line.split_whitespace().skip(1).filter_map(|w| w.split_once('=')) {
                cmd.env(var, value);
            }
        }
        let out = cmd.output().expect("the binary runs");
        assert_eq!(
            (out.status.code(), stdout_lines(&out)),
            (Some(0), Vec::<String>::new()),
            "{} does not pass --check-rules --strict; stderr: {}",
            rel.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn json_and_github_formats() {
    let case = "tests/check_rules/09-unknown-key-typo.yaml";
    let out = command().args(["--check-rules", case, "--format", "json"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> =
        stdout_lines(&out).iter().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[1],
        serde_json::json!({
            "file": case, "line": 19, "column": 5, "severity": "error",
            "message": "unknown key 'windw'; did you mean 'window'?", "pointer": "/signals/0/windw"
        })
    );
    assert_eq!(lines[0]["pointer"], "/signals/0");

    let out = command().args(["--check-rules", case, "--format", "github"]).output().expect("runs");
    assert_eq!(
        stdout_lines(&out)[1],
        format!("::error file={case},line=19,col=5::unknown key 'windw'; did you mean 'window'?")
    );
    let out = command()
        .args(["--check-rules", "tests/check_rules/29-unset-env.yaml", "--format", "github"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout_lines(&out)[0].starts_with("::warning file=tests/check_rules/29-unset-env.yaml,line=8,col=5::"));
}

#[test]
fn every_file_is_checked_and_unreadable_files_exit_2() {
    let out = command()
        .args(["--check-rules", "tests/check_rules/11-window-below-minimum.yaml", "no/such/file.yaml"])
        .args(["tests/check_rules/04-empty-file.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("tests/check_rules/11-window-below-minimum.yaml:18:5: error: window: -1"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("no/such/file.yaml: error: cannot read the rules file"), "{lines:?}");
    assert!(
        lines[2].starts_with("tests/check_rules/04-empty-file.yaml:1:1: error: the rules file is empty"),
        "{lines:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checked 3 file(s)"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["--db"][..], &["--check-rules"], &["--check-rules", "x.yaml", "--format", "xml"]] {
        let out = command().args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn print_schema_prints_the_embedded_schema() {
    let out = command().arg("--print-schema").output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let file = std::fs::read_to_string(root().join("schemas/rules.schema.json")).expect("readable");
    assert_eq!(printed, file);
    serde_json::from_str::<serde_json::Value>(&printed).expect("valid JSON");
}

#[test]
fn the_exporter_logs_the_same_positions() {
    let out =
        command().args(["--rules", "tests/check_rules/11-window-below-minimum.yaml", "--once"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "tests/check_rules/11-window-below-minimum.yaml:18:5: error: window: -1 is less than the minimum of 1"
        ),
        "{stderr}"
    );
}

/// `--db` against a real server: each broken rule is reported at its `query:` line, the good one not
/// at all, and neither the DSN nor its password is ever printed.
#[test]
fn db_check_prepares_every_query_on_the_server() {
    let db = Db::shared();
    db.psql(
        "CREATE TABLE backups (cluster text, finished timestamptz, failures int, took interval, spot point, ok boolean)",
    )
    .expect("table created");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("db.yaml");
    // A signal that differs from the good one only where `change` says.
    let signal = |name: &str, values: &str, labels: &str, query: &str| {
        format!(
            "  - name: {name}\n    database: checks\n    labels: [{labels}]\n    window: 3\n    freshness: {{column: finished, max_age: 2h}}\n    values: {{{values}}}\n    success: \"true\"\n    metrics:\n      up: {{name: {name}_up, help: h}}\n      error: {{name: {name}_error, help: h}}\n    query: |\n      {query}\n"
        )
    };
    let good = "SELECT cluster, finished, failures FROM backups WHERE cluster = ANY($1::text[])";
    let mut text = String::from(
        "version: 1\ndatabases:\n  checks:\n    dsn: \"${SSE_CHECK_DSN}\"\n  down:\n    dsn: \"${SSE_DOWN_DSN}\"\n    connect_timeout: 2s\nsignals:\n",
    );
    text += &signal("good", "failures: integer", "cluster", good);
    // The query mentions `failures` (so the text heuristic is content) but returns it as `fails`.
    text += &signal(
        "wrong_column",
        "failures: integer",
        "cluster",
        "SELECT cluster, finished, failures AS fails FROM backups WHERE cluster = ANY($1::text[])",
    );
    text += &signal("syntax", "failures: integer", "cluster", &good.replace("SELECT", "SELEC"));
    text += &signal("interval_value", "took: integer", "cluster", &good.replace("failures FROM", "took FROM"));
    text += &signal("point_label", "failures: integer", "spot", &good.replace("cluster,", "spot,"));
    text += &signal("bool_as_integer", "ok: integer", "cluster", &good.replace("failures FROM", "ok FROM"));
    text += &signal("scalar_param", "failures: integer", "cluster", &good.replace("= ANY($1::text[])", "= $1"));
    text += &signal("no_table", "failures: integer", "cluster", &good.replace("FROM backups", "FROM backupz"));
    text += &signal("elsewhere", "failures: integer", "cluster", good).replace("database: checks", "database: down");
    std::fs::write(&file, &text).expect("written");

    let query_line = |rule: &str| {
        let start = text.find(&format!("name: {rule}\n")).expect("rule in text");
        text[..start].lines().count() + 10
    };
    let dsn = db.dsn();
    let out = command()
        .arg("--check-rules")
        .arg(&file)
        .arg("--db")
        .env("SSE_CHECK_DSN", &dsn)
        .env("SSE_DOWN_DSN", format!("postgresql://exporter:{}@127.0.0.1:1/none", db.password()))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stdout.contains(db.password()) && !stderr.contains(db.password()), "a password leaked:\n{stdout}{stderr}");
    assert!(!stdout.contains(&dsn), "the DSN leaked:\n{stdout}");
    let prefix = format!("{}:", file.display());
    let got: Vec<String> = stdout.lines().map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string()).collect();
    let want = [
        ("wrong_column", "error: the query returns no column 'failures' (a value of type integer); it returns: cluster, finished, fails"),
        ("syntax", "error: the server rejects the query: syntax error at or near \"SELEC\" (SQLSTATE 42601) (line 1 of the rendered SQL)"),
        ("interval_value", "error: column 'took' (a value of type integer) has type interval, which the exporter cannot read; cast it in the query (e.g. took::text)"),
        ("point_label", "error: column 'spot' (a target label) has type point, which the exporter cannot read; cast it in the query (e.g. spot::text)"),
        ("bool_as_integer", "error: column 'ok' (a value of type integer) has type bool, which cannot be read as an integer; cast it in the query"),
        ("scalar_param", "error: parameter $1 is a text array (the values of label 'cluster' of every target), but the query uses it as text; write $1::text[] and unnest it or use = ANY"),
        ("no_table", "error: the server rejects the query: relation \"backupz\" does not exist (SQLSTATE 42P01) (line 1 of the rendered SQL)"),
    ];
    for (i, (rule, message)) in want.iter().enumerate() {
        let line = format!("{}:5: {message}", query_line(rule));
        assert_eq!(got.get(i), Some(&line), "diagnostic {i} ({rule}); all:\n{stdout}");
    }
    let last = got.get(want.len()).cloned().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "{}:5: error: cannot connect to database 'down' to prepare the query:",
            query_line("elsewhere")
        )),
        "{stdout}"
    );
    assert_eq!(got.len(), want.len() + 1, "{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("6 queries prepared on the server"), "{stderr}");

    // The good rule alone passes, also strictly.
    let only_good = format!(
        "version: 1\ndatabases:\n  checks:\n    dsn: \"${{SSE_CHECK_DSN}}\"\nsignals:\n{}",
        signal("good", "failures: integer", "cluster", good)
    );
    std::fs::write(&file, only_good).expect("written");
    let out = command()
        .arg("--check-rules")
        .arg(&file)
        .args(["--db", "--strict"])
        .env("SSE_CHECK_DSN", &dsn)
        .output()
        .expect("runs");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), String::new()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped rules prepare on a real server: the Kanary rule against the schema of the example
/// data, the PostgreSQL rules against the server's own statistics views.
#[test]
fn shipped_rules_pass_the_db_check() {
    // The shared server's databases are copies of the example schema (`template_kanary`).
    let horreum = Db::shared();
    let other = Db::shared();
    let out = command()
        .args(["--check-rules", "rules/kanary.yaml", "rules/postgres.yaml", "--db", "--strict"])
        .env("CONNECTION_STRING", horreum.dsn())
        .env("DATABASE_URL", other.dsn())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), String::new()),
        "{stderr}"
    );
    // Every rule's query was prepared, once per database it runs on.
    let count = |before: &str| -> usize {
        let at = stderr.find(before).unwrap_or_else(|| panic!("no '{before}' in {stderr}"));
        let digits: String = stderr[..at].chars().rev().skip(1).take_while(char::is_ascii_digit).collect();
        digits.chars().rev().collect::<String>().parse().expect("a number")
    };
    assert!(count("rule(s)") >= 2, "{stderr}");
    assert_eq!(count("queries prepared"), count("rule(s)"), "{stderr}");
}
