//! Rule tests on MySQL/MariaDB: a session of its own, and the fixture's tables as temporary tables
//! that shadow the real ones.
//!
//! MySQL resolves an unqualified name to a temporary table of that name before the base table, so
//! the rule's SQL runs unchanged. Temporary tables live as long as their session, which is taken
//! out of the pool and closed at the end ([`FixtureSession::finish`]): nothing is kept and the
//! session never serves a real evaluation. MariaDB refuses even temporary tables in a read-only
//! session, so the tables are made with the session read-write for that moment, then it is made
//! read-only again (`SET SESSION TRANSACTION READ ONLY`) before the rule's statement runs, as in
//! production; a rule's statement cannot write a real table. Creating them needs the
//! `CREATE TEMPORARY TABLES` privilege. Two limits of MySQL the test author meets:
//! a temporary table cannot be named twice in one statement (a self-join, or a CTE that reads it
//! twice: `ER_CANT_REOPEN_TABLE`), and a schema-qualified name reads the real table.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};
use tokio::time::{timeout_at, Instant};

use super::error::{describe_mysql_error, describe_mysql_pool_error};
use super::{run_statement, MySqlSource};
use crate::rules::model::MAIN_QUERY;
use crate::source::credentials::{scrub, Secrets};
use crate::source::fixture::{Fixture, FixtureTable};
use crate::source::seam::{
    Connections, Fetch, FetchError, FixtureSession, Reach, RowSink, ServerIdentity, Source, StatementCheck,
};

/// How long closing a session may take before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A fixture's temporary tables on a session of its own.
pub(super) struct MySqlFixture {
    name: String,
    /// `None` once finished.
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// The server the rule's statement is rendered for, as the source's sessions learnt it.
    server: ServerIdentity,
    secrets: Secrets,
}

impl std::fmt::Debug for MySqlFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlFixture").field("database", &self.name).finish_non_exhaustive()
    }
}

impl MySqlSource {
    /// Takes a session out of the pool and loads `fixture` into it.
    pub(super) async fn open_fixture_session(
        &self,
        fixture: &Fixture,
        timeout: Duration,
    ) -> Result<MySqlFixture, FetchError> {
        let deadline = Instant::now() + timeout;
        let mut conn = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => return Err(FetchError::Connect(self.scrub(&describe_mysql_pool_error(&e)))),
            Ok(Ok(c)) => deadpool::managed::Object::take(c),
        };
        match timeout_at(deadline, load(&mut conn, fixture)).await {
            Err(_) => Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => Err(FetchError::Query(self.scrub(&e))),
            Ok(Ok(())) => Ok(MySqlFixture {
                name: self.database.name.clone(),
                conn: tokio::sync::Mutex::new(Some(conn)),
                server: self.server(),
                secrets: self.secrets.clone(),
            }),
        }
    }
}

/// Creates and fills every table in a read-write moment, then makes the session read-only again.
async fn load(conn: &mut Conn, fixture: &Fixture) -> Result<(), String> {
    conn.query_drop("SET SESSION TRANSACTION READ WRITE").await.map_err(|e| describe_mysql_error(&e))?;
    for table in &fixture.tables {
        conn.query_drop(create_statement(table)).await.map_err(|e| {
            format!(
                "fixture table '{}': the server refuses to create it: {} (the user needs the CREATE TEMPORARY TABLES privilege)",
                table.name,
                describe_mysql_error(&e)
            )
        })?;
        if table.rows.is_empty() || table.columns.is_empty() {
            continue;
        }
        let marks = vec!["?"; table.columns.len()].join(", ");
        let insert = format!("INSERT INTO {} VALUES ({marks})", quote_ident(&table.name));
        let rows = table.rows.iter().map(|row| Params::Positional(row.iter().map(json_value).collect()));
        conn.exec_batch(insert, rows).await.map_err(|e| {
            format!("fixture table '{}': a row does not fit its columns: {}", table.name, describe_mysql_error(&e))
        })?;
    }
    conn.query_drop("SET SESSION TRANSACTION READ ONLY").await.map_err(|e| describe_mysql_error(&e))
}

/// `CREATE TEMPORARY TABLE name (col type, ...)`; the names quoted, the types as the test file
/// gives them.
fn create_statement(table: &FixtureTable) -> String {
    let columns: Vec<String> =
        table.columns.iter().map(|c| format!("{} {}", quote_ident(&c.name), c.sql_type)).collect();
    format!("CREATE TEMPORARY TABLE {} ({})", quote_ident(&table.name), columns.join(", "))
}

/// A fixture value as a parameter: text is read by the column's type, as the `mysql` client reads
/// a literal; an object or array goes as its JSON text.
fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::NULL,
        serde_json::Value::Bool(b) => Value::Int(i64::from(*b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Bytes(s.clone().into_bytes()),
        other => Value::Bytes(other.to_string().into_bytes()),
    }
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl MySqlFixture {
    async fn fetch_fixture(&self, fetch: Fetch<'_>, sink: &mut dyn RowSink) -> Result<(), FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        let sql = super::statement_for(fetch.rule, &self.server)?;
        sink.statement(MAIN_QUERY, &sql);
        let mut guard = self.conn.lock().await;
        let Some(conn) = guard.as_mut() else {
            return Err(FetchError::Query("the fixture session was already finished".into()));
        };
        match timeout_at(deadline, run_statement(conn, &sql, fetch.rule.bindings(), sink)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(FetchError::Query(m))) => Err(FetchError::Query(scrub(&self.secrets, &m))),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // Mid-statement: the session is dropped (the driver closes it), its tables with it.
                guard.take();
                Err(FetchError::Timeout(fetch.timeout))
            }
        }
    }
}

impl Source for MySqlFixture {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch<'a>(&'a self, fetch: Fetch<'a>, sink: &'a mut dyn RowSink) -> BoxFuture<'a, Result<(), FetchError>> {
        self.fetch_fixture(fetch, sink).boxed()
    }

    fn prepare<'a>(&'a self, _fetch: Fetch<'a>) -> BoxFuture<'a, Result<Vec<StatementCheck>, FetchError>> {
        async { Ok(Vec::<StatementCheck>::new()) }.boxed()
    }

    fn reach(&self) -> Reach {
        Reach::Server
    }

    fn open_fixture<'a>(
        &'a self,
        _fixture: &'a Fixture,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn FixtureSession>, FetchError>> {
        crate::source::seam::nested_fixture_refused()
    }

    fn connections(&self) -> Connections {
        Connections::default()
    }

    fn close(&self) {}

    fn drain(&self, _limit: Duration) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

impl FixtureSession for MySqlFixture {
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<(), FetchError>> {
        async move {
            let Some(conn) = self.conn.lock().await.take() else { return Ok(()) };
            // Closing the session drops its temporary tables.
            match tokio::time::timeout(CLOSE_TIMEOUT, conn.disconnect()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(FetchError::Query(scrub(&self.secrets, &describe_mysql_error(&e)))),
                Err(_) => Err(FetchError::Timeout(CLOSE_TIMEOUT)),
            }
        }
        .boxed()
    }
}
