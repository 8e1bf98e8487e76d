//! The Kanary query's cost on 1,000,000 rows of Kanary's `data` table: `rules/kanary.yaml`'s statement
//! against the peers' set-based SQL (`examples/bench/peers/kanary_signal.sql`), without an index and
//! with `examples/kanary/indexes.sql`, plus one real `--once` cycle of the exporter in each state.
//!
//! Server time is pg_stat_statements' execution time (planning is a few ms and not tracked), measured
//! after one warm-up run so both statements see the same warm cache.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::{describe, mark, step, Ctx};

/// Timed runs of each statement, after one warm-up.
const RUNS: usize = 3;

pub struct QueryCost {
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub rows: usize,
    /// The plan reads `data` with a sequential scan.
    pub seq_scan: bool,
}

/// One real `sql-signal-exporter --once --rules rules/kanary.yaml`.
pub struct Cycle {
    pub statements: i64,
    pub server_ms: f64,
    pub wall_ms: f64,
    pub ok: bool,
}

pub struct State {
    pub ours: QueryCost,
    pub peer: QueryCost,
    pub cycle: Cycle,
}

pub struct KanaryCost {
    pub no_index: State,
    pub index: State,
}

/// `rules/kanary.yaml`'s statement as the exporter sends it, with its bind parameters.
fn our_statement(ctx: &Ctx) -> Result<(String, Vec<Vec<String>>)> {
    let rules = ctx.root.join("rules/kanary.yaml");
    std::env::set_var("CONNECTION_STRING", &ctx.dsn);
    let set = sql_signal_exporter::app::load_rules(std::slice::from_ref(&rules)).map_err(|d| anyhow!("{d}"))?;
    let rule = set.rules.iter().find(|r| r.name == "kanary").context("no kanary rule in rules/kanary.yaml")?;
    let version: i64 = ctx.query("SHOW server_version_num")?[0].get::<_, String>(0).parse()?;
    let sql = sql_signal_exporter::rules::template::render_query(rule, version).map_err(|e| anyhow!("{e}"))?;
    Ok((sql, rule.bindings().columns()))
}

fn has_seq_scan(plan: &serde_json::Value) -> bool {
    let here = plan["Node Type"].as_str() == Some("Seq Scan") && plan["Relation Name"].as_str() == Some("data");
    here || plan["Plans"].as_array().is_some_and(|c| c.iter().any(has_seq_scan))
}

/// Runs `sql` once to warm up, then [`RUNS`] times, and reads its execution time from
/// pg_stat_statements (statements that read `label_values`, the only ones that do).
fn measure(ctx: &Ctx, sql: &str, params: &[Vec<String>]) -> Result<QueryCost> {
    let bound: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
    let run = |q: &str| ctx.rt.block_on(ctx.db.query(q, &bound)).map_err(|e| anyhow!("{}", describe(&e)));
    let plan = run(&format!("EXPLAIN (FORMAT JSON) {sql}"))?;
    let plan: serde_json::Value = plan.first().context("no plan")?.get(0);
    let rows = run(sql)?.len();
    ctx.reset_statements()?;
    for _ in 0..RUNS {
        run(sql)?;
    }
    let stats = ctx.query(
        "SELECT sum(calls)::int8, sum(total_exec_time), min(min_exec_time), max(max_exec_time) \
         FROM pg_stat_statements WHERE query LIKE '%label_values%' AND query NOT LIKE '%pg_stat_statements%'",
    )?;
    let row = stats.first().context("no statistics")?;
    let calls: Option<i64> = row.get(0);
    let calls = calls.context("the statement is not in pg_stat_statements")?;
    let total: f64 = row.get::<_, Option<f64>>(1).unwrap_or(f64::NAN);
    Ok(QueryCost {
        mean_ms: total / calls.max(1) as f64,
        min_ms: row.get::<_, Option<f64>>(2).unwrap_or(f64::NAN),
        max_ms: row.get::<_, Option<f64>>(3).unwrap_or(f64::NAN),
        rows,
        seq_scan: has_seq_scan(&plan[0]["Plan"]),
    })
}

fn cycle(ctx: &Ctx) -> Result<Cycle> {
    let rules = ctx.root.join("rules/kanary.yaml");
    ctx.reset_statements()?;
    let t = Instant::now();
    let out = Command::new(&ctx.bin)
        .args(["--once", "--log.level", "error", "--rules", &rules.display().to_string()])
        .env("CONNECTION_STRING", &ctx.dsn)
        .output()?;
    let wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("kanary_up{");
    let st = ctx.exporter_statements()?;
    let rule = |s: &&(String, i64, f64, i64)| !s.0.to_ascii_lowercase().starts_with("show");
    Ok(Cycle {
        statements: st.iter().filter(rule).map(|s| s.1).sum(),
        server_ms: st.iter().filter(rule).map(|s| s.2).sum(),
        wall_ms,
        ok,
    })
}

fn state(ctx: &Ctx, label: &str) -> Result<State> {
    step(&format!("Kanary query cost on 1,000,000 rows, {label}: rules/kanary.yaml vs the peers' SQL …"));
    let (sql, params) = our_statement(ctx)?;
    let ours = measure(ctx, &sql, &params)?;
    let peer_sql = fs::read_to_string(ctx.root.join("examples/bench/peers/kanary_signal.sql"))?;
    let peer = measure(ctx, &peer_sql, &[])?;
    let cycle = cycle(ctx)?;
    step(&format!(
        "  ours {:.0} ms ({} rows), peers' SQL {:.0} ms ({} rows); --once: {} statement(s), {:.0} ms server, {:.0} ms wall",
        ours.mean_ms, ours.rows, peer.mean_ms, peer.rows, cycle.statements, cycle.server_ms, cycle.wall_ms
    ));
    Ok(State { ours, peer, cycle })
}

/// Measures with no index on `data`, then creates `examples/kanary/indexes.sql`'s index and measures
/// again. The index stays for the sections after this one.
pub fn bench(ctx: &Ctx) -> Result<KanaryCost> {
    let no_index = state(ctx, "no index")?;
    step("creating examples/kanary/indexes.sql's index …");
    let index_sql = fs::read_to_string(ctx.root.join("examples/kanary/indexes.sql"))?;
    ctx.sql(&index_sql)?;
    ctx.sql("ANALYZE data")?;
    let index = state(ctx, "with examples/kanary/indexes.sql")?;
    Ok(KanaryCost { no_index, index })
}

/// Loads 1,000,000 rows of the Kanary `data` table.
pub fn load_data(ctx: &Ctx, root: &Path) -> Result<()> {
    step("loading 1,000,000 rows of the Kanary data table …");
    let t = Instant::now();
    ctx.sql(&fs::read_to_string(root.join("examples/kanary/schema.sql"))?)?;
    ctx.sql(crate::fixtures::KANARY_DATA_SQL)?;
    ctx.sql("VACUUM ANALYZE data")?;
    step(&format!("  done in {:.1}s", t.elapsed().as_secs_f64()));
    Ok(())
}

impl KanaryCost {
    /// Rows of the targets table.
    pub fn targets(&self, o: &mut String) {
        let (n, i) = (&self.no_index, &self.index);
        let _ = writeln!(
            o,
            "| `rules/kanary.yaml` server time per cycle, 1M rows, no index | ≤ 2.2 s and ≤ the peers' SQL ({:.2} s) | {:.2} s | {} |",
            n.peer.mean_ms / 1000.0,
            n.ours.mean_ms / 1000.0,
            mark(n.ours.mean_ms <= 2200.0 && n.ours.mean_ms <= n.peer.mean_ms)
        );
        let _ = writeln!(
            o,
            "| the same with `examples/kanary/indexes.sql` | ≤ 100 ms | {:.1} ms | {} |",
            i.ours.mean_ms,
            mark(i.ours.mean_ms <= 100.0)
        );
    }

    pub fn render(&self, o: &mut String) {
        let _ = writeln!(o, "\n## 6. The Kanary query on 1,000,000 rows\n");
        let _ = writeln!(
            o,
            "Kanary's `data` table, 1,000,000 rows of the 24 targets of `rules/kanary.yaml` (5 % another test, 5 % another \
             repository). Execution time from pg_stat_statements, mean of {RUNS} runs after one warm-up (min–max). \
             The peers' SQL is `examples/bench/peers/kanary_signal.sql`, the one set-based statement every peer runs. \
             `--once` is one real cycle of the release binary on `rules/kanary.yaml`.\n"
        );
        let _ = writeln!(o, "| index | statement | server ms per cycle | min–max ms | rows | seq scan of `data` |");
        let _ = writeln!(o, "|---|---|---:|---:|---:|---|");
        for (label, s) in [("none", &self.no_index), ("`examples/kanary/indexes.sql`", &self.index)] {
            for (name, q) in [("`rules/kanary.yaml`", &s.ours), ("peers' `kanary_signal.sql`", &s.peer)] {
                let _ = writeln!(
                    o,
                    "| {label} | {name} | {:.1} | {:.1}–{:.1} | {} | {} |",
                    q.mean_ms,
                    q.min_ms,
                    q.max_ms,
                    q.rows,
                    if q.seq_scan { "yes" } else { "no" }
                );
            }
            let c = &s.cycle;
            let _ = writeln!(
                o,
                "| {label} | `sql-signal-exporter --once` | {:.1} ({} statement(s)) | {:.0} ms wall, whole process | | {} |",
                c.server_ms,
                c.statements,
                c.wall_ms,
                if c.ok { "cycle ok" } else { "the rule FAILED" }
            );
        }
        let _ = writeln!(
            o,
            "\nThe Go Kanary exporter: 63 statements a minute, ~45 s of each 60 s cycle in sequential scans."
        );
    }
}
