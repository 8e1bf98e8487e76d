//! A raw-value histogram over a million rows stays within the memory of a signal over a million
//! rows: both fold rows as they stream (the signal keeps its windows, the histogram its buckets),
//! so neither holds the result. Measured as the exporter process's peak resident memory (`VmHWM`)
//! once its first evaluation is done, each in a process of its own on the same rows.

use crate::harness::{Db, Exporter};

/// A million rows in ten label sets.
const ROWS: &str = "FROM generate_series(1, 1000000) g";

/// Peak resident memory of the exporter serving `rules` after its first evaluation, in KiB.
fn peak_kib(dir: &std::path::Path, name: &str, rules: &str) -> u64 {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, rules).expect("write rules");
    let ex = Exporter::spawn(&["--rules", path.to_str().expect("UTF-8 path")], &[]);
    ex.wait_ready();
    let (status, body) = ex.get("/api/v1/status");
    assert_eq!(status, 200);
    assert!(body.contains("\"result\":\"success\"") && !body.contains("\"result\":\"error\""), "{name}: {body}");
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", ex.pid())).expect("read /proc status");
    let line = proc_status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|k| k.parse().ok()).expect("VmHWM in kB")
}

#[test]
fn a_raw_value_histogram_over_a_million_rows_stays_within_a_signals_budget() {
    let pg = Db::shared();
    let dsn = pg.dsn();
    let dir = tempfile::tempdir().expect("tempdir");
    let head = format!("version: 1\ndatabases:\n  main:\n    dsn: \"{dsn}\"\n");
    let signal = format!(
        "{head}signals:\n  - name: big_signal\n    database: main\n    labels: [cluster]\n    window: 3\n\
         \x20   values: {{errors: integer}}\n    success: \"errors == 0\"\n    timeout: 50s\n    interval: 1m\n\
         \x20   metrics: {{up: {{name: big_up, help: h}}, error: {{name: big_error, help: h}}}}\n\
         \x20   query: SELECT (g % 10)::text AS cluster, 0 AS errors {ROWS}\n"
    );
    let histogram = format!(
        "{head}metrics:\n  - name: big_histogram\n    database: main\n    timeout: 50s\n    interval: 1m\n\
         \x20   query: SELECT (g % 10)::text AS cluster, g / 1000.0 AS v {ROWS}\n\
         \x20   families: [{{name: big_seconds, help: h, type: histogram, key_labels: [cluster], histogram: {{observe: v, buckets: [1, 10, 100, 1000]}}}}]\n"
    );
    let signal_kib = peak_kib(dir.path(), "signal", &signal);
    let histogram_kib = peak_kib(dir.path(), "histogram", &histogram);
    let ratio = histogram_kib as f64 / signal_kib as f64;
    eprintln!("peak RSS over 1M rows: histogram {histogram_kib} KiB, signal {signal_kib} KiB, ratio {ratio:.2}");
    assert!(ratio <= 1.25, "histogram {histogram_kib} KiB against the signal's {signal_kib} KiB");
}
