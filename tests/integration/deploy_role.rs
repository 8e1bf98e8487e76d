//! examples/postgres/role.sql on a real server: the shipped rules files run as that role, and the
//! role cannot write, create, or read beyond what the rules read, even after undoing read-only.

use crate::harness::{command, repo_root, Db};

const ROLE_PASSWORD: &str = "role-test-3f9c1d7e";

fn role_dsn(port: u16) -> String {
    format!("postgresql://sql_signal_exporter:{ROLE_PASSWORD}@127.0.0.1:{port}/demo?sslmode=disable")
}

/// A server with the Kanary schema and demo data, and role.sql applied (twice: it is idempotent).
/// Roles are server-wide, so the server is a private one.
fn server_with_role() -> Db {
    let db = Db::private_default();
    let demo = std::fs::read_to_string(repo_root().join("examples/kanary/demo-data.sql")).unwrap();
    db.psql(&demo).expect("load demo data");
    let role = std::fs::read_to_string(repo_root().join("examples/postgres/role.sql")).unwrap();
    let script = format!("\\set exporter_password '{ROLE_PASSWORD}'\n{role}\n{role}");
    db.psql(&script).expect("apply role.sql");
    db
}

#[test]
fn shipped_rules_run_as_the_role() {
    let db = server_with_role();
    let dsn = role_dsn(db.server().port());
    let out = command()
        .args(["--once", "--rules", "rules/kanary.yaml", "--rules", "rules/postgres.yaml"])
        .env("CONNECTION_STRING", &dsn)
        .env("DATABASE_URL", &dsn)
        .output()
        .expect("run the exporter");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a rule failed as sql_signal_exporter:\n{stderr}");
    // Every Kanary target was judged from rows (some demo targets are down): never a query failure.
    assert!(stdout.contains("kanary_up{"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("kanary_up{") && l.ends_with(" 0")), "no down target:\n{stdout}");
    // pg_monitor: the role sees other sessions' states, not only its own.
    assert!(stdout.contains("postgresql_stat_activity{"), "{stdout}");
    assert!(!stderr.contains(ROLE_PASSWORD), "the password reached the log");
}

#[test]
fn role_cannot_write_even_when_a_session_undoes_read_only() {
    let db = server_with_role();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&role_dsn(db.server().port()), tokio_postgres::NoTls)
            .await
            .expect("connect as sql_signal_exporter");
        tokio::spawn(conn);
        // A superuser session whose query the role should see (pg_monitor) but not end.
        let (peer, peer_conn) = tokio_postgres::connect(&db.server().superuser_dsn(db.name()), tokio_postgres::NoTls)
            .await
            .expect("connect as postgres");
        tokio::spawn(peer_conn);
        peer.batch_execute("SET application_name = 'role-test-peer'; SELECT 42").await.unwrap();
        let peer_pid: i32 = peer.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        // The role default is read-only...
        let ro: String = client.query_one("SHOW default_transaction_read_only", &[]).await.unwrap().get(0);
        assert_eq!(ro, "on");
        // ...and any session may undo it; the privileges are what stops it.
        client.batch_execute("SET default_transaction_read_only = off").await.unwrap();
        let denied = [
            "INSERT INTO data (horreum_testid, label_values) VALUES (1, '{}')",
            "UPDATE data SET horreum_testid = 0",
            "DELETE FROM data",
            "TRUNCATE data",
            "CREATE TABLE public.intruder (x int)",
            "SELECT stop FROM data", // a column no shipped rule reads
            "SELECT kanary_run('c', 'rpm', interval '1 hour', '0')", // writes through a function
        ];
        let terminate = format!("SELECT pg_terminate_backend({peer_pid})");
        for sql in denied.iter().copied().chain([terminate.as_str()]) {
            let err = client.batch_execute(sql).await.expect_err(sql);
            let code = err.code().map(|c| c.code().to_string());
            assert_eq!(code.as_deref(), Some("42501"), "{sql}: expected insufficient_privilege, got {err:?}");
        }
        // What the rules need works: the columns kanary.yaml reads, other roles' sessions in full.
        client.batch_execute("SELECT horreum_testid, start, label_values FROM data LIMIT 1").await.unwrap();
        let seen: String =
            client.query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&peer_pid]).await.unwrap().get(0);
        assert_eq!(seen, "SELECT pg_backend_pid()", "pg_monitor should show other roles' queries");
    });
}
