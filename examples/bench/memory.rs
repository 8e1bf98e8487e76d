//! Section 10: memory of every rule kind the bench can drive from PostgreSQL: peak RSS over ten
//! evaluations of a 100k-series rule while scraped plain and gzip (a signal; a metric rule with three
//! key labels), and a rule whose query returns 1M rows, above an idle exporter's RSS (a signal, whose
//! rows fold into windows as they stream; a metric rule, whose rows are its series).
//!
//! Endpoint rules (`source/http_json/`) are not measured here yet.

use std::fmt::Write as _;
use std::fs;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::evaluation::series_value;
use crate::{client, fixtures, mark, mib, step, Ctx};

/// Evaluations watched for the peak.
const EVALUATIONS: f64 = 10.0;
/// The budget of every row of this section, KiB.
const BUDGET_KIB: u64 = 64 * 1024;

/// The rule kinds measured.
#[derive(Clone, Copy)]
enum Kind {
    Signal,
    Metric,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Signal => "signal",
            Kind::Metric => "metric rule, 3 key labels",
        }
    }
}

pub struct MemoryRow {
    pub what: String,
    pub series: usize,
    pub rows: usize,
    pub evaluations: f64,
    pub peak_kib: u64,
    /// The peak minus an idle exporter's RSS (for the 1M-row rows).
    pub above_idle_kib: Option<u64>,
}

pub struct Memory {
    pub idle_kib: u64,
    pub rows: Vec<MemoryRow>,
}

/// A metric rule of `rows` rows, one series each, labelled by three key columns.
fn metric_rule(rows: usize, interval: &str) -> String {
    format!(
        r#"  - name: mem_metric
    database: bench
    interval: {interval}
    max_rows: 2000000
    max_series: 2000000
    key_labels: [cluster, namespace, pod]
    query: |
      SELECT 'cluster-' || (i % 10) AS cluster, 'namespace-' || (i % 1000) AS namespace,
             'pod-' || lpad(i::text, 7, '0') AS pod, i % 97 AS restarts
      FROM generate_series(1, {rows}) AS i
    families:
      - name: mem_pod_restarts
        help: Restarts of each pod (generated).
        value: restarts
"#
    )
}

/// A signal over `targets` discovered targets whose query returns `rows` rows (newest first per target).
fn signal_rows_rule(targets: usize, rows: usize, interval: &str) -> String {
    fixtures::serve_rule("mem_signal", targets, interval).replace(
        "FROM generate_series(1, {{ vars.targets }}) AS i\n",
        &format!("FROM generate_series(1, {rows}) AS j, LATERAL (SELECT j % {{{{ vars.targets }}}} + 1 AS i) AS t\n"),
    )
}

fn write(ctx: &Ctx, name: &str, kind: Kind, rule: &str) -> Result<std::path::PathBuf> {
    let path = ctx.dir.path().join(format!("{name}.yaml"));
    let head = "version: 1\ndatabases:\n  bench:\n    dsn: \"${BENCH_DSN}\"\n";
    let list = match kind {
        Kind::Signal => "signals:\n",
        Kind::Metric => "metrics:\n",
    };
    fs::write(&path, format!("{head}{list}{rule}"))?;
    Ok(path)
}

/// Spawns the exporter on `rule`, scrapes it plain and gzip until `evaluations` have finished, and
/// returns (evaluations, peak RSS KiB).
fn peak(ctx: &Ctx, name: &str, rule: &str, evaluations: f64) -> Result<(f64, u64)> {
    let mut ex = ctx.spawn(name, std::path::Path::new(rule))?;
    ex.wait_ready(Duration::from_secs(180))?;
    let key = format!("sql_signal_exporter_rule_evaluations_total{{result=\"success\",rule=\"{name}\"}}");
    let until = Instant::now() + Duration::from_secs(300);
    let mut done = 0.0;
    while done < evaluations && Instant::now() < until {
        client::get(ex.addr, "/metrics", &[("Accept-Encoding", "gzip")])?;
        let text = String::from_utf8(client::get(ex.addr, "/metrics", &[])?.body)?;
        done = series_value(&text, &key).unwrap_or(0.0);
        std::thread::sleep(Duration::from_millis(300));
    }
    if done < 1.0 {
        bail!("rule {name} never evaluated successfully (log in {})", ctx.dir.path().display());
    }
    Ok((done, ex.peak_rss_kib()))
}

pub fn bench(ctx: &Ctx) -> Result<Memory> {
    let series = ctx.scale.memory_series;
    let rows = ctx.scale.memory_rows;
    step("memory: an idle exporter …");
    let idle_rules = ctx.write_rules("mem-idle", &[fixtures::serve_rule("serve", 33, "1m")])?;
    let mut idle = ctx.spawn("mem-idle", &idle_rules)?;
    idle.wait_ready(Duration::from_secs(60))?;
    for _ in 0..20 {
        client::get(idle.addr, "/metrics", &[])?;
    }
    let idle_kib = idle.rss_kib();
    drop(idle);
    let mut out = Vec::new();
    let cases = [
        (Kind::Signal, series, series / 3, "3s", EVALUATIONS),
        (Kind::Metric, series, series, "3s", EVALUATIONS),
        (Kind::Signal, 3 * 1000, rows, "1m", 1.0),
        (Kind::Metric, rows, rows, "1m", 1.0),
    ];
    for (kind, want_series, query_rows, interval, evaluations) in cases {
        let (name, rule) = match kind {
            Kind::Signal if query_rows > want_series => ("mem_signal", signal_rows_rule(1000, query_rows, interval)),
            Kind::Signal => ("mem_signal", fixtures::serve_rule("mem_signal", want_series / 3, interval)),
            Kind::Metric => ("mem_metric", metric_rule(query_rows, interval)),
        };
        let query_rows =
            if matches!(kind, Kind::Signal) && query_rows <= want_series { want_series / 3 } else { query_rows };
        step(&format!(
            "memory: {}, ~{want_series} series, {query_rows} rows, {evaluations} evaluations …",
            kind.name()
        ));
        let path = write(ctx, &format!("mem-{name}-{query_rows}"), kind, &rule)?;
        let (done, peak_kib) = peak(ctx, name, &path.display().to_string(), evaluations)?;
        let big_query = query_rows >= rows;
        let row = MemoryRow {
            what: kind.name().to_string(),
            series: want_series,
            rows: query_rows,
            evaluations: done,
            peak_kib,
            above_idle_kib: big_query.then(|| peak_kib.saturating_sub(idle_kib)),
        };
        step(&format!("  peak {peak_kib} KiB over {done} evaluations"));
        out.push(row);
    }
    Ok(Memory { idle_kib, rows: out })
}

impl Memory {
    fn within(r: &MemoryRow) -> bool {
        r.above_idle_kib.unwrap_or(r.peak_kib) <= BUDGET_KIB
    }

    pub fn targets(&self, o: &mut String) {
        for r in &self.rows {
            let (what, value) = match r.above_idle_kib {
                Some(a) => (format!("above idle, {}, a query of {} rows", r.what, r.rows), a),
                None => (
                    format!(
                        "peak RSS, {}, {} series, over {} evaluations scraped plain and gzip",
                        r.what, r.series, r.evaluations
                    ),
                    r.peak_kib,
                ),
            };
            let _ = writeln!(o, "| memory: {what} | ≤ 64 MiB | {:.1} MiB | {} |", mib(value), mark(Self::within(r)));
        }
    }

    pub fn render(&self, o: &mut String) {
        let _ = writeln!(o, "\n## 10. Memory of each rule kind\n");
        let _ = writeln!(
            o,
            "Peak RSS (`VmHWM`) of the release binary running one rule, scraped plain and gzip every 0.3 s until the \
             evaluations counted. Idle: {:.1} MiB (one ~100-series rule). Signals' series: up and two error reasons per \
             target. The metric rule's series: one per row, labelled cluster, namespace, pod. Endpoint rules: not measured.\n",
            mib(self.idle_kib)
        );
        let _ = writeln!(o, "| rule | series | query rows | evaluations | peak MiB | above idle MiB | within 64 MiB |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---|");
        for r in &self.rows {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.1} | {} | {} |",
                r.what,
                r.series,
                r.rows,
                r.evaluations,
                mib(r.peak_kib),
                r.above_idle_kib.map(|a| format!("{:.1}", mib(a))).unwrap_or_else(|| "–".into()),
                mark(Self::within(r))
            );
        }
    }
}
