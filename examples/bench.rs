//! The performance benchmark: the exporter against the physical limit, in one command.
//!
//! ```sh
//! cargo run --release --example bench
//! ```
//!
//! It builds the release binary, starts a throwaway PostgreSQL (with `pg_stat_statements`) and a
//! private nginx, and measures side by side, in one run:
//!
//! 1. scrapes: `wrk` on `/metrics` at ~100, ~10,000 and ~100,000 series against nginx serving the
//!    identical bytes as a static file, plain and with `Accept-Encoding: gzip` (nginx `gzip_static`
//!    with the exporter's own gzipped bytes: both sides serve bytes compressed once);
//! 2. scrapes while a rule's query hangs in `pg_sleep`, against the same exporter idle;
//! 3. evaluation of a kanary-style signal over 1,000 targets × 1,000 rows: wall time from query start
//!    to snapshot swap, the query's own server time, peak RSS; and the server time of the real
//!    `rules/kanary.yaml` query on 1,000,000 rows of the Kanary `data` table;
//! 4. database cost: statements per rule per interval with 10 concurrent scrapers;
//! 5. footprint: idle RSS, RSS at 100k series, binary size, start-to-ready time.
//!
//! It prints a Markdown report (ratios first, raw figures after) to stdout and writes it to
//! `target/bench-results.md`. nginx and wrk come from Debian (`apt-get install -y nginx wrk`); run as
//! root, the bench installs them when missing. `TEMPDB_DIR=/tmp` keeps PostgreSQL's data off
//! `/dev/shm`. `BENCH_SECONDS` (default 4) sets the length of each wrk run, `BENCH_CONNECTIONS`
//! (default 16) its connections.

#[path = "bench/client.rs"]
mod client;
#[path = "bench/fixtures.rs"]
mod fixtures;
#[path = "bench/procs.rs"]
mod procs;
#[path = "bench/wrk.rs"]
mod wrk;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempdb::{TempPostgres, TempPostgresOptions};

use procs::{Exporter, Nginx};
use wrk::{Load, WrkResult};

/// Series sizes of the scrape benchmark.
const SIZES: [usize; 3] = [100, 10_000, 100_000];
/// Rounds of each wrk measurement (interleaved exporter/nginx, averaged).
const ROUNDS: usize = 2;
/// Hung runs of the hang benchmark (idle runs: one more).
const HANG_ROUNDS: usize = 3;
/// The series size of the hang benchmark.
const HANG_SERIES: usize = 10_000;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .compact()
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn step(msg: &str) {
    eprintln!("[bench] {msg}");
}

struct Ctx {
    rt: tokio::runtime::Runtime,
    _pg: TempPostgres,
    db: tokio_postgres::Client,
    dsn: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    load: Load,
}

impl Ctx {
    fn sql(&self, sql: &str) -> Result<()> {
        self.rt.block_on(self.db.batch_execute(sql)).map_err(|e| anyhow!("{}", describe(&e)))
    }

    fn query(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>> {
        self.rt.block_on(self.db.query(sql, &[])).map_err(|e| anyhow!("{}", describe(&e)))
    }

    fn write_rules(&self, name: &str, rules: &[String]) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("{name}.yaml"));
        fs::write(&path, fixtures::rules_file(rules))?;
        Ok(path)
    }

    fn spawn(&self, name: &str, rules: &Path) -> Result<Exporter> {
        self.spawn_with(name, rules, &[])
    }

    fn spawn_with(&self, name: &str, rules: &Path, env: &[(&str, &str)]) -> Result<Exporter> {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut all = vec![("BENCH_DSN", self.dsn.as_str())];
        all.extend_from_slice(env);
        Exporter::spawn(&self.bin, &["--rules", &rules.display().to_string()], &all, &log)
    }

    /// `pg_stat_statements` of the exporter's role: (query, calls, total ms, rows).
    fn exporter_statements(&self) -> Result<Vec<(String, i64, f64, i64)>> {
        let rows = self.query(
            "SELECT s.query, s.calls, s.total_exec_time, s.rows FROM pg_stat_statements s \
             JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'exporter' ORDER BY s.calls DESC",
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
    }

    fn reset_statements(&self) -> Result<()> {
        self.sql("SELECT pg_stat_statements_reset()")
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    sql_signal_exporter::source::postgres::describe_pg_error(e)
}

fn run() -> Result<()> {
    if cfg!(debug_assertions) {
        bail!("build the benchmark with optimisations: cargo run --release --example bench");
    }
    let started = Instant::now();
    let machine = Machine::probe();
    ensure_tools()?;
    let bin = build_release_binary()?;

    step("starting a throwaway PostgreSQL with pg_stat_statements …");
    let pg = TempPostgres::start_with(TempPostgresOptions { pg_stat_statements: true, ..Default::default() })?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let db = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg.superuser_dsn("demo"), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok::<_, tokio_postgres::Error>(client)
    })?;
    let dsn = pg.dsn("demo");
    let seconds = env_u32("BENCH_SECONDS", 4);
    let connections = env_u32("BENCH_CONNECTIONS", 16);
    let ctx = Ctx {
        rt,
        _pg: pg,
        db,
        dsn,
        bin,
        dir: tempfile::Builder::new().prefix("ssx-bench-").tempdir()?,
        load: Load { threads: 2, connections, seconds },
    };

    step("loading 1,000,000 rows of bench_runs (1,000 targets × 1,000 runs) …");
    let t = Instant::now();
    ctx.sql(fixtures::BENCH_RUNS_SQL)?;
    ctx.sql("VACUUM ANALYZE bench_runs")?;
    ctx.sql("VACUUM ANALYZE bench_ctl")?;
    step(&format!("  done in {:.1}s", t.elapsed().as_secs_f64()));
    if std::env::args().any(|a| a == "--hold") {
        return hold(&ctx);
    }

    let watch = procs::Watch::start();
    watch.take();
    let mut builds = Vec::new();
    let scrape = scrape_bench(&ctx)?;
    builds.push(("1. scrapes", watch.take()));
    let hang = hang_bench(&ctx)?;
    builds.push(("2. hang", watch.take()));
    let cost = db_cost_bench(&ctx)?;
    builds.push(("4. database cost", watch.take()));
    let eval = eval_bench(&ctx)?;
    builds.push(("3. evaluation", watch.take()));

    step("loading 1,000,000 rows of the Kanary data table …");
    let t = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ctx.sql(&fs::read_to_string(root.join("examples/kanary/schema.sql"))?)?;
    ctx.sql(fixtures::KANARY_DATA_SQL)?;
    ctx.sql("VACUUM ANALYZE data")?;
    step(&format!("  done in {:.1}s", t.elapsed().as_secs_f64()));
    watch.take();
    let kanary = kanary_bench(&ctx)?;
    builds.push(("3./4. kanary.yaml", watch.take()));
    let footprint = footprint_bench(&ctx, &scrape)?;
    builds.push(("5. footprint", watch.take()));

    let machine_after = Machine::probe();
    let report = Report {
        machine,
        machine_after,
        load: ctx.load,
        scrape,
        hang,
        cost,
        eval,
        kanary,
        footprint,
        builds,
        total: started.elapsed(),
    };
    let text = report.render();
    print!("{text}");
    let out = target_dir().join("bench-results.md");
    fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    step(&format!("report written to {} ({:.0}s in all)", out.display(), started.elapsed().as_secs_f64()));
    Ok(())
}

/// `--hold`: keeps the database up with the benchmark's rules files written, for profiling by hand.
fn hold(ctx: &Ctx) -> Result<()> {
    let mut files = Vec::new();
    for n in SIZES {
        files.push(ctx.write_rules(&format!("serve-{n}"), &[fixtures::serve_rule("serve", n / 3, "10m")])?);
    }
    files.push(ctx.write_rules("eval-lateral", &[fixtures::kanary_style_rule("lateral", false, "3s", "2s")])?);
    files.push(ctx.write_rules("eval-full", &[fixtures::kanary_style_rule("full", true, "1m", "50s")])?);
    println!("export BENCH_DSN='{}'", ctx.dsn);
    for f in &files {
        println!("{} --rules {}", ctx.bin.display(), f.display());
    }
    step("holding the database until Ctrl-C …");
    ctx.rt.block_on(tokio::signal::ctrl_c())?;
    Ok(())
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(default)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(program).exists()
}

/// nginx and wrk from Debian's packages; installed when missing and we are root.
fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = ["nginx", "wrk"].into_iter().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = "apt-get update && apt-get install -y nginx wrk";
    let root = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if !root {
        bail!("{} missing; install with: sudo sh -c '{cmd}'", missing.join(" and "));
    }
    step(&format!("{} missing; running: {cmd}", missing.join(" and ")));
    let ok = Command::new("sh").args(["-c", cmd]).env("DEBIAN_FRONTEND", "noninteractive").status()?.success();
    if !ok || !["nginx", "wrk"].iter().all(|p| have(p)) {
        bail!("could not install nginx and wrk; install them with: {cmd}");
    }
    Ok(())
}

/// Builds (if stale) and returns `target/release/sql-signal-exporter`.
fn build_release_binary() -> Result<PathBuf> {
    let bin = target_dir().join("release/sql-signal-exporter");
    step("building the release binary (cargo build --release --bin sql-signal-exporter) …");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "sql-signal-exporter"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ if bin.exists() => step("  the build failed; measuring the existing binary"),
        _ => bail!("cannot build the release binary"),
    }
    Ok(bin)
}

// ---- 1. scrapes ---------------------------------------------------------------------------------

struct Pair {
    ours: WrkResult,
    nginx: WrkResult,
}

impl Pair {
    fn throughput_ratio(&self) -> f64 {
        self.ours.rps / self.nginx.rps
    }
}

struct ScrapeRow {
    wanted: usize,
    series: usize,
    plain_bytes: usize,
    /// Size of the gzipped body, when the exporter gzips.
    gz_bytes: Option<usize>,
    plain: Pair,
    gzip: Pair,
    rss_kib: u64,
    peak_rss_kib: u64,
}

fn count_series(body: &[u8]) -> usize {
    body.split(|&b| b == b'\n').filter(|l| !l.is_empty() && l[0] != b'#').count()
}

fn mean(results: &[WrkResult]) -> WrkResult {
    let n = results.len() as f64;
    WrkResult {
        rps: results.iter().map(|r| r.rps).sum::<f64>() / n,
        p50_ms: results.iter().map(|r| r.p50_ms).sum::<f64>() / n,
        p99_ms: results.iter().map(|r| r.p99_ms).sum::<f64>() / n,
        requests: results.iter().map(|r| r.requests).sum(),
        failures: results.iter().map(|r| r.failures).sum(),
    }
}

fn wrk_checked(url: &str, load: Load, gzip: bool) -> Result<WrkResult> {
    let r = wrk::run(url, load, gzip)?;
    if r.failures > 0 {
        bail!("wrk saw {} failed requests on {url}", r.failures);
    }
    Ok(r)
}

fn scrape_bench(ctx: &Ctx) -> Result<Vec<ScrapeRow>> {
    let nginx_dir = ctx.dir.path().join("nginx");
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let nginx = Nginx::start(&nginx_dir, workers)?;
    let mut rows = Vec::new();
    for wanted in SIZES {
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
        for _ in 0..ROUNDS {
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

struct HangResult {
    series: usize,
    idle: WrkResult,
    hung: WrkResult,
    /// The pg_sleep query was running from before each hung run to after it.
    hung_throughout: bool,
}

fn hang_bench(ctx: &Ctx) -> Result<HangResult> {
    step(&format!("scrapes while a query hangs (~{HANG_SERIES} series) …"));
    ctx.sql("UPDATE bench_ctl SET hang_seconds = 0")?;
    let rules =
        ctx.write_rules("hang", &[fixtures::serve_rule("serve", HANG_SERIES / 3, "10m"), fixtures::hang_rule()])?;
    let mut ex = ctx.spawn("hang", &rules)?;
    ex.wait_ready(Duration::from_secs(120))?;
    let series = count_series(&client::get(ex.addr, "/metrics", &[])?.body);
    let url = ex.url("/metrics");
    wrk_checked(&url, Load { seconds: 1, ..ctx.load }, false)?;
    let hanging = "SELECT extract(epoch FROM query_start)::float8 FROM pg_stat_activity \
                   WHERE application_name = 'sql-signal-exporter' AND state = 'active' AND query LIKE '%pg_sleep%'";
    // Idle and hung runs alternate, idle first and last, so drift in the machine's load hits both.
    let (mut idle, mut hung, mut throughout) = (vec![wrk_checked(&url, ctx.load, false)?], Vec::new(), true);
    for round in 0..HANG_ROUNDS {
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

fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
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

// ---- 4. database cost ---------------------------------------------------------------------------

struct CostRow {
    rule: &'static str,
    statements: i64,
    evaluations: f64,
}

struct CostResult {
    seconds: f64,
    interval: f64,
    scrapes: u64,
    rules: Vec<CostRow>,
    /// Statements not of a rule (per connection: `SHOW server_version_num`).
    other_statements: i64,
    other_text: Vec<String>,
}

/// The value of a series in an exposition, by its full text before the value.
fn series_value(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn db_cost_bench(ctx: &Ctx) -> Result<CostResult> {
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

struct EvalRow {
    name: &'static str,
    rows: f64,
    /// First evaluation: connecting included.
    cold_ms: f64,
    /// Later evaluations (median), when measured.
    warm_ms: Option<f64>,
    /// EXPLAIN ANALYZE planning + execution time of the same statement.
    server_ms: f64,
    /// pg_stat_statements mean_exec_time of the exporter's executions (includes sending rows).
    stat_ms: f64,
    peak_rss_kib: u64,
    up: f64,
}

fn eval_bench(ctx: &Ctx) -> Result<Vec<EvalRow>> {
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
fn rendered(ctx: &Ctx, rules: &Path, name: &str) -> Result<(String, Vec<Vec<String>>)> {
    std::env::set_var("BENCH_DSN", &ctx.dsn);
    let set = sql_signal_exporter::serve::app::load_rules(&[rules.to_path_buf()]).map_err(|d| anyhow!("{d}"))?;
    let rule = set.rules.iter().find(|r| r.name == name).context("rule not loaded")?;
    let version: i64 = ctx.query("SHOW server_version_num")?[0].get::<_, String>(0).parse()?;
    let sql = sql_signal_exporter::rules::template::render_query(rule, version).map_err(|e| anyhow!("{e}"))?;
    let params = rule.bindings().columns();
    Ok((sql, params))
}

/// EXPLAIN (ANALYZE) of a rule's statement, run twice (the first warms the cache): planning +
/// execution milliseconds of the second, and the plan.
fn explain(ctx: &Ctx, sql: &str, params: &[Vec<String>]) -> Result<(f64, serde_json::Value)> {
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

fn explain_ms(ctx: &Ctx, rules: &Path, name: &str) -> Result<f64> {
    let (sql, params) = rendered(ctx, rules, name)?;
    Ok(explain(ctx, &sql, &params)?.0)
}

/// Runs the exporter in-process and times its evaluations from query start to snapshot swap.
/// Evaluation k starts at `start + k × interval` (the scheduler's grid).
fn evaluate_in_process(
    ctx: &Ctx,
    rules: &Path,
    name: &str,
    evaluations: usize,
    interval: f64,
) -> Result<(f64, Option<f64>, f64, f64)> {
    std::env::set_var("BENCH_DSN", &ctx.dsn);
    let set = sql_signal_exporter::serve::app::load_rules(&[rules.to_path_buf()]).map_err(|d| anyhow!("{d}"))?;
    let t0 = Instant::now();
    let exporter = ctx.rt.block_on(sql_signal_exporter::serve::app::Exporter::start(vec![rules.to_path_buf()], &set));
    let mut swaps = Vec::new();
    let mut last = exporter.store.load();
    let until = t0 + Duration::from_secs_f64(interval * evaluations as f64 + 120.0);
    while swaps.len() < evaluations && Instant::now() < until {
        let now = exporter.store.load();
        if !Arc::ptr_eq(&now, &last) && now.ready {
            swaps.push(t0.elapsed().as_secs_f64());
            last = now;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let text = String::from_utf8(exporter.metrics.render())?;
    ctx.rt.block_on(exporter.scheduler.shutdown(Duration::from_secs(5)));
    if swaps.len() < evaluations {
        bail!("only {} of {evaluations} evaluations finished", swaps.len());
    }
    if series_value(&text, &format!("sql_signal_exporter_rule_up{{rule=\"{name}\"}}")) != Some(1.0) {
        bail!("the rule's evaluation failed:\n{text}");
    }
    let rows = series_value(&text, &format!("sql_signal_exporter_rule_rows{{rule=\"{name}\"}}")).unwrap_or(f64::NAN);
    let body = String::from_utf8_lossy(&exporter.store.load().body).into_owned();
    let up = body.lines().filter(|l| l.starts_with(&format!("{name}_up{{")) && l.ends_with(" 1")).count() as f64;
    let cold = swaps[0] * 1000.0;
    let mut warm: Vec<f64> =
        swaps.iter().enumerate().skip(1).map(|(k, s)| (s - k as f64 * interval) * 1000.0).collect();
    warm.sort_by(f64::total_cmp);
    Ok((cold, warm.get(warm.len() / 2).copied(), rows, up))
}

// ---- 3b/4b. the real rules/kanary.yaml on 1M rows -------------------------------------------------

struct KanaryResult {
    explain_ms: f64,
    seq_scan: bool,
    rows_scanned: f64,
    cycle_statements: i64,
    cycle_server_ms: f64,
    cycle_wall_ms: f64,
    cycle_ok: bool,
}

fn plan_nodes(plan: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    if let Some(kind) = plan["Node Type"].as_str() {
        let rows = plan["Actual Rows"].as_f64().unwrap_or(0.0) * plan["Actual Loops"].as_f64().unwrap_or(1.0);
        out.push((format!("{kind} {}", plan["Relation Name"].as_str().unwrap_or("")), rows));
    }
    if let Some(children) = plan["Plans"].as_array() {
        for c in children {
            plan_nodes(c, out);
        }
    }
}

fn kanary_bench(ctx: &Ctx) -> Result<KanaryResult> {
    step("rules/kanary.yaml on 1,000,000 rows: EXPLAIN ANALYZE …");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("rules/kanary.yaml");
    std::env::set_var("CONNECTION_STRING", &ctx.dsn);
    let set = sql_signal_exporter::serve::app::load_rules(std::slice::from_ref(&rules)).map_err(|d| anyhow!("{d}"))?;
    let rule = set.rules.iter().find(|r| r.name == "kanary").context("no kanary rule in rules/kanary.yaml")?;
    let version: i64 = ctx.query("SHOW server_version_num")?[0].get::<_, String>(0).parse()?;
    let sql = sql_signal_exporter::rules::template::render_query(rule, version).map_err(|e| anyhow!("{e}"))?;
    let params = rule.bindings().columns();
    let (explain_ms, plan) = explain(ctx, &sql, &params)?;
    let mut nodes = Vec::new();
    plan_nodes(&plan[0]["Plan"], &mut nodes);
    let scans: Vec<&(String, f64)> = nodes.iter().filter(|(k, _)| k.contains("Scan data")).collect();
    let seq_scan = scans.iter().any(|(k, _)| k.contains("Seq Scan"));
    let rows_scanned = scans.iter().map(|(_, r)| r).sum();
    step(&format!("  {explain_ms:.0} ms; scans of data: {scans:?}"));

    step("rules/kanary.yaml on 1,000,000 rows: one real cycle (sql-signal-exporter --once) …");
    ctx.reset_statements()?;
    let t = Instant::now();
    let out = Command::new(&ctx.bin)
        .args(["--once", "--log.level", "error", "--rules", &rules.display().to_string()])
        .env("CONNECTION_STRING", &ctx.dsn)
        .output()?;
    let cycle_wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cycle_ok = out.status.success() || stdout.contains("kanary_up{");
    let st = ctx.exporter_statements()?;
    let cycle_statements = st.iter().filter(|s| !s.0.to_ascii_lowercase().starts_with("show")).map(|s| s.1).sum();
    let cycle_server_ms = st.iter().filter(|s| !s.0.to_ascii_lowercase().starts_with("show")).map(|s| s.2).sum();
    step(&format!(
        "  {cycle_statements} statement(s), {cycle_server_ms:.0} ms on the server, {cycle_wall_ms:.0} ms in all"
    ));
    Ok(KanaryResult { explain_ms, seq_scan, rows_scanned, cycle_statements, cycle_server_ms, cycle_wall_ms, cycle_ok })
}

// ---- 5. footprint -------------------------------------------------------------------------------

struct Footprint {
    binary_bytes: u64,
    stripped_bytes: Option<u64>,
    ready_ms: Vec<f64>,
    idle_rss_kib: u64,
    idle_peak_kib: u64,
    rss_100k_kib: u64,
    peak_100k_kib: u64,
    /// Over several evaluations of a 100k-series rule, with scrapes in between.
    reeval_rss_kib: u64,
    reeval_peak_kib: u64,
    reevaluations: f64,
    /// The same with `MALLOC_ARENA_MAX=1`.
    one_arena_rss_kib: u64,
    one_arena_peak_kib: u64,
    /// Idle RSS split into private memory and mapped file pages (mostly the binary's code).
    idle_anon_kib: u64,
    idle_file_kib: u64,
}

fn footprint_bench(ctx: &Ctx, scrape: &[ScrapeRow]) -> Result<Footprint> {
    step("footprint: start-to-ready, idle RSS, binary size …");
    let rules = ctx.write_rules("idle", &[fixtures::serve_rule("serve", 33, "1m")])?;
    let mut ready_ms = Vec::new();
    let (mut idle_rss_kib, mut idle_peak_kib, mut idle_anon_kib, mut idle_file_kib) = (0, 0, 0, 0);
    for i in 0..5 {
        let mut ex = ctx.spawn("idle", &rules)?;
        ready_ms.push(ex.wait_ready(Duration::from_secs(60))?.as_secs_f64() * 1000.0);
        if i == 4 {
            for _ in 0..100 {
                client::get(ex.addr, "/metrics", &[])?;
            }
            std::thread::sleep(Duration::from_millis(200));
            idle_rss_kib = ex.rss_kib();
            idle_peak_kib = ex.peak_rss_kib();
            idle_anon_kib = procs::proc_status_kib(ex.pid(), "RssAnon").unwrap_or(0);
            idle_file_kib = procs::proc_status_kib(ex.pid(), "RssFile").unwrap_or(0);
        }
    }
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
    let wanted = SIZES[SIZES.len() - 1];
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
    })
}

// ---- the report ---------------------------------------------------------------------------------

struct Machine {
    nproc: usize,
    mem_gib: f64,
    cpu: String,
    loadavg: String,
    rustc: usize,
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| "unknown".into());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let loadavg = fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let rustc = Command::new("pgrep")
            .args(["-c", "rustc"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            mem_gib: mem_kib / 1024.0 / 1024.0,
            cpu,
            loadavg,
            rustc,
        }
    }
}

struct Report {
    machine: Machine,
    machine_after: Machine,
    load: Load,
    scrape: Vec<ScrapeRow>,
    hang: HangResult,
    cost: CostResult,
    eval: Vec<EvalRow>,
    kanary: KanaryResult,
    footprint: Footprint,
    /// The most `rustc` processes seen running beside each section.
    builds: Vec<(&'static str, usize)>,
    total: Duration,
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✅ met"
    } else {
        "❌ not met"
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1000 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

impl Report {
    fn render(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(o, "# sql-signal-exporter benchmark\n");
        let _ = writeln!(
            o,
            "Machine: {} × {} ({} CPUs by nproc), {:.0} GiB RAM. Load average {} at the start, {} at the end; \
             {} rustc processes running at the start, {} at the end. One run of `cargo run --release --example bench`, {:.0} s.\n",
            m.nproc,
            m.cpu,
            m.nproc,
            m.mem_gib,
            m.loadavg,
            self.machine_after.loadavg,
            m.rustc,
            self.machine_after.rustc,
            self.total.as_secs_f64()
        );

        let busy: Vec<String> =
            self.builds.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{s} ({n} rustc)")).collect();
        let _ = writeln!(
            o,
            "Other builds running during the sections: {}.\n",
            if busy.is_empty() { "none".to_string() } else { busy.join(", ") }
        );
        let _ = writeln!(o, "## Targets\n");
        let _ = writeln!(o, "| what | target | measured | |");
        let _ = writeln!(o, "|---|---|---|---|");
        for r in &self.scrape {
            for (enc, pair) in [("plain", &r.plain), ("gzip", &r.gzip)] {
                let ratio = pair.throughput_ratio();
                let note = if enc == "gzip" && r.gz_bytes.is_none() { " (exporter sent identity)" } else { "" };
                let _ = writeln!(
                    o,
                    "| `/metrics` throughput vs nginx, {} series, {enc}{note} | ≥ 0.80× | {ratio:.2}× | {} |",
                    size_label(r.wanted),
                    mark(ratio >= 0.8)
                );
            }
        }
        let hang_ratio = self.hang.hung.p99_ms / self.hang.idle.p99_ms;
        let _ = writeln!(
            o,
            "| p99 while a query hangs / idle p99 | ≤ 1.20× | {hang_ratio:.2}× | {} |",
            mark(hang_ratio <= 1.2)
        );
        for r in &self.cost.rules {
            let per = r.statements as f64 / r.evaluations.max(1.0);
            let intervals = self.cost.seconds / self.cost.interval;
            let ok = r.statements as f64 == r.evaluations && r.evaluations <= intervals.ceil() + 1.0;
            let _ = writeln!(
                o,
                "| statements per interval, rule `{}`, 10 scrapers | exactly 1 | {per:.2} ({} statements, {} evaluations in {:.1} intervals) | {} |",
                r.rule,
                r.statements,
                r.evaluations,
                intervals,
                mark(ok)
            );
        }
        for e in &self.eval {
            let wall = e.warm_ms.unwrap_or(e.cold_ms);
            let beyond = wall - e.server_ms;
            let _ = writeln!(
                o,
                "| 1M-row evaluation ({}) beyond the query's server time | ≤ 1 s | {:.3} s ({:.3} s wall − {:.3} s server) | {} |",
                eval_label(e.name),
                beyond / 1000.0,
                wall / 1000.0,
                e.server_ms / 1000.0,
                mark(beyond <= 1000.0)
            );
        }
        let f = &self.footprint;
        let peak = f.peak_100k_kib.max(f.reeval_peak_kib);
        let _ = writeln!(
            o,
            "| peak RSS at 100k series (over {} evaluations, scraped) | ≤ 64 MiB | {:.1} MiB | {} |",
            f.reevaluations,
            mib(peak),
            mark(peak <= 64 * 1024)
        );
        let _ = writeln!(
            o,
            "| idle RSS | ≤ 10 MiB | {:.1} MiB | {} |",
            mib(f.idle_rss_kib),
            mark(f.idle_rss_kib <= 10 * 1024)
        );

        let l = self.load;
        let _ = writeln!(o, "\n## 1. Scrapes: exporter vs nginx serving the same bytes\n");
        let _ = writeln!(
            o,
            "`wrk -t{} -c{} -d{}s --latency` on loopback, {ROUNDS} interleaved runs each (means), after a 1 s warm-up. \
             nginx {} workers (one per CPU, as the exporter's runtime has one thread per CPU), `sendfile`, no access log; \
             its `/metrics` file is the exporter's body fetched once (self-metrics included). gzip: nginx `gzip_static` \
             serves the exporter's own gzipped bytes from a `.gz` file, so both sides serve bytes compressed once.\n",
            l.threads,
            l.connections,
            l.seconds,
            self.machine.nproc
        );
        let _ = writeln!(o, "| series | encoding | body bytes | ours req/s | nginx req/s | ratio | ours p50 ms | nginx p50 ms | ours p99 ms | nginx p99 ms |");
        let _ = writeln!(o, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.scrape {
            for (enc, pair, bytes) in [("plain", &r.plain, Some(r.plain_bytes)), ("gzip", &r.gzip, r.gz_bytes)] {
                let _ = writeln!(
                    o,
                    "| {} | {enc} | {} | {:.0} | {:.0} | {:.2}× | {:.3} | {:.3} | {:.3} | {:.3} |",
                    r.series,
                    bytes.map(|b| b.to_string()).unwrap_or_else(|| "(identity)".into()),
                    pair.ours.rps,
                    pair.nginx.rps,
                    pair.throughput_ratio(),
                    pair.ours.p50_ms,
                    pair.nginx.p50_ms,
                    pair.ours.p99_ms,
                    pair.nginx.p99_ms
                );
            }
        }

        let h = &self.hang;
        let _ = writeln!(o, "\n## 2. Scrapes while a query hangs\n");
        let _ = writeln!(
            o,
            "{} series; a second rule (interval 10s, timeout 9s) runs `pg_sleep(60)`, measured while it was in `pg_sleep` \
             ({}), against the same process idle; {HANG_ROUNDS} hung runs alternating with {} idle runs (means).\n",
            h.series,
            if h.hung_throughout { "it was, from before each run to after it" } else { "NOT for the whole of every run" },
            HANG_ROUNDS + 1
        );
        let _ = writeln!(o, "| state | req/s | p50 ms | p99 ms |");
        let _ = writeln!(o, "|---|---:|---:|---:|");
        for (name, r) in [("idle", &h.idle), ("query hanging", &h.hung)] {
            let _ = writeln!(o, "| {name} | {:.0} | {:.3} | {:.3} |", r.rps, r.p50_ms, r.p99_ms);
        }

        let _ = writeln!(o, "\n## 3. Evaluation at scale\n");
        let _ = writeln!(
            o,
            "A kanary-style signal over 1,000 declared targets of a 1,000,000-row table (1,000 runs each, index on \
             `(target, start DESC)`), window 3. Wall time runs from query start to the snapshot swap (in-process, \
             polled every 0.2 ms); cold includes opening the connection, warm is the median of later evaluations. \
             Server time is `EXPLAIN (ANALYZE)` planning + execution of the same statement; pg_stat_statements' mean \
             also counts the time to send the rows. Peak RSS is `VmHWM` of the release binary after its first evaluation.\n"
        );
        let _ = writeln!(o, "| query | rows to the exporter | cold ms | warm ms | server ms (EXPLAIN) | server ms (pg_stat_statements) | peak RSS MiB | targets up |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for e in &self.eval {
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {} |",
                eval_label(e.name),
                e.rows,
                e.cold_ms,
                e.warm_ms.map(|w| format!("{w:.0}")).unwrap_or_else(|| "-".into()),
                e.server_ms,
                e.stat_ms,
                mib(e.peak_rss_kib),
                e.up
            );
        }
        let k = &self.kanary;
        let _ = writeln!(
            o,
            "\nThe real `rules/kanary.yaml` query (its LIKE join) on 1,000,000 rows of the Kanary `data` table \
             (24 targets): `EXPLAIN (ANALYZE)` {:.0} ms, {} of `data` ({:.0} rows read).",
            k.explain_ms,
            if k.seq_scan { "sequential scan" } else { "no sequential scan" },
            k.rows_scanned
        );

        let c = &self.cost;
        let _ = writeln!(o, "\n## 4. Database cost\n");
        let _ = writeln!(
            o,
            "Two rules at a 2 s interval for {:.1} s while 10 concurrent scrapers made {} scrapes \
             (`wrk -c10`); statements from `pg_stat_statements` of the exporter's role.\n",
            c.seconds, c.scrapes
        );
        let _ = writeln!(o, "| rule | statements | evaluations | statements per evaluation |");
        let _ = writeln!(o, "|---|---:|---:|---:|");
        for r in &c.rules {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.2} |",
                r.rule,
                r.statements,
                r.evaluations,
                r.statements as f64 / r.evaluations.max(1.0)
            );
        }
        let _ = writeln!(
            o,
            "\nOther statements (once per new connection, not per interval): {}.",
            if c.other_text.is_empty() { "none".to_string() } else { c.other_text.join(", ") }
        );
        let _ = writeln!(
            o,
            "\nOne `rules/kanary.yaml` cycle on the 1M-row data set (`sql-signal-exporter --once`): {} statement(s), \
             {:.0} ms of server time (pg_stat_statements), {:.0} ms wall for the whole process{}. \
             The Go Kanary exporter: 63 statements a minute, ~45 s of each 60 s cycle in sequential scans.",
            k.cycle_statements,
            k.cycle_server_ms,
            k.cycle_wall_ms,
            if k.cycle_ok { "" } else { " (the rule FAILED)" }
        );

        let _ = writeln!(o, "\n## 5. Footprint\n");
        let _ = writeln!(o, "| what | value |");
        let _ = writeln!(o, "|---|---:|");
        let _ = writeln!(
            o,
            "| release binary | {:.1} MiB{} |",
            f.binary_bytes as f64 / 1048576.0,
            f.stripped_bytes.map(|s| format!(" ({:.1} MiB stripped)", s as f64 / 1048576.0)).unwrap_or_default()
        );
        let median = f.ready_ms.get(f.ready_ms.len() / 2).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            o,
            "| start to ready (spawn → `/-/ready` 200, one ~100-series rule), median of {} | {median:.0} ms (min {:.0}, max {:.0}) |",
            f.ready_ms.len(),
            f.ready_ms.first().unwrap_or(&f64::NAN),
            f.ready_ms.last().unwrap_or(&f64::NAN)
        );
        let _ = writeln!(
            o,
            "| idle RSS (~100 series, after 100 scrapes) | {:.1} MiB (peak {:.1}): {:.1} MiB private, {:.1} MiB mapped files (the binary's code, libc) |",
            mib(f.idle_rss_kib),
            mib(f.idle_peak_kib),
            mib(f.idle_anon_kib),
            mib(f.idle_file_kib)
        );
        let _ = writeln!(
            o,
            "| RSS at 100k series, one evaluation, after the scrape runs | {:.1} MiB (peak {:.1}) |",
            mib(f.rss_100k_kib),
            mib(f.peak_100k_kib)
        );
        let _ = writeln!(
            o,
            "| RSS at 100k series, {} evaluations 3 s apart, scraped plain and gzip between them | {:.1} MiB (peak {:.1}) |",
            f.reevaluations,
            mib(f.reeval_rss_kib),
            mib(f.reeval_peak_kib)
        );
        let _ = writeln!(
            o,
            "| the same with `MALLOC_ARENA_MAX=1` (one glibc malloc arena) | {:.1} MiB (peak {:.1}) |",
            mib(f.one_arena_rss_kib),
            mib(f.one_arena_peak_kib)
        );
        o
    }
}

fn eval_label(name: &str) -> &'static str {
    if name == "full" {
        "all 1M rows, judged in the exporter"
    } else {
        "LATERAL … LIMIT 3 per target (index)"
    }
}
