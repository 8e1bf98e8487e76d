//! `--convert`, proven side by side: each peer that runs here (postgres_exporter 0.11 and
//! justwatchcom/sql_exporter 0.4.5 from Debian, query-exporter from PyPI in a venv under `target/`)
//! is started on a test database with its configuration, the same configuration is converted, and
//! the converted rules run through the exporter (`--once`) on the same database. Every family of
//! the configuration must then have the peer's name, type, help and label set (less the labels a
//! peer adds by itself, named by each test), and equal values: exactly on fixture tables, and
//! between the peer's readings just before and just after ours on server statistics. A family the
//! peer exports and the rules do not fails the test unless the converter warned about it.
//! burningalchemist's sql_exporter does not run here: its configurations, written from its
//! documentation, are converted and their rules run and checked against what that documentation
//! says the peer exports.

mod justwatch;
mod postgres_exporter;
mod query_exporter;
mod sql_exporter;
mod warnings;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempdb::free_loopback_port;

use crate::harness::{self, wait, Labels};

/// One family of an exposition, with its comments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub series: BTreeMap<Labels, f64>,
}

/// An exposition by family name.
pub type Families = BTreeMap<String, Family>;

/// Parses an exposition into families (a sample belongs to the family its `# TYPE` named last, or
/// to its own name).
pub fn families(text: &str) -> Families {
    let mut out = Families::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().help = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a TYPE line has a type");
            out.entry(name.to_string()).or_default().kind = kind.to_string();
            current = name.to_string();
        } else if !line.is_empty() && !line.starts_with('#') {
            let parsed = harness::Exposition::parse(line);
            for (name, series) in parsed.samples {
                let family =
                    if name.starts_with(current.as_str()) && !current.is_empty() { current.clone() } else { name };
                out.entry(family).or_default().series.extend(series);
            }
        }
    }
    out
}

/// A conversion through the binary: its exit code, the rules file and stderr.
pub struct Converted {
    pub code: Option<i32>,
    pub rules: PathBuf,
    pub yaml: String,
    pub stderr: String,
}

/// `--convert FORMAT FILES... -o DIR/rules.yaml`.
pub fn convert(format: &str, files: &[&Path], dir: &Path) -> Converted {
    let rules = dir.join("rules.yaml");
    let out = harness::command()
        .arg("--convert")
        .arg(format)
        .args(files)
        .arg("-o")
        .arg(&rules)
        .output()
        .expect("run --convert");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let yaml = fs::read_to_string(&rules).unwrap_or_else(|e| panic!("no rules file ({e}); stderr:\n{stderr}"));
    Converted { code: out.status.code(), rules, yaml, stderr }
}

/// The converted rules pass `--check-rules --strict` with `env`.
pub fn assert_strictly_valid(converted: &Converted, env: &[(&str, &str)]) {
    let out = harness::command()
        .arg("--check-rules")
        .arg(&converted.rules)
        .arg("--strict")
        .envs(env.iter().copied())
        .output()
        .expect("run --check-rules");
    assert!(
        out.status.success(),
        "the converted rules do not pass --check-rules --strict:\n{}{}\n--- rules:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        converted.yaml
    );
    assert!(converted.yaml.starts_with("# yaml-language-server: $schema="), "no modeline:\n{}", converted.yaml);
}

/// Our families from `--once` on the converted rules, without the exporter's own.
pub fn ours(converted: &Converted, env: &[(&str, &str)]) -> Families {
    let (_, stdout, stderr) = harness::once(&converted.rules, env);
    let mut out = families(&stdout);
    out.retain(|name, _| !name.starts_with(sql_signal_exporter::SELF_METRIC_PREFIX));
    assert!(!out.is_empty(), "--once exported nothing of the converted rules; stderr:\n{stderr}");
    out
}

/// A peer exporter running as a child process; killed when dropped.
pub struct Peer {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Peer {
    /// Starts `cmd` (which must listen on the port given to `args`) with its output in `dir`.
    pub fn start(mut cmd: Command, port: u16, dir: &Path) -> Peer {
        let log = dir.join("peer.log");
        let file = fs::File::create(&log).expect("peer log");
        cmd.stdin(Stdio::null()).stdout(file.try_clone().expect("log")).stderr(file);
        let child = cmd.spawn().expect("start the peer");
        Peer { child, url: format!("http://127.0.0.1:{port}/metrics"), log }
    }

    /// The peer's exposition, once it has every family in `wanted`.
    pub fn families_when(&self, wanted: &[&str]) -> Families {
        wait::until_some(
            // A cron job of justwatch's first runs at the next whole minute.
            Duration::from_secs(90),
            "the peer to export its families",
            || {
                let body = ureq::get(&self.url).call().ok()?.into_body().read_to_string().ok()?;
                let families = families(&body);
                wanted.iter().all(|w| families.get(*w).is_some_and(|f| !f.series.is_empty())).then_some(families)
            },
            || format!("peer log:\n{}", fs::read_to_string(&self.log).unwrap_or_default()),
        )
    }

    /// The peer's exposition now.
    pub fn families(&self) -> Families {
        self.families_when(&[])
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port for a peer.
pub fn port() -> u16 {
    free_loopback_port().expect("a free port")
}

/// How a family's values must agree.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Fixture tables: equal.
    Equal,
    /// Server statistics: ours between the peer's reading before and after (inclusive); a
    /// timestamp may keep the fraction of a second the peer truncates.
    Between,
}

/// What a side-by-side comparison covers.
pub struct Comparison<'a> {
    /// The families of the peer's configuration.
    pub families: BTreeSet<String>,
    /// Labels the peer adds by itself, which the rules deliberately do not.
    pub peer_only_labels: &'a [&'a str],
    /// The converter's stderr: a family it names was reported as not converted.
    pub warnings: &'a str,
    pub values: fn(&str) -> Values,
}

/// Every difference between the peer (read `before` and `after` ours) and `ours`.
pub fn differences(cmp: &Comparison<'_>, before: &Families, ours: &Families, after: &Families) -> Vec<String> {
    let mut out = Vec::new();
    for name in &cmp.families {
        let Some(peer) = before.get(name).filter(|f| !f.series.is_empty()) else { continue };
        let Some(mine) = ours.get(name) else {
            if !cmp.warnings.contains(name.as_str()) {
                out.push(format!("{name}: the peer exports it, the rules do not, and the converter did not warn"));
            }
            continue;
        };
        if peer.kind != mine.kind {
            out.push(format!("{name}: type {} here, {} in the peer", mine.kind, peer.kind));
        }
        if peer.help != mine.help {
            out.push(format!("{name}: help {:?} here, {:?} in the peer", mine.help, peer.help));
        }
        let strip = |labels: &Labels| -> Labels {
            labels
                .iter()
                .filter(|(k, _)| !cmp.peer_only_labels.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let later = after.get(name).map(|f| f.series.iter().map(|(l, v)| (strip(l), *v)).collect::<BTreeMap<_, _>>());
        // A NULL value is NaN in postgres_exporter and no series here (documented).
        let peer_series: BTreeMap<Labels, f64> =
            peer.series.iter().filter(|(_, v)| !v.is_nan()).map(|(l, v)| (strip(l), *v)).collect();
        let peer_keys: BTreeSet<&Labels> = peer_series.keys().collect();
        let my_keys: BTreeSet<&Labels> = mine.series.keys().collect();
        if peer_keys != my_keys {
            out.push(format!("{name}: label sets differ\n  peer: {peer_keys:?}\n  ours: {my_keys:?}"));
            continue;
        }
        for (labels, theirs) in &peer_series {
            let mine = mine.series[labels];
            let ok = match (cmp.values)(name) {
                Values::Equal => mine == *theirs,
                Values::Between => {
                    let then = later.as_ref().and_then(|l| l.get(labels)).copied().unwrap_or(*theirs);
                    let (lo, hi) = (theirs.min(then), theirs.max(then));
                    let within = |v: f64| v >= lo && v <= hi;
                    within(mine) || within(mine.trunc())
                }
            };
            if !ok {
                out.push(format!("{name}{labels:?}: {mine} here, {theirs} in the peer"));
            }
        }
    }
    out
}

/// Asserts no difference, and that at least `min_families` were compared with series on both sides.
pub fn assert_same(cmp: &Comparison<'_>, peer: (&Families, &Families), ours: &Families, min_families: usize) {
    let diffs = differences(cmp, peer.0, ours, peer.1);
    assert!(diffs.is_empty(), "the converted rules differ from the peer:\n{}", diffs.join("\n"));
    let compared = cmp
        .families
        .iter()
        .filter(|n| peer.0.get(*n).is_some_and(|f| !f.series.is_empty()) && ours.contains_key(*n))
        .count();
    assert!(compared >= min_families, "only {compared} families compared, expected at least {min_families}");
}

/// The password of the test's DSN never reaches the converted rules.
pub fn assert_no_password(converted: &Converted, password: &str) {
    assert!(!converted.yaml.contains(password), "the password was copied into the rules:\n{}", converted.yaml);
    assert!(!converted.stderr.contains(password), "the password is in --convert's stderr");
}
