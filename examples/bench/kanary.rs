//! Section 6: the Kanary query's cost on Kanary `data` tables of four shapes (`fixtures::KanaryShape`):
//! the one the bench used to measure alone and three it did not choose (targets rare among 1,000
//! clusters, targets with too few runs or none, the newest rows all another test's or repository's).
//!
//! On each, without an index: `rules/kanary.yaml`'s statement, the peers' set-based SQL
//! (`examples/bench/peers/kanary_signal.sql`) and one sequential scan that reads the jsonb the rule
//! needs (each run's cluster, repository and directory), in one process and as PostgreSQL parallelises
//! it. Then with `examples/kanary/indexes.sql` and the rule's `use_run_group_index: true`. On the dense
//! table, one real `--once` cycle of the exporter in each state.
//!
//! Server time is pg_stat_statements' execution time (planning is a few ms and not tracked), measured
//! after one warm-up run so every statement sees the same warm cache.

use sql_signal_exporter::rules::server::{Flavour, ServerIdentity};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use crate::fixtures::KanaryShape;
use crate::{describe, mark, step, Ctx};

/// Timed runs of each statement, after one warm-up.
const RUNS: usize = 3;
/// The rule may cost at most this many times one sequential scan that reads the jsonb it needs.
const SCAN_BOUND: f64 = 1.2;
/// The rule's bound with `examples/kanary/indexes.sql`, ms.
const INDEX_BOUND_MS: f64 = 100.0;
/// The rule's switch between its two ways of listing run groups.
const INDEX_VAR_OFF: &str = "use_run_group_index: false";
const INDEX_VAR_ON: &str = "use_run_group_index: true";
/// The index `examples/kanary/indexes.sql` creates.
const INDEX_NAME: &str = "data_kanary_runs_by_cluster";
/// One sequential scan of the test's rows that reads what the rule must read of each: its cluster,
/// repository and directory (the physical floor of a rule that has no index to use). Three `->>` are
/// the cheapest way to read them: reading the document once with `jsonb_to_record` costs ~2.6× as much
/// CPU (1M rows of ~360-byte documents, stored inline: nothing to detoast or decompress).
const SCAN_SQL: &str = "SELECT count(*) FROM data d WHERE d.horreum_testid = 372 \
     AND d.label_values ->> '.metadata.env.MEMBER_CLUSTER' IS NOT NULL \
     AND d.label_values ->> '.parameters.options.ComponentRepoUrl' IS NOT NULL \
     AND d.label_values ->> '__parameters_options_PipelineRepoTemplatingSourceDir' IS NOT NULL";

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
    /// Executions of the rule's statement (the only statement that reads `label_values`).
    pub statements: i64,
    /// The exporter's other statements, counted apart: one per new connection (the server-identity
    /// query templates' `server` object is read from), not per cycle; `(calls, text)`.
    pub others: Vec<(i64, String)>,
    /// Server time of the rule's statement.
    pub server_ms: f64,
    pub wall_ms: f64,
    pub ok: bool,
}

/// Every figure of one table shape.
pub struct ShapeCost {
    pub shape: KanaryShape,
    pub rows: usize,
    pub ours: QueryCost,
    pub peer: QueryCost,
    /// [`SCAN_SQL`] in one process.
    pub scan: QueryCost,
    /// [`SCAN_SQL`] as PostgreSQL plans it (parallel workers allowed).
    pub scan_parallel: QueryCost,
    /// Ours with `examples/kanary/indexes.sql` and `use_run_group_index: true`.
    pub indexed: QueryCost,
}

impl ShapeCost {
    pub fn of_scan(&self) -> f64 {
        self.ours.mean_ms / self.scan.mean_ms
    }

    pub fn met(&self) -> bool {
        self.ours.mean_ms <= self.peer.mean_ms && self.of_scan() <= SCAN_BOUND && self.indexed.mean_ms <= INDEX_BOUND_MS
    }
}

pub struct KanaryCost {
    pub shapes: Vec<ShapeCost>,
    /// `--once` on the dense table, no index.
    pub cycle_scan: Cycle,
    /// `--once` on the dense table with the index and `use_run_group_index: true`.
    pub cycle_index: Cycle,
}

/// How the rule lists run groups.
#[derive(Clone, Copy, PartialEq)]
pub enum RuleVariant {
    /// `rules/kanary.yaml` as shipped: one sequential scan.
    Scan,
    /// `use_run_group_index: true`, for a table with `examples/kanary/indexes.sql`'s index.
    Index,
}

/// The rules file of a variant: `rules/kanary.yaml` itself, or a copy with the index switched on.
pub fn rules_file(ctx: &Ctx, variant: RuleVariant) -> Result<PathBuf> {
    let shipped = ctx.root.join("rules/kanary.yaml");
    if variant == RuleVariant::Scan {
        return Ok(shipped);
    }
    let text = fs::read_to_string(&shipped)?;
    if !text.contains(INDEX_VAR_OFF) {
        bail!("rules/kanary.yaml has no `{INDEX_VAR_OFF}` to switch on");
    }
    let path = ctx.dir.path().join("kanary-indexed.yaml");
    fs::write(&path, text.replace(INDEX_VAR_OFF, INDEX_VAR_ON))?;
    Ok(path)
}

/// The rule's statement as the exporter sends it, with its bind parameters.
fn our_statement(ctx: &Ctx, variant: RuleVariant) -> Result<(String, Vec<Vec<String>>)> {
    let rules = rules_file(ctx, variant)?;
    std::env::set_var("CONNECTION_STRING", &ctx.dsn);
    let set = sql_signal_exporter::app::load_rules(std::slice::from_ref(&rules)).map_err(|d| anyhow!("{d}"))?;
    let rule = set.rules.iter().find(|r| r.name == "kanary").context("no kanary rule in rules/kanary.yaml")?;
    let server =
        &ctx.query("SELECT current_setting('server_version_num')::bigint, current_setting('server_version')")?[0];
    let server = ServerIdentity::reported(Flavour::Postgresql, server.get(1), server.get(0));
    let sql = sql_signal_exporter::rules::template::render_query(rule, &server).map_err(|e| anyhow!("{e}"))?;
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

/// [`SCAN_SQL`] with parallel workers off: the one scan a query without them makes.
fn measure_serial_scan(ctx: &Ctx) -> Result<QueryCost> {
    ctx.sql("SET max_parallel_workers_per_gather = 0")?;
    let cost = measure(ctx, SCAN_SQL, &[]);
    ctx.sql("RESET max_parallel_workers_per_gather")?;
    cost
}

fn cycle(ctx: &Ctx, variant: RuleVariant) -> Result<Cycle> {
    let rules = rules_file(ctx, variant)?;
    ctx.reset_statements()?;
    let t = Instant::now();
    let out = Command::new(&ctx.bin)
        .args(["--once", "--log.level", "error", "--rules", &rules.display().to_string()])
        .env("CONNECTION_STRING", &ctx.dsn)
        .output()?;
    let wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("kanary_up{");
    let st = ctx.exporter_statements()?;
    let (rule, others): (Vec<_>, Vec<_>) = st.iter().partition(|s| s.0.contains("label_values"));
    Ok(Cycle {
        statements: rule.iter().map(|s| s.1).sum(),
        others: others.iter().map(|s| (s.1, s.0.split_whitespace().collect::<Vec<_>>().join(" "))).collect(),
        server_ms: rule.iter().map(|s| s.2).sum(),
        wall_ms,
        ok,
    })
}

/// Loads `rows` rows of `shape` with no index on `data`.
pub fn load_shape(ctx: &Ctx, shape: KanaryShape, rows: usize) -> Result<()> {
    step(&format!("loading {rows} rows of the Kanary data table, shape {} …", shape.name()));
    let t = Instant::now();
    ctx.sql(&format!("DROP INDEX IF EXISTS {INDEX_NAME}"))?;
    ctx.sql(&shape.data_sql(rows))?;
    ctx.sql("VACUUM ANALYZE data")?;
    step(&format!("  done in {:.1}s", t.elapsed().as_secs_f64()));
    Ok(())
}

/// Creates `examples/kanary/indexes.sql`'s index.
pub fn create_index(ctx: &Ctx) -> Result<()> {
    step("creating examples/kanary/indexes.sql's index …");
    ctx.sql(&fs::read_to_string(ctx.root.join("examples/kanary/indexes.sql"))?)?;
    ctx.sql("ANALYZE data")
}

fn shape_cost(ctx: &Ctx, shape: KanaryShape, rows: usize) -> Result<ShapeCost> {
    load_shape(ctx, shape, rows)?;
    step(&format!("Kanary query cost, shape {}, no index: ours, the peers' SQL, one scan …", shape.name()));
    let (sql, params) = our_statement(ctx, RuleVariant::Scan)?;
    let ours = measure(ctx, &sql, &params)?;
    let peer = measure(ctx, &fs::read_to_string(ctx.root.join("examples/bench/peers/kanary_signal.sql"))?, &[])?;
    let scan = measure_serial_scan(ctx)?;
    let scan_parallel = measure(ctx, SCAN_SQL, &[])?;
    create_index(ctx)?;
    let (sql, params) = our_statement(ctx, RuleVariant::Index)?;
    let indexed = measure(ctx, &sql, &params)?;
    if indexed.rows != ours.rows {
        bail!(
            "shape {}: the rule returns {} rows with the index and {} without",
            shape.name(),
            indexed.rows,
            ours.rows
        );
    }
    let c = ShapeCost { shape, rows, ours, peer, scan, scan_parallel, indexed };
    step(&format!(
        "  ours {:.0} ms ({:.2}× one scan of {:.0} ms; parallel scan {:.0} ms), peers' SQL {:.0} ms; with the index {:.1} ms",
        c.ours.mean_ms,
        c.of_scan(),
        c.scan.mean_ms,
        c.scan_parallel.mean_ms,
        c.peer.mean_ms,
        c.indexed.mean_ms
    ));
    Ok(c)
}

/// Measures every shape of `rows` rows; the dense one last, whose index stays for the sections after
/// this one.
pub fn bench(ctx: &Ctx, rows: usize) -> Result<KanaryCost> {
    ctx.sql(&fs::read_to_string(ctx.root.join("examples/kanary/schema.sql"))?)?;
    let mut shapes = Vec::new();
    for shape in KanaryShape::ALL {
        shapes.push(shape_cost(ctx, shape, rows)?);
    }
    ctx.sql(&format!("DROP INDEX IF EXISTS {INDEX_NAME}"))?;
    let cycle_scan = cycle(ctx, RuleVariant::Scan)?;
    create_index(ctx)?;
    let cycle_index = cycle(ctx, RuleVariant::Index)?;
    Ok(KanaryCost { shapes, cycle_scan, cycle_index })
}

impl KanaryCost {
    /// Rows of the targets table: one per shape and state.
    pub fn targets(&self, o: &mut String) {
        for s in &self.shapes {
            let _ = writeln!(
                o,
                "| `rules/kanary.yaml` server time per cycle, no index; `{}` table, {} rows | ≤ the peers' SQL ({:.2} s) and ≤ {SCAN_BOUND}× one scan reading the jsonb ({:.2} s) | {:.2} s ({:.2}× the scan, {:.2}× the peers') | {} |",
                s.shape.name(),
                s.rows,
                s.peer.mean_ms / 1000.0,
                s.scan.mean_ms / 1000.0,
                s.ours.mean_ms / 1000.0,
                s.of_scan(),
                s.ours.mean_ms / s.peer.mean_ms,
                mark(s.ours.mean_ms <= s.peer.mean_ms && s.of_scan() <= SCAN_BOUND)
            );
        }
        for s in &self.shapes {
            let _ = writeln!(
                o,
                "| the same with `examples/kanary/indexes.sql` and `use_run_group_index: true`; `{}` table | ≤ {INDEX_BOUND_MS} ms | {:.1} ms | {} |",
                s.shape.name(),
                s.indexed.mean_ms,
                mark(s.indexed.mean_ms <= INDEX_BOUND_MS)
            );
        }
    }

    pub fn render(&self, o: &mut String) {
        let rows = self.shapes.first().map(|s| s.rows).unwrap_or(0);
        let _ = writeln!(o, "\n## 6. The Kanary query on {rows} rows, four table shapes\n");
        let _ = writeln!(o, "Kanary's `data` table, {rows} rows of each shape:\n");
        for s in &self.shapes {
            let _ = writeln!(o, "- `{}`: {}", s.shape.name(), s.shape.describe());
        }
        let _ = writeln!(
            o,
            "\nExecution time from pg_stat_statements, mean of {RUNS} runs after one warm-up (min–max). The peers' SQL is \
             `examples/bench/peers/kanary_signal.sql`, the one set-based statement every peer runs. \"One scan\" reads each \
             run's cluster, repository and directory once, in one process (and, in brackets, as PostgreSQL parallelises it); \
             the rule cannot use parallel workers (`array_agg` has no partial form before PostgreSQL 16).\n"
        );
        let _ = writeln!(
            o,
            "| table | ours, no index ms | peers' SQL ms | one scan ms (parallel) | ours ÷ scan | ours ÷ peers' | ours with the index ms | index used | rows | met |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---|---:|---|");
        for s in &self.shapes {
            let _ = writeln!(
                o,
                "| `{}` | {:.0} ({:.0}–{:.0}) | {:.0} | {:.0} ({:.0}) | {:.2}× | {:.2}× | {:.1} ({:.1}–{:.1}) | {} | {} | {} |",
                s.shape.name(),
                s.ours.mean_ms,
                s.ours.min_ms,
                s.ours.max_ms,
                s.peer.mean_ms,
                s.scan.mean_ms,
                s.scan_parallel.mean_ms,
                s.of_scan(),
                s.ours.mean_ms / s.peer.mean_ms,
                s.indexed.mean_ms,
                s.indexed.min_ms,
                s.indexed.max_ms,
                if s.indexed.seq_scan { "no (a seq scan)" } else { "yes" },
                s.ours.rows,
                mark(s.met())
            );
        }
        let _ =
            writeln!(o, "\nOne real cycle (`sql-signal-exporter --once`, the release binary) on the `dense` table:\n");
        let _ = writeln!(
            o,
            "| state | the rule's statements | other statements (once per connection) | server ms, the rule's | wall ms, whole process | |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---|");
        for (label, c) in [("no index", &self.cycle_scan), ("index, `use_run_group_index: true`", &self.cycle_index)] {
            let _ = writeln!(
                o,
                "| {label} | {} | {} | {:.1} | {:.0} | {} |",
                c.statements,
                c.others.iter().map(|s| s.0).sum::<i64>(),
                c.server_ms,
                c.wall_ms,
                if c.ok { "cycle ok" } else { "the rule FAILED" }
            );
        }
        let others: Vec<String> =
            self.cycle_scan.others.iter().map(|(calls, text)| format!("{calls} × `{text}`")).collect();
        if !others.is_empty() {
            let _ = writeln!(
                o,
                "\nThe other statements are what each new connection asks once, not each cycle (a `--once` run \
                 opens one): the server's version, for templates' `server` object: {}.",
                others.join(", ")
            );
        }
        let _ = writeln!(
            o,
            "\nThe Go Kanary exporter: 63 statements a minute, ~45 s of each 60 s cycle in sequential scans."
        );
    }
}
