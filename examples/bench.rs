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
//! 5. footprint: idle RSS, RSS at 100k series, binary size, start-to-ready time;
//! 6. the Kanary query on 1,000,000 rows of Kanary's `data` table: `rules/kanary.yaml` against the
//!    peers' set-based SQL, without an index and with `examples/kanary/indexes.sql`;
//! 7. side by side with postgres_exporter, sql_exporter and query-exporter, all exporting the same
//!    Kanary signal and PostgreSQL families from the same database (their series checked equal);
//! 8. capacity: how many Kanary-shaped rules at 1m one instance carries.
//! 9. OpenMetrics against the text format: scrape throughput of the same series in both, as a ratio.
//! 11. MySQL rules: the MySQL Kanary example's evaluation against its bare statement, and statements
//!     per evaluation, on a throwaway MariaDB (`-- --mysql-only` runs this section alone).
//!
//! It prints a Markdown report (ratios first, raw figures after) to stdout and writes it to
//! `target/bench-results.md`. nginx, wrk and the two Go peers come from Debian (`apt-get install -y nginx
//! wrk prometheus-postgres-exporter prometheus-sql-exporter`); run as root, the bench installs them when
//! missing. query-exporter goes into a venv under `target/`. `TEMPDB_DIR=/tmp` keeps PostgreSQL's data off
//! `/dev/shm`. `BENCH_SECONDS` (default 4) sets the length of each wrk run, `BENCH_CONNECTIONS`
//! (default 16) its connections.

#[path = "bench/capacity.rs"]
mod capacity;
#[path = "bench/client.rs"]
mod client;
#[path = "bench/evaluation.rs"]
mod evaluation;
#[path = "bench/fixtures.rs"]
mod fixtures;
#[path = "bench/footprint.rs"]
mod footprint;
#[path = "bench/json_server.rs"]
mod json_server;
#[path = "bench/kanary.rs"]
mod kanary;
#[path = "bench/memory.rs"]
mod memory;
#[path = "bench/mysql.rs"]
mod mysql;
#[path = "bench/openmetrics.rs"]
mod openmetrics;
#[path = "bench/peer_bench.rs"]
mod peer_bench;
#[path = "bench/peers.rs"]
mod peers;
#[path = "bench/procs.rs"]
mod procs;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/scrape.rs"]
mod scrape;
#[path = "bench/wrk.rs"]
mod wrk;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempdb::{TempPostgres, TempPostgresOptions};

use procs::Exporter;
use report::{Machine, Report};
use wrk::Load;

pub use report::{mark, mib};

/// How big the bench runs: in full, or with `--short` every section once on small sizes, in a few
/// minutes, so CI (`.ci/run`) notices a change that breaks the bench. Short figures are not the
/// README's.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub short: bool,
    /// Series sizes of the scrape benchmark.
    pub sizes: [usize; 3],
    /// Rounds of each wrk measurement (interleaved exporter/nginx, averaged).
    pub rounds: usize,
    /// Hung runs of the hang benchmark (idle runs: one more).
    pub hang_rounds: usize,
    /// The series size of the hang benchmark.
    pub hang_series: usize,
    /// Runs per target of `bench_runs` (1,000 targets).
    pub runs_per_target: usize,
    /// Rows of each Kanary table shape.
    pub kanary_rows: usize,
    /// Rule counts the capacity section tries.
    pub capacity_steps: &'static [usize],
    /// How long the peers' database cost is watched.
    pub peer_window: Duration,
    /// Series of the memory section's rules.
    pub memory_series: usize,
    /// Rows of the memory section's 1M-row rules.
    pub memory_rows: usize,
    /// Seconds of each wrk run unless `BENCH_SECONDS` says otherwise.
    pub wrk_seconds: u32,
}

impl Scale {
    pub const FULL: Scale = Scale {
        short: false,
        sizes: [100, 10_000, 100_000],
        rounds: 2,
        hang_rounds: 3,
        hang_series: 10_000,
        runs_per_target: 1000,
        kanary_rows: 1_000_000,
        capacity_steps: &[24, 96, 384, 1536],
        peer_window: Duration::from_secs(60),
        memory_series: 100_000,
        memory_rows: 1_000_000,
        wrk_seconds: 4,
    };
    pub const SHORT: Scale = Scale {
        short: true,
        sizes: [100, 1_000, 10_000],
        rounds: 1,
        hang_rounds: 1,
        hang_series: 1_000,
        runs_per_target: 20,
        kanary_rows: 20_000,
        capacity_steps: &[4, 24],
        peer_window: Duration::from_secs(15),
        memory_series: 10_000,
        memory_rows: 20_000,
        wrk_seconds: 1,
    };
}

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

pub fn step(msg: &str) {
    eprintln!("[bench] {msg}");
}

pub struct Ctx {
    rt: tokio::runtime::Runtime,
    pg: TempPostgres,
    /// The repository (rules/, examples/).
    root: PathBuf,
    db: tokio_postgres::Client,
    dsn: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    load: Load,
    scale: Scale,
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

pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} (SQLSTATE {})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

fn run() -> Result<()> {
    if cfg!(debug_assertions) {
        bail!("build the benchmark with optimisations: cargo run --release --example bench");
    }
    if std::env::args().any(|a| a == "--mysql-only") {
        // Section 9 alone: it needs only MariaDB.
        print!("{}", mysql::bench(std::env::args().any(|a| a == "--short"))?.render());
        return Ok(());
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
    let scale = if std::env::args().any(|a| a == "--short") { Scale::SHORT } else { Scale::FULL };
    let seconds = env_u32("BENCH_SECONDS", scale.wrk_seconds);
    let connections = env_u32("BENCH_CONNECTIONS", 16);
    let ctx = Ctx {
        rt,
        pg,
        root: Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        db,
        dsn,
        bin,
        dir: tempfile::Builder::new().prefix("ssx-bench-").tempdir()?,
        load: Load { threads: 2, connections, seconds },
        scale,
    };

    if std::env::args().any(|a| a == "--kanary-only") {
        return kanary_only(&ctx);
    }
    if std::env::args().any(|a| a == "--memory-only") {
        let mut o = String::new();
        memory::bench(&ctx)?.render(&mut o);
        print!("{o}");
        return Ok(());
    }
    if std::env::args().any(|a| a == "--formats-only") {
        let mut o = String::new();
        openmetrics::bench(&ctx)?.render(&mut o);
        print!("{o}");
        return Ok(());
    }
    step(&format!("loading bench_runs (1,000 targets × {} runs) …", scale.runs_per_target));
    let t = Instant::now();
    ctx.sql(&fixtures::bench_runs_sql(scale.runs_per_target))?;
    ctx.sql("VACUUM ANALYZE bench_runs")?;
    ctx.sql("VACUUM ANALYZE bench_ctl")?;
    step(&format!("  done in {:.1}s", t.elapsed().as_secs_f64()));
    if std::env::args().any(|a| a == "--hold") {
        return hold(&ctx);
    }

    let watch = procs::Watch::start();
    watch.take();
    let mut builds = Vec::new();
    let scrape = scrape::scrape_bench(&ctx)?;
    builds.push(("1. scrapes", watch.take()));
    let formats = openmetrics::bench(&ctx)?;
    builds.push(("9. OpenMetrics", watch.take()));
    let hang = scrape::hang_bench(&ctx)?;
    builds.push(("2. hang", watch.take()));
    let cost = evaluation::db_cost_bench(&ctx)?;
    builds.push(("4. database cost", watch.take()));
    let eval = evaluation::eval_bench(&ctx)?;
    builds.push(("3. evaluation", watch.take()));

    watch.take();
    let kanary = kanary::bench(&ctx, scale.kanary_rows)?;
    builds.push(("6. Kanary query", watch.take()));
    let peers = peer_bench::bench(&ctx)?;
    builds.push(("7. peers", watch.take()));
    let capacity = capacity::bench(&ctx)?;
    builds.push(("8. capacity", watch.take()));
    let footprint = footprint::footprint_bench(&ctx, &scrape)?;
    builds.push(("5. footprint", watch.take()));
    let memory = memory::bench(&ctx)?;
    builds.push(("10. memory", watch.take()));
    let mysql = mysql::bench(scale.short)?;
    builds.push(("11. MySQL rules", watch.take()));

    let machine_after = Machine::probe();
    let report = Report {
        machine,
        machine_after,
        load: ctx.load,
        scale: ctx.scale,
        scrape,
        hang,
        cost,
        eval,
        kanary,
        peers,
        capacity,
        footprint,
        memory,
        builds,
        total: started.elapsed(),
    };
    let mut text = report.render();
    formats.render(&mut text);
    text.push_str(&mysql.render());
    print!("{text}");
    let out = target_dir().join("bench-results.md");
    fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    step(&format!("report written to {} ({:.0}s in all)", out.display(), started.elapsed().as_secs_f64()));
    if !report.peers.equal() {
        bail!("a peer's Kanary series differ from ours (section 7 of the report)");
    }
    Ok(())
}

/// `--hold`: keeps the database up with the benchmark's rules files written, for profiling by hand.
fn hold(ctx: &Ctx) -> Result<()> {
    let mut files = Vec::new();
    for n in ctx.scale.sizes {
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

/// `--kanary-only`: sections 6 to 8 alone (the Kanary query, the peers, capacity), to stdout.
fn kanary_only(ctx: &Ctx) -> Result<()> {
    let mut o = String::new();
    kanary::bench(ctx, ctx.scale.kanary_rows)?.render(&mut o);
    let peers = peer_bench::bench(ctx)?;
    peers.render(&mut o);
    capacity::bench(ctx)?.render(&mut o);
    print!("{o}");
    if !peers.equal() {
        bail!("a peer's Kanary series differ from ours");
    }
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

/// Programs the bench runs and the Debian packages that carry them.
const TOOLS: [(&str, &str); 4] = [
    ("nginx", "nginx"),
    ("wrk", "wrk"),
    ("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
    ("prometheus-sql-exporter", "prometheus-sql-exporter"),
];

/// nginx, wrk and the Go peers from Debian's packages; installed when missing and we are root.
fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = TOOLS.iter().filter(|(p, _)| !have(p)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    let root = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if !root {
        bail!("{} missing; install with: sudo sh -c '{cmd}'", missing.join(", "));
    }
    step(&format!("{} missing; running: {cmd}", missing.join(", ")));
    let ok = Command::new("sh").args(["-c", &cmd]).env("DEBIAN_FRONTEND", "noninteractive").status()?.success();
    if !ok || !TOOLS.iter().all(|(p, _)| have(p)) {
        bail!("could not install {}; install them with: {cmd}", missing.join(", "));
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
