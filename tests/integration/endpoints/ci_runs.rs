//! examples/ci-runs: a signal on an endpoint, up, down and fail-safe; and redirects.

use super::*;

fn run(id: u32, name: &str, branch: &str, conclusion: &str, minutes_ago: i64) -> serde_json::Value {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    serde_json::json!({"id": id, "name": name, "head_branch": branch, "status": "completed",
                       "conclusion": conclusion, "updated_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
}

#[tokio::test]
async fn the_ci_runs_example_judges_the_newest_runs_and_fails_safe() {
    let f = Fixture::start(None);
    let runs = serde_json::json!({"total_count": 6, "workflow_runs": [
        run(1, "ci", "main", "failure", 10), run(2, "ci", "main", "failure", 20), run(3, "ci", "main", "success", 30),
        run(4, "ci", "main", "success", 40), run(5, "release", "main", "failure", 5), run(6, "release", "main", "success", 400),
        run(7, "release", "main", "failure", 50), run(8, "release", "main", "failure", 60), run(9, "ci", "dev", "success", 1),
    ]});
    f.set("/repos/example/project/actions/runs", Route::json(runs.to_string()));
    let set = load("examples/ci-runs/ci-runs.yaml", &[], &[("CI_API_URL", &f.url())]);
    let (text, status) = evaluate(&set).await;
    assert_eq!(status, Status::Success, "{text}");
    let exp = Exposition::parse(&text);
    // ci: success is the third newest; release: the newest three failed (its success is older).
    assert_eq!(exp.value(r#"ci_up{branch="main",workflow="ci"}"#), Some(1.0), "{text}");
    assert_eq!(exp.value(r#"ci_up{branch="main",workflow="release"}"#), Some(0.0), "{text}");
    assert!(!text.contains("dev"), "an undeclared target is not exported: {text}");
    let seen = f.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(t, _)| t.contains("per_page=100") && t.contains("status=completed")), "{seen:?}");

    f.set("/repos/example/project/actions/runs", Route { status: 502, ..Route::json("{}") });
    let (text, _) = evaluate(&set).await;
    let exp = Exposition::parse(&text);
    for wf in ["ci", "release"] {
        assert_eq!(exp.value(&format!(r#"ci_up{{branch="main",workflow="{wf}"}}"#)), Some(1.0), "fail-safe: {text}");
        assert_eq!(
            exp.value(&format!(r#"ci_error{{branch="main",reason="query_failed",workflow="{wf}"}}"#)),
            Some(1.0)
        );
    }
}

const REDIRECTING: &str = r#"
version: 1
endpoints:
  api:
    url: "${API}"
    basic_auth: {username: u, password: "${PW}"}
metrics:
  - name: r
    endpoint: api
    requests: {doc: {path: /start}}
    query: SELECT :doc ->> 'n' AS n
    families: [{name: redirected_n, help: h, value: n}]
"#;

#[tokio::test]
async fn redirects_keep_credentials_on_their_host() {
    let other = Fixture::start(None);
    other.set("/doc", Route::json(r#"{"n": 2}"#));
    let f = Fixture::start(None);
    let to = |loc: String| Route { status: 302, location: Some(loc), ..Route::json("") };
    f.set("/doc", Route { basic: Some("u:pw-secret".into()), ..Route::json(r#"{"n": 1}"#) });
    // Same host: followed, with the credentials.
    f.set("/start", to("/doc".into()));
    let set = load_text("tests/redirect.yaml", REDIRECTING.to_string(), &[("API", &f.url()), ("PW", "pw-secret")]);
    let (text, status) = evaluate(&set).await;
    assert_eq!(status, Status::Success, "{text}");
    assert!(text.contains("redirected_n 1"), "{text}");
    // Another host (localhost is not 127.0.0.1): not followed, and nothing reached it.
    f.set("/start", to(format!("http://localhost:{}/doc", other.addr.port())));
    let (_, status) = evaluate(&set).await;
    assert!(error_of(&status).contains("HTTP 302 Found (a redirect not followed"), "{status:?}");
    assert!(other.seen.lock().unwrap().is_empty());
    // More than five redirects fail.
    for i in 0..7 {
        f.set(&format!("/loop{i}"), to(format!("/loop{}", i + 1)));
    }
    f.set("/start", to("/loop0".into()));
    let (_, status) = evaluate(&set).await;
    assert!(error_of(&status).contains("more than 5 redirects"), "{status:?}");
}
