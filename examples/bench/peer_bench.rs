//! Section 7: side by side with the peers. Ours (`rules/kanary.yaml` + `rules/postgres.yaml`),
//! postgres_exporter, sql_exporter and query-exporter, each configured from `examples/bench/peers/`
//! to export the same Kanary signal and PostgreSQL families from the same database (the 1M-row
//! Kanary table with its index), each connecting as its own role so pg_stat_statements tells their
//! database cost apart.
//!
//! Every peer's Kanary series must equal ours. For each: start to ready (spawn → a `/metrics` with
//! every Kanary series), RSS idle, the database cost of one minute scraped every 15 s (as one
//! Prometheus would), then `wrk` on `/metrics` and RSS under it. The exporters are started and
//! loaded one at a time; the minute of database cost is shared (the roles keep it apart).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::peers::{self, Kind, Peer};
use crate::procs::{proc_status_kib, Exporter};
use crate::scrape::count_series;
use crate::wrk::{self, Load};
use crate::{client, mib, step, Ctx};

/// How often each exporter is scraped in the database-cost window (`Scale::peer_window`).
const SCRAPE_EVERY: Duration = Duration::from_secs(15);
/// Series of the Kanary signal: 24 targets × (up + 2 error reasons).
const KANARY_SERIES: usize = 72;

pub struct Entry {
    pub name: &'static str,
    pub role: &'static str,
    pub ready_ms: f64,
    pub body_bytes: usize,
    pub series: usize,
    pub kanary_series: usize,
    /// Where its Kanary series differ from ours (empty: equal).
    pub diffs: Vec<String>,
    pub idle_rss_kib: u64,
    pub scraped_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub rps: f64,
    pub p99_ms: f64,
    pub failures: u64,
    pub statements_per_min: f64,
    pub server_ms_per_min: f64,
    /// Its costliest statements in the window: (calls, ms, first words).
    pub costliest: Vec<(i64, f64, String)>,
}

pub struct PeerBench {
    pub entries: Vec<Entry>,
    pub load: Load,
    /// How long the database cost was watched.
    pub window: Duration,
}

enum Running {
    Ours(Exporter),
    Peer(Box<Peer>),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Ours(e) => e.addr,
            Running::Peer(p) => p.addr,
        }
    }

    fn url(&self) -> String {
        match self {
            Running::Ours(e) => e.url("/metrics"),
            Running::Peer(p) => p.metrics_url(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Running::Ours(e) => e.pid(),
            Running::Peer(p) => p.pid(),
        }
    }
}

const OURS: (&str, &str) = ("sql-signal-exporter", "bench_ours");

fn role_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => "bench_postgres_exporter",
        Kind::Sql => "bench_sql_exporter",
        Kind::Query => "bench_query_exporter",
    }
}

/// Per (role, statement): (calls, execution ms) so far.
type Stats = BTreeMap<(String, String), (i64, f64)>;

fn role_stats(ctx: &Ctx) -> Result<Stats> {
    let rows = ctx.query(
        "SELECT r.rolname::text, s.query, sum(s.calls)::int8, sum(s.total_exec_time) FROM pg_stat_statements s \
         JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname LIKE 'bench\\_%' GROUP BY 1, 2",
    )?;
    Ok(rows.iter().map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3)))).collect())
}

/// A role's statements between two snapshots: (calls, ms, the statement's first words), costliest first.
fn role_delta(before: &Stats, after: &Stats, role: &str) -> Vec<(i64, f64, String)> {
    let mut out: Vec<(i64, f64, String)> = after
        .iter()
        .filter(|((r, _), _)| r == role)
        .map(|(k, (c1, t1))| {
            let (c0, t0) = before.get(k).copied().unwrap_or((0, 0.0));
            let words: Vec<&str> = k.1.split_whitespace().filter(|w| !w.starts_with("--")).take(8).collect();
            (c1 - c0, t1 - t0, words.join(" "))
        })
        .filter(|(c, _, _)| *c > 0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Polls `/metrics` of ours until it carries every Kanary series; the time from spawn.
fn wait_ours(ex: &mut Exporter, timeout: Duration) -> Result<Duration> {
    ex.wait_ready(timeout)?;
    let until = Instant::now() + timeout;
    loop {
        if let Ok(r) = client::get(ex.addr, "/metrics", &[]) {
            if peers::kanary_samples(&String::from_utf8_lossy(&r.body)).len() >= KANARY_SERIES {
                return Ok(ex.spawned.elapsed());
            }
        }
        if Instant::now() > until {
            bail!("our exporter did not show the Kanary series after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn bench(ctx: &Ctx) -> Result<PeerBench> {
    step("peers: installing query-exporter (venv under target/) if needed …");
    peers::install_query_exporter(&ctx.root)?;
    let mut sql = String::new();
    for role in [OURS.1].into_iter().chain(Kind::ALL.map(role_of)) {
        // The password is tempdb's generated hex, so it needs no quoting.
        sql.push_str(&format!("CREATE ROLE {role} LOGIN PASSWORD '{}' IN ROLE exporter;\n", ctx.pg.password()));
    }
    ctx.sql(&sql)?;
    let dsn = |role: &str| {
        format!("postgresql://{role}:{}@127.0.0.1:{}/demo?sslmode=disable", ctx.pg.password(), ctx.pg.port())
    };
    let work = ctx.dir.path().join("peers");
    std::fs::create_dir_all(&work)?;

    let mut running: Vec<(&'static str, &'static str, Running)> = Vec::new();
    let mut entries = Vec::new();
    let mut ours_kanary = BTreeMap::new();
    // Ours first: its series are the reference.
    {
        step("peers: starting ours (rules/kanary.yaml + rules/postgres.yaml) …");
        let log = work.join("ours.log");
        // The table has examples/kanary/indexes.sql's index (section 6 left it), so the rule uses it.
        let kanary = crate::kanary::rules_file(ctx, crate::kanary::RuleVariant::Index)?.display().to_string();
        let postgres = ctx.root.join("rules/postgres.yaml").display().to_string();
        let d = dsn(OURS.1);
        let mut ex = Exporter::spawn(
            &ctx.bin,
            &["--rules", &kanary, "--rules", &postgres],
            &[("CONNECTION_STRING", &d), ("DATABASE_URL", &d)],
            &log,
        )?;
        let ready = wait_ours(&mut ex, Duration::from_secs(120))?;
        running.push((OURS.0, OURS.1, Running::Ours(ex)));
        entries.push(first_look(&running[0].2, OURS, ready, &mut ours_kanary, true)?);
    }
    for kind in Kind::ALL {
        step(&format!("peers: starting {} …", kind.name()));
        let port = tempdb::free_loopback_port()?;
        let mut p = Peer::start(kind, &dsn(role_of(kind)), port, &work, &ctx.root)?;
        let ready = p.wait_ready(KANARY_SERIES, Duration::from_secs(180))?;
        running.push((kind.name(), role_of(kind), Running::Peer(Box::new(p))));
        let r = &running[running.len() - 1].2;
        entries.push(first_look(r, (kind.name(), role_of(kind)), ready, &mut ours_kanary, false)?);
    }

    let window = ctx.scale.peer_window;
    step(&format!("peers: {}s of database cost, each scraped every {}s …", window.as_secs(), SCRAPE_EVERY.as_secs()));
    let before = role_stats(ctx)?;
    let t0 = Instant::now();
    let mut k = 0u32;
    while t0.elapsed() < window {
        let at = SCRAPE_EVERY * k;
        if at < window {
            std::thread::sleep(at.saturating_sub(t0.elapsed()));
            for (_, _, r) in &running {
                client::get(r.addr(), "/metrics", &[])?;
            }
            k += 1;
        } else {
            std::thread::sleep(window.saturating_sub(t0.elapsed()));
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let after = role_stats(ctx)?;
    for e in &mut entries {
        let delta = role_delta(&before, &after, e.role);
        e.statements_per_min = delta.iter().map(|d| d.0).sum::<i64>() as f64 * 60.0 / seconds;
        e.server_ms_per_min = delta.iter().map(|d| d.1).sum::<f64>() * 60.0 / seconds;
        e.costliest = delta.into_iter().take(3).collect();
    }

    for (e, (name, _, r)) in entries.iter_mut().zip(&running) {
        step(&format!("peers: wrk on {name} …"));
        let url = r.url();
        wrk::run(&url, Load { seconds: 1, ..ctx.load }, false)?;
        let w = wrk::run(&url, ctx.load, false)?;
        e.rps = w.rps;
        e.p99_ms = w.p99_ms;
        e.failures = w.failures;
        e.scraped_rss_kib = proc_status_kib(r.pid(), "VmRSS").unwrap_or(0);
        e.peak_rss_kib = proc_status_kib(r.pid(), "VmHWM").unwrap_or(0);
        step(&format!(
            "  {:.0} req/s, p99 {:.2} ms, {} failures; RSS {} KiB (peak {}); {:.1} statements/min, {:.0} ms/min",
            e.rps, e.p99_ms, e.failures, e.scraped_rss_kib, e.peak_rss_kib, e.statements_per_min, e.server_ms_per_min
        ));
    }
    drop(running);
    Ok(PeerBench { entries, load: ctx.load, window })
}

/// Start to ready, the body, its Kanary series against ours, idle RSS after a few scrapes.
fn first_look(
    r: &Running,
    (name, role): (&'static str, &'static str),
    ready: Duration,
    ours: &mut BTreeMap<String, f64>,
    reference: bool,
) -> Result<Entry> {
    let body = client::get(r.addr(), "/metrics", &[])?.body;
    let kanary = peers::kanary_samples(&String::from_utf8_lossy(&body));
    if reference {
        *ours = kanary.clone();
    }
    let diffs = peers::differences(ours, &kanary);
    for _ in 0..5 {
        client::get(r.addr(), "/metrics", &[])?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss_kib = proc_status_kib(r.pid(), "VmRSS").context("no RSS")?;
    step(&format!(
        "  ready in {:.0} ms; {} bytes, {} Kanary series, {} differences from ours; idle RSS {idle_rss_kib} KiB",
        ready.as_secs_f64() * 1000.0,
        body.len(),
        kanary.len(),
        diffs.len()
    ));
    Ok(Entry {
        name,
        role,
        ready_ms: ready.as_secs_f64() * 1000.0,
        body_bytes: body.len(),
        series: count_series(&body),
        kanary_series: kanary.len(),
        diffs,
        idle_rss_kib,
        scraped_rss_kib: 0,
        peak_rss_kib: 0,
        rps: 0.0,
        p99_ms: 0.0,
        failures: 0,
        statements_per_min: 0.0,
        server_ms_per_min: 0.0,
        costliest: Vec::new(),
    })
}

impl PeerBench {
    /// Every peer's Kanary series equal ours, and ours are all there.
    pub fn equal(&self) -> bool {
        self.entries.iter().all(|e| e.diffs.is_empty() && e.kanary_series == KANARY_SERIES)
    }

    pub fn render(&self, o: &mut String) {
        let l = self.load;
        let _ = writeln!(o, "\n## 7. Side by side with the peers\n");
        let _ = writeln!(
            o,
            "Each exports the Kanary signal (ours: `rules/kanary.yaml` with `use_run_group_index: true`; the peers: `examples/bench/peers/kanary_signal.sql`) \
             and the PostgreSQL families of `rules/postgres.yaml`, from the same database (the `dense` Kanary table of section 6 with \
             `examples/kanary/indexes.sql`), each as its own role. Ready: spawn → the first `/metrics` with all {KANARY_SERIES} \
             Kanary series. Database cost: pg_stat_statements of the role over {} s while each exporter was scraped every {} s \
             (the exporters ran side by side, their roles keep the figures apart). `/metrics`: `wrk -t{} -c{} -d{}s`, one \
             exporter at a time. postgres_exporter runs its queries on every scrape (as shipped, no cache); \
             sql_exporter and query-exporter on their 1-minute schedule. Ratios: ours ÷ the best peer.\n",
            self.window.as_secs(),
            SCRAPE_EVERY.as_secs(),
            l.threads,
            l.connections,
            l.seconds
        );
        let names: Vec<&str> = self.entries.iter().map(|e| e.name).collect();
        let _ = writeln!(o, "| | {} | ours ÷ best peer |", names.join(" | "));
        let _ = writeln!(o, "|---|{}---:|", "---:|".repeat(names.len()));
        type Get = fn(&Entry) -> f64;
        let rows: [(&str, Get, bool, usize); 9] = [
            ("`/metrics` req/s", |e| e.rps, true, 0),
            ("`/metrics` p99 ms", |e| e.p99_ms, false, 2),
            ("RSS idle, MiB", |e| mib(e.idle_rss_kib), false, 1),
            ("RSS after the wrk run, MiB", |e| mib(e.scraped_rss_kib), false, 1),
            ("peak RSS (VmHWM), MiB", |e| mib(e.peak_rss_kib), false, 1),
            ("statements per minute", |e| e.statements_per_min, false, 1),
            ("server time per minute, ms", |e| e.server_ms_per_min, false, 1),
            ("start to ready, ms", |e| e.ready_ms, false, 0),
            ("`/metrics` body bytes", |e| e.body_bytes as f64, false, 0),
        ];
        for (label, get, higher_better, digits) in rows {
            let values: Vec<f64> = self.entries.iter().map(get).collect();
            let peers = values.iter().skip(1).copied();
            let best = if higher_better { peers.fold(f64::MIN, f64::max) } else { peers.fold(f64::MAX, f64::min) };
            let cells: Vec<String> = values.iter().map(|v| format!("{v:.digits$}")).collect();
            let ratio = if best > 0.0 { format!("{:.2}×", values[0] / best) } else { "–".into() };
            let _ = writeln!(o, "| {label} | {} | {ratio} |", cells.join(" | "));
        }
        let kanary: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                if e.diffs.is_empty() && e.kanary_series == KANARY_SERIES {
                    format!("{} ✅", e.kanary_series)
                } else {
                    format!("{} ❌ ({} differ)", e.kanary_series, e.diffs.len())
                }
            })
            .collect();
        let _ = writeln!(o, "| Kanary series, equal to ours | {} | |", kanary.join(" | "));
        let series: Vec<String> = self.entries.iter().map(|e| e.series.to_string()).collect();
        let _ = writeln!(o, "| series in all (own metrics included) | {} | |", series.join(" | "));
        let failures: u64 = self.entries.iter().map(|e| e.failures).sum();
        if failures > 0 {
            let per: Vec<String> = self.entries.iter().map(|e| format!("{} {}", e.name, e.failures)).collect();
            let _ = writeln!(o, "\nwrk failures (timeouts or non-2xx): {}.", per.join(", "));
        }
        let _ = writeln!(o, "\nWhere each one's server time went in the window (costliest statements):\n");
        for e in &self.entries {
            let top: Vec<String> =
                e.costliest.iter().map(|(c, ms, q)| format!("{ms:.1} ms in {c} × `{q} …`")).collect();
            let _ = writeln!(o, "- {}: {}", e.name, top.join("; "));
        }
        for e in self.entries.iter().filter(|e| !e.diffs.is_empty()) {
            let _ = writeln!(o, "\n{} differs from ours:\n```\n{}\n```", e.name, e.diffs.join("\n"));
        }
    }
}
