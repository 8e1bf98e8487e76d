//! TLS, rotating credentials and a transaction pooler against real servers: a PostgreSQL with
//! `ssl=on` and only `hostssl` lines in pg_hba.conf, its certificate signed by a CA made here
//! (rcgen, ring); and a real PgBouncer in transaction mode.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kanary_rules, repo_root, Exporter, Exposition};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use sql_signal_exporter::tempdb::{free_loopback_port, TempPostgres, TempPostgresOptions};

const ADMIN_PW: &str = "adminpw4tls";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    Ca { cert: p.self_signed(&key).unwrap(), key }
}

/// A leaf certificate signed by `ca`: (cert PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    (p.signed_by(&key, &ca.cert, &ca.key).unwrap().pem(), key.serialize_pem())
}

/// A server certificate for localhost that expired in 2021.
fn expired_leaf(ca: &Ca) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    (p.signed_by(&key, &ca.cert, &ca.key).unwrap().pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// As root the server runs as `postgres` (see tempdb): it must own (and alone read) its key.
fn chown_postgres(p: &Path) {
    if !is_root() {
        return;
    }
    let ok = Command::new("chown").arg("postgres:").arg(p).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "chown postgres {}", p.display());
}

struct TlsDb {
    pg: TempPostgres,
    /// The CA, to sign more certificates.
    ca_pem: Ca,
    dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// `--once` output over plaintext, taken before plaintext was switched off.
    plaintext_once: String,
}

fn kanary_data(pg: &TempPostgres) {
    let schema = std::fs::read_to_string(repo_root().join("examples/kanary/schema.sql")).unwrap();
    pg.psql("demo", &schema).unwrap();
    let mut sql = String::new();
    for (i, e) in [0, 3, 0].iter().enumerate() {
        sql.push_str(&format!(
            "SELECT kanary_run('stone-stage-p01', 'container-single-arch', make_interval(mins => {}), to_jsonb({e}));\n",
            30 + 60 * i
        ));
        sql.push_str(&format!(
            "SELECT kanary_run('stone-prod-p01', 'container-single-arch', make_interval(mins => {}), to_jsonb(2));\n",
            30 + 60 * i
        ));
    }
    pg.psql("demo", &sql).unwrap();
}

/// A TLS-only PostgreSQL with the Kanary schema, a `certuser` role for the `cert` method and an
/// `admin` superuser reachable over TLS.
fn tls_db() -> TlsDb {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca1 = ca("ssx test CA");
    let other = ca("some other CA");
    let (server_cert, server_key) = leaf(&ca1, &["localhost"], "localhost");
    let (client_cert, client_key) = leaf(&ca1, &[], "certuser");
    let ca = write(dir.path(), "ca.pem", &ca1.cert.pem(), 0o644);
    let other_ca = write(dir.path(), "other-ca.pem", &other.cert.pem(), 0o644);
    let cert = write(dir.path(), "server.crt", &server_cert, 0o644);
    let key = write(dir.path(), "server.key", &server_key, 0o600);
    chown_postgres(&key);
    let client_cert = write(dir.path(), "client.crt", &client_cert, 0o644);
    let client_key = write(dir.path(), "client.key", &client_key, 0o600);
    let hba = write(dir.path(), "pg_hba.conf", "host all all 127.0.0.1/32 scram-sha-256\n", 0o644);
    let q = |p: &Path| format!("'{}'", p.display());
    let pg = TempPostgres::start_with(TempPostgresOptions {
        extra_conf: vec![
            "ssl = on".into(),
            format!("ssl_cert_file = {}", q(&cert)),
            format!("ssl_key_file = {}", q(&key)),
            format!("ssl_ca_file = {}", q(&ca)),
            format!("hba_file = {}", q(&hba)),
        ],
        ..Default::default()
    })
    .expect("start PostgreSQL with ssl=on");
    kanary_data(&pg);
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE admin SUPERUSER LOGIN PASSWORD '{ADMIN_PW}';\n\
             CREATE ROLE certuser LOGIN; GRANT pg_read_all_data TO certuser;"
        ),
    )
    .unwrap();
    let rules = repo_root().join("rules/kanary.yaml");
    let (code, plaintext_once, err) = once(&rules, &pg.dsn("demo"));
    assert_eq!(code, Some(0), "{err}");
    // From here on: TLS only.
    std::fs::write(&hba, "hostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
        .unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf();").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    TlsDb { pg, ca_pem: ca1, dir, ca, other_ca, client_cert, client_key, plaintext_once }
}

impl TlsDb {
    fn dsn(&self, host: &str, query: &str) -> String {
        format!("postgresql://exporter:{}@{host}:{}/demo?{query}", self.pg.password(), self.pg.port())
    }

    /// SQL as `admin`, over TLS.
    fn admin(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.pg.port().to_string())
            .env("PGUSER", "admin")
            .env("PGPASSWORD", ADMIN_PW)
            .env("PGDATABASE", "demo")
            .env("PGSSLMODE", "require")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

fn once(rules: &Path, dsn: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sql-signal-exporter"))
        .args(["--once", "--rules"])
        .arg(rules)
        .env("CONNECTION_STRING", dsn)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// Every one of the 24 targets fail-safe: up=1, db_error=1.
fn all_fail_safe(text: &str) -> bool {
    let m = Exposition::parse(text);
    let up: Vec<_> = m.series.iter().filter(|(k, _)| k.starts_with("kanary_up{")).collect();
    let db: Vec<_> = m.series.iter().filter(|(k, _)| k.starts_with("kanary_error{reason=\"db_error\"")).collect();
    up.len() == 24 && db.len() == 24 && up.iter().all(|(_, v)| **v == 1.0) && db.iter().all(|(_, v)| **v == 1.0)
}

#[test]
fn tls_modes_connect_and_each_failure_names_its_cause_while_fail_safe() {
    let db = tls_db();
    let rules = repo_root().join("rules/kanary.yaml");
    let ca = db.ca.display().to_string();
    let other = db.other_ca.display().to_string();
    assert_eq!(Exposition::parse(&db.plaintext_once).series.len(), 72);
    assert!(!all_fail_safe(&db.plaintext_once), "the data gives real values");

    // Acceptance: verify-full serves exactly what plaintext served.
    for query in [
        format!("sslmode=verify-full&sslrootcert={ca}"),
        format!("sslmode=verify-ca&sslrootcert={ca}"),
        "sslmode=require".to_string(),
        format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require"),
    ] {
        let host = if query.contains("verify-full") { "localhost" } else { "127.0.0.1" };
        let (code, out, err) = once(&rules, &db.dsn(host, &query));
        assert_eq!(code, Some(0), "{query}: {err}");
        assert_eq!(out, db.plaintext_once, "{query}");
    }

    let failures = [
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={ca}"), "host name mismatch"),
        ("localhost", format!("sslmode=verify-ca&sslrootcert={other}"), "unknown CA"),
        ("127.0.0.1", "sslmode=disable".to_string(), "refuses plaintext"),
    ];
    for (host, query, want) in failures {
        let dsn = db.dsn(host, &query);
        let (code, out, err) = once(&rules, &dsn);
        assert_eq!(code, Some(1), "{query}");
        assert!(err.contains(want), "{query}: want {want:?} in: {err}");
        assert!(all_fail_safe(&out), "{query}: {out}");
        assert!(!err.contains(db.pg.password()) && !out.contains(db.pg.password()), "password leaked");
    }

    // The `cert` method: a client certificate, no password.
    let cert_dsn = format!(
        "postgresql://certuser@localhost:{}/demo?sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        db.pg.port(),
        db.client_cert.display(),
        db.client_key.display()
    );
    let (code, out, err) = once(&rules, &cert_dsn);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, db.plaintext_once);
    // Without it the server says no, and we say which part.
    let (code, out, err) = once(
        &rules,
        &format!("postgresql://certuser@localhost:{}/demo?sslmode=verify-full&sslrootcert={ca}", db.pg.port()),
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("client certificate refused"), "{err}");
    assert!(all_fail_safe(&out));

    // An expired server certificate: the server reloads its certificate on SIGHUP.
    let dir = db.dir.path();
    let (expired_cert, expired_key) = expired_leaf(&db.ca_pem);
    let cert = write(dir, "expired.crt", &expired_cert, 0o644);
    let key = write(dir, "expired.key", &expired_key, 0o600);
    chown_postgres(&key);
    db.admin(&format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()));
    db.admin(&format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()));
    db.admin("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = once(&rules, &db.dsn("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")));
    assert_eq!(code, Some(1));
    assert!(err.contains("the server's certificate has expired"), "{err}");
    assert!(all_fail_safe(&out));
    db.admin("ALTER SYSTEM RESET ssl_cert_file");
    db.admin("ALTER SYSTEM RESET ssl_key_file");
    db.admin("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));

    // --check-rules --db names the negotiated TLS version; a key given as the CA fails at load.
    let check = |dsn: &str, db_flag: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sql-signal-exporter"));
        cmd.arg("--check-rules").arg(&rules).env("CONNECTION_STRING", dsn);
        if db_flag {
            cmd.arg("--db");
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, text) = check(&db.dsn("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")), true);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("database 'horreum': TLS TLSv1.3 ("), "{text}");
    let key_as_ca = format!("sslmode=verify-full&sslrootcert={}", db.client_key.display());
    let (code, text) = check(&db.dsn("localhost", &key_as_ca), false);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("kanary.yaml:15:") && text.contains("holds no PEM certificate"), "{text}");
}

#[test]
fn a_server_without_tls_is_named_as_such() {
    let pg = TempPostgres::start().unwrap();
    let rules = repo_root().join("rules/kanary.yaml");
    let dsn = pg.dsn("demo").replace("sslmode=disable", "sslmode=require");
    let (code, out, err) = once(&rules, &dsn);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not speak TLS"), "{err}");
    assert!(all_fail_safe(&out), "{out}");
}

const DOWN_TARGET: &str = "kanary_up{tested_cluster=\"stone-prod-p01\",type=\"container-single-arch\"}";

#[test]
fn rotated_password_file_and_password_command_are_used_and_never_shown() {
    let db = tls_db();
    let files = db.dir.path();
    let pw_file = write(files, "password", "first-rotating-secret\n", 0o600);
    db.admin("ALTER ROLE exporter PASSWORD 'first-rotating-secret'");
    let ca = db.ca.display().to_string();
    let dsn = format!("postgresql://exporter@localhost:{}/demo?sslmode=verify-full&sslrootcert={ca}", db.pg.port());
    let rules_dir = tempfile::tempdir().unwrap();
    let file_line = format!("dsn: \"${{CONNECTION_STRING}}\"\n    password_file: {}", pw_file.display());
    let rules = kanary_rules(
        rules_dir.path(),
        &[
            ("interval: 1m", "interval: 1s"),
            ("timeout: 30s", "timeout: 900ms"),
            ("dsn: \"${CONNECTION_STRING}\"", &file_line),
        ],
    );
    let ex = Exporter::spawn(&["--rules", rules.to_str().unwrap()], &[("CONNECTION_STRING", &dsn)]);
    ex.wait_ready();
    ex.wait_until(Duration::from_secs(15), "real values over TLS with password_file", |e| {
        e.metrics().value(DOWN_TARGET) == Some(0.0)
    });
    // Rotate: new password on the server and in the file; existing sessions must log in again.
    std::fs::write(&pw_file, "second-rotating-secret\n").unwrap();
    db.admin("ALTER ROLE exporter PASSWORD 'second-rotating-secret'");
    db.admin("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'exporter'");
    std::thread::sleep(Duration::from_millis(1500));
    ex.wait_until(Duration::from_secs(15), "real values after the rotation", |e| {
        e.metrics().value(DOWN_TARGET) == Some(0.0)
    });
    let logins = db.admin("SELECT count(*) FROM pg_stat_activity WHERE usename = 'exporter'");
    assert!(logins.trim().parse::<u32>().unwrap() >= 1, "the exporter logged in again");
    let (_, body) = ex.get("/metrics");
    for secret in ["first-rotating-secret", "second-rotating-secret"] {
        assert!(!ex.logs().contains(secret) && !body.contains(secret), "{secret} leaked");
    }
    drop(ex);

    // password_command: argv, no shell; a wrong password makes the server's error, which must not show it.
    let cmd_line = format!("dsn: \"${{CONNECTION_STRING}}\"\n    password_command: [cat, {}]", pw_file.display());
    let rules = kanary_rules(rules_dir.path(), &[("dsn: \"${CONNECTION_STRING}\"", &cmd_line)]);
    let (code, out, err) = once(&rules, &dsn);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, db.plaintext_once);
    std::fs::write(&pw_file, "wrong-command-secret\n").unwrap();
    let (code, out, err) = once(&rules, &dsn);
    assert_eq!(code, Some(1));
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-command-secret") && !out.contains("wrong-command-secret"), "{err}");
    assert!(all_fail_safe(&out));
    // --check-rules never runs it.
    let marker = files.join("ran");
    let spy = format!("dsn: \"${{CONNECTION_STRING}}\"\n    password_command: [touch, {}]", marker.display());
    let rules = kanary_rules(rules_dir.path(), &[("dsn: \"${CONNECTION_STRING}\"", &spy)]);
    let status = Command::new(env!("CARGO_BIN_EXE_sql-signal-exporter"))
        .args(["--check-rules", rules.to_str().unwrap()])
        .env("CONNECTION_STRING", &dsn)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!marker.exists(), "--check-rules ran password_command");
}

#[test]
fn kanary_through_pgbouncer_in_transaction_mode() {
    let pg = common::kanary_db(false);
    kanary_data_plain(&pg);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_loopback_port().unwrap();
    let users = write(dir.path(), "users.txt", &format!("\"exporter\" \"{}\"\n", pg.password()), 0o644);
    let ini = write(
        dir.path(),
        "pgbouncer.ini",
        &format!(
            "[databases]\ndemo = host=127.0.0.1 port={} dbname=demo\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {}\npool_mode = transaction\n\
             logfile = {}\npidfile = {}\n",
            pg.port(),
            users.display(),
            dir.path().join("pgbouncer.log").display(),
            dir.path().join("pgbouncer.pid").display()
        ),
        0o644,
    );
    let mut bouncer = Command::new("setpriv")
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups", "pgbouncer"])
        .arg(&ini)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut bouncer);
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dsn = format!("postgresql://exporter:{}@127.0.0.1:{port}/demo?sslmode=disable", pg.password());
    let direct = once(&repo_root().join("rules/kanary.yaml"), &pg.dsn("demo"));
    assert_eq!(direct.0, Some(0), "{}", direct.2);
    // Without the key the pooler refuses our startup options.
    let (code, _, err) = once(&repo_root().join("rules/kanary.yaml"), &dsn);
    assert_eq!(code, Some(1), "{err}");
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = kanary_rules(
        rules_dir.path(),
        &[("dsn: \"${CONNECTION_STRING}\"", "dsn: \"${CONNECTION_STRING}\"\n    pooler: transaction")],
    );
    for _ in 0..3 {
        let (code, out, err) = once(&rules, &dsn);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, direct.1);
        assert_eq!(Exposition::parse(&out).series.len(), 72);
    }
    // A running exporter: many transactions over the pooler's shared server sessions.
    let fast = kanary_rules(
        rules_dir.path(),
        &[
            ("interval: 1m", "interval: 1s"),
            ("timeout: 30s", "timeout: 900ms"),
            ("dsn: \"${CONNECTION_STRING}\"", "dsn: \"${CONNECTION_STRING}\"\n    pooler: transaction"),
        ],
    );
    let ex = Exporter::spawn(&["--rules", fast.to_str().unwrap()], &[("CONNECTION_STRING", &dsn)]);
    ex.wait_ready();
    let evaluations = |e: &Exporter| {
        e.metrics()
            .value("sql_signal_exporter_rule_evaluations_total{result=\"success\",rule=\"kanary\"}")
            .unwrap_or(0.0)
    };
    ex.wait_until(Duration::from_secs(20), "five successful evaluations through PgBouncer", |e| evaluations(e) >= 5.0);
    let m = ex.metrics();
    assert_eq!(m.value("sql_signal_exporter_rule_up{rule=\"kanary\"}"), Some(1.0), "{}", ex.logs());
    assert_eq!(m.value(DOWN_TARGET), Some(0.0));
}

fn kanary_data_plain(pg: &TempPostgres) {
    pg.psql(
        "demo",
        "SELECT kanary_run('stone-prod-p01', 'container-single-arch', make_interval(mins => 30), to_jsonb(2));\n\
         SELECT kanary_run('stone-prod-p01', 'container-single-arch', make_interval(mins => 90), to_jsonb(2));\n\
         SELECT kanary_run('stone-prod-p01', 'container-single-arch', make_interval(mins => 150), to_jsonb(2));",
    )
    .unwrap();
}
