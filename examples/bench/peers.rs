//! The peers the benchmark sets beside us: postgres_exporter and sql_exporter (Debian packages) and
//! query-exporter (PyPI, in a venv under `target/`), each configured from `examples/bench/peers/` to
//! export the same Kanary signal (`kanary_signal.sql`, one set-based statement, since the peers have
//! no fail-safe of their own) and the same PostgreSQL families as `rules/postgres.yaml`.
//!
//! Each peer names its series its own way (`kanary_value{metric=…}`, `sql_kanary{metric=…,col=…}`,
//! `kanary{metric=…,database=…}`); [`kanary_samples`] maps any of them, and our own exposition, onto
//! one key set so the bench can check that every peer's series equal ours.
//!
//! The DSN reaches postgres_exporter through its environment and the two others through a config
//! file written 0600 into the bench's own directory; it never appears in an error or a log line here.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client;

/// query-exporter as the bench installs it (its PostgreSQL driver is psycopg 3).
const QUERY_EXPORTER_PIP: &[&str] = &["query-exporter==5.0.2", "psycopg[binary]==3.3.9"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sql,
    Query,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Postgres, Kind::Sql, Kind::Query];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres_exporter",
            Kind::Sql => "sql_exporter",
            Kind::Query => "query-exporter",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres_exporter.yaml",
            Kind::Sql => "sql_exporter.yaml",
            Kind::Query => "query_exporter.yaml",
        }
    }
}

/// A running peer; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Peer {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub spawned: Instant,
    child: Child,
    log: PathBuf,
}

/// `target/peers-venv/bin/query-exporter`, creating the venv first if needed.
pub fn install_query_exporter(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/peers-venv");
    let bin = venv.join("bin/query-exporter");
    if bin.exists() {
        return Ok(bin);
    }
    let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().context("python3 -m venv")?;
    if !ok.success() {
        bail!("python3 -m venv {} failed ({ok})", venv.display());
    }
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet"])
        .args(QUERY_EXPORTER_PIP)
        .status()
        .context("pip install query-exporter")?;
    if !ok.success() || !bin.exists() {
        bail!("pip install {} failed ({ok})", QUERY_EXPORTER_PIP.join(" "));
    }
    Ok(bin)
}

/// A value for a YAML double-quoted scalar.
fn yaml_quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Peer {
    /// Starts `kind` on `dsn` (a libpq URL), listening on 127.0.0.1:`port`; its config and log go in
    /// `work`. `root` is the repository (for `examples/bench/peers/` and the venv).
    pub fn start(kind: Kind, dsn: &str, port: u16, work: &Path, root: &Path) -> Result<Peer> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let template_path = root.join("examples/bench/peers").join(kind.config());
        let template =
            fs::read_to_string(&template_path).with_context(|| format!("reading {}", template_path.display()))?;
        let log = work.join(format!("{}.log", kind.name()));
        let mut cmd = match kind {
            Kind::Postgres => {
                let mut c = Command::new("prometheus-postgres-exporter");
                c.arg("--disable-default-metrics")
                    .arg("--disable-settings-metrics")
                    .arg(format!("--extend.query-path={}", template_path.display()))
                    .arg(format!("--web.listen-address={addr}"))
                    .env("DATA_SOURCE_NAME", dsn);
                c
            }
            Kind::Sql => {
                // Its driver is chosen by the URL scheme and knows `postgres://` only.
                let url = match dsn.strip_prefix("postgresql://") {
                    Some(rest) => format!("postgres://{rest}"),
                    None => dsn.to_string(),
                };
                let config = write_config(work, kind, &template.replace("${DSN}", &yaml_quoted(&url)))?;
                let mut c = Command::new("prometheus-sql-exporter");
                c.arg(format!("-config.file={}", config.display())).arg(format!("-web.listen-address={addr}"));
                c
            }
            Kind::Query => {
                let bin = install_query_exporter(root)?;
                // SQLAlchemy picks the driver by the scheme: psycopg 3 is the one installed.
                let url = match dsn.split_once("://") {
                    Some((_, rest)) => format!("postgresql+psycopg://{rest}"),
                    None => dsn.to_string(),
                };
                let config = write_config(work, kind, &template.replace("${DSN}", &yaml_quoted(&url)))?;
                let mut c = Command::new(bin);
                c.arg("--config").arg(config).args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
        };
        let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
        let spawned = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", kind.name()))?;
        Ok(Peer { kind, addr, spawned, child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Polls `/metrics` until it carries all `want` Kanary samples (the peers answer before their
    /// first query has run); returns the time from spawn to that scrape.
    pub fn wait_ready(&mut self, want: usize, timeout: Duration) -> Result<Duration> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(r) = client::get(self.addr, "/metrics", &[]) {
                if r.status == 200 && kanary_samples(&String::from_utf8_lossy(&r.body)).len() >= want {
                    return Ok(self.spawned.elapsed());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}) before it was ready; its log:\n{}", self.kind.name(), self.log_tail());
            }
            if Instant::now() > until {
                bail!("{} was not ready after {timeout:?}; its log:\n{}", self.kind.name(), self.log_tail());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config with the DSN in it, readable by us only.
fn write_config(work: &Path, kind: Kind, text: &str) -> Result<PathBuf> {
    let path = work.join(kind.config());
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

/// The Kanary samples of an exposition body, ours or a peer's, as
/// `kanary_error{reason="…",tested_cluster="…",type="…"} → value` (labels sorted, empty ones and
/// each peer's own labels dropped). A peer's `metric` label names the family.
pub fn kanary_samples(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some((name, labels, value)) = sample(line) else { continue };
        let family = match name {
            "kanary_up" | "kanary_error" => name.to_string(),
            "kanary_value" | "sql_kanary" | "kanary" => match labels.iter().find(|(k, _)| k == "metric") {
                Some((_, m)) => m.clone(),
                None => continue,
            },
            _ => continue,
        };
        let mut kept: Vec<(String, String)> = labels
            .into_iter()
            .filter(|(k, v)| matches!(k.as_str(), "tested_cluster" | "type" | "reason") && !v.is_empty())
            .collect();
        kept.sort();
        let labels: Vec<String> = kept.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        out.insert(format!("{family}{{{}}}", labels.join(",")), value);
    }
    out
}

type Labels = Vec<(String, String)>;

/// Where a peer's Kanary samples differ from ours: one line per key, `key: ours → theirs`.
pub fn differences(ours: &BTreeMap<String, f64>, theirs: &BTreeMap<String, f64>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    keys.into_iter()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .map(|k| format!("{k}: {:?} → {:?}", ours.get(k), theirs.get(k)))
        .collect()
}

/// One sample line: name, labels (unescaped), value. `None` for comments and anything unreadable.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(mut s) = rest.strip_prefix('{') {
        loop {
            s = s.trim_start_matches([',', ' ']);
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = s.find('=')?;
            let key = s[..eq].trim().to_string();
            let mut chars = s[eq + 1..].char_indices();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            let close = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (i, '"') => break i,
                    (_, other) => value.push(other),
                }
            };
            labels.push((key, value));
            s = &s[eq + 1 + close + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peers_naming_maps_to_ours() {
        let ours = "kanary_error{reason=\"db_error\",tested_cluster=\"a\",type=\"rpm\"} 1\n";
        let pe = "kanary_value{metric=\"kanary_error\",reason=\"db_error\",server=\"h:1\",tested_cluster=\"a\",type=\"rpm\"} 1\n";
        let se = "sql_kanary{col=\"value\",database=\"d\",metric=\"kanary_error\",reason=\"db_error\",tested_cluster=\"a\",type=\"rpm\"} 1\n";
        let qe = "kanary{database=\"horreum\",metric=\"kanary_error\",reason=\"db_error\",tested_cluster=\"a\",type=\"rpm\"} 1.0\n";
        for body in [pe, se, qe] {
            assert_eq!(kanary_samples(body), kanary_samples(ours), "{body}");
        }
        let up = "kanary_value{metric=\"kanary_up\",reason=\"\",tested_cluster=\"a\",type=\"rpm\"} 0\n";
        assert_eq!(
            kanary_samples(up).into_iter().collect::<Vec<_>>(),
            [("kanary_up{tested_cluster=\"a\",type=\"rpm\"}".to_string(), 0.0)]
        );
    }
}
