//! Shared parts of the integration tests: a real exporter process, a real PostgreSQL, real HTTP.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempdb::{free_loopback_port, TempPostgres, TempPostgresOptions};

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A throwaway PostgreSQL with the Kanary schema (table `data`, function `kanary_run`) in `demo`.
pub fn kanary_db(pg_stat_statements: bool) -> TempPostgres {
    let pg = TempPostgres::start_with(TempPostgresOptions { pg_stat_statements, ..Default::default() })
        .expect("start PostgreSQL");
    let schema = std::fs::read_to_string(repo_root().join("examples/kanary/schema.sql")).unwrap();
    pg.psql("demo", &schema).expect("load schema");
    pg
}

/// `rules/kanary.yaml` with textual replacements, written to a temp file.
pub fn kanary_rules(dir: &Path, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(repo_root().join("rules/kanary.yaml")).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "rules/kanary.yaml no longer contains {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join("kanary.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The exporter binary running as a child process, its stderr captured.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Exporter {
    /// Starts the exporter on a free loopback port with `args` and `env` added.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let port = free_loopback_port().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sql-signal-exporter"));
        cmd.args(args)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn exporter");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let ex = Exporter { child, addr, log, agent };
        ex.wait_until(Duration::from_secs(20), "the HTTP server to answer", |e| e.try_get("/-/healthy").is_some());
        ex
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut resp = self.agent.get(&self.url(path)).call().ok()?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().ok()?;
        Some((status, body))
    }

    /// GET over a real socket: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path).unwrap_or_else(|| panic!("GET {path} failed; exporter log:\n{}", self.logs()))
    }

    pub fn post(&self, path: &str) -> (u16, String) {
        let mut resp = self.agent.post(&self.url(path)).send_empty().expect("POST");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    }

    pub fn metrics(&self) -> Exposition {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Exposition::parse(&body)
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Polls `cond` every 100 ms until it holds, panicking with the log after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut cond: impl FnMut(&Exporter) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; exporter log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_ready(&self) {
        self.wait_until(Duration::from_secs(30), "/-/ready", |e| e.get("/-/ready").0 == 200);
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, returning its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > timeout {
                panic!("exporter did not exit within {timeout:?}; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed exposition: every series (`name{a="x",b="y"}` as printed) to its value, plus the raw text.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub series: BTreeMap<String, f64>,
}

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            assert!(series.insert(key.to_string(), v).is_none(), "duplicate series {key} in:\n{text}");
        }
        Exposition { text: text.to_string(), series }
    }

    pub fn value(&self, key: &str) -> Option<f64> {
        self.series.get(key).copied()
    }

    /// The lines (comments included) of the families whose name starts with `prefix`.
    pub fn family_text(&self, prefix: &str) -> String {
        let mut out = String::new();
        for line in self.text.lines() {
            let name = line.trim_start_matches("# HELP ").trim_start_matches("# TYPE ");
            if name.starts_with(prefix) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}
