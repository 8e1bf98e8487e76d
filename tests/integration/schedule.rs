//! Spreading the load: every rule runs at start, then rules that share an interval run at their own
//! stable offsets within it (`scheduler::offset`), not at the same instant. Each rule reports the
//! server's clock at its evaluation, so the test reads when each ran.

use std::time::Duration;

use sql_signal_exporter::run::scheduler::offset;

use crate::harness::{wait, Db, Exporter};

const INTERVAL: Duration = Duration::from_secs(2);

/// `a - b` on the circle of the interval, in seconds in `[0, interval)`.
fn apart(a: f64, b: f64) -> f64 {
    (a - b).rem_euclid(INTERVAL.as_secs_f64())
}

#[test]
fn rules_sharing_an_interval_run_at_their_own_offsets_after_the_first_run() {
    // Two names whose offsets are far apart (about a half interval), found deterministically.
    let off = |n: &str| offset(n, INTERVAL).as_secs_f64();
    let names: Vec<String> = (0..50).map(|i| format!("spread_{i}")).collect();
    let (a, b) = names
        .iter()
        .flat_map(|a| names.iter().map(move |b| (a, b)))
        .find(|(a, b)| (0.8..=1.2).contains(&apart(off(a), off(b))))
        .expect("two names half an interval apart");
    let db = Db::shared();
    let rule = |name: &str| {
        format!("  - name: {name}\n    database: main\n    interval: 2s\n    timeout: 1s\n    query: SELECT extract(epoch FROM clock_timestamp())::float8 AS t\n    families:\n      - {{name: {name}_ran_at, help: h, value: t}}\n")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("spread.yaml");
    let text =
        format!("version: 1\ndatabases:\n  main:\n    dsn: \"${{SSE_SPREAD_DSN}}\"\nmetrics:\n{}{}", rule(a), rule(b));
    std::fs::write(&file, text).expect("written");
    let dsn = db.dsn();
    let ex = Exporter::spawn(&["--rules", file.to_str().expect("UTF-8 path")], &[("SSE_SPREAD_DSN", &dsn)]);
    ex.wait_ready();
    let ran = |name: &str| ex.metrics().value(&format!("{name}_ran_at")).expect("the rule's series");
    // The first run: both at start, together.
    let (a0, b0) = (ran(a), ran(b));
    assert!((a0 - b0).abs() < 0.5, "the first runs are {:.3} s apart", (a0 - b0).abs());
    // Their next runs: each on its own offset of the wall clock's 2 s grid, so about as far apart as
    // the offsets are, and not together.
    let mut later = (a0, b0);
    wait::until(
        Duration::from_secs(10),
        "both rules to run again",
        || {
            later = (ran(a), ran(b));
            later.0 > a0 && later.1 > b0
        },
        || ex.logs(),
    );
    let (a1, b1) = later;
    let tolerance = 0.35;
    for (name, at) in [(a, a1), (b, b1)] {
        let late = apart(at, off(name));
        assert!(late < tolerance, "{name} ran {late:.3} s after its offset {:.3} s", off(name));
    }
    let gap = apart(a1, b1).min(apart(b1, a1));
    assert!(gap > 0.5, "the second runs are only {gap:.3} s apart");
}
