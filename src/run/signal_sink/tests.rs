//! The window sink judges exactly as collecting every row does: the same rows, pseudo-random and
//! full of ties, NULLs, unreadable values and stale results, through both, under several rules.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::eval::signal;
use crate::rules::model::MAIN_QUERY;
use crate::run::query_sink::QuerySink;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn rule(window: usize, min_rows: usize, order_by: Option<&str>, targets: Option<usize>) -> SignalRule {
    let targets = targets.map(|n| (0..n).map(|i| vec![format!("c{i}")]).collect());
    signal::tests::signal_rule(window, min_rows, order_by, Duration::from_secs(3600), targets)
}

const COLUMNS: [&str; 5] = ["cluster", "start", "ended", "errors", "unread"];

/// Rows over 12 clusters (one of them NULL now and then), starts with many ties and some NULLs,
/// errors sometimes unreadable.
fn rows(n: usize, seed: u64) -> Vec<Vec<Cell>> {
    let mut x = seed;
    let mut next = move |m: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    (0..n)
        .map(|_| {
            let cluster = match next(13) {
                12 => Cell::Null,
                c => Cell::Text(format!("c{c}")),
            };
            let minutes = next(8) as i64 * 15;
            let start =
                if next(10) == 0 { Cell::Null } else { Cell::Timestamp(now() - chrono::Duration::minutes(minutes)) };
            let ended = Cell::Timestamp(now() - chrono::Duration::minutes(minutes - 5));
            let errors = if next(15) == 0 { Cell::Text("n/a".into()) } else { Cell::Int(next(3) as i64) };
            vec![cluster, start, ended, errors, Cell::Text("x".repeat(100))]
        })
        .collect()
}

fn feed(sink: &mut dyn RowSink, rows: &[Vec<Cell>], columns: &[&str]) -> Result<(), FetchError> {
    sink.columns(columns.iter().map(|c| c.to_string()).collect());
    rows.iter().try_for_each(|r| sink.row(r.clone()))
}

#[test]
fn judges_as_collecting_every_row_does() {
    let rules = [
        rule(3, 3, Some("start"), None),
        rule(3, 3, Some("start"), Some(14)),
        rule(1, 1, Some("start"), None),
        rule(2, 4, Some("start"), None),
        rule(3, 1, None, Some(12)),
        rule(5, 5, Some("ended"), None),
    ];
    for (n, r) in rules.iter().enumerate() {
        for seed in 0..20 {
            let rows = rows(40 + seed as usize * 13, seed);
            let mut all = QuerySink::new(usize::MAX);
            feed(&mut all, &rows, &COLUMNS).expect("collects");
            let mut window = WindowSink::new(r, usize::MAX);
            feed(&mut window, &rows, &COLUMNS).expect("folds");
            assert_eq!(window.rows_seen(), rows.len());
            let kept = window.finish();
            assert!(kept.rows.len() <= 13 * r.window.max(r.min_rows));
            assert!(kept.rows.iter().all(|row| row[4] == Cell::Null), "unread columns are dropped");
            let judge = |rs: &ResultSet| signal::evaluate(r, &serde_json::Value::Null, Ok(rs), now(), &[]);
            assert_eq!(judge(&kept), judge(all.result(MAIN_QUERY).expect("one result")), "rule {n}, seed {seed}");
        }
    }
}

#[test]
fn a_missing_column_still_names_the_targets_and_max_rows_counts_every_row() {
    let r = rule(3, 3, Some("start"), None);
    let rows = rows(200, 7);
    let columns = ["cluster", "start", "ended", "errs", "unread"];
    let mut all = QuerySink::new(usize::MAX);
    feed(&mut all, &rows, &columns).expect("collects");
    let mut window = WindowSink::new(&r, usize::MAX);
    feed(&mut window, &rows, &columns).expect("folds");
    let kept = window.finish();
    assert_eq!(kept.rows.len(), 12, "one row per target");
    let judge = |rs: &ResultSet| signal::evaluate(&r, &serde_json::Value::Null, Ok(rs), now(), &[]);
    assert_eq!(judge(&kept), judge(all.result(MAIN_QUERY).expect("one result")));
    assert_eq!(judge(&kept).len(), 12);

    let mut limited = WindowSink::new(&r, 50);
    assert_eq!(feed(&mut limited, &rows, &COLUMNS), Err(FetchError::TooManyRows(50)));
    assert_eq!(limited.rows_seen(), 50);
}
