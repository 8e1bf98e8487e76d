//! A real Prometheus scrapes the exporter on the demo data and evaluates the shipped alert rules
//! (`examples/prometheus/alerts.yaml`, `for:` shortened by `shorten-for.sh`): target health, every
//! Kanary series, the exact set of firing alerts before and after the database goes away, and every
//! query of the shipped Grafana dashboard.
//!
//! Debian's `prometheus` package provides the binary; under `CI=true` a missing one fails the test.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{kanary_rules, repo_root, tool, wait, Db, Exporter};

/// A Prometheus server on a free loopback port, killed on drop.
pub(crate) struct Prometheus {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Option<Prometheus> {
        if !tool::program("/usr/bin/prometheus", "apt-get install prometheus (.ci/run installs it)") {
            return None;
        }
        let alerts = Command::new("bash")
            .arg(repo_root().join("examples/prometheus/shorten-for.sh"))
            .env("FOR", "1s")
            .env("INTERVAL", "1s")
            .output()
            .expect("run shorten-for.sh");
        assert!(alerts.status.success(), "{}", String::from_utf8_lossy(&alerts.stderr));
        Some(Prometheus::launch(dir, target, &alerts.stdout))
    }

    /// Starts Prometheus (which must be installed) scraping `target` every second, with `alerts` as
    /// its rules file, with its default scrape negotiation.
    pub(crate) fn launch(dir: &Path, target: &str, alerts: &[u8]) -> Prometheus {
        let binary = Path::new("/usr/bin/prometheus");
        std::fs::write(dir.join("alerts.yaml"), alerts).expect("write alerts");
        let template = std::fs::read_to_string(repo_root().join("examples/prometheus/prometheus-test.yml.template"))
            .expect("read the Prometheus test template");
        let config =
            template.replace("@TARGET@", target).replace("@RULES@", &dir.join("alerts.yaml").display().to_string());
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let port = tempdb::free_loopback_port().expect("a free port");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let p = Prometheus { child, base: format!("http://127.0.0.1:{port}"), agent };
        wait::until(Duration::from_secs(30), "Prometheus to be ready", || p.get("/-/ready").is_some(), String::new);
        p
    }

    /// Starts Prometheus scraping the exporter at `target` every second, with no alert rules, and
    /// waits until its one target is up: how a test hands an exporter's output to a real Prometheus.
    pub(crate) fn scraping(dir: &Path, target: &str) -> Prometheus {
        let prom = Prometheus::launch(dir, target, b"groups: []\n");
        wait::until(
            Duration::from_secs(30),
            "Prometheus to scrape the exporter",
            || prom.target_health() == ["up"],
            || format!("{:?}", prom.target_health()),
        );
        prom
    }

    pub(crate) fn get(&self, path: &str) -> Option<String> {
        let mut resp = self.agent.get(format!("{}{path}", self.base)).call().ok()?;
        (resp.status() == 200).then(|| resp.body_mut().read_to_string().ok()).flatten()
    }

    /// `/api/v1/query`: the result vector, or the error Prometheus gives.
    pub(crate) fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let mut resp = self
            .agent
            .get(format!("{}/api/v1/query", self.base))
            .query("query", promql)
            .call()
            .map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{promql}: {}", body["error"]));
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Firing alerts as `Alertname{tested_cluster,type}` (or `{rule}`) strings.
    fn firing(&self) -> BTreeSet<String> {
        let Some(text) = self.get("/api/v1/alerts") else { return BTreeSet::new() };
        let body: Value = serde_json::from_str(&text).unwrap_or_default();
        body["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| alert_key(&a["labels"]))
            .collect()
    }

    pub(crate) fn target_health(&self) -> Vec<String> {
        let Some(text) = self.get("/api/v1/targets") else { return Vec::new() };
        let body: Value = serde_json::from_str(&text).unwrap_or_default();
        body["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["health"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn alert_key(labels: &Value) -> String {
    let name = labels["alertname"].as_str().unwrap_or_default();
    match (labels["tested_cluster"].as_str(), labels["type"].as_str(), labels["rule"].as_str()) {
        (Some(c), Some(t), _) => format!("{name}{{{c},{t}}}"),
        (_, _, Some(r)) => format!("{name}{{{r}}}"),
        _ => name.to_string(),
    }
}

/// The alerts the shipped rules must fire for what the exporter serves now.
fn expected_alerts(ex: &Exporter) -> BTreeSet<String> {
    let m = ex.metrics();
    let mut out = BTreeSet::new();
    let target = |l: &crate::harness::Labels| format!("{{{},{}}}", l["tested_cluster"], l["type"]);
    for (l, v) in m.samples.get("kanary_up").into_iter().flatten() {
        if *v == 0.0 {
            out.insert(format!("KanarySignalTriggered{}", target(l)));
        }
    }
    for (l, v) in m.samples.get("kanary_error").into_iter().flatten() {
        if *v == 1.0 {
            let name = if l["reason"] == "db_error" { "KanaryDBError" } else { "KanaryMissingTestResults" };
            out.insert(format!("{name}{}", target(l)));
        }
    }
    for (l, v) in m.samples.get("sql_signal_exporter_rule_up").into_iter().flatten() {
        if *v == 0.0 {
            out.insert(format!("SqlSignalExporterRuleFailing{{{}}}", l["rule"]));
        }
    }
    out
}

#[test]
fn prometheus_scrapes_the_demo_and_fires_exactly_the_expected_alerts() {
    let mut db = Db::private_default();
    db.psql(&std::fs::read_to_string(repo_root().join("examples/kanary/demo-data.sql")).expect("demo data"))
        .expect("load demo data");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = kanary_rules(dir.path(), &[("interval: 1m", "interval: 1s"), ("timeout: 30s", "timeout: 800ms")]);
    let dsn = db.dsn();
    let ex = Exporter::spawn(&["--rules", rules.to_str().expect("utf-8 path")], &[("CONNECTION_STRING", &dsn)]);
    ex.wait_ready();
    let Some(prom) = Prometheus::start(dir.path(), &ex.addr.to_string()) else { return };

    wait::until(
        Duration::from_secs(30),
        "Prometheus to scrape the exporter",
        || prom.target_health() == ["up"],
        || format!("{:?}", prom.target_health()),
    );
    // Every Kanary target is in Prometheus with the value the exporter serves.
    wait::until(
        Duration::from_secs(20),
        "all 24 kanary_up series in Prometheus",
        || prom.query("kanary_up").map(|r| r.len() == 24).unwrap_or(false),
        String::new,
    );
    let served = ex.metrics();
    for sample in prom.query("kanary_up").expect("query kanary_up") {
        let (c, t) = (
            sample["metric"]["tested_cluster"].as_str().unwrap_or_default(),
            sample["metric"]["type"].as_str().unwrap_or_default(),
        );
        let value: f64 = sample["value"][1].as_str().unwrap_or_default().parse().expect("a number");
        let key = format!("kanary_up{{tested_cluster=\"{c}\",type=\"{t}\"}}");
        assert_eq!(served.value(&key), Some(value), "{key}");
    }

    // The demo has down, stale, too-few and bad-value targets: each kind of alert is exercised.
    let expected = expected_alerts(&ex);
    for kind in ["KanarySignalTriggered", "KanaryDBError", "KanaryMissingTestResults"] {
        assert!(expected.iter().any(|a| a.starts_with(kind)), "the demo data raises no {kind}: {expected:?}");
    }
    wait::until(
        Duration::from_secs(30),
        "the expected alerts to fire",
        || prom.firing() == expected,
        || format!("firing {:?}\nexpected {expected:?}", prom.firing()),
    );
    // Fail-safe targets never page as down.
    let failing_targets: Vec<String> =
        expected.iter().filter(|a| a.starts_with("KanaryDBError") || a.starts_with("KanaryMissing")).cloned().collect();
    for alert in &failing_targets {
        let target = &alert[alert.find('{').expect("labels")..];
        assert!(!prom.firing().contains(&format!("KanarySignalTriggered{target}")), "{alert} also pages as down");
    }

    // Every query of the shipped dashboard evaluates.
    let queries = std::fs::read_to_string(repo_root().join("examples/grafana/panel-queries.txt")).expect("queries");
    for line in queries.lines().filter(|l| !l.trim().is_empty()) {
        let (title, promql) = line.split_once('\t').expect("title<TAB>query");
        if let Err(e) = prom.query(promql) {
            panic!("dashboard panel '{title}': {e}");
        }
    }

    // The database goes away: no down alert anywhere, db_error for every target, the rule failing.
    db.server_mut().stop().expect("stop PostgreSQL");
    let mut after: BTreeSet<String> = BTreeSet::new();
    for s in prom.query("kanary_up").expect("query") {
        let (c, t) = (
            s["metric"]["tested_cluster"].as_str().unwrap_or_default(),
            s["metric"]["type"].as_str().unwrap_or_default(),
        );
        after.insert(format!("KanaryDBError{{{c},{t}}}"));
    }
    // Failing, and (interval 1s) no success for over 3 intervals.
    after.insert("SqlSignalExporterRuleFailing{kanary}".to_string());
    after.insert("SqlSignalExporterRuleStalled{kanary}".to_string());
    assert_eq!(after.len(), 26);
    wait::until(
        Duration::from_secs(40),
        "db_error alerts for every target and no down alert",
        || prom.firing() == after,
        || format!("firing {:?}", prom.firing()),
    );
}
