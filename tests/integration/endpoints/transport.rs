//! TLS settings, client certificates, proxies, tokens and compressed bodies.

use super::*;

const RULES: &str = r#"
version: 1
endpoints:
  api:
    url: "${API}"
    ENDPOINT_EXTRA
metrics:
  - name: r
    endpoint: api
    requests: {doc: {path: /doc}}
    query: SELECT :doc ->> 'n' AS n
    families: [{name: transport_n, help: h, value: n}]
"#;

fn rules(url: &str, extra: &str) -> RuleSet {
    load_text("tests/transport.yaml", RULES.replace("ENDPOINT_EXTRA", extra), &[("API", url)])
}

fn doc(f: &Fixture) {
    f.set("/doc", Route::json(r#"{"n": 7}"#));
}

#[tokio::test]
async fn server_name_client_certificates_and_skipping_verification() {
    let pki = fixture::Pki::new(&["dtr.internal"]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (ca, cert, key) =
        (write("ca.pem", &pki.ca_pem), write("c.pem", &pki.client_cert_pem), write("k.pem", &pki.client_key_pem));
    let f = Fixture::start(Some(pki.server_config(true)));
    doc(&f);
    let url = f.url();
    let ok = |set: RuleSet| async move {
        let (text, status) = evaluate(&set).await;
        (text.contains("transport_n 7"), status)
    };
    let with_client =
        format!("tls: {{ca_file: '{ca}', server_name: dtr.internal, cert_file: '{cert}', key_file: '{key}'}}");
    let (served, status) = ok(rules(&url, &with_client)).await;
    assert!(served, "{status:?}");
    // The certificate names dtr.internal, not 127.0.0.1.
    let (served, status) =
        ok(rules(&url, &format!("tls: {{ca_file: '{ca}', cert_file: '{cert}', key_file: '{key}'}}"))).await;
    assert!(!served && error_of(&status).contains("certificate"), "{status:?}");
    // The server requires a client certificate.
    let (served, status) = ok(rules(&url, &format!("tls: {{ca_file: '{ca}', server_name: dtr.internal}}"))).await;
    assert!(!served, "{status:?}");
    // insecure_skip_verify accepts a certificate from an unknown CA (and is warned about at load).
    let plain = Fixture::start(Some(pki.server_config(false)));
    doc(&plain);
    let (served, status) = ok(rules(&plain.url(), "tls: {insecure_skip_verify: true}")).await;
    assert!(served, "{status:?}");
    let (served, _) = ok(rules(&plain.url(), "timeout: 5s")).await;
    assert!(!served, "the built-in roots do not know the test CA");
}

#[tokio::test]
async fn an_explicit_proxy_carries_the_requests() {
    let proxy = Fixture::start(None);
    doc(&proxy);
    let set = rules("http://api.example.invalid", &format!("proxy: '{}'", proxy.url()));
    let (text, status) = evaluate(&set).await;
    assert_eq!(status, Status::Success, "{text}");
    assert_eq!(proxy.seen.lock().unwrap()[0].0, "http://api.example.invalid/doc");
}

#[tokio::test]
async fn a_bearer_token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let f = Fixture::start(None);
    doc(&f);
    let set = rules(&f.url(), &format!("bearer_token_file: '{}'", token.display()));
    let (_, status) = evaluate(&set).await;
    assert_eq!(status, Status::Success);
    assert_eq!(f.seen.lock().unwrap()[0].1.as_deref(), Some("Bearer tok-123"));
}

#[tokio::test]
async fn the_body_limit_counts_decompressed_bytes() {
    let f = Fixture::start(None);
    let big = format!(r#"{{"n": 7, "pad": "{}"}}"#, "x".repeat(50_000));
    f.set("/doc", Route { gzip: true, ..Route::json(big) });
    let (text, status) = evaluate(&rules(&f.url(), "max_body_bytes: 60000")).await;
    assert!(text.contains("transport_n 7"), "gzip is decompressed: {status:?}");
    let (_, status) = evaluate(&rules(&f.url(), "max_body_bytes: 20000")).await;
    assert!(error_of(&status).contains("larger than max_body_bytes (20000)"), "{status:?}");
}

#[tokio::test]
async fn a_runaway_query_is_interrupted_at_the_rules_timeout() {
    let f = Fixture::start(None);
    doc(&f);
    let text = RULES.replace("ENDPOINT_EXTRA", "timeout: 5s").replace(
        "    query: SELECT :doc ->> 'n' AS n",
        "    interval: 10s\n    timeout: 1s\n    query: WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) + (:doc ->> 'n') AS n FROM c",
    );
    let set = load_text("tests/transport.yaml", text, &[("API", &f.url())]);
    let started = std::time::Instant::now();
    let (text, status) = evaluate(&set).await;
    assert!(matches!(status, Status::Timeout(_)), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
