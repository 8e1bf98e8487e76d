//! SQLite's typing of JSON, as rules see it, and a signal on an endpoint (fail-safe included).

use super::*;

fn doc(updated_ms: i64) -> String {
    format!(
        r#"{{"flags": {{"enabled": true, "disabled": false}}, "big_id": 12345678901234567890, "nullable": null,
            "obj": {{"a": 1, "b": {{"c": 2}}}}, "arr": [10, [1, 2]], "updated_ms": {updated_ms}, "name": "ABC"}}"#
    )
}

const RULES: &str = r#"
version: 1
endpoints:
  api:
    url: "${API}"
signals:
  - name: typed_signal
    endpoint: api
    requests: {doc: {path: /doc}}
    labels: [job]
    targets: [{job: build}, {job: deploy}]
    window: 1
    values: {ok: bool, finished: timestamp}
    freshness: {column: finished, max_age: 1h}
    success: ok
    metrics:
      up: {name: typed_up, help: Whether the job passed.}
      error: {name: typed_error, help: Why the job could not be judged.}
    query: |
      SELECT t.job, :doc -> '$.flags.enabled' AS ok, :doc ->> '$.updated_ms' AS finished FROM targets AS t
metrics:
  - name: typing
    endpoint: api
    requests: {doc: {path: /doc}}
    queries:
      ids: |
        SELECT :doc -> '$.big_id' AS id_text, typeof(:doc ->> '$.big_id') = 'real' AS big_is_real,
               :doc ->> '$.nullable' IS NULL AND :doc ->> '$.missing' IS NULL AS alike,
               json_type(:doc, '$.nullable') AS nullable_type, coalesce(json_type(:doc, '$.missing'), 'absent') AS missing_type,
               'abc' LIKE 'ABC' AS like_ignores_case
      each: |
        SELECT 'obj' AS container, key, typeof(key) AS key_type, typeof(value) AS value_type, CAST(value AS TEXT) AS value_text
        FROM json_each(:doc, '$.obj')
        UNION ALL
        SELECT 'arr', key, typeof(key), typeof(value), CAST(value AS TEXT) FROM json_each(:doc, '$.arr')
    families:
      - {query: ids, name: typing_id_info, help: h, type: info, key_labels: [id_text, nullable_type, missing_type]}
      - {query: ids, name: typing_big_is_real, help: h, value: big_is_real}
      - {query: ids, name: typing_null_and_missing_alike, help: h, value: alike}
      - {query: ids, name: typing_like_ignores_case, help: h, value: like_ignores_case}
      - {query: each, name: typing_each_info, help: h, type: info, key_labels: [container, key, key_type, value_type, value_text]}
"#;

fn set(url: &str) -> RuleSet {
    load_text("tests/typing.yaml", RULES.to_string(), &[("API", url)])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn sqlite_typing_cases() {
    let f = Fixture::start(None);
    f.set("/doc", Route::json(doc(now_ms())));
    let mut set = set(&f.url());
    set.rules.remove(0);
    let (text, status) = evaluate(&set).await;
    assert_eq!(status, Status::Success, "{text}");
    let exp = Exposition::parse(&text);
    // Integers beyond i64 arrive as REAL through ->>; -> keeps their digits as text.
    assert_eq!(
        exp.value(r#"typing_id_info{id_text="12345678901234567890",missing_type="absent",nullable_type="null"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(exp.value("typing_big_is_real"), Some(1.0));
    // JSON null and a missing field look alike; only json_type tells them apart (above).
    assert_eq!(exp.value("typing_null_and_missing_alike"), Some(1.0));
    assert_eq!(exp.value("typing_like_ignores_case"), Some(1.0));
    // json_each: text keys for objects, integer keys for arrays, nested containers as JSON text.
    for series in [
        r#"typing_each_info{container="obj",key="a",key_type="text",value_text="1",value_type="integer"}"#,
        r#"typing_each_info{container="obj",key="b",key_type="text",value_text="{\"c\":2}",value_type="text"}"#,
        r#"typing_each_info{container="arr",key="0",key_type="integer",value_text="10",value_type="integer"}"#,
        r#"typing_each_info{container="arr",key="1",key_type="integer",value_text="[1,2]",value_type="text"}"#,
    ] {
        assert_eq!(exp.value(series), Some(1.0), "{series} in:\n{text}");
    }
}

#[tokio::test]
async fn a_signal_on_an_endpoint_reads_json_true_and_epoch_millis() {
    let f = Fixture::start(None);
    f.set("/doc", Route::json(doc(now_ms())));
    let mut set = set(&f.url());
    set.rules.truncate(1);
    let (text, status) = evaluate(&set).await;
    assert_eq!(status, Status::Success, "{text}");
    let exp = Exposition::parse(&text);
    assert_eq!(exp.value(r#"typed_up{job="build"}"#), Some(1.0), "{text}");
    assert_eq!(exp.value(r#"typed_error{job="deploy",reason="stale"}"#), Some(0.0), "{text}");
    // Two hours old in milliseconds is stale (read as seconds it would lie far in the future).
    f.set("/doc", Route::json(doc(now_ms() - 2 * 3600 * 1000)));
    let (text, _) = evaluate(&set).await;
    assert_eq!(Exposition::parse(&text).value(r#"typed_error{job="build",reason="stale"}"#), Some(1.0), "{text}");
    // The endpoint fails: every target is reported fail-safe.
    f.set("/doc", Route { status: 503, ..Route::json("{}") });
    let (text, status) = evaluate(&set).await;
    assert!(error_of(&status).contains("request 'doc': HTTP 503"), "{status:?}");
    let exp = Exposition::parse(&text);
    assert_eq!(exp.value(r#"typed_up{job="deploy"}"#), Some(1.0), "fail-safe: {text}");
    assert_eq!(exp.value(r#"typed_error{job="deploy",reason="query_failed"}"#), Some(1.0), "{text}");
}
