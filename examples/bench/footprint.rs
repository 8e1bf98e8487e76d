//! Section 5: the footprint — binary size, start to ready, idle RSS and RSS at 100k series.
//!
//! Idle RSS is what the README quotes against its 10 MiB target: one ~100-series rule evaluated every
//! 2 s, measured after three evaluations and 100 scrapes, and split by `/proc/PID/smaps` into the
//! binary's own pages, other mapped files (libc, the loader) and private memory, since the binary's
//! code is most of it and only a smaller binary moves it.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::evaluation::series_value;
use crate::scrape::ScrapeRow;
use crate::{client, fixtures, procs, step, Ctx};

pub struct Footprint {
    pub binary_bytes: u64,
    pub stripped_bytes: Option<u64>,
    pub ready_ms: Vec<f64>,
    pub idle_rss_kib: u64,
    pub idle_peak_kib: u64,
    pub rss_100k_kib: u64,
    pub peak_100k_kib: u64,
    /// Over several evaluations of a 100k-series rule, with scrapes in between.
    pub reeval_rss_kib: u64,
    pub reeval_peak_kib: u64,
    pub reevaluations: f64,
    /// The same with `MALLOC_ARENA_MAX=1`.
    pub one_arena_rss_kib: u64,
    pub one_arena_peak_kib: u64,
    /// Idle RSS split into private memory and mapped file pages (mostly the binary's code).
    pub idle_anon_kib: u64,
    pub idle_file_kib: u64,
    /// The binary's own resident file pages (code, read-only data), from smaps: part of `idle_file_kib`.
    pub idle_binary_kib: u64,
}

/// Evaluations of the idle rule before its RSS is read: past start-up, as it runs for days.
pub const IDLE_EVALUATIONS: f64 = 3.0;
/// The idle rule's interval.
pub const IDLE_INTERVAL: &str = "2s";

/// The resident file-backed KiB of the mappings of `binary` in `/proc/PID/smaps` (its pages shared
/// with the page cache: code and read-only data; the relocated data it wrote to are private memory).
fn binary_rss_kib(pid: u32, binary: &std::path::Path) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let binary = fs::canonicalize(binary).ok()?;
    let mut in_binary = false;
    let mut total = 0;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            in_binary = line.split_whitespace().nth(5).is_some_and(|p| std::path::Path::new(p) == binary);
        } else if in_binary {
            if let Some(kib) = line.strip_prefix("Rss:") {
                total += kib.split_whitespace().next()?.parse::<u64>().ok()?;
            } else if let Some(kib) = line.strip_prefix("Anonymous:") {
                total = total.saturating_sub(kib.split_whitespace().next()?.parse::<u64>().ok()?);
            }
        }
    }
    Some(total)
}

/// The idle exporter's [VmRSS, VmHWM, RssAnon, RssFile, the binary's file pages] in KiB, after
/// `IDLE_EVALUATIONS` evaluations and 100 scrapes.
fn idle_rss(ctx: &Ctx, ex: &procs::Exporter) -> Result<[u64; 5]> {
    let key = "sql_signal_exporter_rule_evaluations_total{result=\"success\",rule=\"serve\"}";
    let until = Instant::now() + Duration::from_secs(30);
    let mut evaluations = 0.0;
    while evaluations < IDLE_EVALUATIONS && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(300));
        let text = String::from_utf8(client::get(ex.addr, "/metrics", &[])?.body)?;
        evaluations = series_value(&text, key).unwrap_or(0.0);
    }
    for _ in 0..100 {
        client::get(ex.addr, "/metrics", &[])?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = |field| procs::proc_status_kib(ex.pid(), field).unwrap_or(0);
    Ok([
        ex.rss_kib(),
        ex.peak_rss_kib(),
        status("RssAnon"),
        status("RssFile"),
        binary_rss_kib(ex.pid(), &ctx.bin).unwrap_or(0),
    ])
}

pub fn footprint_bench(ctx: &Ctx, scrape: &[ScrapeRow]) -> Result<Footprint> {
    step("footprint: start-to-ready, idle RSS, binary size …");
    let rules = ctx.write_rules("idle", &[fixtures::serve_rule("serve", 33, IDLE_INTERVAL)])?;
    let mut ready_ms = Vec::new();
    let mut idle = None;
    for i in 0..5 {
        let mut ex = ctx.spawn("idle", &rules)?;
        ready_ms.push(ex.wait_ready(Duration::from_secs(60))?.as_secs_f64() * 1000.0);
        if i == 4 {
            idle = Some(idle_rss(ctx, &ex)?);
        }
    }
    let [idle_rss_kib, idle_peak_kib, idle_anon_kib, idle_file_kib, idle_binary_kib] =
        idle.context("no idle exporter measured")?;
    ready_ms.sort_by(f64::total_cmp);
    let binary_bytes = fs::metadata(&ctx.bin)?.len();
    let stripped = ctx.dir.path().join("stripped");
    let stripped_bytes = Command::new("strip")
        .args(["-o", &stripped.display().to_string(), &ctx.bin.display().to_string()])
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| fs::metadata(&stripped).ok())
        .map(|m| m.len());
    let big = scrape.iter().max_by_key(|r| r.wanted).context("no scrape results")?;

    // Peak memory over re-evaluations: each one renders a new body while the old one is served. Again
    // with glibc limited to one malloc arena, to show what the allocator's per-thread arenas cost.
    let wanted = ctx.scale.sizes[ctx.scale.sizes.len() - 1];
    let rules = ctx.write_rules("reeval", &[fixtures::serve_rule("serve", wanted / 3, "3s")])?;
    let mut reeval = Vec::new();
    for env in [&[][..], &[("MALLOC_ARENA_MAX", "1")][..]] {
        let mut ex = ctx.spawn_with("reeval", &rules, env)?;
        ex.wait_ready(Duration::from_secs(120))?;
        let key = "sql_signal_exporter_rule_evaluations_total{result=\"success\",rule=\"serve\"}";
        let until = Instant::now() + Duration::from_secs(30);
        let mut evaluations = 0.0;
        while evaluations < 4.0 && Instant::now() < until {
            client::get(ex.addr, "/metrics", &[("Accept-Encoding", "gzip")])?;
            let text = String::from_utf8(client::get(ex.addr, "/metrics", &[])?.body)?;
            evaluations = series_value(&text, key).unwrap_or(0.0);
            std::thread::sleep(Duration::from_millis(300));
        }
        reeval.push((ex.rss_kib(), ex.peak_rss_kib(), evaluations));
    }
    let [(reeval_rss_kib, reeval_peak_kib, reevaluations), (one_arena_rss_kib, one_arena_peak_kib, _)] = reeval[..]
    else {
        unreachable!("two runs")
    };
    step(&format!(
        "  idle RSS {idle_rss_kib} KiB ({idle_anon_kib} KiB anonymous); 100k series over {reevaluations} evaluations: \
         peak {reeval_peak_kib} KiB, {one_arena_peak_kib} KiB with one malloc arena"
    ));
    Ok(Footprint {
        binary_bytes,
        stripped_bytes,
        ready_ms,
        idle_rss_kib,
        idle_peak_kib,
        rss_100k_kib: big.rss_kib,
        peak_100k_kib: big.peak_rss_kib,
        reeval_rss_kib,
        reeval_peak_kib,
        reevaluations,
        one_arena_rss_kib,
        one_arena_peak_kib,
        idle_anon_kib,
        idle_file_kib,
        idle_binary_kib,
    })
}
