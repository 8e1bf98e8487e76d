//! Unit tests of the pure signal evaluation: every branch of the Kanary judgement, without a database.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::rules::model::{Freshness, MetricDescriptor, Reasons};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn kanary_like(targets: Option<Vec<Vec<String>>>) -> SignalRule {
    signal_rule(3, 3, Some("start"), Duration::from_secs(3 * 3600), targets)
}

/// A Kanary-shaped signal on label `cluster`: freshness on `ended`, `errors == 0` over an integer
/// `errors`, failures mapped to `db_error` and `no_test_results`. Shared with other tests of signals.
pub(crate) fn signal_rule(
    window: usize,
    min_rows: usize,
    order_by: Option<&str>,
    max_age: Duration,
    targets: Option<Vec<Vec<String>>>,
) -> SignalRule {
    let mut reasons = Reasons::default();
    for f in [Failure::QueryFailed, Failure::TooFewRows, Failure::BadTimestamp, Failure::BadValue] {
        reasons.set(f, "db_error".into());
    }
    reasons.set(Failure::Stale, "no_test_results".into());
    SignalRule {
        labels: vec!["cluster".into()],
        targets,
        window,
        min_rows,
        order_by: order_by.map(str::to_string),
        freshness: Some(Freshness { column: "ended".into(), max_age }),
        values: vec![("errors".into(), ValueType::Integer)],
        success: "errors == 0".into(),
        up: MetricDescriptor { name: "k_up".into(), help: "up".into() },
        error: MetricDescriptor { name: "k_error".into(), help: "error".into() },
        reason_label: "reason".into(),
        reasons,
    }
}

fn targets(names: &[&str]) -> Option<Vec<Vec<String>>> {
    Some(names.iter().map(|n| vec![n.to_string()]).collect())
}

/// A row: cluster, start (minutes before now), ended (text), errors.
fn row(cluster: &str, minutes_ago: i64, ended: Cell, errors: Cell) -> Vec<Cell> {
    vec![Cell::Text(cluster.into()), Cell::Timestamp(now() - chrono::Duration::minutes(minutes_ago)), ended, errors]
}

fn ended(minutes_ago: i64) -> Cell {
    Cell::Text((now() - chrono::Duration::minutes(minutes_ago)).format("%Y-%m-%dT%H:%M:%S,123Z").to_string())
}

fn rs(rows: Vec<Vec<Cell>>) -> ResultSet {
    ResultSet { columns: vec!["cluster".into(), "start".into(), "ended".into(), "errors".into()], rows }
}

fn state_of(rule: &SignalRule, rows: Vec<Vec<Cell>>, cluster: &str) -> TargetState {
    evaluate(rule, &serde_json::Value::Null, Ok(&rs(rows)), now(), &[])
        .into_iter()
        .find(|t| t.labels == [cluster])
        .map(|t| t.state)
        .expect("target present")
}

/// The failure and its plain-words detail.
fn why(state: &TargetState) -> (Failure, &str) {
    match state {
        TargetState::Failed { failure, detail } => (*failure, detail.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn failure(state: &TargetState) -> Option<Failure> {
    match state {
        TargetState::Failed { failure, .. } => Some(*failure),
        _ => None,
    }
}

fn three(cluster: &str, errors: [i64; 3]) -> Vec<Vec<Cell>> {
    errors
        .iter()
        .enumerate()
        .map(|(i, e)| row(cluster, 10 + 30 * i as i64, ended(5 + 30 * i as i64), Cell::Int(*e)))
        .collect()
}

#[test]
fn a_zero_among_the_window_is_up() {
    let rule = kanary_like(targets(&["a"]));
    assert_eq!(state_of(&rule, three("a", [3, 0, 1]), "a"), TargetState::Up);
}

#[test]
fn all_non_zero_is_down_negative_included() {
    let rule = kanary_like(targets(&["a"]));
    assert_eq!(state_of(&rule, three("a", [3, 2, 1]), "a"), TargetState::Down);
    assert_eq!(state_of(&rule, three("a", [-1, 2, -5]), "a"), TargetState::Down);
}

#[test]
fn fewer_rows_than_the_window_is_too_few_rows_even_if_stale() {
    let rule = kanary_like(targets(&["a", "b"]));
    let mut rows = three("a", [0, 0, 0]);
    rows.pop();
    assert_eq!(why(&state_of(&rule, rows, "a")), (Failure::TooFewRows, "2 results, 3 needed"));
    // No rows at all for an expected target is an error, not a silence.
    assert_eq!(why(&state_of(&rule, three("a", [0, 0, 0]), "b")), (Failure::TooFewRows, "no results, 3 needed"));
    let stale_one = vec![row("a", 500, ended(500), Cell::Int(0))];
    assert_eq!(why(&state_of(&rule, stale_one, "a")), (Failure::TooFewRows, "1 result, 3 needed"));
}

#[test]
fn newest_result_older_than_freshness_is_stale() {
    let rule = kanary_like(targets(&["a"]));
    let rows = vec![
        row("a", 330, ended(313), Cell::Int(0)),
        row("a", 400, ended(390), Cell::Int(0)),
        row("a", 500, ended(490), Cell::Int(0)),
    ];
    // The ended times carry 0.123 s, so 313 minutes before now is 5h 12m 59.877s ago.
    assert_eq!(why(&state_of(&rule, rows, "a")), (Failure::Stale, "newest ended 5h 12m ago, more than 3h"));
    // Exactly at the limit is still fresh (the Go exporter compares strictly).
    let rows = vec![
        row("a", 200, ended(180), Cell::Int(0)),
        row("a", 300, ended(290), Cell::Int(0)),
        row("a", 400, ended(390), Cell::Int(0)),
    ];
    assert_eq!(state_of(&rule, rows, "a"), TargetState::Up);
}

#[test]
fn stale_wins_over_a_bad_value() {
    let rule = kanary_like(targets(&["a"]));
    let rows = vec![
        row("a", 200, ended(190), Cell::Text("x".into())),
        row("a", 300, ended(290), Cell::Int(0)),
        row("a", 400, ended(390), Cell::Int(0)),
    ];
    assert_eq!(why(&state_of(&rule, rows, "a")), (Failure::Stale, "newest ended 3h 9m ago, more than 3h"));
}

#[test]
fn missing_or_unreadable_newest_timestamp_is_bad_timestamp() {
    let rule = kanary_like(targets(&["a"]));
    let mut rows = three("a", [0, 0, 0]);
    rows[0][2] = Cell::Null;
    assert_eq!(
        why(&state_of(&rule, rows, "a")),
        (Failure::BadTimestamp, "ended is NULL in the newest result is not a time")
    );
    let mut rows = three("a", [0, 0, 0]);
    rows[0][2] = Cell::Text("not a time".into());
    assert_eq!(
        why(&state_of(&rule, rows, "a")),
        (Failure::BadTimestamp, "ended = 'not a time' in the newest result is not a time")
    );
    // Only the newest result's time is read.
    let mut rows = three("a", [0, 0, 0]);
    rows[2][2] = Cell::Null;
    assert_eq!(state_of(&rule, rows, "a"), TargetState::Up);
}

#[test]
fn a_bad_value_in_the_window_fails_only_its_target() {
    let rule = kanary_like(targets(&["a", "b"]));
    let mut rows = three("a", [0, 0, 0]);
    rows[1][3] = Cell::Text("N/A".into());
    rows.extend(three("b", [1, 1, 0]));
    let results = evaluate(&rule, &serde_json::Value::Null, Ok(&rs(rows)), now(), &[]);
    assert_eq!(
        why(&results[0].state),
        (Failure::BadValue, "errors = 'N/A' in the 2nd newest result is not an integer")
    );
    assert_eq!(results[1].state, TargetState::Up);

    let mut rows = three("a", [0, 0, 0]);
    rows[2][3] = Cell::Null;
    assert_eq!(
        why(&state_of(&rule, rows, "a")),
        (Failure::BadValue, "errors is NULL in the 3rd newest result is not an integer")
    );
}

#[test]
fn a_bad_value_outside_the_window_is_ignored() {
    let rule = kanary_like(targets(&["a"]));
    let mut rows = three("a", [2, 2, 2]);
    rows.push(row("a", 500, ended(495), Cell::Text("garbage".into())));
    assert_eq!(state_of(&rule, rows, "a"), TargetState::Down);
}

#[test]
fn rows_are_ordered_newest_first_by_order_by() {
    let rule = kanary_like(targets(&["a"]));
    // Given oldest first; the oldest (errors 0) falls out of the window once sorted.
    let mut rows = three("a", [1, 1, 1]);
    rows.push(row("a", 900, ended(895), Cell::Int(0)));
    rows.reverse();
    assert_eq!(state_of(&rule, rows, "a"), TargetState::Down);
}

#[test]
fn without_order_by_the_query_order_counts() {
    let mut rule = kanary_like(targets(&["a"]));
    rule.order_by = None;
    let mut rows = three("a", [1, 1, 1]);
    rows.insert(0, row("a", 900, ended(1), Cell::Int(0)));
    assert_eq!(state_of(&rule, rows, "a"), TargetState::Up);
}

#[test]
fn a_failed_query_fails_every_target() {
    let rule = kanary_like(targets(&["a", "b"]));
    let results = evaluate(&rule, &serde_json::Value::Null, Err("connection refused"), now(), &[]);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|t| why(&t.state) == (Failure::QueryFailed, "connection refused")));
}

#[test]
fn a_missing_column_fails_every_target_as_query_failed() {
    let rule = kanary_like(targets(&["a"]));
    let mut set = rs(three("a", [0, 0, 0]));
    set.columns[3] = "errs".into();
    let results = evaluate(&rule, &serde_json::Value::Null, Ok(&set), now(), &[]);
    match &results[0].state {
        TargetState::Failed { failure: Failure::QueryFailed, detail } => assert_eq!(
            detail,
            "the query returns no column 'errors' (a value); it returns: cluster, start, ended, errs"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn undeclared_targets_are_discovered_from_rows_in_sorted_order() {
    let rule = kanary_like(None);
    let mut rows = three("z", [0, 0, 0]);
    rows.extend(three("m", [1, 1, 1]));
    let results = evaluate(&rule, &serde_json::Value::Null, Ok(&rs(rows)), now(), &[]);
    let names: Vec<&str> = results.iter().map(|t| t.labels[0].as_str()).collect();
    assert_eq!(names, ["m", "z"]);
    assert_eq!(results[0].state, TargetState::Down);
}

#[test]
fn families_are_fail_safe() {
    let rule = kanary_like(targets(&["up", "down", "stale", "err"]));
    let results = vec![
        TargetResult { labels: vec!["up".into()], state: TargetState::Up },
        TargetResult { labels: vec!["down".into()], state: TargetState::Down },
        TargetResult { labels: vec!["stale".into()], state: TargetState::failed(Failure::Stale, "") },
        TargetResult { labels: vec!["err".into()], state: TargetState::failed(Failure::BadValue, "") },
    ];
    let text = String::from_utf8(crate::eval::exposition::text::render(&families(&rule, &results))).unwrap();
    let expected = "\
# HELP k_up up
# TYPE k_up gauge
k_up{cluster=\"down\"} 0
k_up{cluster=\"err\"} 1
k_up{cluster=\"stale\"} 1
k_up{cluster=\"up\"} 1
# HELP k_error error
# TYPE k_error gauge
k_error{cluster=\"down\",reason=\"db_error\"} 0
k_error{cluster=\"down\",reason=\"no_test_results\"} 0
k_error{cluster=\"err\",reason=\"db_error\"} 1
k_error{cluster=\"err\",reason=\"no_test_results\"} 0
k_error{cluster=\"stale\",reason=\"db_error\"} 0
k_error{cluster=\"stale\",reason=\"no_test_results\"} 1
k_error{cluster=\"up\",reason=\"db_error\"} 0
k_error{cluster=\"up\",reason=\"no_test_results\"} 0
";
    assert_eq!(text, expected);
}

#[test]
fn the_success_expression_sees_labels_and_values() {
    let mut rule = kanary_like(targets(&["a", "b"]));
    rule.success = "errors <= 0 or cluster == 'b'".into();
    let mut rows = three("a", [-1, 5, 5]);
    rows.extend(three("b", [5, 5, 5]));
    let results = evaluate(&rule, &serde_json::Value::Null, Ok(&rs(rows)), now(), &[]);
    assert_eq!(results[0].state, TargetState::Up);
    assert_eq!(results[1].state, TargetState::Up);
}

#[test]
fn the_success_expression_sees_the_rule_vars() {
    let mut rule = kanary_like(targets(&["a"]));
    rule.success = "errors <= vars.tolerated".into();
    let vars = serde_json::json!({ "tolerated": 2 });
    let results = evaluate(&rule, &vars, Ok(&rs(three("a", [5, 2, 7]))), now(), &[]);
    assert_eq!(results[0].state, TargetState::Up);
    let results = evaluate(&rule, &serde_json::json!({ "tolerated": 1 }), Ok(&rs(three("a", [5, 2, 7]))), now(), &[]);
    assert_eq!(results[0].state, TargetState::Down);
}

#[test]
fn a_failed_query_keeps_remembered_discovered_targets_fail_safe() {
    let rule = kanary_like(None);
    let remembered = vec![vec!["m".to_string()], vec!["z".to_string()]];
    let results = evaluate(&rule, &serde_json::Value::Null, Err("connection refused"), now(), &remembered);
    let names: Vec<&str> = results.iter().map(|t| t.labels[0].as_str()).collect();
    assert_eq!(names, ["m", "z"]);
    assert!(results.iter().all(|t| failure(&t.state) == Some(Failure::QueryFailed)));
    // Declared targets win over anything remembered.
    let rule = kanary_like(targets(&["a"]));
    let results = evaluate(&rule, &serde_json::Value::Null, Err("x"), now(), &remembered);
    assert_eq!(results.len(), 1);
}

#[test]
fn a_failing_success_expression_names_the_result() {
    let mut rule = kanary_like(targets(&["a"]));
    rule.success = "errors + 'x' == 1".into();
    let state = state_of(&rule, three("a", [1, 1, 1]), "a");
    let (failure, detail) = why(&state);
    assert_eq!(failure, Failure::BadValue);
    assert!(detail.starts_with("the success expression fails on the newest result: "), "{detail}");
}

#[test]
fn spans_read_in_two_units() {
    assert_eq!(span(0), "0s");
    assert_eq!(span(45), "45s");
    assert_eq!(span(3 * 3600), "3h");
    assert_eq!(span(5 * 3600 + 12 * 60 + 7), "5h 12m");
    assert_eq!(span(2 * 86_400 + 3600 + 5), "2d 1h");
    assert_eq!(span(61), "1m 1s");
}

#[test]
fn positions_read_as_ordinals() {
    let got: Vec<String> = [0, 1, 2, 3, 10, 11, 20, 21].iter().map(|&i| nth_newest(i)).collect();
    assert_eq!(
        got,
        [
            "newest",
            "2nd newest",
            "3rd newest",
            "4th newest",
            "11th newest",
            "12th newest",
            "21st newest",
            "22nd newest"
        ]
    );
}
