//! Section 9: OpenMetrics against the text format. The same exporter serves the same series in both
//! (rendered once per evaluation each, gzipped once each); wrk scrapes each format in turn, in the
//! same run, plain and gzip, and the report gives OpenMetrics' throughput as a ratio of the text
//! format's. The scrape path must not get slower for a scraper that asks for OpenMetrics.

use std::fmt::Write;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::scrape::{count_series, mean};
use crate::wrk::{self, Load, WrkResult};
use crate::{client, fixtures, step, Ctx};

/// What Prometheus 2.x sends by default.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One size: the bodies and each format's throughput, plain and gzip.
pub struct FormatRow {
    pub series: usize,
    pub text_bytes: usize,
    pub openmetrics_bytes: usize,
    /// [plain, gzip]
    pub text: [WrkResult; 2],
    pub openmetrics: [WrkResult; 2],
}

impl FormatRow {
    /// OpenMetrics' requests per second over the text format's, plain (0) or gzip (1).
    pub fn ratio(&self, encoding: usize) -> f64 {
        self.openmetrics[encoding].rps / self.text[encoding].rps
    }
}

pub struct Formats {
    pub rows: Vec<FormatRow>,
}

/// wrk against `url` with the `Accept` of `accept` and, for gzip, `Accept-Encoding: gzip`.
fn scrape(url: &str, load: Load, accept: &str, encoding: usize) -> Result<WrkResult> {
    let accept = format!("Accept: {accept}");
    let mut headers = vec![accept.as_str()];
    if encoding == 1 {
        headers.push("Accept-Encoding: gzip");
    }
    let r = wrk::run_with_headers(url, load, &headers)?;
    if r.failures > 0 {
        bail!("wrk saw {} failed requests on {url}", r.failures);
    }
    Ok(r)
}

pub fn bench(ctx: &Ctx) -> Result<Formats> {
    let mut rows = Vec::new();
    for wanted in ctx.scale.sizes {
        step(&format!("OpenMetrics vs text at ~{wanted} series, plain and gzip …"));
        let name = format!("formats-{wanted}");
        let rules = ctx.write_rules(&name, &[fixtures::serve_rule("serve", wanted / 3, "10m")])?;
        let mut ex = ctx.spawn(&name, &rules)?;
        ex.wait_ready(Duration::from_secs(120))?;
        let text = client::get(ex.addr, "/metrics", &[("Accept", "text/plain;version=0.0.4")])?;
        let om = client::get(ex.addr, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)])?;
        if om.header("content-type").is_none_or(|t| !t.starts_with("application/openmetrics-text")) {
            bail!("the exporter did not answer Prometheus's default Accept with OpenMetrics");
        }
        let url = ex.url("/metrics");
        let warm = Load { seconds: 1, ..ctx.load };
        for encoding in [0, 1] {
            scrape(&url, warm, "text/plain;version=0.0.4", encoding)?;
            scrape(&url, warm, PROMETHEUS_ACCEPT, encoding)?;
        }
        let mut runs: [[Vec<WrkResult>; 2]; 2] = Default::default();
        for _ in 0..ctx.scale.rounds {
            for encoding in [0, 1] {
                runs[encoding][0].push(scrape(&url, ctx.load, "text/plain;version=0.0.4", encoding)?);
                runs[encoding][1].push(scrape(&url, ctx.load, PROMETHEUS_ACCEPT, encoding)?);
            }
        }
        let row = FormatRow {
            series: count_series(&text.body),
            text_bytes: text.body.len(),
            openmetrics_bytes: om.body.len(),
            text: [mean(&runs[0][0]), mean(&runs[1][0])],
            openmetrics: [mean(&runs[0][1]), mean(&runs[1][1])],
        };
        step(&format!(
            "  {} series: OpenMetrics ÷ text {:.2}× plain, {:.2}× gzip",
            row.series,
            row.ratio(0),
            row.ratio(1)
        ));
        rows.push(row);
    }
    Ok(Formats { rows })
}

impl Formats {
    pub fn render(&self, o: &mut String) {
        let _ = writeln!(o, "\n## 9. OpenMetrics against the text format (same exporter, same series, same run)\n");
        let _ = writeln!(
            o,
            "| series | text bytes | OpenMetrics bytes | text req/s | OpenMetrics req/s | OM ÷ text | text gzip req/s | OpenMetrics gzip req/s | OM ÷ text gzip |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} | {:.0} | {:.2}× | {:.0} | {:.0} | {:.2}× |",
                r.series,
                r.text_bytes,
                r.openmetrics_bytes,
                r.text[0].rps,
                r.openmetrics[0].rps,
                r.ratio(0),
                r.text[1].rps,
                r.openmetrics[1].rps,
                r.ratio(1)
            );
        }
    }
}
