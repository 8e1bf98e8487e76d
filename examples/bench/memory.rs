//! Section 10: memory of every rule kind, each in an exporter of its own, scraped plain and gzip.
//!
//! - At 100k series (peak RSS over ten evaluations): a signal; a metric rule with three key labels;
//!   an endpoint rule whose JSON document (served on loopback by [`JsonServer`]) yields the same.
//! - A query of 1M rows that fold into few series (RSS above an idle exporter's): a signal (1,000
//!   targets); a metric rule and an endpoint rule counting the rows into a histogram per key. So the
//!   figure is about rows, not series.
//! - A metric rule whose 1M rows are 1M distinct series: above idle, beside the size of its
//!   exposition alone; no 64 MiB budget can hold that, and `max_series` is the operator's guard.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::evaluation::series_value;
use crate::json_server::JsonServer;
use crate::{client, fixtures, mark, mib, step, Ctx};

/// Evaluations watched for the peak at 100k series.
const EVALUATIONS: f64 = 10.0;
/// The budget of every row of this section, KiB.
const BUDGET_KIB: u64 = 64 * 1024;
/// Buckets of the histograms the 1M-row rules count their rows into (`+Inf` is added).
const BUCKETS: &str = "[10, 60, 300, 600]";
/// Keys (clusters) the 1M-row histograms fold into: 10 × (5 buckets + sum + count) = 70 series.
const CLUSTERS: usize = 10;

/// What a row's figure is judged by.
#[derive(Clone, Copy, PartialEq)]
enum Judged {
    /// Peak RSS ≤ 64 MiB.
    Peak,
    /// Peak RSS minus an idle exporter's ≤ 64 MiB.
    AboveIdle,
    /// Above idle, measured beside the exposition's own size; no budget (1M distinct series).
    Measured,
}

/// One exporter of this section: its rule and the shape of its data.
struct Case {
    /// The rule kind and mapping.
    what: &'static str,
    /// The data: where the rows come from and how they fold.
    shape: String,
    series: usize,
    rows: usize,
    evaluations: f64,
    judged: Judged,
    /// The whole rules file.
    rules: String,
    /// The rule's name (its evaluations are counted by it).
    rule: &'static str,
}

pub struct MemoryRow {
    pub what: &'static str,
    pub shape: String,
    pub series: usize,
    pub rows: usize,
    pub evaluations: f64,
    pub peak_kib: u64,
    pub above_idle_kib: u64,
    /// The text format's `/metrics` body, bytes.
    pub body_bytes: usize,
    judged: Judged,
}

pub struct Memory {
    pub idle_kib: u64,
    pub rows: Vec<MemoryRow>,
}

const PG_HEAD: &str = "version: 1\ndatabases:\n  bench:\n    dsn: \"${BENCH_DSN}\"\n";

/// A metric rule of `rows` rows, one series each, labelled by three key columns.
fn metric_series_rule(rows: usize, interval: &str) -> String {
    format!(
        r#"{PG_HEAD}metrics:
  - name: mem_metric
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

/// A metric rule whose `rows` rows are observations counted into a histogram per cluster.
fn metric_histogram_rule(rows: usize) -> String {
    format!(
        r#"{PG_HEAD}metrics:
  - name: mem_histogram
    database: bench
    interval: 1m
    max_rows: 2000000
    query: |
      SELECT 'cluster-' || (i % {CLUSTERS}) AS cluster, (i * 7) % 700 AS seconds
      FROM generate_series(1, {rows}) AS i
    families:
      - name: mem_run_duration_seconds
        help: Durations of each cluster's runs (generated), one observation per row.
        type: histogram
        unit: seconds
        key_labels: [cluster]
        histogram: {{ observe: seconds, buckets: {BUCKETS} }}
"#
    )
}

/// A signal over `targets` discovered targets whose query returns `rows` rows (newest first per target).
fn signal_rows_rule(targets: usize, rows: usize) -> String {
    let rule = fixtures::serve_rule("mem_signal", targets, "1m").replace(
        "FROM generate_series(1, {{ vars.targets }}) AS i\n",
        &format!("FROM generate_series(1, {rows}) AS j, LATERAL (SELECT j % {{{{ vars.targets }}}} + 1 AS i) AS t\n"),
    );
    format!("{PG_HEAD}signals:\n{rule}")
}

fn signal_series_rule(targets: usize) -> String {
    format!("{PG_HEAD}signals:\n{}", fixtures::serve_rule("mem_signal", targets, "3s"))
}

/// The head of an endpoint rules file reading `url`.
fn endpoint_head(url: &str) -> String {
    format!("version: 1\nendpoints:\n  doc:\n    url: \"{url}\"\n    max_body_bytes: 67108864\nmetrics:\n")
}

/// A JSON document of `pods` pods, each with the three key labels and a value: ~90 bytes a pod.
fn pods_document(pods: usize) -> Vec<u8> {
    let mut out = String::with_capacity(pods * 96 + 16);
    out.push_str("{\"pods\":[");
    for i in 1..=pods {
        if i > 1 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"cluster\":\"cluster-{}\",\"namespace\":\"namespace-{}\",\"pod\":\"pod-{i:07}\",\"restarts\":{}}}",
            i % 10,
            i % 1000,
            i % 97
        );
    }
    out.push_str("]}");
    out.into_bytes()
}

/// An endpoint rule: one series per pod of the document, labelled by three key fields.
fn endpoint_series_rule(url: &str) -> String {
    format!(
        r#"{}  - name: mem_endpoint
    endpoint: doc
    interval: 3s
    max_rows: 2000000
    max_series: 2000000
    requests:
      doc: {{}}
    key_labels: [cluster, namespace, pod]
    query: |
      SELECT p.value ->> 'cluster' AS cluster, p.value ->> 'namespace' AS namespace,
             p.value ->> 'pod' AS pod, p.value ->> 'restarts' AS restarts
      FROM json_each(:doc, '$.pods') AS p
    families:
      - name: mem_endpoint_pod_restarts
        help: Restarts of each pod (a generated document).
        value: restarts
"#,
        endpoint_head(url)
    )
}

/// The clusters' document of the 1M-row endpoint rule.
fn clusters_document() -> Vec<u8> {
    let list: Vec<String> = (0..CLUSTERS).map(|c| format!("{{\"cluster\":\"cluster-{c}\"}}")).collect();
    format!("{{\"clusters\":[{}]}}", list.join(",")).into_bytes()
}

/// An endpoint rule whose query returns `rows` rows (each cluster of the document times a counter)
/// counted into a histogram per cluster.
fn endpoint_histogram_rule(url: &str, rows: usize) -> String {
    let per_cluster = rows / CLUSTERS;
    format!(
        r#"{}  - name: mem_endpoint_histogram
    endpoint: doc
    interval: 1m
    max_rows: 2000000
    requests:
      doc: {{}}
    query: |
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {per_cluster})
      SELECT c.value ->> 'cluster' AS cluster, (n.i * 7) % 700 AS seconds
      FROM json_each(:doc, '$.clusters') AS c CROSS JOIN n
    families:
      - name: mem_endpoint_run_duration_seconds
        help: Durations of each cluster's runs (generated), one observation per row.
        type: histogram
        unit: seconds
        key_labels: [cluster]
        histogram: {{ observe: seconds, buckets: {BUCKETS} }}
"#,
        endpoint_head(url)
    )
}

fn write(ctx: &Ctx, name: &str, rules: &str) -> Result<PathBuf> {
    let path = ctx.dir.path().join(format!("{name}.yaml"));
    fs::write(&path, rules)?;
    Ok(path)
}

/// What one exporter showed: evaluations, peak RSS KiB, the text body's bytes.
struct Watched {
    evaluations: f64,
    peak_kib: u64,
    body_bytes: usize,
}

/// Spawns the exporter on `case`, scrapes it plain and gzip until its evaluations have finished.
fn watch(ctx: &Ctx, case: &Case) -> Result<Watched> {
    let path = write(ctx, &format!("mem-{}-{}", case.rule, case.rows), &case.rules)?;
    let mut ex = ctx.spawn(case.rule, &path)?;
    ex.wait_ready(Duration::from_secs(180))?;
    let key = format!("sql_signal_exporter_rule_evaluations_total{{result=\"success\",rule=\"{}\"}}", case.rule);
    let until = Instant::now() + Duration::from_secs(300);
    let (mut done, mut body_bytes) = (0.0, 0);
    while done < case.evaluations && Instant::now() < until {
        client::get(ex.addr, "/metrics", &[("Accept-Encoding", "gzip")])?;
        let text = String::from_utf8(client::get(ex.addr, "/metrics", &[])?.body)?;
        done = series_value(&text, &key).unwrap_or(0.0);
        body_bytes = text.len();
        std::thread::sleep(Duration::from_millis(300));
    }
    if done < 1.0 {
        bail!("rule {} never evaluated successfully (log in {})", case.rule, ctx.dir.path().display());
    }
    Ok(Watched { evaluations: done, peak_kib: ex.peak_rss_kib(), body_bytes })
}

/// The 100k-series cases (`url`: the pods document's).
fn series_cases(series: usize, url: &str) -> Vec<Case> {
    let targets = series / 3;
    vec![
        Case {
            what: "signal",
            shape: format!("{targets} targets (up + 2 error reasons each), one row each, generate_series"),
            series: targets * 3,
            rows: targets,
            evaluations: EVALUATIONS,
            judged: Judged::Peak,
            rules: signal_series_rule(targets),
            rule: "mem_signal",
        },
        Case {
            what: "metric rule, 3 key labels",
            shape: "one series per row (cluster, namespace, pod), generate_series".into(),
            series,
            rows: series,
            evaluations: EVALUATIONS,
            judged: Judged::Peak,
            rules: metric_series_rule(series, "3s"),
            rule: "mem_metric",
        },
        Case {
            what: "endpoint rule, 3 key labels",
            shape: format!("one series per pod of a {series}-pod JSON document (json_each)"),
            series,
            rows: series,
            evaluations: EVALUATIONS,
            judged: Judged::Peak,
            rules: endpoint_series_rule(url),
            rule: "mem_endpoint",
        },
    ]
}

/// The 1M-row cases (`url`: the clusters document's).
fn rows_cases(rows: usize, url: &str) -> Vec<Case> {
    let histogram_series = CLUSTERS * (BUCKETS.split(',').count() + 1 + 2);
    let per_cluster = rows / CLUSTERS;
    vec![
        Case {
            what: "signal",
            shape: "1,000 targets, rows in turn (window 1 of each), generate_series".into(),
            series: 3000,
            rows,
            evaluations: 1.0,
            judged: Judged::AboveIdle,
            rules: signal_rows_rule(1000, rows),
            rule: "mem_signal",
        },
        Case {
            what: "metric rule, histogram of raw values",
            shape: format!("{CLUSTERS} clusters, one observation per row, generate_series"),
            series: histogram_series,
            rows,
            evaluations: 1.0,
            judged: Judged::AboveIdle,
            rules: metric_histogram_rule(rows),
            rule: "mem_histogram",
        },
        Case {
            what: "endpoint rule, histogram of raw values",
            shape: format!(
                "{CLUSTERS} clusters of a JSON document × {per_cluster} (recursive CTE), one observation per row"
            ),
            series: histogram_series,
            rows: CLUSTERS * per_cluster,
            evaluations: 1.0,
            judged: Judged::AboveIdle,
            rules: endpoint_histogram_rule(url, rows),
            rule: "mem_endpoint_histogram",
        },
        Case {
            what: "metric rule, 3 key labels",
            shape: "one series per row (1M distinct series), generate_series".into(),
            series: rows,
            rows,
            evaluations: 1.0,
            judged: Judged::Measured,
            rules: metric_series_rule(rows, "1m"),
            rule: "mem_metric",
        },
    ]
}

pub fn bench(ctx: &Ctx) -> Result<Memory> {
    let (series, rows) = (ctx.scale.memory_series, ctx.scale.memory_rows);
    step("memory: an idle exporter …");
    let idle_rules = ctx.write_rules("mem-idle", &[fixtures::serve_rule("serve", 33, "1m")])?;
    let mut idle = ctx.spawn("mem-idle", &idle_rules)?;
    idle.wait_ready(Duration::from_secs(60))?;
    for _ in 0..20 {
        client::get(idle.addr, "/metrics", &[])?;
    }
    let idle_kib = idle.rss_kib();
    drop(idle);
    let pods = JsonServer::start(pods_document(series))?;
    let clusters = JsonServer::start(clusters_document())?;
    let mut cases = series_cases(series, &pods.url());
    cases.extend(rows_cases(rows, &clusters.url()));
    let mut out = Vec::new();
    for case in cases {
        step(&format!("memory: {}, {}: {} series, {} rows …", case.what, case.shape, case.series, case.rows));
        let w = watch(ctx, &case)?;
        step(&format!("  peak {} KiB over {} evaluations, body {} bytes", w.peak_kib, w.evaluations, w.body_bytes));
        out.push(MemoryRow {
            what: case.what,
            shape: case.shape,
            series: case.series,
            rows: case.rows,
            evaluations: w.evaluations,
            peak_kib: w.peak_kib,
            above_idle_kib: w.peak_kib.saturating_sub(idle_kib),
            body_bytes: w.body_bytes,
            judged: case.judged,
        });
    }
    Ok(Memory { idle_kib, rows: out })
}

impl MemoryRow {
    /// The figure the row is judged by, KiB.
    fn figure_kib(&self) -> u64 {
        match self.judged {
            Judged::Peak => self.peak_kib,
            Judged::AboveIdle | Judged::Measured => self.above_idle_kib,
        }
    }

    fn within(&self) -> bool {
        self.figure_kib() <= BUDGET_KIB
    }

    fn verdict(&self) -> String {
        match self.judged {
            Judged::Measured => "measured (no budget: max_series guards)".into(),
            _ if self.within() => mark(true).into(),
            _ => format!("{} by {:.1} MiB", mark(false), mib(self.figure_kib() - BUDGET_KIB)),
        }
    }
}

impl Memory {
    pub fn targets(&self, o: &mut String) {
        for r in &self.rows {
            let what = match r.judged {
                Judged::Peak => format!(
                    "peak RSS, {}, {} series over {} evaluations scraped plain and gzip ({})",
                    r.what, r.series, r.evaluations, r.shape
                ),
                Judged::AboveIdle => {
                    format!("above idle, {}, a query of {} rows into {} series ({})", r.what, r.rows, r.series, r.shape)
                }
                Judged::Measured => format!(
                    "above idle, {}, {} rows = {} series ({}); its text exposition alone is {:.1} MiB",
                    r.what,
                    r.rows,
                    r.series,
                    r.shape,
                    r.body_bytes as f64 / 1048576.0
                ),
            };
            let target = if r.judged == Judged::Measured { "measure" } else { "≤ 64 MiB" };
            let _ = writeln!(o, "| memory: {what} | {target} | {:.1} MiB | {} |", mib(r.figure_kib()), r.verdict());
        }
    }

    pub fn render(&self, o: &mut String) {
        let _ = writeln!(o, "\n## 10. Memory of each rule kind\n");
        let _ = writeln!(
            o,
            "Peak RSS (`VmHWM`) of the release binary running one rule, scraped plain and gzip every 0.3 s until the \
             evaluations counted. Idle: {:.1} MiB (one ~100-series rule). Signals' series: up and two error reasons per \
             target. Endpoint rules read a JSON document served on loopback by the bench. Body: the text format's \
             `/metrics` as last scraped.\n",
            mib(self.idle_kib)
        );
        let _ = writeln!(
            o,
            "| rule | shape | series | query rows | evaluations | peak MiB | above idle MiB | body MiB | judged by | 64 MiB |"
        );
        let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---|---|");
        for r in &self.rows {
            let judged = match r.judged {
                Judged::Peak => "peak",
                Judged::AboveIdle => "above idle",
                Judged::Measured => "(measured)",
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {judged} | {} |",
                r.what,
                r.shape,
                r.series,
                r.rows,
                r.evaluations,
                mib(r.peak_kib),
                mib(r.above_idle_kib),
                r.body_bytes as f64 / 1048576.0,
                r.verdict()
            );
        }
    }
}
