//! A network that stalls, drops, or a server that never answers the startup: the signal goes
//! fail-safe within the rule's timeout, other rules and scrapes carry on, and the exporter recovers
//! when the network heals. Also: a scrape during reloads sees each family once, even one that moves
//! from one rule to another. Real PostgreSQL, the real binary, a TCP proxy in between
//! (`tests/support/proxy.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::proxy::{Proxy, Silent};
use crate::harness::{assert_fail_safe, is_fail_safe, tool, Db, Exporter, Exposition, Signal};

fn signal(name: &str, database: &str, interval: &str, timeout: &str) -> String {
    format!(
        "  - name: {name}\n    database: {database}\n    interval: {interval}\n    timeout: {timeout}\n    \
         labels: [target]\n    targets: [{{ target: a }}]\n    window: 1\n    values: {{ ok: integer }}\n    \
         success: \"ok == 1\"\n    metrics:\n      up: {{ name: {name}_up, help: \"Probe.\" }}\n      \
         error: {{ name: {name}_error, help: \"Probe failed.\" }}\n    query: |\n      \
         SELECT t.target, 1 AS ok FROM unnest($1::text[]) AS t(target)\n"
    )
}

/// `up` and `error` of a signal's target `a`.
fn state(m: &Exposition, rule: &str) -> (Option<f64>, Option<f64>) {
    (
        m.value(&format!("{rule}_up{{target=\"a\"}}")),
        m.value(&format!("{rule}_error{{reason=\"{QUERY_FAILED}\",target=\"a\"}}")),
    )
}

const HEALTHY: (Option<f64>, Option<f64>) = (Some(1.0), Some(0.0));
/// The reason of a failed query.
const QUERY_FAILED: &str = "query_failed";

/// Whether `rule`, a [`signal`] with its one target, is fail-safe.
fn fail_safe(m: &Exposition, rule: &str) -> bool {
    is_fail_safe(m, &Signal::probe(rule, 1), QUERY_FAILED)
}

fn failures(m: &Exposition, rule: &str) -> f64 {
    ["error", "timeout"]
        .iter()
        .map(|r| {
            let series = format!("sql_signal_exporter_rule_evaluations_total{{result=\"{r}\",rule=\"{rule}\"}}");
            m.value(&series).unwrap_or(0.0)
        })
        .sum()
}

fn successes(m: &Exposition, rule: &str) -> f64 {
    m.value(&format!("sql_signal_exporter_rule_evaluations_total{{result=\"success\",rule=\"{rule}\"}}")).unwrap_or(0.0)
}

/// A scrape, timed; every scrape must answer fast whatever the databases do.
fn timed_metrics(ex: &Exporter) -> Exposition {
    let started = Instant::now();
    let m = ex.metrics();
    assert!(started.elapsed() < Duration::from_secs(2), "a scrape took {:?}", started.elapsed());
    m
}

#[test]
fn stalls_drops_and_silent_servers_go_fail_safe_alone_and_recover() {
    let db = Db::shared();
    let proxy = Proxy::start(format!("127.0.0.1:{}", db.server().port()).parse().unwrap());
    let silent = Silent::start();
    let direct = db.dsn();
    let proxied = direct.replace(&format!(":{}/", db.server().port()), &format!(":{}/", proxy.addr.port()));
    let hung = direct.replace(&format!(":{}/", db.server().port()), &format!(":{}/", silent.addr.port()));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let text = format!(
        "version: 1\ndatabases:\n  proxied:\n    dsn: \"${{PROXIED}}\"\n  direct:\n    dsn: \"${{DIRECT}}\"\n  \
         hung:\n    dsn: \"${{HUNG}}\"\n    connect_timeout: 1s\nsignals:\n{}{}{}",
        signal("via_proxy", "proxied", "2s", "1500ms"),
        signal("direct", "direct", "1s", "900ms"),
        signal("hung", "hung", "2s", "1500ms"),
    );
    std::fs::write(&rules, text).unwrap();
    let ex = Exporter::spawn(
        &["--rules", rules.to_str().unwrap()],
        &[("PROXIED", &proxied), ("DIRECT", &direct), ("HUNG", &hung)],
    );
    ex.wait_ready();
    ex.wait_until(Duration::from_secs(20), "both healthy", |e| {
        let m = e.metrics();
        state(&m, "via_proxy") == HEALTHY && state(&m, "direct") == HEALTHY
    });

    // A server that accepts TCP and never completes the startup: fail-safe, never "down".
    ex.wait_until(Duration::from_secs(10), "hung fail-safe", |e| fail_safe(&e.metrics(), "hung"));
    assert!(silent.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // Idle pool sessions carry TCP keepalives (the kernel shows a keepalive timer).
    if tool::program("ss", "apt-get install iproute2") {
        let ss = std::process::Command::new("ss").args(["-tnoH", "state", "established"]).output().unwrap();
        let ss = String::from_utf8_lossy(&ss.stdout);
        let to_proxy = format!("127.0.0.1:{}", proxy.addr.port());
        let ours: Vec<&str> = ss.lines().filter(|l| l.split_whitespace().nth(3) == Some(to_proxy.as_str())).collect();
        assert!(!ours.is_empty() && ours.iter().all(|l| l.contains("keepalive")), "sessions to the proxy: {ours:?}");
    }

    // A silent stall: noticed within the rule's timeout (plus its interval), fail-safe; the other
    // rule and the scrapes carry on.
    proxy.stall();
    let stalled_at = Instant::now();
    let direct_before = successes(&ex.metrics(), "direct");
    ex.wait_until(Duration::from_secs(10), "via_proxy fail-safe", |e| fail_safe(&timed_metrics(e), "via_proxy"));
    assert!(stalled_at.elapsed() < Duration::from_millis(2000 + 1500 + 1500), "took {:?}", stalled_at.elapsed());
    // It stays fail-safe, in every scrape, over two more failed evaluations.
    let failed = failures(&ex.metrics(), "via_proxy");
    ex.wait_until(Duration::from_secs(10), "two more failed evaluations of via_proxy", |e| {
        let m = timed_metrics(e);
        assert_fail_safe(&m, &Signal::probe("via_proxy", 1), QUERY_FAILED);
        failures(&m, "via_proxy") >= failed + 2.0
    });
    let m = timed_metrics(&ex);
    assert_eq!(state(&m, "direct"), HEALTHY, "{}", m.text);
    assert!(successes(&m, "direct") >= direct_before + 1.0, "the direct rule stopped: {}", m.text);

    // Healed: recovers within a few intervals.
    proxy.heal();
    ex.wait_until(Duration::from_secs(15), "via_proxy healthy again", |e| state(&e.metrics(), "via_proxy") == HEALTHY);

    // Every connection dropped: at most an evaluation or two fail, then healthy again.
    let before = successes(&ex.metrics(), "via_proxy");
    proxy.drop_connections();
    ex.wait_until(Duration::from_secs(15), "success after a drop", |e| {
        let m = e.metrics();
        successes(&m, "via_proxy") >= before + 2.0 && state(&m, "via_proxy") == HEALTHY
    });
    assert_fail_safe(&ex.metrics(), &Signal::probe("hung", 1), QUERY_FAILED);
}

/// Every family's `# TYPE` lines in one exposition, counted.
fn type_lines(text: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split_whitespace().next().unwrap_or_default().to_string();
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn scrapes_during_reloads_see_each_family_once_even_when_it_moves_between_rules() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    // The family `moved_up` (and `moved_error`) belongs to rule `one`, then to rule `two`.
    let version = |owner: &str, other: &str| {
        let a = signal("moved", "main", "1s", "900ms").replace("name: moved\n", &format!("name: {owner}\n"));
        let b = signal("other", "main", "1s", "900ms").replace("name: other\n", &format!("name: {other}\n"));
        format!("version: 1\ndatabases:\n  main:\n    dsn: \"${{TEST_DSN}}\"\nsignals:\n{a}{b}")
    };
    write(&rules, &version("one", "two"));
    let ex =
        Exporter::spawn(&["--rules", rules.to_str().unwrap(), "--web.enable-lifecycle"], &[("TEST_DSN", &db.dsn())]);
    ex.wait_ready();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let scraper = {
        let (stop, scrapes, url) = (stop.clone(), scrapes.clone(), ex.url("/metrics"));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let body = ureq::get(&url).call().expect("scrape").body_mut().read_to_string().expect("body");
                for (family, n) in type_lines(&body) {
                    assert_eq!(n, 1, "{family} appears {n} times:\n{body}");
                }
                let moved: Vec<&str> = body.lines().filter(|l| l.starts_with("moved_up")).collect();
                assert!(moved.len() <= 1, "moved_up twice: {moved:?}\n{body}");
                scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    for i in 0..20 {
        if scraper.is_finished() {
            break; // it failed: its panic is reported below
        }
        let text = if i % 2 == 0 { version("two", "one") } else { version("one", "two") };
        write(&rules, &text);
        let (status, body) = ex.post("/-/reload");
        assert_eq!(status, 200, "{body}");
        // Before the next reload: the reloaded rules serve both families, and the scraper has
        // scraped twice since this reload (so at least once after it).
        let before = scrapes.load(std::sync::atomic::Ordering::SeqCst);
        ex.wait_until(Duration::from_secs(10), "the reloaded rules' series, scraped twice", |e| {
            let (_, body) = e.get("/metrics");
            let scraped = scrapes.load(std::sync::atomic::Ordering::SeqCst) >= before + 2;
            scraper.is_finished() || (scraped && body.contains("\nmoved_up{") && body.contains("\nother_up{"))
        });
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    scraper.join().expect("no scrape saw a family twice");
    let scrapes = scrapes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(scrapes >= 20, "only {scrapes} scrapes");
}
