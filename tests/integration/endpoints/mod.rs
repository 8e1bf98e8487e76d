//! Rules on HTTP JSON endpoints, end to end on real sockets: a fixture server on loopback serves
//! DTR-like and actuator-like JSON (over TLS with a test CA where it matters), the shipped rules
//! files run against it, and every failure has its documented outcome with nothing else affected.
//!
//! Golden expositions live in tests/integration/golden/ (see [`crate::harness::golden`]).

mod documents;
mod fixture;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{golden, repo_root, Exposition};
use fixture::{Fixture, Route};
use sql_signal_exporter::eval::exposition::text::render;
use sql_signal_exporter::publish::outcome::Status;
use sql_signal_exporter::rules::{load_sources, LoadOptions, RuleSet};
use sql_signal_exporter::run::evaluate as evaluation;
use sql_signal_exporter::source::{as_source, Sources};

const PASSWORD: &str = "s3cret-dtr-pass";

/// A rules file of the repository with textual replacements, loaded with `env`.
fn load(file: &str, replacements: &[(&str, &str)], env: &[(&str, &str)]) -> RuleSet {
    let mut text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        text = text.replace(from, to);
    }
    load_text(file, text, env)
}

fn load_text(file: &str, text: String, env: &[(&str, &str)]) -> RuleSet {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let opts = LoadOptions { env: Arc::new(move |k| env.get(k).cloned()), unset_env_is_error: true };
    let loaded = load_sources(&[(repo_root().join(file), text)], &opts).unwrap_or_else(|d| panic!("{d}"));
    loaded.rules
}

/// Evaluates the first rule of `set` once on `sources`: the exposition and the status.
async fn evaluate_with(set: &RuleSet, sources: &Sources) -> (String, Status) {
    let rule = &set.rules[0];
    let slots = sources.slots_of(rule);
    let srcs: Vec<_> = slots.iter().map(as_source).collect();
    let outcome = evaluation::evaluate(rule, &srcs).await;
    (String::from_utf8(render(&outcome.families)).unwrap(), outcome.status)
}

async fn evaluate(set: &RuleSet) -> (String, Status) {
    evaluate_with(set, &Sources::build(set, Sources::default())).await
}

fn error_of(status: &Status) -> &str {
    match status {
        Status::Error(m) => m,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The scrape latency varies: its value is replaced for comparisons.
fn steady(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("dtr_scrape_latency ") {
                "dtr_scrape_latency <seconds>".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

struct Dtr {
    server: Fixture,
    _dir: tempfile::TempDir,
    ca: PathBuf,
}

/// A DTR over TLS signed by a test CA, with basic auth `admin` / [`PASSWORD`].
fn dtr() -> Dtr {
    let (ca_pem, config) = fixture::tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("dtr-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let server = Fixture::start(Some(config));
    let basic = Some(format!("admin:{PASSWORD}"));
    server.set(
        "/api/v0/meta/cluster_status",
        Route { basic: basic.clone(), ..Route::json(documents::cluster_status().to_string()) },
    );
    server.set("/api/v0/jobs", Route { basic, ..Route::json(documents::jobs().to_string()) });
    Dtr { server, _dir: dir, ca }
}

impl Dtr {
    fn url(&self) -> String {
        format!("https://localhost:{}", self.server.addr.port())
    }

    fn rules(&self, replacements: &[(&str, &str)], password: &str) -> RuleSet {
        let (url, ca) = (self.url(), self.ca.display().to_string());
        let env = [
            ("CONNECTION_STRING", url.as_str()),
            ("DTR_USERNAME", "admin"),
            ("DTR_PASSWORD", password),
            ("DTR_CA", ca.as_str()),
        ];
        load("rules/dtr.yaml", replacements, &env)
    }
}

/// Every family of the seed's exposition, by name.
const DTR_FAMILIES: [&str; 25] = [
    "dtr_cluster_client_connections",
    "dtr_cluster_clients_active",
    "dtr_cluster_docs_per_second",
    "dtr_cluster_queries_per_second",
    "dtr_job_total",
    "dtr_scrape_latency",
    "dtr_server_client_connections",
    "dtr_server_clients_active",
    "dtr_server_count",
    "dtr_server_docs_per_second",
    "dtr_server_docs_total",
    "dtr_server_health_count",
    "dtr_server_queries_per_second",
    "dtr_server_queries_total",
    "dtr_table_count",
    "dtr_table_docs_per_second",
    "dtr_table_server_state_count",
    "dtr_tablereplica_cache_bytes",
    "dtr_tablereplica_data_bytes",
    "dtr_tablereplica_docs_per_second",
    "dtr_tablereplica_garbage_bytes",
    "dtr_tablereplica_io",
    "dtr_tablereplica_metadata_bytes",
    "dtr_tablereplica_preallocated_bytes",
    "dtr_up",
];

#[tokio::test]
async fn dtr_reproduces_the_seed_families_over_tls_with_basic_auth() {
    let d = dtr();
    let (text, status) = evaluate(&d.rules(&[], PASSWORD)).await;
    assert_eq!(status, Status::Success, "{text}");
    golden::check("dtr.prom", &steady(&text));
    let exp = Exposition::parse(&text);
    let families: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.strip_suffix(" gauge")).collect();
    let mut want = DTR_FAMILIES.to_vec();
    want.sort_unstable();
    let mut got = families.clone();
    got.sort_unstable();
    assert_eq!(got, want, "every family of the seed, all gauges");
    // The fields the original read wrongly are read right.
    assert_eq!(exp.value("dtr_server_clients_active{replica=\"595fe3ff470e\"}"), Some(71.0));
    assert_eq!(exp.value("dtr_server_queries_per_second{replica=\"724936901731\"}"), Some(4.0));
    assert_eq!(exp.value("dtr_table_server_state_count{db=\"dtr2\",state=\"notready\",table=\"tags\"}"), Some(1.0));
    assert_eq!(exp.value("dtr_job_total{action=\"poll_mirror\",status=\"done\"}"), Some(3.0));
    assert_eq!(
        exp.value("dtr_tablereplica_garbage_bytes{db=\"enzi\",replica=\"724936901731\",table=\"accounts\"}"),
        Some(0.0)
    );
    // Both requests carried the credentials and the seed's query string.
    let seen = d.server.seen.lock().unwrap().clone();
    let auth = format!("Basic {}", fixture::base64(&format!("admin:{PASSWORD}")));
    assert!(seen.iter().all(|(_, a)| a.as_deref() == Some(auth.as_str())), "{seen:?}");
    assert!(
        seen.iter().any(|(t, _)| t == "/api/v0/jobs?action=any&running=any&start=0&worker=any&limit=100"
            || (t.starts_with("/api/v0/jobs?") && t.contains("limit=100") && t.contains("action=any"))),
        "{seen:?}"
    );
}

/// What a failed DTR evaluation serves: dtr_up 0 and nothing else.
fn only_down(text: &str) {
    assert_eq!(
        text, "# HELP dtr_up Whether the DTR scrape was successful\n# TYPE dtr_up gauge\ndtr_up 0\n",
        "a failed rule serves dtr_up 0 and no other family"
    );
}

#[tokio::test]
async fn dtr_wrong_password_serves_dtr_up_0_and_never_the_password() {
    let d = dtr();
    let wrong = "wrong-password-123";
    let (text, status) = evaluate(&d.rules(&[], wrong)).await;
    only_down(&text);
    let msg = error_of(&status);
    assert!(msg.contains("HTTP 401"), "{msg}");
    assert!(msg.contains("request '"), "{msg}");
    assert!(!msg.contains(wrong) && !msg.contains(PASSWORD), "{msg}");
}

#[tokio::test]
async fn dtr_with_an_unknown_ca_fails_the_handshake() {
    let d = dtr();
    let (other_ca, _) = fixture::tls_server();
    std::fs::write(&d.ca, other_ca).unwrap();
    let (text, status) = evaluate(&d.rules(&[], PASSWORD)).await;
    only_down(&text);
    let msg = error_of(&status);
    assert!(msg.contains("cannot connect") && msg.to_lowercase().contains("certificate"), "{msg}");
}

#[tokio::test]
async fn dtr_bad_responses_fail_the_rule_as_a_whole() {
    let cases: [(Route, &str); 4] = [
        (Route { status: 500, ..Route::json(r#"{"error":"boom"}"#) }, "request 'jobs': HTTP 500"),
        (
            Route { content_type: "text/html", ..Route::json("<!DOCTYPE html><html>login</html>") },
            "request 'jobs': the response is not strict JSON (it looks like HTML)",
        ),
        (
            Route::json("{jobs: [{action: 'tag_prune', status: 'done'},],}"),
            "request 'jobs': the response is not strict JSON",
        ),
        (Route::json(r#"{"jobs": [1, 2"#), "request 'jobs': the response is not strict JSON"),
    ];
    for (route, want) in cases {
        let d = dtr();
        d.server.set("/api/v0/jobs", Route { basic: Some(format!("admin:{PASSWORD}")), ..route });
        let (text, status) = evaluate(&d.rules(&[], PASSWORD)).await;
        only_down(&text);
        let msg = error_of(&status);
        assert!(msg.contains(want), "want {want:?} in {msg}");
    }
}

#[tokio::test]
async fn dtr_body_over_the_limit_fails() {
    let d = dtr();
    let set = d
        .rules(&[("    timeout: 10s\n\nmetrics:", "    timeout: 10s\n    max_body_bytes: 2000\n\nmetrics:")], PASSWORD);
    let (text, status) = evaluate(&set).await;
    only_down(&text);
    assert!(
        error_of(&status).contains("request 'cluster_status': the response is larger than max_body_bytes (2000)"),
        "{status:?}"
    );
}

#[tokio::test]
async fn dtr_timeout_is_a_timeout() {
    let d = dtr();
    let slow = Route {
        basic: Some(format!("admin:{PASSWORD}")),
        delay: Duration::from_secs(3),
        ..Route::json(documents::jobs().to_string())
    };
    d.server.set("/api/v0/jobs", slow);
    let set = d.rules(&[("    interval: 30s\n    timeout: 10s", "    interval: 30s\n    timeout: 1s")], PASSWORD);
    let started = std::time::Instant::now();
    let (text, status) = evaluate(&set).await;
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    only_down(&text);
    assert!(matches!(status, Status::Timeout(_)), "{status:?}");
}

#[tokio::test]
async fn dtr_renamed_field_fails_loudly() {
    let d = dtr();
    let renamed = documents::cluster_status().to_string().replace("\"stats\"", "\"statistics\"");
    d.server
        .set("/api/v0/meta/cluster_status", Route { basic: Some(format!("admin:{PASSWORD}")), ..Route::json(renamed) });
    let (text, status) = evaluate(&d.rules(&[], PASSWORD)).await;
    only_down(&text);
    let msg = error_of(&status);
    assert!(msg.contains("query 'cluster' returned no rows") && msg.contains("on_empty: fail"), "{msg}");
}

mod ci_runs;
mod matillion;
mod transport;
mod typing;
