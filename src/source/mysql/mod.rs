//! MySQL and MariaDB: a pool of sessions per database, and running one rule's statement into a
//! [`RowSink`].
//!
//! This is the only module that names the MySQL driver (`mysql_async`, chosen over sqlx's MySQL
//! driver because it streams rows one at a time from a prepared statement, takes a rustls
//! configuration with the ring provider, and exposes the session id that `KILL QUERY` needs). It
//! keeps the promises the PostgreSQL source keeps:
//!
//! - a bounded pool per database (deadpool, as for PostgreSQL: rules beyond it queue), each new
//!   session with a fresh password, checked (`COM_PING`) before reuse, with TCP keepalives
//!   ([`connect`]);
//! - sessions a DBA can recognise (the `program_name` connection attribute, and a comment
//!   `/* sql-signal-exporter rule=NAME */` at the head of every statement), read-only, in UTC, with a
//!   server-side statement limit and lock wait limits ([`connect`]);
//! - a statement past its timeout is killed on the server ([`cancel`]: `KILL QUERY`);
//! - one statement per rule per evaluation: prepared statements are cached per session, so the
//!   prepare is paid once per session and each evaluation sends one `COM_STMT_EXECUTE`;
//! - rows are decoded and pushed into the sink as they arrive ([`decode`]).
//!
//! **Targets are bound with `JSON_TABLE`**, not a temporary table: the rule's targets go as one
//! JSON parameter (`?`), an array with one object per target keyed by label, and the query opens
//! it with `JSON_TABLE(?, '$[*]' COLUMNS (cluster VARCHAR(255) PATH '$.cluster', ...))`. That is
//! one statement (a temporary table needs a create, an insert and a drop per evaluation, and MySQL
//! cannot name a temporary table twice in one statement), needs no write privilege (sessions are
//! read-only), and works on MySQL 8 and MariaDB 10.6+. A statement with no parameter binds
//! nothing; one with more than one is refused with the reason.

use std::sync::Arc;
use std::time::Duration;

use deadpool::Runtime;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Statement, Value};
use tokio::time::{timeout_at, Instant};
use tokio_util::task::TaskTracker;

use super::fixture::Fixture;
use super::seam::FixtureSession;
use super::seam::{
    parameter_mismatch, render_statement, ColumnType, Connections, ExplainLimits, Fetch, FetchError, PoolSettings,
    Prepared, Reach, RowSink, ServerIdentity, Source, StatementCheck, SESSION_NAME,
};
use crate::rules::model::{Bindings, Database, Rule, MAIN_QUERY};
use crate::source::backoff::Backoff;
use crate::source::credentials::{remember, scrub, Credentials, Secrets};

mod cancel;
mod connect;
mod decode;
mod error;
mod explain;
mod fixture;

use cancel::MySqlInFlight;
use connect::{MySqlConn, MySqlManager, MySqlPool, MySqlTls, SessionLimits};
use decode::{mysql_cells, mysql_decoded, mysql_type_name};
use error::{describe_mysql_error, describe_mysql_pool_error};

/// How long a pooled session has to answer its check before reuse.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);

/// A pool of sessions to one MySQL or MariaDB database.
pub struct MySqlSource {
    pub database: Arc<Database>,
    pool: MySqlPool,
    /// Strings that must never leave this module: the DSN and every password used so far.
    secrets: Secrets,
    backoff: Backoff,
    /// Kills of abandoned statements, awaited at shutdown.
    kills: TaskTracker,
}

impl std::fmt::Debug for MySqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlSource").field("database", &self.database.name).finish_non_exhaustive()
    }
}

impl MySqlSource {
    /// Builds the pool; connects lazily, so this succeeds with the database down.
    pub fn new(database: Arc<Database>, settings: PoolSettings) -> Result<MySqlSource, String> {
        let named = |msg: String| format!("database '{}': {msg}", database.name);
        let secrets = Secrets::default();
        remember(&secrets, database.dsn.expose());
        if let Some(pw) = database.conninfo.get("password") {
            remember(&secrets, pw);
        }
        let tls = MySqlTls::plan(&database).map_err(named)?;
        let limits = SessionLimits { statement: settings.statement_timeout, lock: database.lock_timeout };
        let credentials = Credentials::new(database.password.clone(), secrets.clone());
        let manager = MySqlManager::new(&database, tls, credentials, limits).map_err(named)?;
        let pool = MySqlPool::builder(manager)
            .max_size(database.max_connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(database.connect_timeout))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| named(format!("cannot build the connection pool: {e}")))?;
        Ok(MySqlSource {
            database,
            pool,
            secrets,
            backoff: Backoff::new(settings.max_backoff),
            kills: TaskTracker::new(),
        })
    }

    /// Removes the DSN and every password from a message of the driver or server.
    fn scrub(&self, text: &str) -> String {
        scrub(&self.secrets, text)
    }

    /// The server templates render for: what the newest session reported, else the database's
    /// assumed identity (by its DSN's scheme).
    fn server(&self) -> ServerIdentity {
        self.pool.manager().server.identity_or(|| self.database.assumed_server())
    }

    /// The rule's statement for this server, with the comment that names it.
    fn statement(&self, rule: &Rule) -> Result<String, FetchError> {
        statement_for(rule, &self.server())
    }

    /// A session within the deadline, or why none.
    async fn session(&self, deadline: Instant, timeout: Duration) -> Result<MySqlConn, FetchError> {
        match timeout_at(deadline, self.pool.get()).await {
            Err(_) => Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => {
                let msg = self.scrub(&describe_mysql_pool_error(&e));
                if !matches!(e, deadpool::managed::PoolError::Timeout(_)) {
                    self.backoff.failed(&msg);
                }
                Err(FetchError::Connect(msg))
            }
            Ok(Ok(c)) => {
                self.backoff.succeeded();
                Ok(c)
            }
        }
    }

    async fn fetch_into(&self, fetch: Fetch<'_>, sink: &mut dyn RowSink) -> Result<(), FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        if let Some(wait) = self.backoff.blocked_for() {
            return Err(FetchError::Connect(format!(
                "not retrying for another {} after: {}",
                humantime::format_duration(Duration::from_secs(wait.as_secs().max(1))),
                self.backoff.last_error()
            )));
        }
        let conn = self.session(deadline, fetch.timeout).await?;
        let sql = self.statement(fetch.rule)?;
        sink.statement(MAIN_QUERY, &sql);
        let mut in_flight = MySqlInFlight::new(conn, self.pool.clone(), self.kills.clone());
        let ran = timeout_at(deadline, run_statement(in_flight.conn(), &sql, fetch.rule.bindings(), sink)).await;
        match ran {
            Ok(Ok(())) => {
                in_flight.finish();
                Ok(())
            }
            // The server is still sending rows nobody will read: the guard kills the statement.
            Ok(Err(e @ FetchError::TooManyRows(_))) => Err(e),
            // The session may be mid-result after an error in a row: the guard discards it.
            Ok(Err(FetchError::Query(m))) => Err(FetchError::Query(self.scrub(&m))),
            Ok(Err(e)) => Err(e),
            // The guard kills the statement on the server and discards the session.
            Err(_) => Err(FetchError::Timeout(fetch.timeout)),
        }
    }

    /// Prepares (never runs) the rule's statement on a session.
    async fn prepare_rendered(&self, fetch: Fetch<'_>) -> Result<Prepared, FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        let mut conn = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(fetch.timeout)),
            Ok(Err(e)) => return Err(FetchError::Connect(self.scrub(&describe_mysql_pool_error(&e)))),
            Ok(Ok(c)) => c,
        };
        let sql = self.statement(fetch.rule)?;
        match timeout_at(deadline, conn.prep(sql.as_str())).await {
            Err(_) => {
                drop(deadpool::managed::Object::take(conn));
                Err(FetchError::Timeout(fetch.timeout))
            }
            Ok(Err(e)) => Err(FetchError::Query(format!(
                "the server rejects the query: {}",
                self.scrub(&describe_mysql_error(&e))
            ))),
            Ok(Ok(stmt)) => Ok(Prepared {
                cast_to_text: mysql_cast_to_text,
                binding_problems: binding_problems(usize::from(stmt.num_params()), fetch.rule.bindings().labels),
                columns: stmt
                    .columns()
                    .iter()
                    .map(|c| {
                        let ty = match mysql_decoded(c) {
                            Some(d) => ColumnType::Known(d, mysql_type_name(c)),
                            None => ColumnType::Unsupported(mysql_type_name(c)),
                        };
                        (c.name_str().into_owned(), ty)
                    })
                    .collect(),
                sql,
            }),
        }
    }
}

impl Source for MySqlSource {
    fn name(&self) -> &str {
        &self.database.name
    }

    fn fetch<'a>(&'a self, fetch: Fetch<'a>, sink: &'a mut dyn RowSink) -> BoxFuture<'a, Result<(), FetchError>> {
        self.fetch_into(fetch, sink).boxed()
    }

    fn prepare<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Vec<StatementCheck>, FetchError>> {
        async move {
            let result = match self.prepare_rendered(fetch).await {
                Err(e @ (FetchError::Connect(_) | FetchError::Timeout(_))) => return Err(e),
                other => other,
            };
            Ok(vec![StatementCheck { query: MAIN_QUERY.to_string(), result }])
        }
        .boxed()
    }

    fn reach(&self) -> Reach {
        Reach::Server
    }

    fn transport(&self, timeout: Duration) -> BoxFuture<'_, Option<String>> {
        async move {
            let mut conn = tokio::time::timeout(timeout, self.pool.get()).await.ok()?.ok()?;
            let sql = "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')";
            let rows: Vec<(String, String)> = tokio::time::timeout(timeout, conn.query(sql)).await.ok()?.ok()?;
            let get = |k: &str| rows.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
            Some(match (get("Ssl_version").filter(|v| !v.is_empty()), get("Ssl_cipher")) {
                (Some(version), Some(cipher)) => format!("TLS {version} ({cipher})"),
                _ => "plaintext (no TLS)".to_string(),
            })
        }
        .boxed()
    }

    fn explain<'a>(
        &'a self,
        fetch: Fetch<'a>,
        limits: &'a ExplainLimits,
    ) -> BoxFuture<'a, Result<Vec<String>, FetchError>> {
        self.explain_plan(fetch, limits).boxed()
    }

    fn open_fixture<'a>(
        &'a self,
        fixture: &'a Fixture,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn FixtureSession>, FetchError>> {
        async move {
            let session = self.open_fixture_session(fixture, timeout).await?;
            Ok(Box::new(session) as Box<dyn FixtureSession>)
        }
        .boxed()
    }

    fn connections(&self) -> Connections {
        let s = self.pool.status();
        Connections { open: s.size, in_use: s.size.saturating_sub(s.available) }
    }

    fn close(&self) {
        self.pool.close();
        self.kills.close();
    }

    fn drain(&self, limit: Duration) -> BoxFuture<'_, ()> {
        async move {
            self.kills.close();
            let _ = tokio::time::timeout(limit, self.kills.wait()).await;
        }
        .boxed()
    }
}

/// The rule's statement for `server`, with the comment that names it.
fn statement_for(rule: &Rule, server: &ServerIdentity) -> Result<String, FetchError> {
    let sql = render_statement(rule, server)?;
    // A rule's name is an identifier, but a comment must never be closed early by one.
    let name = rule.name.replace("*/", "");
    Ok(format!("/* {SESSION_NAME} rule={name} */ {sql}"))
}

/// Prepares `sql` (once per session: the driver caches it), binds the targets and streams each
/// decoded row into `sink`.
async fn run_statement(
    conn: &mut mysql_async::Conn,
    sql: &str,
    bindings: Bindings<'_>,
    sink: &mut dyn RowSink,
) -> Result<(), FetchError> {
    let query_error = |e: mysql_async::Error| FetchError::Query(describe_mysql_error(&e));
    let stmt: Statement = conn.prep(sql).await.map_err(query_error)?;
    let params = bind(usize::from(stmt.num_params()), bindings)?;
    let mut result = conn.exec_iter(&stmt, params).await.map_err(query_error)?;
    sink.columns(result.columns_ref().iter().map(|c| c.name_str().into_owned()).collect());
    while let Some(row) = result.next().await.map_err(query_error)? {
        sink.row(mysql_cells(row))?;
    }
    Ok(())
}

/// The rule's targets as the statement's parameters: none, or the one JSON array `JSON_TABLE`
/// opens (an object per target, keyed by label).
fn bind(expected: usize, bindings: Bindings<'_>) -> Result<Params, FetchError> {
    match expected {
        0 => Ok(Params::Empty),
        1 if !bindings.labels.is_empty() => Ok(Params::Positional(vec![Value::from(targets_json(bindings))])),
        n => Err(FetchError::Query(binding_problems(n, bindings.labels).join("; "))),
    }
}

/// `[{"label": "value", ...}, ...]`, one object per target.
fn targets_json(bindings: Bindings<'_>) -> String {
    let rows: Vec<serde_json::Value> = bindings
        .targets
        .iter()
        .map(|t| bindings.labels.iter().cloned().zip(t.iter().cloned().map(serde_json::Value::String)).collect())
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// What is wrong with a statement of `params` parameters for a rule that binds `labels`.
fn binding_problems(params: usize, labels: &[String]) -> Vec<String> {
    match (params, labels.len()) {
        (0, _) | (1, 1..) => Vec::new(),
        (n, 0) => vec![parameter_mismatch(n, 0)],
        (n, _) => vec![format!(
            "the query uses {n} parameters (?) but the rule binds one: its targets as a JSON array of objects keyed by label ({}); open it once with JSON_TABLE(?, '$[*]' COLUMNS ({} VARCHAR(255) PATH '$.{}', ...)) and join that",
            labels.join(", "),
            labels[0],
            labels[0]
        )],
    }
}

/// This kind's cast of `column` to text, for messages.
fn mysql_cast_to_text(column: &str) -> String {
    format!("CAST({column} AS CHAR)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_go_as_one_json_array_of_objects() {
        let labels = vec!["cluster".to_string(), "type".to_string()];
        let targets = vec![vec!["a\"b".to_string(), "rpm".to_string()]];
        let json = targets_json(Bindings { labels: &labels, targets: &targets });
        assert_eq!(json, r#"[{"cluster":"a\"b","type":"rpm"}]"#);
        assert!(binding_problems(1, &labels).is_empty());
        assert!(binding_problems(2, &labels)[0].contains("JSON_TABLE"));
        assert!(binding_problems(1, &[])[0].contains("binds none"));
    }
}
