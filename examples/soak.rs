//! A soak run (not in CI): `cargo run --release --example soak` (`SOAK_SECONDS`, default 600).
//!
//! The release exporter serves two signals, one through a TCP proxy (`tests/support/proxy.rs`) that
//! stalls at random, one direct; PostgreSQL restarts every 30–60 s; the rules are reloaded every 20 s,
//! alternating a valid and an invalid file; 50 threads scrape without pause. Every scrape must answer
//! 200 within 100 ms with a parseable exposition in which `error=1` implies `up=1`; RSS and open file
//! descriptors must grow less than 5 % after a warm-up of a fifth of the run.

#[path = "../tests/integration/harness/proxy.rs"]
mod proxy;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempdb::{free_loopback_port, TempPostgres};

fn signal(name: &str, database: &str) -> String {
    format!(
        "  - name: {name}\n    database: {database}\n    interval: 2s\n    timeout: 1500ms\n    labels: [target]\n    \
         targets: [{{ target: [a, b] }}]\n    window: 1\n    values: {{ ok: integer }}\n    success: \"ok == 1\"\n    \
         metrics:\n      up: {{ name: {name}_up, help: \"Probe.\" }}\n      error: {{ name: {name}_error, help: \"Failed.\" }}\n    \
         query: \"SELECT t.target, 1 AS ok FROM unnest($1::text[]) AS t(target)\"\n"
    )
}

fn proc_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

/// Problems of one exposition: unparseable lines, `error=1` with `up` other than 1.
fn check(body: &str) -> Option<String> {
    let mut values = std::collections::BTreeMap::new();
    for line in body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { return Some(format!("bad line {line}")) };
        let Ok(v) = value.parse::<f64>() else { return Some(format!("bad value {line}")) };
        values.insert(series.to_string(), v);
    }
    for (series, v) in &values {
        if let Some(rest) = series.strip_prefix("direct_error").or_else(|| series.strip_prefix("proxied_error")) {
            let rule = if series.starts_with("direct") { "direct" } else { "proxied" };
            let target = rest.split("target=\"").nth(1).and_then(|t| t.split('"').next()).unwrap_or("");
            let up = values.get(&format!("{rule}_up{{target=\"{target}\"}}"));
            if *v == 1.0 && up != Some(&1.0) {
                return Some(format!("{series} = 1 but up = {up:?}"));
            }
        }
    }
    None
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/sql-signal-exporter");
    let mut pg = TempPostgres::start().expect("PostgreSQL");
    let proxy = proxy::Proxy::start(format!("127.0.0.1:{}", pg.port()).parse().expect("address"));
    let direct = pg.dsn("demo");
    let proxied = direct.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.addr.port()));
    let dir = tempfile::tempdir().expect("dir");
    let rules = dir.path().join("rules.yaml");
    let valid = format!(
        "version: 1\ndatabases:\n  direct: {{dsn: \"${{DIRECT}}\"}}\n  proxied: {{dsn: \"${{PROXIED}}\"}}\nsignals:\n{}{}",
        signal("direct", "direct"),
        signal("proxied", "proxied")
    );
    std::fs::write(&rules, &valid).expect("write");
    let port = free_loopback_port().expect("port");
    let mut child = Command::new(bin)
        .args(["--rules", rules.to_str().unwrap_or_default(), "--web.enable-lifecycle"])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .env("DIRECT", &direct)
        .env("PROXIED", &proxied)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run target/release/sql-signal-exporter (cargo build --release first)");
    let pid = child.id();
    let url = format!("http://127.0.0.1:{port}/metrics");
    std::thread::sleep(Duration::from_secs(3));

    let stats = Stats::default();
    let scrapers: Vec<_> = (0..50).map(|_| scraper(url.clone(), stats.clone())).collect();

    let started = Instant::now();
    let warm = Duration::from_secs(seconds / 5);
    let (mut next_restart, mut next_reload, mut next_stall) =
        (Duration::from_secs(30), Duration::from_secs(20), Duration::from_secs(10));
    let (mut reloads, mut restarts, mut stalls, mut invalid) = (0, 0, 0, false);
    let mut baseline = None;
    let (mut rss_max, mut fds_max) = (0, 0);
    let agent = ureq::agent();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        let now = started.elapsed();
        let jitter = (now.as_millis() % 30) as u64;
        if now >= next_restart {
            let _ = pg.restart();
            restarts += 1;
            next_restart = now + Duration::from_secs(30 + jitter);
        }
        if now >= next_reload {
            invalid = !invalid;
            std::fs::write(
                &rules,
                if invalid { "version: 1\nsignals:\n  - name: x\n    windw: 3\n" } else { valid.as_str() },
            )
            .expect("write");
            let _ = agent.post(&format!("http://127.0.0.1:{port}/-/reload")).send_empty();
            reloads += 1;
            next_reload = now + Duration::from_secs(20);
        }
        if now >= next_stall {
            proxy.stall();
            std::thread::sleep(Duration::from_millis(500 + jitter * 100));
            proxy.heal();
            stalls += 1;
            next_stall = now + Duration::from_secs(7 + jitter / 3);
        }
        let (rss, open) = (proc_field(pid, "VmRSS:"), fds(pid));
        if now >= warm && baseline.is_none() {
            baseline = Some((rss, open));
        }
        if baseline.is_some() {
            rss_max = rss_max.max(rss);
            fds_max = fds_max.max(open);
        }
    }
    stats.stop.store(true, Ordering::SeqCst);
    for s in scrapers {
        let _ = s.join();
    }
    let alive = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    println!(
        "soak: {seconds} s, {restarts} PostgreSQL restarts, {reloads} reloads (alternating invalid), {stalls} stalls"
    );
    let (rss0, fds0) = baseline.unwrap_or((1, 1));
    report(&stats, alive, (rss0, rss_max), (fds0, fds_max));
}

/// What the scrapers count, shared with them.
#[derive(Clone, Default)]
struct Stats {
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    slow: Arc<AtomicU64>,
    worst: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
}

/// A thread that scrapes `url` until told to stop, checking every body.
fn scraper(url: String, stats: Stats) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        while !stats.stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let result = agent.get(&url).call().map(|mut r| (r.status().as_u16(), r.body_mut().read_to_string()));
            let took = started.elapsed();
            stats.worst.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
            stats.scrapes.fetch_add(1, Ordering::Relaxed);
            if took > Duration::from_millis(100) {
                stats.slow.fetch_add(1, Ordering::Relaxed);
            }
            let problem = match result {
                Ok((200, Ok(body))) => check(&body),
                Ok((status, _)) => Some(format!("status {status}")),
                Err(e) => Some(format!("scrape failed: {e}")),
            };
            if let Some(p) = problem {
                stats.failures.lock().unwrap_or_else(|p| p.into_inner()).push(p);
            }
        }
    })
}

/// The soak's findings: scrapes, failures, and RSS and fds after warm-up against their maximum.
fn report(stats: &Stats, alive: bool, rss: (u64, u64), fds: (u64, u64)) {
    let ((rss0, rss_max), (fds0, fds_max)) = (rss, fds);
    let failures = stats.failures.lock().unwrap_or_else(|p| p.into_inner());
    let (slow, worst) = (&stats.slow, &stats.worst);
    let n = stats.scrapes.load(Ordering::Relaxed);
    println!(
        "scrapes: {n}, over 100 ms: {} ({:.3} %), worst {} ms, failures: {}",
        slow.load(Ordering::Relaxed),
        100.0 * slow.load(Ordering::Relaxed) as f64 / n.max(1) as f64,
        worst.load(Ordering::Relaxed) / 1000,
        failures.len()
    );
    for f in failures.iter().take(5) {
        println!("  {f}");
    }
    println!(
        "exporter alive at the end: {alive}; RSS after warm-up {rss0} KiB, max {rss_max} KiB ({:+.1} %); fds {fds0}, max {fds_max} ({:+.1} %)",
        100.0 * (rss_max as f64 / rss0.max(1) as f64 - 1.0),
        100.0 * (fds_max as f64 / fds0.max(1) as f64 - 1.0)
    );
}
