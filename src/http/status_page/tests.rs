//! Unit tests of the status page's HTML.

use std::collections::VecDeque;

use super::*;
use crate::eval::signal::{TargetResult, TargetState};
use crate::publish::outcome::EvaluationResult;
use crate::publish::targets::Targets;
use crate::rules::model::Failure;

fn evaluation(result: EvaluationResult, error: Option<&str>) -> Evaluation {
    Evaluation {
        at: Utc::now(),
        duration: Duration::from_millis(5),
        rows: 2,
        series: 6,
        result,
        error: error.map(str::to_string),
    }
}

fn status(targets: Vec<TargetResult>, last: Evaluation) -> RuleStatus {
    RuleStatus {
        name: "r<i>".into(),
        kind: "signal",
        sources: vec!["main".into()],
        interval: Duration::from_secs(60),
        labels: vec!["target".into()],
        error_series: Failure::ALL.iter().map(|f| format!("r_error{{reason=\"{}\"}}", f.key())).collect(),
        failures: if last.result == EvaluationResult::Success {
            VecDeque::new()
        } else {
            VecDeque::from([last.clone()])
        },
        history: VecDeque::from([last.clone()]),
        last: Some(last),
        next_run: Some(Utc::now()),
        sql: Some("SELECT '<x>' AS target".into()),
        targets: Targets::pack(1, &targets),
    }
}

fn page(rules: Vec<RuleStatus>) -> String {
    render(&StatusSnapshot { rules: rules.into_iter().map(Arc::new).collect() }, "/metrics", Utc::now())
}

fn t(label: &str, state: TargetState) -> TargetResult {
    TargetResult { labels: vec![label.into()], state }
}

#[test]
fn text_from_rules_data_and_errors_is_escaped() {
    assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    let targets = vec![t(
        "<script>alert(1)</script>",
        TargetState::Failed { failure: Failure::BadValue, detail: "ok = '<img src=x onerror=alert(2)>'".into() },
    )];
    let html =
        page(vec![status(targets, evaluation(EvaluationResult::Error, Some("relation \"<script>\" does not exist")))]);
    assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("<i>"), "{html}");
    assert!(html.contains("<td data-label=\"target\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"), "{html}");
    assert!(html.contains("ok = &#39;&lt;img src=x onerror=alert(2)&gt;&#39;"), "{html}");
    assert!(html.contains("relation &quot;&lt;script&gt;&quot; does not exist"), "{html}");
    assert!(html.contains("SELECT &#39;&lt;x&gt;&#39; AS target"), "{html}");
}

#[test]
fn above_500_targets_only_errors_are_listed_with_a_count_of_the_rest() {
    let mut targets: Vec<TargetResult> = (0..3)
        .map(|i| t(&format!("bad{i}"), TargetState::Failed { failure: Failure::Stale, detail: "old".into() }))
        .collect();
    targets.push(t("down0", TargetState::Down));
    targets.extend((0..597).map(|i| t(&format!("up{i}"), TargetState::Up)));
    let html = page(vec![status(targets, evaluation(EvaluationResult::Success, None))]);
    assert_eq!(html.matches("<tr class=\"fail\">").count(), 3);
    assert!(!html.contains(">up0<") && !html.contains(">down0<"), "only errors are listed");
    assert!(html.contains("601 targets: only the 3 in error are listed; 1 down and 597 up are not"), "{html}");

    // However many are in error, at most 500 rows are written.
    let targets: Vec<TargetResult> = (0..20_000)
        .map(|i| t(&format!("bad{i}"), TargetState::Failed { failure: Failure::QueryFailed, detail: "refused".into() }))
        .collect();
    let html = page(vec![status(targets, evaluation(EvaluationResult::Error, Some("refused")))]);
    assert_eq!(html.matches("<tr class=\"fail\">").count(), 500);
    assert!(html.contains("20000 targets: the first 500 of the 20000 in error are listed; 0 down and 0 up"), "{html}");

    // At 500 and below every target is listed.
    let targets: Vec<TargetResult> = (0..500).map(|i| t(&format!("up{i}"), TargetState::Up)).collect();
    let html = page(vec![status(targets, evaluation(EvaluationResult::Success, None))]);
    assert!(html.contains(">up499<"));
}

#[test]
fn rules_in_error_come_first_and_say_why_in_the_headline() {
    let mut ok = status(vec![t("a", TargetState::Up)], evaluation(EvaluationResult::Success, None));
    ok.name = "healthy".into();
    let mut failed = status(Vec::new(), evaluation(EvaluationResult::Error, Some("connection refused")));
    failed.name = "failing".into();
    let mut stale = status(
        vec![t("a", TargetState::Failed { failure: Failure::Stale, detail: "newest ended 4h ago".into() })],
        evaluation(EvaluationResult::Success, None),
    );
    stale.name = "stale".into();
    let html = page(vec![ok, failed, stale]);
    let pos = |id: &str| html.find(&format!("id=\"rule-{id}\"")).unwrap();
    assert!(pos("failing") < pos("stale") && pos("stale") < pos("healthy"));
    assert!(html.contains("<strong>2 of 3 rules</strong> in error"));
    assert!(html.contains("<span class=\"b fail\">query failed</span> failing</h2>"), "{html}");
    assert!(html.contains("<span class=\"b fail\">1 in error</span> stale</h2>"), "{html}");
    assert!(html.contains("<span class=\"b up\">ok</span> healthy</h2>"), "{html}");
    assert!(html.contains("<strong>Error:</strong> connection refused"));
    assert!(
        html.contains("newest ended 4h ago<br><small><code>r_error{reason=&quot;stale&quot;}</code> = 1"),
        "{html}"
    );
}
