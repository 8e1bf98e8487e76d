//! The Markdown report: the targets first, then each section's raw figures.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::capacity::Capacity;
use crate::evaluation::{CostResult, EvalRow};
use crate::footprint::{Footprint, IDLE_EVALUATIONS, IDLE_INTERVAL};
use crate::kanary::KanaryCost;
use crate::peer_bench::PeerBench;
use crate::scrape::{HangResult, ScrapeRow};
use crate::wrk::Load;

pub struct Machine {
    pub nproc: usize,
    pub mem_gib: f64,
    pub cpu: String,
    pub loadavg: String,
    pub rustc: usize,
}

impl Machine {
    pub fn probe() -> Machine {
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

pub struct Report {
    pub machine: Machine,
    pub machine_after: Machine,
    pub load: Load,
    pub scale: crate::Scale,
    pub scrape: Vec<ScrapeRow>,
    pub hang: HangResult,
    pub cost: CostResult,
    pub eval: Vec<EvalRow>,
    pub kanary: KanaryCost,
    pub peers: PeerBench,
    pub capacity: Capacity,
    pub footprint: Footprint,
    pub memory: crate::memory::Memory,
    /// The most `rustc` processes seen running beside each section.
    pub builds: Vec<(&'static str, usize)>,
    pub total: Duration,
}

pub fn mark(ok: bool) -> &'static str {
    if ok {
        "✅ met"
    } else {
        "❌ not met"
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn size_label(n: usize) -> String {
    match n {
        n if n >= 1000 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

impl Report {
    pub fn render(&self) -> String {
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
        self.kanary.targets(&mut o);
        let _ = writeln!(
            o,
            "| every peer's Kanary series equal ours | equal | {} | {} |",
            if self.peers.equal() { "equal" } else { "DIFFERENT (section 7)" },
            mark(self.peers.equal())
        );
        self.capacity.targets(&mut o);
        self.memory.targets(&mut o);

        let l = self.load;
        let _ = writeln!(o, "\n## 1. Scrapes: exporter vs nginx serving the same bytes\n");
        let _ = writeln!(
            o,
            "`wrk -t{} -c{} -d{}s --latency` on loopback, {} interleaved runs each (means), after a 1 s warm-up. \
             nginx {} workers (one per CPU, as the exporter's runtime has one thread per CPU), `sendfile`, no access log; \
             its `/metrics` file is the exporter's body fetched once (self-metrics included). gzip: nginx `gzip_static` \
             serves the exporter's own gzipped bytes from a `.gz` file, so both sides serve bytes compressed once.\n",
            l.threads,
            l.connections,
            l.seconds,
            self.scale.rounds,
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
             ({}), against the same process idle; {} hung runs alternating with {} idle runs (means).\n",
            h.series,
            if h.hung_throughout { "it was, from before each run to after it" } else { "NOT for the whole of every run" },
            self.scale.hang_rounds,
            self.scale.hang_rounds + 1
        );
        let _ = writeln!(o, "| state | req/s | p50 ms | p99 ms |");
        let _ = writeln!(o, "|---|---:|---:|---:|");
        for (name, r) in [("idle", &h.idle), ("query hanging", &h.hung)] {
            let _ = writeln!(o, "| {name} | {:.0} | {:.3} | {:.3} |", r.rps, r.p50_ms, r.p99_ms);
        }

        let _ = writeln!(o, "\n## 3. Evaluation at scale\n");
        let _ = writeln!(
            o,
            "A kanary-style signal over 1,000 declared targets of a {}-row table ({} runs each, index on \
             `(target, start DESC)`), window 3. Wall time runs from query start to the snapshot swap (in-process, \
             polled every 0.2 ms); cold includes opening the connection, warm is the median of later evaluations. \
             Server time is `EXPLAIN (ANALYZE)` planning + execution of the same statement; pg_stat_statements' mean \
             also counts the time to send the rows. Peak RSS is `VmHWM` of the release binary after its first evaluation.\n",
            1000 * self.scale.runs_per_target,
            self.scale.runs_per_target
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
            "| idle RSS (~100 series every {}, after {} evaluations and 100 scrapes) | {:.1} MiB (peak {:.1}): {:.1} MiB private, {:.1} MiB mapped files, of which {:.1} MiB the binary's code and read-only data and {:.1} MiB libc and the other libraries |",
            IDLE_INTERVAL,
            IDLE_EVALUATIONS,
            mib(f.idle_rss_kib),
            mib(f.idle_peak_kib),
            mib(f.idle_anon_kib),
            mib(f.idle_file_kib),
            mib(f.idle_binary_kib),
            mib(f.idle_file_kib.saturating_sub(f.idle_binary_kib))
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
        self.kanary.render(&mut o);
        self.peers.render(&mut o);
        self.capacity.render(&mut o);
        self.memory.render(&mut o);
        o
    }
}

pub fn eval_label(name: &str) -> &'static str {
    if name == "full" {
        "all 1M rows, judged in the exporter"
    } else {
        "LATERAL … LIMIT 3 per target (index)"
    }
}
