//! The status page `/` and `/api/v1/status` on a real PostgreSQL with the Kanary demo data, plus
//! probes for the failure kinds the demo lacks: every target says why it is in error, in plain
//! words; label values and errors holding `<script>` show as text; no DSN or password is shown.
//! A real headless Chromium renders the page and saves a screenshot under `target/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{command, kanary_rules, repo_root, tool, wait, Db, Exporter};
use serde_json::Value;

/// A one-target-per-row signal on database `db` whose query is `sql`.
fn probe(name: &str, db: &str, targets: &str, extra: &str, sql: &str) -> String {
    format!(
        r#"  - name: {name}
    database: {db}
    interval: 1m
    timeout: 5s
    labels: [target]
{targets}    window: 1
{extra}    values: {{ ok: integer }}
    success: "ok == 1"
    metrics:
      up: {{ name: {name}_up, help: "Probe {name}." }}
      error: {{ name: {name}_error, help: "Probe {name} failed." }}
    query: |
      {sql}
"#
    )
}

/// The failure kinds the demo data does not have: a bad timestamp, failed queries (a missing
/// table, a wrong password), and `<script>` in a label value and in an error.
fn probes_file(dir: &Path) -> PathBuf {
    let declared = "    targets: [{ target: [a, b] }]\n";
    let signals = [
        probe(
            "timestamps",
            "probes",
            declared,
            "    freshness: { column: ended, max_age: 1h }\n",
            "SELECT t.target, 'not a time' AS ended, 1 AS ok FROM unnest($1::text[]) AS t(target)",
        ),
        probe(
            "broken",
            "probes",
            declared,
            "",
            "SELECT t.target, 1 AS ok FROM unnest($1::text[]) AS t(target), \"<script>alert(1)</script>\"",
        ),
        probe("xss", "probes", "", "", "SELECT '<script>alert(2)</script>' AS target, 'x<b>' AS ok"),
        probe("locked", "locked", declared, "", "SELECT t.target, 1 AS ok FROM unnest($1::text[]) AS t(target)"),
    ];
    let text = format!(
        "version: 1\ndatabases:\n  probes:\n    dsn: \"${{PROBE_DSN}}\"\n  locked:\n    dsn: \"${{LOCKED_DSN}}\"\nsignals:\n{}",
        signals.concat()
    );
    let path = dir.join("probes.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Demo {
    db: Db,
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
}

impl Demo {
    fn start() -> Demo {
        let db = Db::shared();
        let data = std::fs::read_to_string(repo_root().join("examples/kanary/demo-data.sql")).unwrap();
        db.psql(&data).expect("load the demo data");
        let dir = tempfile::tempdir().unwrap();
        let files = vec![kanary_rules(dir.path(), &[]), probes_file(dir.path())];
        let password = db.password().to_string();
        let wrong = db.dsn().replace(&format!(":{password}@"), &format!(":{password}x@"));
        assert_ne!(wrong, db.dsn(), "the DSN carries no password to get wrong");
        let env = vec![
            ("CONNECTION_STRING".to_string(), db.dsn()),
            ("PROBE_DSN".to_string(), db.dsn()),
            ("LOCKED_DSN".to_string(), wrong),
        ];
        Demo { db, _dir: dir, files, env }
    }

    fn args(&self) -> Vec<String> {
        self.files.iter().flat_map(|f| ["--rules".to_string(), f.display().to_string()]).collect()
    }

    fn spawn(&self) -> Exporter {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ex = Exporter::spawn(&args, &env);
        ex.wait_ready();
        ex
    }
}

fn rule<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["rules"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no rule {name}"))
}

/// Each target of a signal: its labels joined by `/` to (state, detail).
fn targets(rule: &Value) -> BTreeMap<String, (String, Option<String>)> {
    rule["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let labels = t["labels"].as_object().unwrap();
            let key = labels.values().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join("/");
            (key, (t["state"].as_str().unwrap().to_string(), t["detail"].as_str().map(str::to_string)))
        })
        .collect()
}

fn state(rule: &Value, target: &str) -> (String, Option<String>) {
    targets(rule).remove(target).unwrap_or_else(|| panic!("no target {target} in {rule:#}"))
}

fn pair(state: &str, detail: Option<&str>) -> (String, Option<String>) {
    (state.to_string(), detail.map(str::to_string))
}

#[test]
fn every_target_says_why_in_the_api_the_page_and_once() {
    let demo = Demo::start();
    let ex = demo.spawn();
    let (code, body) = ex.get("/api/v1/status");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();

    // The demo's clusters: up, down, stale, too few rows, no rows at all, a bad value.
    let kanary = rule(&status, "kanary");
    let single = "container-single-arch";
    // Labels are keyed by name (sorted in JSON): tested_cluster, then type.
    assert_eq!(state(kanary, &format!("stone-stage-p01/{single}")), pair("up", None));
    assert_eq!(state(kanary, &format!("stone-prod-p02/{single}")), pair("down", None));
    assert_eq!(state(kanary, "stone-prod-p02/rpm"), pair("too_few_rows", Some("2 results, 3 needed")));
    assert_eq!(state(kanary, &format!("kfluxfedorap01/{single}")), pair("too_few_rows", Some("no results, 3 needed")));
    assert_eq!(
        state(kanary, &format!("kflux-rhel-p01/{single}")),
        pair("bad_value", Some("errors = 'n/a' in the 2nd newest result is not an integer"))
    );
    let (stale, detail) = state(kanary, "stone-prod-p02/container-multi-arch");
    let detail = detail.unwrap();
    assert_eq!(stale, "stale");
    // The newest run ended 4h 40m ago (plus the seconds this test took).
    assert!(detail.starts_with("newest ended 4h 4") && detail.ends_with(" ago, more than 3h"), "{detail}");
    assert_eq!(kanary["kind"], "signal");
    assert_eq!(kanary["sources"], serde_json::json!(["horreum"]));
    assert_eq!(kanary["interval_seconds"], 60.0);
    let last = &kanary["last_evaluation"];
    assert_eq!(last["result"], "success");
    assert_eq!(last["series"], 72);
    assert!(last["rows"].as_u64().unwrap() > 20, "{last}");
    assert!(last["error"].is_null());
    assert!(kanary["next_run"].as_str().unwrap() > last["at"].as_str().unwrap());
    assert!(kanary["sql"].as_str().unwrap().contains("d.horreum_testid = 372"), "the SQL shown is the rendered one");
    assert_eq!(kanary["history"].as_array().unwrap().len(), 1);
    assert_eq!(kanary["failures"].as_array().unwrap().len(), 0);
    let counts = &kanary["target_counts"];
    let all = targets(kanary);
    assert_eq!(all.len(), 24);
    for (s, n) in counts.as_object().unwrap() {
        assert_eq!(all.values().filter(|(st, _)| st == s).count() as u64, n.as_u64().unwrap(), "{s}");
    }
    assert_eq!(counts["stale"], 1);
    assert_eq!(counts["bad_value"], 1);
    // Targets in error come first.
    let order: Vec<&str> = kanary["targets"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    let first_ok = order.iter().position(|s| *s == "up" || *s == "down").unwrap();
    assert!(order[first_ok..].iter().all(|s| *s == "up" || *s == "down"), "{order:?}");
    // Up and down carry no detail; every other state does.
    for t in kanary["targets"].as_array().unwrap() {
        let plain = t["state"] == "up" || t["state"] == "down";
        assert_eq!(t.get("detail").is_none(), plain, "{t}");
    }

    // The probes: a bad timestamp, a missing table, a wrong password.
    assert_eq!(
        state(rule(&status, "timestamps"), "a"),
        pair("bad_timestamp", Some("ended = 'not a time' in the newest result is not a time"))
    );
    let broken = rule(&status, "broken");
    let (s, d) = state(broken, "b");
    assert_eq!(s, "query_failed");
    assert!(d.as_deref().unwrap().contains("relation \"<script>alert(1)</script>\" does not exist"), "{d:?}");
    assert_eq!(broken["last_evaluation"]["result"], "error");
    assert_eq!(broken["failures"].as_array().unwrap().len(), 1);
    assert_eq!(broken["failures"][0], broken["last_evaluation"]);
    let (s, d) = state(rule(&status, "locked"), "a");
    assert_eq!(s, "query_failed");
    assert!(d.as_deref().unwrap().contains("password authentication failed"), "{d:?}");
    assert_eq!(rule(&status, "locked")["sources"], serde_json::json!(["locked"]));
    assert_eq!(
        state(rule(&status, "xss"), "<script>alert(2)</script>"),
        pair("bad_value", Some("ok = 'x<b>' in the newest result is not an integer"))
    );

    // The page: the same reasons, escaped, and no secret anywhere.
    let (code, page) = ex.get("/");
    assert_eq!(code, 200);
    for text in [
        "2 results, 3 needed",
        "no results, 3 needed",
        "errors = &#39;n/a&#39; in the 2nd newest result is not an integer",
        "ended = &#39;not a time&#39; in the newest result is not a time",
        "password authentication failed",
        "kanary_error{reason=&quot;db_error&quot;}",
        "kanary_error{reason=&quot;no_test_results&quot;}",
        "<dd>horreum</dd>",
        "d.horreum_testid = 372",
    ] {
        assert!(page.contains(text), "the page lacks {text:?}:\n{page}");
    }
    assert!(page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"), "{page}");
    assert!(page.contains("relation &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot; does not exist"), "{page}");
    assert!(!page.contains("<script") && !page.contains("x<b>"), "unescaped text in the page:\n{page}");
    let password = demo.db.password();
    for (what, text) in [("page", &page), ("JSON", &body)] {
        assert!(!text.contains(password), "the password is in the {what}");
        assert!(!text.contains(&demo.db.dsn()), "a DSN is in the {what}");
        assert!(!text.contains("postgresql://"), "a DSN is in the {what}");
    }
    drop(ex);

    // --once prints the same reasons to stderr.
    let out = command().args(demo.args()).arg("--once").envs(demo.env.iter().map(|(k, v)| (k, v))).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--once with failing rules must fail");
    for line in [
        "rule=kanary target=\"tested_cluster=stone-prod-p02,type=rpm\" state=too_few_rows detail=\"2 results, 3 needed\"",
        "state=bad_value detail=\"errors = 'n/a' in the 2nd newest result is not an integer\"",
        "rule=timestamps target=\"target=a\" state=bad_timestamp",
        "rule=locked target=\"target=b\" state=query_failed",
    ] {
        assert!(stderr.contains(line), "--once does not print {line:?}:\n{stderr}");
    }
    assert!(!stderr.contains(password), "the password is in --once's stderr");
}

/// Reads `pipe` to its end on a thread of its own, so that a child never blocks on a full pipe.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Runs chromium headless with `args`; fails the test (and kills it) if it has not exited after a
/// minute.
fn chromium(args: &[&str]) -> std::process::Output {
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut child = KillOnDrop(child);
    let stdout = drain(child.0.stdout.take().expect("chromium's stdout"));
    let stderr = drain(child.0.stderr.take().expect("chromium's stderr"));
    let status = wait::until_some(
        Duration::from_secs(60),
        &format!("chromium {args:?} to exit"),
        || child.0.try_wait().expect("chromium's exit status"),
        String::new,
    );
    let output = |h: std::thread::JoinHandle<Vec<u8>>| h.join().expect("read chromium's output");
    std::process::Output { status, stdout: output(stdout), stderr: output(stderr) }
}

#[test]
fn chromium_renders_the_page_on_the_demo_data() {
    if !tool::program("chromium", "apt-get install chromium (.ci/run installs it)") {
        return;
    }
    let demo = Demo::start();
    let ex = demo.spawn();
    let url = ex.url("/");

    let out = chromium(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("sql-signal-exporter status"),
        "no page rendered: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The DOM as the browser built it: every rule a section, the reasons in table cells, and the
    // injected markup only as text (no script element, no <b> element from a value).
    for rule in ["kanary", "timestamps", "broken", "xss", "locked"] {
        assert!(dom.contains(&format!("<section class=\"rule bad\" id=\"rule-{rule}\">")), "{rule} in error:\n{dom}");
    }
    assert!(dom.contains("<td class=\"why\">2 results, 3 needed<br>"), "{dom}");
    assert!(dom.contains("<td data-label=\"target\">&lt;script&gt;alert(2)&lt;/script&gt;</td>"), "{dom}");
    assert!(!dom.contains("<script") && !dom.contains("<b>"), "markup from data became elements:\n{dom}");
    assert!(!dom.contains(demo.db.password()));

    let shot = repo_root().join("target/status-page.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let out = chromium(&[&arg, "--window-size=1200,1600", "--hide-scrollbars", &url]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!("no screenshot at {} ({e}): {}", shot.display(), String::from_utf8_lossy(&out.stderr))
    });
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
    // And as a phone shows it.
    let phone = repo_root().join("target/status-page-phone.png");
    let arg = format!("--screenshot={}", phone.display());
    chromium(&[&arg, "--window-size=412,900", "--hide-scrollbars", &url]);
    assert!(std::fs::read(&phone).is_ok_and(|p| p.starts_with(b"\x89PNG")));
}
