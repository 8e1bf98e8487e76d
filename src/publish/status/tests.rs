//! Unit tests of the status store and its JSON.

use std::path::PathBuf;

use super::*;
use crate::eval::signal::{TargetResult, TargetState};
use crate::publish::outcome::Status;
use crate::rules::{load_sources, LoadOptions};

const RULES: &str = r#"version: 1
databases:
  main:
    dsn: "postgresql://exporter:hunter2@127.0.0.1/demo"
signals:
  - name: s
    database: main
    interval: 30s
    timeout: 10s
    labels: [target]
    window: 1
    values: { ok: integer }
    success: "ok == 1"
    metrics:
      up: { name: s_up, help: "S." }
      error: { name: s_error, help: "S failed." }
    reasons: { stale: old }
    query: SELECT 'a' AS target, 1 AS ok
"#;

fn rule_set() -> RuleSet {
    load_sources(&[(PathBuf::from("r.yaml"), RULES.to_string())], &LoadOptions::default()).expect("valid rules").rules
}

fn target(name: &str, state: TargetState) -> TargetResult {
    TargetResult { labels: vec![name.to_string()], state }
}

fn failed(failure: Failure, detail: &str) -> TargetState {
    TargetState::Failed { failure, detail: detail.to_string() }
}

fn outcome(status: Status, targets: Vec<TargetResult>) -> Outcome {
    Outcome {
        families: Vec::new(),
        status,
        rows: 3,
        duration: Duration::from_millis(12),
        connect_failures: Vec::new(),
        sql: Some("SELECT 1".into()),
        targets: Targets::pack(1, &targets),
    }
}

#[test]
fn targets_in_error_come_first_and_are_counted() {
    let rules = rule_set();
    let store = StatusStore::new();
    store.set_rules(&rules);
    assert!(store.load().rules[0].last.is_none());
    let targets = vec![
        target("u", TargetState::Up),
        target("d", TargetState::Down),
        target("s", failed(Failure::Stale, "newest ended 4h ago, more than 3h")),
        target("f", failed(Failure::TooFewRows, "no results, 1 needed")),
    ];
    store.record(&rules.rules[0], outcome(Status::Success, targets), NextRun::In(Duration::from_secs(30)));
    let snap = store.load();
    let r = &snap.rules[0];
    let order: Vec<&str> = r.targets.errors_first().map(|t| t.labels[0]).collect();
    assert_eq!(order, ["s", "f", "d", "u"]);
    let c = &r.targets.counts;
    assert_eq!((c.up, c.down, c.errors()), (1, 1, 2));
    assert_eq!(c.failed[Failure::Stale as usize], 1);
    assert!(r.in_error());
    assert_eq!(r.sources, ["main"]);
    assert_eq!(r.error_series[Failure::Stale as usize], "s_error{reason=\"old\"}");
    assert_eq!(r.error_series[Failure::BadValue as usize], "s_error{reason=\"bad_value\"}");
    let next = r.next_run.unwrap() - r.last.as_ref().unwrap().at;
    assert!((29..=31).contains(&next.num_seconds()), "{next:?}");
}

#[test]
fn history_keeps_ten_evaluations_and_ten_failures_however_old() {
    let rules = rule_set();
    let rule = &rules.rules[0];
    let store = StatusStore::new();
    store.set_rules(&rules);
    store.record(rule, outcome(Status::Error("first failure".into()), Vec::new()), NextRun::In(Duration::ZERO));
    for _ in 0..15 {
        store.record(rule, outcome(Status::Success, Vec::new()), NextRun::In(Duration::ZERO));
    }
    let r = store.load().rules[0].clone();
    assert_eq!(r.history.len(), HISTORY);
    assert!(r.history.iter().all(|e| e.result == EvaluationResult::Success));
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].error.as_deref(), Some("first failure"));
    for i in 0..12 {
        store.record(rule, outcome(Status::Error(format!("failure {i}")), Vec::new()), NextRun::In(Duration::ZERO));
    }
    store.record(rule, outcome(Status::Timeout(Duration::from_secs(10)), Vec::new()), NextRun::In(Duration::ZERO));
    let r = store.load().rules[0].clone();
    assert_eq!(r.failures.len(), HISTORY);
    assert_eq!(r.failures[0].error.as_deref(), Some("timed out after 10s"));
    assert_eq!(r.failures[1].error.as_deref(), Some("failure 11"));
    // A reload that keeps the rule keeps its history; a rule that is gone is not recorded.
    store.set_rules(&rules);
    assert_eq!(store.load().rules[0].history.len(), HISTORY);
    store.set_rules(&RuleSet::default());
    store.record(rule, outcome(Status::Success, Vec::new()), NextRun::In(Duration::ZERO));
    assert!(store.load().rules.is_empty());
}

#[test]
fn json_has_a_detail_for_every_state_but_up_and_down() {
    let rules = rule_set();
    let store = StatusStore::new();
    store.set_rules(&rules);
    let targets = vec![
        target("u", TargetState::Up),
        target("d", TargetState::Down),
        target("<b>", failed(Failure::BadValue, "ok = 'x' in the newest result is not an integer")),
    ];
    store.record(&rules.rules[0], outcome(Status::Success, targets), NextRun::In(Duration::from_secs(30)));
    let text = to_json(&store.load(), Utc::now());
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(text.contains("{\"labels\":{\"target\":\"d\"},\"state\":\"down\"}"), "{text}");
    let rule = &json["rules"][0];
    assert_eq!(rule["name"], "s");
    assert_eq!(rule["kind"], "signal");
    assert_eq!(rule["sources"], json!(["main"]));
    assert_eq!(rule["interval_seconds"], 30.0);
    assert_eq!(rule["last_evaluation"]["result"], "success");
    assert_eq!(rule["last_evaluation"]["rows"], 3);
    assert_eq!(rule["sql"], "SELECT 1");
    assert_eq!(
        rule["target_counts"],
        json!({"up": 1, "down": 1, "query_failed": 0, "too_few_rows": 0, "bad_timestamp": 0, "stale": 0, "bad_value": 1})
    );
    assert_eq!(
        rule["targets"],
        json!([
            {"labels": {"target": "<b>"}, "state": "bad_value", "detail": "ok = 'x' in the newest result is not an integer"},
            {"labels": {"target": "d"}, "state": "down"},
            {"labels": {"target": "u"}, "state": "up"},
        ])
    );
    assert!(!json.to_string().contains("hunter2"), "{json}");
}
