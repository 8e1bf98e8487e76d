//! rules/matillion.yaml against an actuator-like fixture: golden, defaults, down, down then back.

use super::*;

fn rules(url: &str) -> RuleSet {
    load("rules/matillion.yaml", &[], &[("METRICS_ENDPOINT", url)])
}

fn agent(doc: &str) -> Fixture {
    let f = Fixture::start(None);
    f.set("/actuator/info", Route::json(doc.to_string()));
    f
}

/// What the sidecar serves when the agent cannot be reached.
const DOWN: &str = "# HELP app_agent_status Shows if the agent is running. (1 for running, 0 for not)
# TYPE app_agent_status gauge
app_agent_status 0
# HELP app_active_task_count The number of active tasks.
# TYPE app_active_task_count gauge
app_active_task_count 0
# HELP app_active_request_count The number of active requests.
# TYPE app_active_request_count gauge
app_active_request_count 0
";

#[tokio::test]
async fn matillion_reproduces_the_sidecar() {
    let f = agent(&documents::actuator_info().to_string());
    let (text, status) = evaluate(&rules(&format!("{}/actuator/info", f.url()))).await;
    assert_eq!(status, Status::Success, "{text}");
    crate::harness::golden::check("matillion.prom", &text);
    let exp = Exposition::parse(&text);
    assert_eq!(
        exp.value("app_version_info{build_timestamp=\"1234567890\",commit_hash=\"abc123\",version=\"1.2.3\"}"),
        Some(1.0)
    );
    assert_eq!(exp.value("app_agent_status"), Some(1.0));
    assert_eq!(exp.value("app_open_sessions_count"), Some(2.0));
}

#[test]
fn matillion_default_url_is_the_sidecars() {
    let set = load("rules/matillion.yaml", &[], &[]);
    assert_eq!(set.endpoints["matillion_agent"].url, "http://localhost:8080/actuator/info");
}

#[tokio::test]
async fn matillion_missing_fields_read_as_the_sidecars_defaults() {
    let f = agent(r#"{"agentStatus": "STOPPED", "buildInfo": {"version": null}}"#);
    let (text, status) = evaluate(&rules(&format!("{}/actuator/info", f.url()))).await;
    assert_eq!(status, Status::Success, "{text}");
    let exp = Exposition::parse(&text);
    assert_eq!(
        exp.value("app_version_info{build_timestamp=\"0\",commit_hash=\"unknown\",version=\"unknown\"}"),
        Some(1.0),
        "{text}"
    );
    for name in ["app_agent_status", "app_active_task_count", "app_active_request_count", "app_open_sessions_count"] {
        assert_eq!(exp.value(name), Some(0.0), "{name}: {text}");
    }
}

#[tokio::test]
async fn matillion_unreachable_serves_the_three_zeros_then_recovers() {
    let port = tempdb::free_loopback_port().unwrap();
    let url = format!("http://127.0.0.1:{port}/actuator/info");
    let set = rules(&url);
    let sources = Sources::build(&set, Sources::default());
    let (text, status) = evaluate_with(&set, &sources).await;
    assert_eq!(text, DOWN);
    let msg = error_of(&status);
    assert!(msg.contains("request 'info': cannot connect"), "{msg}");
    // The agent comes up: the next evaluation, on the same source, reads it.
    let f = Fixture::start_on(format!("127.0.0.1:{port}").parse().unwrap(), None);
    f.set("/actuator/info", Route::json(documents::actuator_info().to_string()));
    let (text, status) = evaluate_with(&set, &sources).await;
    assert_eq!(status, Status::Success, "{text}");
    assert_eq!(Exposition::parse(&text).value("app_active_task_count"), Some(5.0));
}

#[tokio::test]
async fn matillion_json_that_is_not_an_object_fails() {
    let f = agent("[1, 2, 3]");
    let (text, status) = evaluate(&rules(&format!("{}/actuator/info", f.url()))).await;
    assert_eq!(text, DOWN);
    assert!(error_of(&status).contains("returned no rows"), "{status:?}");
}

/// The exporter process, on its scheduler: the agent is down at start, comes up later, and the
/// rule's own metrics count it like any rule. The log never shows the token.
#[test]
fn the_running_exporter_follows_the_agent() {
    let port = tempdb::free_loopback_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("rules/matillion.yaml")).unwrap();
    let text =
        text.replace("    interval: 15s\n", "    interval: 1s\n").replace("    timeout: 10s\n", "    timeout: 900ms\n");
    let text = text
        .replace("      Accept: application/json\n", "      Accept: application/json\n      X-Api-Key: \"${KEY}\"\n");
    let rules = dir.path().join("matillion.yaml");
    std::fs::write(&rules, text).unwrap();
    let url = format!("http://127.0.0.1:{port}/actuator/info");
    let ex = crate::harness::Exporter::spawn(
        &["--rules", rules.to_str().unwrap()],
        &[("METRICS_ENDPOINT", &url), ("KEY", "k3y-secret")],
    );
    ex.wait_ready();
    ex.wait_until(Duration::from_secs(10), "the three zeros", |e| e.metrics().value("app_agent_status") == Some(0.0));
    let m = ex.metrics();
    assert_eq!(m.value("app_active_task_count"), Some(0.0));
    assert_eq!(m.value("app_open_sessions_count"), None, "{}", m.text);
    let f = Fixture::start_on(format!("127.0.0.1:{port}").parse().unwrap(), None);
    f.set("/actuator/info", Route::json(documents::actuator_info().to_string()));
    ex.wait_until(Duration::from_secs(10), "the agent's values", |e| {
        e.metrics().value("app_active_task_count") == Some(5.0)
    });
    let m = ex.metrics();
    assert_eq!(m.value("app_open_sessions_count"), Some(2.0));
    assert!(m.text.contains("sql_signal_exporter_"), "self-metrics present");
    assert!(f.seen.lock().unwrap().iter().all(|(t, _)| t == "/actuator/info"));
    assert!(!ex.logs().contains("k3y-secret"), "{}", ex.logs());
    assert!(ex.logs().contains("request 'info'"), "{}", ex.logs());
}
