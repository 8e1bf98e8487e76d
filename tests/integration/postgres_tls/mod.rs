//! TLS, rotating credentials and a transaction pooler against real servers: a PostgreSQL with
//! `ssl=on` and only `hostssl` lines in pg_hba.conf, its certificate signed by a CA made here
//! (rcgen, ring); and a real PgBouncer in transaction mode.

pub(crate) mod setup;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    command, is_fail_safe, kanary_rules, kanary_signal, repo_root, tool, wait, Db, Exporter, Exposition,
    KANARY_DB_ERROR,
};
use setup::*;
use tempdb::{free_loopback_port, TempPostgres};

#[test]
fn tls_modes_connect_and_each_failure_names_its_cause_while_fail_safe() {
    let db = tls_db();
    let rules = repo_root().join("rules/kanary.yaml");
    let ca = db.ca.display().to_string();
    let other = db.other_ca.display().to_string();
    assert_eq!(Exposition::parse(&db.plaintext_once).series.len(), 72);
    let plaintext = Exposition::parse(&db.plaintext_once);
    assert!(!is_fail_safe(&plaintext, &kanary_signal(), KANARY_DB_ERROR), "the data gives real values");

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

    // sslrootcert=system: the operating system's store, here made of our CA (rustls-native-certs reads
    // SSL_CERT_FILE as OpenSSL does); with the real store our private CA is unknown.
    let system = db.dsn("localhost", "sslrootcert=system");
    let (code, out, err) = once_env(&rules, &system, &[("SSL_CERT_FILE", &ca), ("SSL_CERT_DIR", "/nonexistent")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, db.plaintext_once);
    let public = "/etc/ssl/certs/ca-certificates.crt";
    if std::path::Path::new(public).exists() {
        let (code, out, err) = once_env(&rules, &system, &[("SSL_CERT_FILE", public)]);
        assert_eq!(code, Some(1));
        assert!(err.contains("unknown CA"), "{err}");
        assert_once_fail_safe(&out);
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
        assert_once_fail_safe(&out);
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
    assert_once_fail_safe(&out);

    // An expired server certificate: the server reloads its certificate on SIGHUP.
    let dir = db.dir.path();
    let (expired_cert, expired_key) = expired_leaf(&db.ca_pem);
    let cert = write(dir, "expired.crt", &expired_cert, 0o644);
    let key = write(dir, "expired.key", &expired_key, 0o600);
    chown_postgres(&key);
    db.admin(&format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()));
    db.admin(&format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()));
    db.reload_conf_until("ssl_cert_file", &cert.display().to_string());
    let (code, out, err) = once(&rules, &db.dsn("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")));
    assert_eq!(code, Some(1));
    assert!(err.contains("the server's certificate has expired"), "{err}");
    assert_once_fail_safe(&out);
    db.admin("ALTER SYSTEM RESET ssl_cert_file");
    db.admin("ALTER SYSTEM RESET ssl_key_file");
    db.reload_conf_until("ssl_cert_file", &dir.join("server.crt").display().to_string());

    // --check-rules --db names the negotiated TLS version; a key given as the CA fails at load.
    let check = |dsn: &str, db_flag: bool| {
        let mut cmd = command();
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
fn a_server_without_tls_is_named_as_such_and_prefer_falls_back() {
    let pg = TempPostgres::start().unwrap();
    let rules = repo_root().join("rules/kanary.yaml");
    let dsn = pg.dsn("demo").replace("sslmode=disable", "sslmode=require");
    let (code, out, err) = once(&rules, &dsn);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not speak TLS"), "{err}");
    assert_once_fail_safe(&out);
    // The default (prefer) still connects, over TCP and over the Unix socket (which has no TLS).
    let socket = pg.psql("postgres", "SHOW unix_socket_directories").unwrap();
    let words = format!("host={socket} port={} user=exporter password={} dbname=demo", pg.port(), pg.password());
    let tcp = pg.dsn("demo").replace("?sslmode=disable", "");
    for dsn in [tcp, words] {
        let (code, _, err) = once(&rules, &dsn);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("does not exist (SQLSTATE 42P01)"), "connected, then the query failed: {err}");
    }
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
    // Every session logged in with the first password is gone. The rule evaluates one at a time, so
    // the second success counted from here started after the first one was, after the sessions were
    // killed: it logged in again, with the password read from the rotated file.
    let before = kanary_successes(&ex);
    ex.wait_until(Duration::from_secs(15), "two successful evaluations after the rotation", |e| {
        kanary_successes(e) >= before + 2.0 && e.metrics().value(DOWN_TARGET) == Some(0.0)
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
    assert_once_fail_safe(&out);
    // --check-rules never runs it.
    let marker = files.join("ran");
    let spy = format!("dsn: \"${{CONNECTION_STRING}}\"\n    password_command: [touch, {}]", marker.display());
    let rules = kanary_rules(rules_dir.path(), &[("dsn: \"${CONNECTION_STRING}\"", &spy)]);
    let status =
        command().args(["--check-rules", rules.to_str().unwrap()]).env("CONNECTION_STRING", &dsn).status().unwrap();
    assert!(status.success());
    assert!(!marker.exists(), "--check-rules ran password_command");
}

#[test]
fn kanary_through_pgbouncer_in_transaction_mode() {
    if !tool::program("pgbouncer", "apt-get install pgbouncer (.ci/run installs it)") {
        return;
    }
    // Its own server: PgBouncer is pointed at the server's `demo` database.
    let db = Db::private_default();
    let pg = db.server();
    kanary_data_plain(pg);
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
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut bouncer = Kill(
        Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups", "pgbouncer"])
            .arg(&ini)
            .spawn()
            .unwrap(),
    );
    let log = dir.path().join("pgbouncer.log");
    wait::until(
        Duration::from_secs(10),
        "PgBouncer to accept connections",
        || {
            if let Ok(Some(status)) = bouncer.0.try_wait() {
                panic!("pgbouncer exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
        || format!("pgbouncer.log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
    );
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
    // --check-rules --db through the pooler: prepared inside a transaction of its own.
    let out = command().arg("--check-rules").arg(&rules).arg("--db").env("CONNECTION_STRING", &dsn).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 queries prepared") && text.contains("plaintext (no TLS)"), "{text}");
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
    ex.wait_until(Duration::from_secs(20), "five successful evaluations through PgBouncer", |e| {
        kanary_successes(e) >= 5.0
    });
    let m = ex.metrics();
    assert_eq!(m.value("sql_signal_exporter_rule_up{rule=\"kanary\"}"), Some(1.0), "{}", ex.logs());
    assert_eq!(m.value(DOWN_TARGET), Some(0.0));
}

/// How many times the running exporter's `kanary` rule has succeeded.
fn kanary_successes(ex: &Exporter) -> f64 {
    ex.metrics().value("sql_signal_exporter_rule_evaluations_total{result=\"success\",rule=\"kanary\"}").unwrap_or(0.0)
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
