//! Smoke tests of the throwaway PostgreSQL servers of this crate.

use std::path::PathBuf;

use tempdb::{free_loopback_port, TempPostgres, TempPostgresOptions};
use tokio_postgres::{Client, NoTls};

async fn connect(dsn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn select_one(client: &Client) -> i32 {
    client.query_one("select 1", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn lifecycle_start_connect_stop_restart_drop() {
    let mut pg = TempPostgres::start().unwrap();
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(pg.is_running());
    assert_eq!(pg.psql("postgres", "select 1").unwrap(), "1");

    // `start()` already created `demo`; the exporter role can use it.
    let client = connect(&pg.dsn("demo")).await.unwrap();
    assert_eq!(select_one(&client).await, 1);
    let who: String = client.query_one("select current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(who, "exporter");
    drop(client);

    // The superuser DSN works too, with a password.
    let su = connect(&pg.superuser_dsn("postgres")).await.unwrap();
    assert_eq!(select_one(&su).await, 1);
    drop(su);

    let dir = PathBuf::from(pg.psql("postgres", "show data_directory").unwrap());
    assert!(dir.join("PG_VERSION").exists(), "{}", dir.display());

    // Down: connections fail, the data stays.
    let port = pg.port();
    pg.stop().unwrap();
    assert!(!pg.is_running());
    assert!(connect(&pg.dsn("demo")).await.is_err());
    assert!(dir.join("PG_VERSION").exists());
    pg.stop().unwrap(); // stopping twice is fine

    // Up again on the same port.
    pg.restart().unwrap();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    let client = connect(&pg.dsn("demo")).await.unwrap();
    assert_eq!(select_one(&client).await, 1);
    drop(client);

    // Restarting a running server works as well.
    pg.restart().unwrap();
    assert_eq!(pg.psql("demo", "select 2").unwrap(), "2");

    drop(pg);
    assert!(!dir.exists(), "data dir {} left behind", dir.display());
    assert!(!dir.parent().unwrap().exists());
}

#[tokio::test]
async fn exporter_reads_everything_and_writes_nothing() {
    let pg = TempPostgres::start_with(TempPostgresOptions { pg_stat_statements: true, ..Default::default() }).unwrap();
    pg.create_database("other db").unwrap();
    pg.psql("other db", "create table t(x int); insert into t values (1), (2);").unwrap();
    assert_eq!(pg.psql("other db", "select x, x * 10 from t order by x").unwrap(), "1|10\n2|20");

    let client = connect(&pg.dsn("other db")).await.unwrap();
    let n: i64 = client.query_one("select count(*) from t", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    assert!(client.execute("insert into t values (3)", &[]).await.is_err());
    assert!(client.execute("create table u(x int)", &[]).await.is_err());
    // pg_stat_statements is preloaded and installed, and readable.
    let calls: i64 = client
        .query_one("select count(*) from pg_stat_statements where query like '%from t%'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(calls >= 1);
    let demo = connect(&pg.dsn("demo")).await.unwrap();
    demo.query_one("select count(*) from pg_stat_statements", &[]).await.unwrap();
}

#[test]
fn errors_carry_the_log_and_never_the_password() {
    // A bad setting: the server does not start, and the error says why.
    let err = TempPostgres::start_with(TempPostgresOptions {
        extra_conf: vec!["shared_buffers = 'lots'".to_owned()],
        ..Default::default()
    })
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("pg_ctl start"), "{msg}");
    assert!(msg.contains("shared_buffers"), "{msg}");
    assert!(msg.contains("postgres.log"), "{msg}");

    // A failing statement that echoes the password: it is scrubbed.
    let pg = TempPostgres::start().unwrap();
    let sql = format!("select '{}'::boolean", pg.password());
    let msg = format!("{:#}", pg.psql("postgres", &sql).unwrap_err());
    assert!(msg.contains("invalid input syntax"), "{msg}");
    assert!(!msg.contains(pg.password()), "{msg}");
    assert!(msg.contains("<redacted>"), "{msg}");
    assert!(!format!("{pg:?}").contains(pg.password()));
}

#[test]
fn fixed_port_and_parallel_instances() {
    let port = free_loopback_port().unwrap();
    let a = TempPostgres::start_with(TempPostgresOptions { port: Some(port), ..Default::default() }).unwrap();
    assert_eq!(a.port(), port);
    let b = TempPostgres::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.password(), b.password());
    assert_eq!(a.psql("demo", "select 'a'").unwrap(), "a");
    assert_eq!(b.psql("demo", "select 'b'").unwrap(), "b");
    // The same explicit port cannot be handed out twice.
    assert!(TempPostgres::start_with(TempPostgresOptions { port: Some(port), ..Default::default() }).is_err());
}
