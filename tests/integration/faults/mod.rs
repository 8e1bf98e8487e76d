//! Operating it for real: every fault ends with the fail-safe signal correct, other rules unaffected and
//! `/metrics` answering; reload, secrets and shutdown. All against a real PostgreSQL and the real binary.
//! Each test has its own database; only those that stop the server have a server of their own, so
//! every look at `pg_stat_activity` is limited to the test's database.

mod operating;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{assert_fail_safe, is_fail_safe, wait, Db, Exporter, Exposition, Signal};

/// A health signal over targets `a` and `b` that is up when the query says `ok = 1`.
/// `from` is appended to the query's FROM list (e.g. `, pg_sleep(30)`: a query that sleeps on the
/// server is the fault under test, not synchronisation).
pub(super) fn probe(name: &str, interval: &str, timeout: &str, from: &str, extra: &str) -> String {
    format!(
        r#"  - name: {name}
    database: main
    interval: {interval}
    timeout: {timeout}
{extra}    labels: [target]
    targets: [{{ target: [a, b] }}]
    window: 1
    values: {{ ok: integer }}
    success: "ok == 1"
    metrics:
      up: {{ name: {name}_up, help: "Probe {name}." }}
      error: {{ name: {name}_error, help: "Probe {name} failed." }}
    query: |
      SELECT t.target, 1 AS ok FROM unnest($1::text[]) AS t(target){from}
"#
    )
}

pub(super) fn rules_file(dir: &Path, database: &str, signals: &[String]) -> std::path::PathBuf {
    let path = dir.join("rules.yaml");
    write_rules(&path, database, signals);
    path
}

pub(super) fn write_rules(path: &Path, database: &str, signals: &[String]) {
    let text = format!("version: 1\ndatabases:\n  main:\n{database}signals:\n{}", signals.concat());
    // Write then rename, so a reload never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(super) const DSN_FROM_ENV: &str = "    dsn: \"${TEST_DSN}\"\n";

pub(super) fn spawn(db: &Db, rules: &Path, extra_args: &[&str]) -> Exporter {
    let mut args = vec!["--rules", rules.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    let ex = Exporter::spawn(&args, &[("TEST_DSN", &db.dsn())]);
    ex.wait_ready();
    ex
}

pub(super) fn evaluations(m: &Exposition, rule: &str, result: &str) -> f64 {
    m.value(&format!("sql_signal_exporter_rule_evaluations_total{{result=\"{result}\",rule=\"{rule}\"}}"))
        .unwrap_or(0.0)
}

pub(super) fn healthy(m: &Exposition, rule: &str) -> bool {
    ["a", "b"].iter().all(|t| {
        m.value(&format!("{rule}_up{{target=\"{t}\"}}")) == Some(1.0)
            && m.value(&format!("{rule}_error{{reason=\"query_failed\",target=\"{t}\"}}")) == Some(0.0)
    })
}

/// The families of a [`probe`] and its two targets.
pub(super) fn probe_signal(rule: &str) -> Signal {
    Signal::probe(rule, 2)
}

/// The reason a [`probe`] gives its targets when its query fails (the default for `query_failed`).
pub(super) const QUERY_FAILED: &str = "query_failed";

pub(super) fn count(db: &Db, sql: &str) -> i64 {
    db.psql(sql).unwrap().trim().parse().unwrap()
}

pub(super) const SLEEPING_BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE application_name = 'sql-signal-exporter' AND state = 'active' AND query LIKE '%pg_sleep%' \
     AND datname = current_database()";

/// Waits until `rule` has succeeded `n` more times than it had in `from`.
pub(super) fn wait_successes(ex: &Exporter, rule: &str, n: f64) {
    let start = evaluations(&ex.metrics(), rule, "success");
    ex.wait_until(Duration::from_secs(15), &format!("{n} more successes of {rule}"), |e| {
        evaluations(&e.metrics(), rule, "success") >= start + n
    });
}

#[test]
fn fault_backend_killed_with_pg_terminate_backend() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("fast", "1s", "900ms", "", ""), probe("slow", "1s", "900ms", ", pg_sleep(0.6)", "")],
    );
    let ex = spawn(&db, &rules, &[]);
    wait_successes(&ex, "fast", 1.0);

    // Kill every idle session of the exporter's pool. The pool may hold a single connection, busy
    // with the slow rule, at a given moment: wait for a moment when one is idle.
    let kill_idle = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = \
                     'sql-signal-exporter' AND state = 'idle' AND datname = current_database()";
    wait::until(
        Duration::from_secs(10),
        "an idle exporter session to kill",
        || count(&db, kill_idle) >= 1,
        || ex.logs(),
    );
    // Kill the slow rule's backend in the middle of its query.
    let kill_sleeping = SLEEPING_BACKENDS.replace("count(*)", "count(pg_terminate_backend(pid))");
    wait::until(
        Duration::from_secs(10),
        "the slow rule to run (it never ran)",
        || count(&db, &kill_sleeping) > 0,
        || ex.logs(),
    );
    ex.wait_until(Duration::from_secs(10), "the killed query to count as an error", |e| {
        evaluations(&e.metrics(), "slow", "error") >= 1.0
    });
    // Both rules recover by themselves, on new connections.
    wait_successes(&ex, "slow", 2.0);
    wait_successes(&ex, "fast", 2.0);
    let m = ex.metrics();
    assert!(healthy(&m, "fast") && healthy(&m, "slow"), "{}", m.text);
}

#[test]
fn fault_query_past_its_timeout_is_cancelled_on_the_server() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("hang", "6s", "1s", ", pg_sleep(30)", ""), probe("fast", "1s", "900ms", "", "")],
    );
    let ex = spawn(&db, &rules, &[]);
    let m = ex.metrics();
    assert_eq!(evaluations(&m, "hang", "timeout"), 1.0, "{}", ex.logs());
    assert_fail_safe(&m, &probe_signal("hang"), QUERY_FAILED);
    // No backend is left running the query (the next run starts ~5 s later).
    wait::until(
        Duration::from_secs(3),
        "the timed-out query to go (it still runs on the server)",
        || count(&db, SLEEPING_BACKENDS) == 0,
        || ex.logs(),
    );
    // The other rule is unaffected and fresh.
    wait_successes(&ex, "fast", 2.0);
    let m = ex.metrics();
    assert!(healthy(&m, "fast"), "{}", m.text);
    assert_eq!(m.value("sql_signal_exporter_rule_up{rule=\"hang\"}"), Some(0.0));
    assert!(ex.logs().contains("rule=hang") && ex.logs().contains("timed out"), "{}", ex.logs());
}

#[test]
fn fault_more_rules_due_than_the_pool_holds_queue_without_a_connection_storm() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let signals: Vec<String> =
        (1..=6).map(|i| probe(&format!("q{i}"), "3s", "2500ms", ", pg_sleep(0.3)", "")).collect();
    let rules = rules_file(dir.path(), &format!("{DSN_FROM_ENV}    max_connections: 2\n"), &signals);
    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("TEST_DSN", &db.dsn())]);
    // The server's sessions, sampled until every rule has run twice: the first round, all six due at
    // once, and the next, at their own offsets.
    let mut peak = 0;
    ex.wait_until(Duration::from_secs(20), "every rule to succeed twice", |e| {
        peak = peak.max(count(&db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sql-signal-exporter' AND datname = current_database()"));
        let m = e.metrics();
        (1..=6).all(|i| evaluations(&m, &format!("q{i}"), "success") >= 2.0)
    });
    assert!((1..=2).contains(&peak), "peak of {peak} sessions with max_connections: 2");
    let m = ex.metrics();
    for i in 1..=6 {
        assert!(healthy(&m, &format!("q{i}")), "q{i} did not complete: {}", m.text);
    }
}

#[test]
fn fault_a_result_over_max_rows_fails_only_that_rule() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[
            probe("big", "1s", "900ms", ", generate_series(1, 100000)", "    max_rows: 1000\n"),
            probe("fast", "1s", "900ms", "", ""),
        ],
    );
    let ex = spawn(&db, &rules, &[]);
    let m = ex.metrics();
    assert_fail_safe(&m, &probe_signal("big"), QUERY_FAILED);
    assert!(healthy(&m, "fast"), "{}", m.text);
    // The log line is written before the snapshot is, but read from the pipe by another thread.
    ex.wait_until(Duration::from_secs(10), "the max_rows failure in the log", |e| e.logs().contains("max_rows"));
}

#[test]
fn fault_a_rule_over_max_series_serves_none_and_fails_alone() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    // Two targets, each an up series and one error series per reason (five by default): twelve series.
    let rules = rules_file(
        dir.path(),
        DSN_FROM_ENV,
        &[probe("wide", "1s", "900ms", "", "    max_series: 11\n"), probe("fast", "1s", "900ms", "", "")],
    );
    let ex = spawn(&db, &rules, &[]);
    let m = ex.metrics();
    assert!(!m.text.contains("wide_up"), "{}", m.text);
    assert_eq!(m.value("sql_signal_exporter_rule_up{rule=\"wide\"}"), Some(0.0));
    assert!(healthy(&m, "fast"), "{}", m.text);
    // The log line is written before the snapshot is, but read from the pipe by another thread.
    ex.wait_until(Duration::from_secs(10), "the max_series failure in the log", |e| e.logs().contains("max_series"));
}

#[test]
fn fault_discovered_targets_stay_fail_safe_when_the_database_goes_away() {
    let mut db = Db::private_default();
    let dir = tempfile::tempdir().unwrap();
    // No `targets:`: the query names them (a and b), and the rule binds no parameters.
    let discovering = probe("disc", "1s", "900ms", "", "")
        .replace("    targets: [{ target: [a, b] }]\n", "")
        .replace("FROM unnest($1::text[]) AS t(target)", "FROM (VALUES ('a'), ('b')) AS t(target)");
    let rules = rules_file(dir.path(), DSN_FROM_ENV, &[discovering]);
    let ex = spawn(&db, &rules, &[]);
    assert!(healthy(&ex.metrics(), "disc"), "{}", ex.metrics().text);
    db.server_mut().stop().unwrap();
    ex.wait_until(Duration::from_secs(10), "the discovered targets fail-safe", |e| {
        is_fail_safe(&e.metrics(), &probe_signal("disc"), QUERY_FAILED)
    });
    db.server_mut().restart().unwrap();
    ex.wait_until(Duration::from_secs(10), "recovery", |e| healthy(&e.metrics(), "disc"));
}

#[test]
fn fault_a_thousand_concurrent_scrapes_all_answer() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), DSN_FROM_ENV, &[probe("fast", "1s", "900ms", "", "")]);
    let ex = spawn(&db, &rules, &[]);
    let ok = std::sync::atomic::AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(1000);
    std::thread::scope(|s| {
        for _ in 0..1000 {
            s.spawn(|| {
                barrier.wait();
                let (status, body) = ex.get("/metrics");
                if status == 200 && body.contains("fast_up{target=\"b\"} 1\n") {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(ok.into_inner(), 1000);
    assert_eq!(ex.get("/-/healthy").0, 200);
}

/// The most a TCP socket of the exporter can hold unsent: the ceiling of a send buffer the kernel
/// sizes itself (`tcp_wmem`'s maximum). The exporter sets no `SO_SNDBUF`; one that did could hold
/// up to twice `net.core.wmem_max`, and this bound would have to follow.
fn most_a_send_buffer_holds() -> usize {
    let path = "/proc/sys/net/ipv4/tcp_wmem";
    let tcp_wmem = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    tcp_wmem.split_whitespace().nth(2).and_then(|v| v.parse().ok()).expect("tcp_wmem's maximum")
}

/// A metric rule with `rows` series of about [`WIDE_LINE_BYTES`] each: a large `/metrics` body.
fn wide_rule(rows: usize) -> String {
    format!(
        "  - name: wide\n    database: main\n    interval: 1m\n    timeout: 30s\n    key_labels: [k]\n    \
         query: SELECT lpad(g::text, 200, 'x') AS k, g AS v FROM generate_series(1, {rows}) g\n    \
         families:\n      - name: wide_body\n        help: A large body.\n        value: v\n"
    )
}

/// The least a line of [`wide_rule`]'s family takes: `wide_body{k="<200 bytes>"} 1`.
const WIDE_LINE_BYTES: usize = 218;

/// A raw HTTP/1.1 client that reads slowly: a small receive buffer, so the exporter can only write
/// as fast as the client reads.
struct SlowClient {
    conn: TcpStream,
    /// The receive buffer the kernel gave the socket.
    receive_buffer: usize,
}

impl SlowClient {
    fn connect(addr: std::net::SocketAddr) -> SlowClient {
        // std cannot size a socket's buffer before it connects; tokio's TcpSocket can.
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("a runtime");
        let (conn, receive_buffer) = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
            let receive_buffer = socket.recv_buffer_size().expect("SO_RCVBUF") as usize;
            let conn = socket.connect(addr).await.expect("connect to the exporter");
            (conn.into_std().expect("a std socket"), receive_buffer)
        });
        conn.set_nonblocking(false).expect("a blocking socket");
        conn.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        SlowClient { conn, receive_buffer }
    }

    /// Sends `GET path` and reads the head a byte at a time: the head's text and its Content-Length.
    fn get_head(&mut self, path: &str) -> (String, usize) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: exporter\r\nConnection: close\r\n\r\n");
        self.conn.write_all(request.as_bytes()).expect("send the request");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            self.conn.read_exact(&mut byte).unwrap_or_else(|e| panic!("the head ended early ({e}): {head:?}"));
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("a UTF-8 head");
        let length = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-length")))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length in:\n{head}"));
        (head, length)
    }

    /// Appends `n` bytes to `body`, `step` bytes per read.
    fn read_in_steps(&mut self, body: &mut Vec<u8>, n: usize, step: usize) {
        let end = body.len() + n;
        let mut buf = vec![0u8; step];
        while body.len() < end {
            let want = step.min(end - body.len());
            let got = self.conn.read(&mut buf[..want]).expect("read the body");
            assert!(got > 0, "the connection closed after {} bytes of the body", body.len());
            body.extend_from_slice(&buf[..got]);
        }
    }
}

/// SIGTERM while a large response is still being written: the exporter finishes it (every byte its
/// Content-Length announced, a valid exposition) and exits 0 within the 5 s an orchestrator grants.
#[test]
fn fault_sigterm_while_a_response_is_in_flight_finishes_it_and_exits_zero() {
    let db = Db::shared();
    let dir = tempfile::tempdir().unwrap();
    let send_buffer = most_a_send_buffer_holds();
    // Twice what the exporter's socket holds, and a MiB: most of the body can only leave the exporter
    // as the client reads it.
    let rows = (2 * send_buffer + (1 << 20)) / WIDE_LINE_BYTES;
    let rules = dir.path().join("rules.yaml");
    let signals = [probe("fast", "1s", "900ms", "", ""), probe("hang", "30s", "20s", ", pg_sleep(60)", "")].concat();
    let text =
        format!("version: 1\ndatabases:\n  main:\n{DSN_FROM_ENV}signals:\n{signals}metrics:\n{}", wide_rule(rows));
    std::fs::write(&rules, text).unwrap();
    let mut ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("TEST_DSN", &db.dsn())]);
    ex.wait_until(Duration::from_secs(10), "the hanging query to run", |_| count(&db, SLEEPING_BACKENDS) == 1);
    // Looked for in the text: parsing the body takes seconds in a debug build.
    let last_wide = format!("wide_body{{k=\"{rows:x>200}\"}} {rows}\n");
    ex.wait_until(Duration::from_secs(30), "fast to succeed and the wide rule to be served", |e| {
        let (_, body) = e.get("/metrics");
        body.contains("fast_up{target=\"b\"} 1\n") && body.contains(&last_wide)
    });

    let mut client = SlowClient::connect(ex.addr);
    let (head, length) = client.get_head("/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("content-encoding"), "{head}");
    let mut body = Vec::new();
    client.read_in_steps(&mut body, 4096, 16);
    // More is unread than the kernel can hold between the two (the exporter's send buffer, ours to
    // receive, a MiB for rounding), so the exporter is still writing the response.
    let unread = length - body.len();
    let in_kernel = send_buffer + client.receive_buffer + (1 << 20);
    assert!(unread > in_kernel, "only {unread} bytes unread, the kernel may hold {in_kernel}: not in flight");

    let signalled = Instant::now();
    ex.signal("TERM");
    ex.wait_until(Duration::from_secs(4), "the exporter to begin its shutdown", |e| e.logs().contains("shutting down"));
    client.read_in_steps(&mut body, unread, 64 * 1024);
    let mut rest = Vec::new();
    client.conn.read_to_end(&mut rest).expect("the end of the response");
    assert!(rest.is_empty(), "{} bytes after the announced Content-Length", rest.len());
    let code = ex.wait_exit(Duration::from_secs(5));
    let exited = signalled.elapsed();
    assert_eq!(code, Some(0), "{}", ex.logs());
    assert!(exited < Duration::from_secs(5), "exited {exited:?} after SIGTERM");
    assert!(!ex.logs().contains("did not finish in time"), "the grace period ran out:\n{}", ex.logs());
    // The whole body is a valid exposition (parsed after the exit: parsing it takes seconds in a debug
    // build).
    let m = Exposition::parse(std::str::from_utf8(&body).expect("a UTF-8 body"));
    assert_eq!(m.samples["wide_body"].len(), rows);
    assert!(healthy(&m, "fast"), "{}", m.family_text("fast_"));
    // The in-flight query was cancelled on the server, not left to run out its timeout.
    wait::until(
        Duration::from_secs(3),
        "the query to go (it outlived the exporter)",
        || count(&db, SLEEPING_BACKENDS) == 0,
        || ex.logs(),
    );
}
