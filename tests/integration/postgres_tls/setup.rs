//! Servers for the TLS tests: a TLS-only PostgreSQL with certificates from a CA made here.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{assert_fail_safe, command, kanary_signal, repo_root, wait, Exposition, KANARY_DB_ERROR};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tempdb::{TempPostgres, TempPostgresOptions};

pub const ADMIN_PW: &str = "adminpw4tls";

pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    Ca { issuer: CertifiedIssuer::self_signed(p, key).unwrap() }
}

/// A leaf certificate signed by `ca`: (cert PEM, key PEM).
pub fn leaf(ca: &Ca, names: &[&str], cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    (p.signed_by(&key, &ca.issuer).unwrap().pem(), key.serialize_pem())
}

/// A server certificate for localhost that expired in 2021.
pub fn expired_leaf(ca: &Ca) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    (p.signed_by(&key, &ca.issuer).unwrap().pem(), key.serialize_pem())
}

pub fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// As root the server runs as `postgres` (see tempdb): it must own (and alone read) its key.
pub fn chown_postgres(p: &Path) {
    if !is_root() {
        return;
    }
    let ok = Command::new("chown").arg("postgres:").arg(p).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "chown postgres {}", p.display());
}

pub struct TlsDb {
    pub pg: TempPostgres,
    /// The CA, to sign more certificates.
    pub ca_pem: Ca,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// `--once` output over plaintext, taken before plaintext was switched off.
    pub plaintext_once: String,
}

pub fn kanary_data(pg: &TempPostgres) {
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
pub fn tls_db() -> TlsDb {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca1 = ca("ssx test CA");
    let other = ca("some other CA");
    let (server_cert, server_key) = leaf(&ca1, &["localhost"], "localhost");
    let (client_cert, client_key) = leaf(&ca1, &[], "certuser");
    let ca = write(dir.path(), "ca.pem", &ca1.issuer.pem(), 0o644);
    let other_ca = write(dir.path(), "other-ca.pem", &other.issuer.pem(), 0o644);
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
    // The postmaster reloads on its own time: wait until it refuses the plaintext session it accepted
    // a moment ago.
    wait::until(
        Duration::from_secs(10),
        "the server to refuse plaintext (the hostssl-only pg_hba.conf in force)",
        || pg.psql("postgres", "SELECT 1").is_err_and(|e| format!("{e:#}").contains("no pg_hba.conf entry")),
        || format!("plaintext psql: {:?}", pg.psql("postgres", "SELECT 1")),
    );
    TlsDb { pg, ca_pem: ca1, dir, ca, other_ca, client_cert, client_key, plaintext_once }
}

impl TlsDb {
    pub fn dsn(&self, host: &str, query: &str) -> String {
        format!("postgresql://exporter:{}@{host}:{}/demo?{query}", self.pg.password(), self.pg.port())
    }

    /// `SELECT pg_reload_conf()`, then waits until a new session shows `setting` = `want`. The
    /// postmaster reloads its TLS certificate and key in the same step as the settings, before it
    /// starts another session, so from then on every connection gets the new ones.
    pub fn reload_conf_until(&self, setting: &str, want: &str) {
        self.admin("SELECT pg_reload_conf()");
        let show = || self.admin(&format!("SHOW {setting}"));
        wait::until(
            Duration::from_secs(10),
            &format!("the server to reload {setting} = {want}"),
            || show().trim() == want,
            || format!("{setting} is {:?}", show().trim()),
        );
    }

    /// SQL as `admin`, over TLS.
    pub fn admin(&self, sql: &str) -> String {
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

pub fn once(rules: &Path, dsn: &str) -> (Option<i32>, String, String) {
    once_env(rules, dsn, &[])
}

pub fn once_env(rules: &Path, dsn: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = command()
        .args(["--once", "--rules"])
        .arg(rules)
        .env("CONNECTION_STRING", dsn)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// Asserts that `--once` printed the Kanary signal fail-safe: every target up=1 and `db_error`=1.
pub fn assert_once_fail_safe(text: &str) {
    assert_fail_safe(&Exposition::parse(text), &kanary_signal(), KANARY_DB_ERROR);
}
