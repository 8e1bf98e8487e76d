//! Sections 3 and 4: one evaluation of a kanary-style signal at scale (wall time against the query's
//! own server time) and the database cost of scrapes (statements per rule per interval).

use sql_signal_exporter::rules::server::{Flavour, ServerIdentity};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};

use crate::scrape::wrk_checked;
use crate::wrk::Load;
use crate::{client, describe, fixtures, step, Ctx};
use sql_signal_exporter::eval::exposition::Format;

pub struct CostRow {
    pub rule: &'static str,
    pub statements: i64,
    pub evaluations: f64,
}

pub struct CostResult {
    pub seconds: f64,
    pub interval: f64,
    pub scrapes: u64,
    pub rules: Vec<CostRow>,
    /// Statements not of a rule (per connection: the server identity query).
    pub other_statements: i64,
    pub other_text: Vec<String>,
}

/// The value of a series in an exposition, by its full text before the value.
pub fn series_value(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn db_cost_bench(ctx: &Ctx) -> Result<CostResult> {
    step("database cost: 10 concurrent scrapers, two rules every 2s …");
    let rules = ctx.write_rules(
        "cost",
        &[fixtures::kanary_style_rule("lateral", false, "2s", "1500ms"), fixtures::serve_rule("serve", 33, "2s")],
    )?;
    ctx.reset_statements()?;
    let mut ex = ctx.spawn("cost", &rules)?;
    ex.wait_ready(Duration::from_secs(60))?;
    let w = wrk_checked(&ex.url("/metrics"), Load { threads: 2, connections: 10, seconds: 10 }, false)?;
    let text = String::from_utf8(client::get(ex.addr, "/metrics", &[])?.body)?;
    let statements = ctx.exporter_statements()?;
    let text_after = String::from_utf8(client::get(ex.addr, "/metrics", &[])?.body)?;
    let seconds = ex.spawned.elapsed().as_secs_f64();
    drop(ex);
    let mut result = CostResult {
        seconds,
        interval: 2.0,
        scrapes: w.requests,
        rules: Vec::new(),
        other_statements: 0,
        other_text: Vec::new(),
    };
    for (rule, needle) in [("lateral", "bench_runs"), ("serve", "generate_series")] {
        let key = format!("sql_signal_exporter_rule_evaluations_total{{result=\"success\",rule=\"{rule}\"}}");
        let before = series_value(&text, &key).unwrap_or(0.0);
        let after = series_value(&text_after, &key).unwrap_or(0.0);
        let calls: i64 = statements.iter().filter(|s| s.0.contains(needle)).map(|s| s.1).sum();
        // The statement count was read between the two scrapes.
        let evaluations = if (calls as f64) < before { before } else { after.min(calls as f64).max(before) };
        result.rules.push(CostRow { rule, statements: calls, evaluations });
    }
    for s in statements.iter().filter(|s| !s.0.contains("bench_runs") && !s.0.contains("generate_series")) {
        result.other_statements += s.1;
        result.other_text.push(format!("{} × `{}`", s.1, s.0.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    step(&format!(
        "  {:.1}s, {} scrapes: {}; other: {}",
        seconds,
        w.requests,
        result
            .rules
            .iter()
            .map(|r| format!("{} {} statements / {} evaluations", r.rule, r.statements, r.evaluations))
            .collect::<Vec<_>>()
            .join(", "),
        result.other_text.join(", ")
    ));
    Ok(result)
}

// ---- 3. evaluation at scale ---------------------------------------------------------------------

pub struct EvalRow {
    pub name: &'static str,
    pub rows: f64,
    /// First evaluation: connecting included.
    pub cold_ms: f64,
    /// Later evaluations (median), when measured.
    pub warm_ms: Option<f64>,
    /// EXPLAIN ANALYZE planning + execution time of the same statement.
    pub server_ms: f64,
    /// pg_stat_statements mean_exec_time of the exporter's executions (includes sending rows).
    pub stat_ms: f64,
    pub peak_rss_kib: u64,
    pub up: f64,
}

pub fn eval_bench(ctx: &Ctx) -> Result<Vec<EvalRow>> {
    let mut out = Vec::new();
    for (name, full) in [("lateral", false), ("full", true)] {
        step(&format!(
            "evaluation at scale: {} …",
            if full { "all 1,000,000 rows to the exporter" } else { "1,000 targets, LATERAL … LIMIT 3 (index)" }
        ));
        let (interval, timeout, evaluations) = if full { ("1m", "50s", 1) } else { ("3s", "2s", 3) };
        let rules =
            ctx.write_rules(&format!("eval-{name}"), &[fixtures::kanary_style_rule(name, full, interval, timeout)])?;
        let server_ms = explain_ms(ctx, &rules, name)?;
        ctx.reset_statements()?;
        let (cold_ms, warm_ms, rows, up) =
            evaluate_in_process(ctx, &rules, name, evaluations, if full { 60.0 } else { 3.0 })?;
        let stat_ms = {
            let st = ctx.exporter_statements()?;
            let (calls, total) =
                st.iter().filter(|s| s.0.contains("bench_runs")).fold((0i64, 0.0), |a, s| (a.0 + s.1, a.1 + s.2));
            if calls > 0 {
                total / calls as f64
            } else {
                f64::NAN
            }
        };
        // Peak RSS in a process of its own.
        let mut ex = ctx.spawn(&format!("eval-{name}"), &rules)?;
        ex.wait_ready(Duration::from_secs(120))?;
        let peak_rss_kib = ex.peak_rss_kib();
        drop(ex);
        step(&format!(
            "  {rows} rows: cold {cold_ms:.0} ms, warm {} ms, server {server_ms:.0} ms (pg_stat_statements {stat_ms:.0} ms), peak RSS {peak_rss_kib} KiB, {up} targets up",
            warm_ms.map(|w| format!("{w:.0}")).unwrap_or_else(|| "-".into())
        ));
        out.push(EvalRow { name, rows, cold_ms, warm_ms, server_ms, stat_ms, peak_rss_kib, up });
    }
    Ok(out)
}

/// Loads one rules file in-process and returns its only signal rule with the SQL it sends and its
/// bind parameters.
pub fn rendered(ctx: &Ctx, rules: &Path, name: &str) -> Result<(String, Vec<Vec<String>>)> {
    std::env::set_var("BENCH_DSN", &ctx.dsn);
    let set = sql_signal_exporter::app::load_rules(&[rules.to_path_buf()]).map_err(|d| anyhow!("{d}"))?;
    let rule = set.rules.iter().find(|r| r.name == name).context("rule not loaded")?;
    let server =
        &ctx.query("SELECT current_setting('server_version_num')::bigint, current_setting('server_version')")?[0];
    let server = ServerIdentity::reported(Flavour::Postgresql, server.get(1), server.get(0));
    let sql = sql_signal_exporter::rules::template::render_query(rule, &server).map_err(|e| anyhow!("{e}"))?;
    let params = rule.bindings().columns();
    Ok((sql, params))
}

/// EXPLAIN (ANALYZE) of a rule's statement, run twice (the first warms the cache): planning +
/// execution milliseconds of the second, and the plan.
pub fn explain(ctx: &Ctx, sql: &str, params: &[Vec<String>]) -> Result<(f64, serde_json::Value)> {
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
    let bound: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
    let mut last = (0.0, serde_json::Value::Null);
    for _ in 0..2 {
        let row = ctx.rt.block_on(ctx.db.query_one(&explain, &bound)).map_err(|e| anyhow!("{}", describe(&e)))?;
        let plan: serde_json::Value = row.get(0);
        let top = &plan[0];
        let ms = top["Planning Time"].as_f64().unwrap_or(0.0) + top["Execution Time"].as_f64().unwrap_or(0.0);
        last = (ms, plan);
    }
    Ok(last)
}

pub fn explain_ms(ctx: &Ctx, rules: &Path, name: &str) -> Result<f64> {
    let (sql, params) = rendered(ctx, rules, name)?;
    Ok(explain(ctx, &sql, &params)?.0)
}

/// Runs the exporter in-process and times its evaluations from query start to snapshot swap.
/// The first starts at once; each later one at its slot on the scheduler's wall-clock grid (the
/// rule's stable offset within its interval, `run::scheduler::offset`), so a warm evaluation's time
/// is its swap's wall-clock time minus the slot before it (valid while an evaluation is shorter than
/// the interval; measuring from `start + k × interval` instead put the offset into the figure).
pub fn evaluate_in_process(
    ctx: &Ctx,
    rules: &Path,
    name: &str,
    evaluations: usize,
    interval: f64,
) -> Result<(f64, Option<f64>, f64, f64)> {
    std::env::set_var("BENCH_DSN", &ctx.dsn);
    let set = sql_signal_exporter::app::load_rules(&[rules.to_path_buf()]).map_err(|d| anyhow!("{d}"))?;
    let t0 = Instant::now();
    let exporter = ctx.rt.block_on(sql_signal_exporter::app::Exporter::start(vec![rules.to_path_buf()], &set));
    let mut swaps = Vec::new();
    let mut last = exporter.publisher.snapshot.load();
    let until = t0 + Duration::from_secs_f64(interval * evaluations as f64 + 120.0);
    while swaps.len() < evaluations && Instant::now() < until {
        let now = exporter.publisher.snapshot.load();
        if !Arc::ptr_eq(&now, &last) && now.ready {
            swaps.push((t0.elapsed().as_secs_f64(), SystemTime::now()));
            last = now;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let text = String::from_utf8(exporter.publisher.metrics.render())?;
    ctx.rt.block_on(exporter.scheduler.shutdown(Duration::from_secs(5)));
    if swaps.len() < evaluations {
        bail!("only {} of {evaluations} evaluations finished", swaps.len());
    }
    if series_value(&text, &format!("sql_signal_exporter_rule_up{{rule=\"{name}\"}}")) != Some(1.0) {
        bail!("the rule's evaluation failed:\n{text}");
    }
    let rows = series_value(&text, &format!("sql_signal_exporter_rule_rows{{rule=\"{name}\"}}")).unwrap_or(f64::NAN);
    let body = String::from_utf8_lossy(&exporter.publisher.snapshot.load().body_in(Format::Text).concat()).into_owned();
    let up = body.lines().filter(|l| l.starts_with(&format!("{name}_up{{")) && l.ends_with(" 1")).count() as f64;
    let cold = swaps[0].0 * 1000.0;
    let slot = sql_signal_exporter::run::scheduler::offset(name, Duration::from_secs_f64(interval));
    let mut warm: Vec<f64> = swaps.iter().skip(1).map(|s| since_slot(s.1, slot, interval) * 1000.0).collect();
    warm.sort_by(f64::total_cmp);
    Ok((cold, warm.get(warm.len() / 2).copied(), rows, up))
}

/// Seconds from the last slot (wall-clock time `offset` past a multiple of `interval` since the
/// Unix epoch) at or before `at`.
fn since_slot(at: SystemTime, offset: Duration, interval: f64) -> f64 {
    let wall = at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    (wall - offset.as_secs_f64()).rem_euclid(interval)
}
