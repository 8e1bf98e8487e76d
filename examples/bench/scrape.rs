//! Sections 1 and 2: scrapes of `/metrics` against nginx serving the same bytes, and scrapes while a
//! rule's query hangs.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::wrk::{self, Load, WrkResult};
use crate::{client, fixtures, procs, step, Ctx};
use procs::Nginx;

pub struct Pair {
    pub ours: WrkResult,
    pub nginx: WrkResult,
}

impl Pair {
    pub fn throughput_ratio(&self) -> f64 {
        self.ours.rps / self.nginx.rps
    }
}

pub struct ScrapeRow {
    pub wanted: usize,
    pub series: usize,
    pub plain_bytes: usize,
    /// Size of the gzipped body, when the exporter gzips.
    pub gz_bytes: Option<usize>,
    pub plain: Pair,
    pub gzip: Pair,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

pub fn count_series(body: &[u8]) -> usize {
    body.split(|&b| b == b'\n').filter(|l| !l.is_empty() && l[0] != b'#').count()
}

pub fn mean(results: &[WrkResult]) -> WrkResult {
    let n = results.len() as f64;
    WrkResult {
        rps: results.iter().map(|r| r.rps).sum::<f64>() / n,
        p50_ms: results.iter().map(|r| r.p50_ms).sum::<f64>() / n,
        p99_ms: results.iter().map(|r| r.p99_ms).sum::<f64>() / n,
        requests: results.iter().map(|r| r.requests).sum(),
        failures: results.iter().map(|r| r.failures).sum(),
    }
}

pub fn wrk_checked(url: &str, load: Load, gzip: bool) -> Result<WrkResult> {
    let r = wrk::run(url, load, gzip)?;
    if r.failures > 0 {
        bail!("wrk saw {} failed requests on {url}", r.failures);
    }
    Ok(r)
}

pub fn scrape_bench(ctx: &Ctx) -> Result<Vec<ScrapeRow>> {
    let nginx_dir = ctx.dir.path().join("nginx");
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let nginx = Nginx::start(&nginx_dir, workers)?;
    let mut rows = Vec::new();
    for wanted in ctx.scale.sizes {
        step(&format!("scrapes at ~{wanted} series: exporter vs nginx, plain and gzip …"));
        let rules = ctx.write_rules(&format!("serve-{wanted}"), &[fixtures::serve_rule("serve", wanted / 3, "10m")])?;
        let mut ex = ctx.spawn(&format!("serve-{wanted}"), &rules)?;
        ex.wait_ready(Duration::from_secs(120))?;

        let plain = client::get(ex.addr, "/metrics", &[])?;
        if plain.status != 200 {
            bail!("/metrics answered {}", plain.status);
        }
        let series = count_series(&plain.body);
        let gz = client::get(ex.addr, "/metrics", &[("Accept-Encoding", "gzip")])?;
        let gz_body = (gz.header("content-encoding") == Some("gzip")).then_some(gz.body);
        nginx.set_body(&plain.body, gz_body.as_deref())?;
        let check = client::get(nginx.addr, "/metrics", &[])?;
        if check.body != plain.body {
            bail!("nginx does not serve the exporter's bytes");
        }

        let (ours_url, nginx_url) = (ex.url("/metrics"), nginx.url("/metrics"));
        let warm = Load { seconds: 1, ..ctx.load };
        for gzip in [false, true] {
            wrk_checked(&ours_url, warm, gzip)?;
            wrk_checked(&nginx_url, warm, gzip)?;
        }
        let mut runs: [[Vec<WrkResult>; 2]; 2] = Default::default();
        for _ in 0..ctx.scale.rounds {
            for (g, gzip) in [false, true].into_iter().enumerate() {
                runs[g][0].push(wrk_checked(&ours_url, ctx.load, gzip)?);
                runs[g][1].push(wrk_checked(&nginx_url, ctx.load, gzip)?);
            }
        }
        let row = ScrapeRow {
            wanted,
            series,
            plain_bytes: plain.body.len(),
            gz_bytes: gz_body.as_ref().map(Vec::len),
            plain: Pair { ours: mean(&runs[0][0]), nginx: mean(&runs[0][1]) },
            gzip: Pair { ours: mean(&runs[1][0]), nginx: mean(&runs[1][1]) },
            rss_kib: ex.rss_kib(),
            peak_rss_kib: ex.peak_rss_kib(),
        };
        step(&format!(
            "  {series} series, {} bytes: plain {:.0} vs {:.0} req/s ({:.2}×), gzip {:.0} vs {:.0} req/s ({:.2}×), RSS {} KiB (peak {})",
            row.plain_bytes,
            row.plain.ours.rps,
            row.plain.nginx.rps,
            row.plain.throughput_ratio(),
            row.gzip.ours.rps,
            row.gzip.nginx.rps,
            row.gzip.throughput_ratio(),
            row.rss_kib,
            row.peak_rss_kib
        ));
        rows.push(row);
    }
    let nginx_rss: u64 = nginx.worker_pids().iter().filter_map(|&p| procs::proc_status_kib(p, "VmRSS")).sum();
    step(&format!("  nginx workers' RSS: {nginx_rss} KiB"));
    Ok(rows)
}

// ---- 2. scrapes while a query hangs ---------------------------------------------------------------

pub struct HangResult {
    pub series: usize,
    pub idle: WrkResult,
    pub hung: WrkResult,
    /// The pg_sleep query was running from before each hung run to after it.
    pub hung_throughout: bool,
}

pub fn hang_bench(ctx: &Ctx) -> Result<HangResult> {
    step(&format!("scrapes while a query hangs (~{} series) …", ctx.scale.hang_series));
    ctx.sql("UPDATE bench_ctl SET hang_seconds = 0")?;
    let rules = ctx.write_rules(
        "hang",
        &[fixtures::serve_rule("serve", ctx.scale.hang_series / 3, "10m"), fixtures::hang_rule()],
    )?;
    let mut ex = ctx.spawn("hang", &rules)?;
    ex.wait_ready(Duration::from_secs(120))?;
    let series = count_series(&client::get(ex.addr, "/metrics", &[])?.body);
    let url = ex.url("/metrics");
    wrk_checked(&url, Load { seconds: 1, ..ctx.load }, false)?;
    let hanging = "SELECT extract(epoch FROM query_start)::float8 FROM pg_stat_activity \
                   WHERE application_name = 'sql-signal-exporter' AND state = 'active' AND query LIKE '%pg_sleep%'";
    // Idle and hung runs alternate, idle first and last, so drift in the machine's load hits both.
    let (mut idle, mut hung, mut throughout) = (vec![wrk_checked(&url, ctx.load, false)?], Vec::new(), true);
    for round in 0..ctx.scale.hang_rounds {
        ctx.sql("UPDATE bench_ctl SET hang_seconds = 60")?;
        let since = wait_for(Duration::from_secs(15), || Ok(ctx.query(hanging)?.first().map(|r| r.get::<_, f64>(0))))?
            .context("the hang rule's query never started")?;
        hung.push(wrk_checked(&url, ctx.load, false)?);
        let still = ctx.query(hanging)?.first().map(|r| r.get::<_, f64>(0));
        throughout &= still == Some(since);
        ctx.sql("UPDATE bench_ctl SET hang_seconds = 0")?;
        // Wait for the exporter's timeout to cancel it, so the next idle run is idle.
        wait_for(Duration::from_secs(15), || Ok(ctx.query(hanging)?.is_empty().then_some(())))?
            .context("the hanging query was not cancelled at its timeout")?;
        idle.push(wrk_checked(&url, ctx.load, false)?);
        step(&format!(
            "  round {}: hung p99 {:.2} ms, then idle p99 {:.2} ms",
            round + 1,
            hung.last().map(|r| r.p99_ms).unwrap_or(0.0),
            idle.last().map(|r| r.p99_ms).unwrap_or(0.0)
        ));
    }
    Ok(HangResult { series, idle: mean(&idle), hung: mean(&hung), hung_throughout: throughout })
}

pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(Some(v));
        }
        if Instant::now() > until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
