//! PostgreSQL: connection pools, and running one rule's statement into a [`RowSink`].
//!
//! This is the only module that names the PostgreSQL driver and pool crates. It owns the guarantees
//! the database cares about: a bounded pool per database (rules beyond it queue instead of opening
//! connections), sessions that are read-only, named (`application_name`) and carry
//! `statement_timeout` and `lock_timeout` as startup options (so they cost no extra statement), and
//! a statement past its timeout is cancelled on the server ([`cancel`]), not merely abandoned.
//! Behind a transaction pooler the settings go per transaction instead ([`pooler`]). Connections
//! are made by our own pool manager ([`connect`]: a fresh password per connection) over rustls
//! ([`tls`]: libpq's sslmodes).
//!
//! The server's version (`server_version_num` and `server_version`, one statement) is read once per
//! new connection, in the pool's `post_create` hook, into the [`ServerIdentity`] templates see:
//! they branch on it, yet a rule still costs one statement per evaluation.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Hook, HookError};
use deadpool::Runtime;
use futures_util::future::BoxFuture;
use futures_util::{pin_mut, FutureExt, TryStreamExt};
use tokio::time::{timeout_at, Instant};
use tokio_postgres::types::{ToSql, Type};
use tokio_util::task::TaskTracker;

use super::fixture::Fixture;
use super::seam::{
    parameter_mismatch, render_statement, ColumnType, Connections, ExplainLimits, Fetch, FetchError, FixtureSession,
    PoolSettings, Prepared, Reach, RowSink, ServerIdentity, ServerSlot, Source, StatementCheck,
};
use crate::rules::model::{Bindings, Database, Rule, MAIN_QUERY};
use crate::rules::server::Flavour;
use crate::source::backoff::Backoff;
use crate::source::credentials::{remember, scrub, Credentials, Secrets};

mod cancel;
mod config;
mod connect;
mod decode;
mod error;
mod explain;
mod fixture;
mod plan;
mod pooler;
mod tls;
mod tls_detail;

use cancel::InFlight;
use connect::{ConnectError, PgManager, Pool};
pub use decode::decoded;
pub use error::describe_pg_error;
use error::describe_pool_error;
use tls::MakeRustls;

/// How long a pooled session has to answer before reuse.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);
/// What a new connection asks of the server, once: the two facts of its [`ServerIdentity`].
const SERVER_IDENTITY_QUERY: &str = "SELECT current_setting('server_version_num'), current_setting('server_version')";

/// The identity in the answer to [`SERVER_IDENTITY_QUERY`]; `None` when it is not there.
fn identity_of(message: &tokio_postgres::SimpleQueryMessage) -> Option<ServerIdentity> {
    let tokio_postgres::SimpleQueryMessage::Row(row) = message else { return None };
    let version_num = row.get(0)?.trim().parse::<i64>().ok()?;
    let version = row.get(1).unwrap_or_default().trim().to_string();
    Some(ServerIdentity::reported(Flavour::Postgresql, version, version_num))
}

/// A pool of sessions to one database.
pub struct PgSource {
    pub database: Arc<Database>,
    pool: Pool,
    /// Strings that must never leave this module: the DSN and every password used so far.
    secrets: Secrets,
    tls: MakeRustls,
    statement_timeout: Duration,
    /// What the newest connection learnt of the server; the assumption until one was made or when
    /// the server did not tell.
    server: Arc<ServerSlot>,
    backoff: Backoff,
    /// Cancel requests of abandoned queries, awaited at shutdown.
    cancels: TaskTracker,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource").field("database", &self.database.name).finish_non_exhaustive()
    }
}

impl PgSource {
    /// Builds the pool; connects lazily, so this succeeds with the database down.
    /// `settings.statement_timeout` is the server-side backstop for the slowest rule on this
    /// database; `settings.max_backoff` caps the wait between connection attempts after failures.
    pub fn new(database: Arc<Database>, settings: PoolSettings) -> Result<PgSource, String> {
        let PoolSettings { statement_timeout, max_backoff } = settings;
        let secrets = Secrets::default();
        remember(&secrets, database.dsn.expose());
        if let Some(pw) = database.conninfo.get("password") {
            remember(&secrets, pw);
        }
        let (ssl_mode, tls) =
            tls::plan(&database.conninfo).map_err(|msg| format!("database '{}': {msg}", database.name))?;
        let config = config::session_config(&database, statement_timeout, ssl_mode)
            .map_err(|msg| format!("database '{}': {msg}", database.name))?;
        // Verified: a pooled session answers an empty query before reuse (within a second, else it is
        // dropped), so after a network failure a half-open session costs a second, not a timeout.
        let manager = PgManager::new(config, tls.clone(), Credentials::new(database.password.clone(), secrets.clone()));
        let server = Arc::new(ServerSlot::default());
        let slot = server.clone();
        let pool = Pool::builder(manager)
            .max_size(database.max_connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(database.connect_timeout))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .post_create(Hook::async_fn(move |client: &mut deadpool_postgres::ClientWrapper, _| {
                let slot = slot.clone();
                Box::pin(async move {
                    match client.simple_query(SERVER_IDENTITY_QUERY).await {
                        Ok(messages) => {
                            slot.learn(messages.iter().find_map(identity_of));
                            Ok(())
                        }
                        // A PostgreSQL-compatible server without the settings: templates see the assumed version.
                        Err(e) if e.as_db_error().is_some() => {
                            slot.learn(None);
                            Ok(())
                        }
                        Err(e) => Err(HookError::Backend(ConnectError::Driver(e))),
                    }
                })
            }))
            .build()
            .map_err(|e| format!("database '{}': cannot build the connection pool: {e}", database.name))?;
        Ok(PgSource {
            database,
            pool,
            secrets,
            tls,
            statement_timeout,
            server,
            backoff: Backoff::new(max_backoff),
            cancels: TaskTracker::new(),
        })
    }

    /// The server templates render for: what the newest connection reported, else the database's
    /// assumed identity.
    pub fn server(&self) -> ServerIdentity {
        self.server.identity_or(|| self.database.assumed_server())
    }

    /// Removes the DSN and password from a message that came from the driver or server.
    pub fn scrub(&self, text: &str) -> String {
        scrub(&self.secrets, text)
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
        let client = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(fetch.timeout)),
            Ok(Err(e)) => {
                let msg = self.scrub(&describe_pool_error(&e));
                if !matches!(e, deadpool::managed::PoolError::Timeout(_)) {
                    self.backoff.failed(&msg);
                }
                return Err(FetchError::Connect(msg));
            }
            Ok(Ok(c)) => c,
        };
        self.backoff.succeeded();
        let sql = self.render(fetch.rule)?;
        sink.statement(MAIN_QUERY, &sql);
        let bindings = fetch.rule.bindings();
        let mut in_flight = InFlight::new(client, self.cancels.clone(), self.tls.clone());
        let ran = if self.database.pooler.is_some() {
            let timeouts = pooler::Timeouts { statement: self.statement_timeout, lock: self.database.lock_timeout };
            timeout_at(deadline, pooler::run(in_flight.client(), &sql, bindings, sink, timeouts)).await
        } else {
            timeout_at(deadline, run(in_flight.client(), &sql, bindings, sink)).await
        };
        match ran {
            Ok(Ok(())) => {
                in_flight.finish();
                Ok(())
            }
            // The server is still sending rows nobody will read: the guard stops it.
            Ok(Err(e @ FetchError::TooManyRows(_))) => Err(e),
            Ok(Err(FetchError::Query(m))) => {
                in_flight.finish();
                Err(FetchError::Query(self.scrub(&m)))
            }
            Ok(Err(e)) => Err(e),
            // The guard cancels the query on the server and discards the session.
            Err(_) => Err(FetchError::Timeout(fetch.timeout)),
        }
    }

    /// The rule's statement, rendered for this server.
    fn render(&self, rule: &Rule) -> Result<String, FetchError> {
        render_statement(rule, &self.server())
    }

    async fn prepare_rendered(&self, fetch: Fetch<'_>) -> Result<Prepared, FetchError> {
        let timeout = fetch.timeout;
        let deadline = Instant::now() + timeout;
        let client = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => return Err(FetchError::Connect(self.scrub(&describe_pool_error(&e)))),
            Ok(Ok(c)) => c,
        };
        let sql = self.render(fetch.rule)?;
        let prepared = if self.database.pooler.is_some() {
            timeout_at(deadline, pooler::prepare(&client, &sql)).await
        } else {
            timeout_at(deadline, async { client.prepare(&sql).await.map(|s| pooler::Shape::of(&s)) }).await
        };
        match prepared {
            Err(_) => {
                drop(deadpool::managed::Object::take(client));
                Err(FetchError::Timeout(timeout))
            }
            Ok(Err(e)) => {
                let mut msg = describe_pg_error(&e);
                if let Some(tokio_postgres::error::ErrorPosition::Original(at)) =
                    e.as_db_error().and_then(|d| d.position())
                {
                    let line = sql.chars().take((*at as usize).saturating_sub(1)).filter(|&c| c == '\n').count() + 1;
                    msg.push_str(&format!(" (line {line} of the rendered SQL)"));
                }
                Err(FetchError::Query(format!("the server rejects the query: {}", self.scrub(&msg))))
            }
            Ok(Ok(stmt)) => Ok(Prepared {
                cast_to_text: pg_cast_to_text,
                binding_problems: binding_problems(&stmt.params, fetch.rule.bindings().labels),
                columns: stmt.columns.iter().map(|(name, ty)| (name.clone(), column_type(ty))).collect(),
                sql,
            }),
        }
    }
}

impl Source for PgSource {
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
            let client = tokio::time::timeout(timeout, self.pool.get()).await.ok()?.ok()?;
            let sql = "SELECT CASE WHEN ssl THEN 'TLS ' || version || ' (' || cipher || ')' ELSE 'plaintext (no TLS)' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
            let messages = tokio::time::timeout(timeout, client.simple_query(sql)).await.ok()?.ok()?;
            messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
        }
        .boxed()
    }

    fn explain<'a>(
        &'a self,
        fetch: Fetch<'a>,
        limits: &'a ExplainLimits,
    ) -> BoxFuture<'a, Result<Vec<String>, FetchError>> {
        async move {
            let x = self.explain_rendered(fetch).await?;
            Ok(plan::plan_warnings(&x.plan, &x.tables, limits))
        }
        .boxed()
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
        self.cancels.close();
    }

    fn drain(&self, limit: Duration) -> BoxFuture<'_, ()> {
        async move {
            self.cancels.close();
            let _ = tokio::time::timeout(limit, self.cancels.wait()).await;
        }
        .boxed()
    }
}

fn column_type(ty: &Type) -> ColumnType {
    match decoded(ty) {
        Some(d) => ColumnType::Known(d, ty.name().to_string()),
        None => ColumnType::Unsupported(ty.name().to_string()),
    }
}

/// Runs `sql` with the rule's target columns bound as text arrays `$1, $2, …`, pushing each row.
async fn run(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    bindings: Bindings<'_>,
    sink: &mut dyn RowSink,
) -> Result<(), FetchError> {
    let stmt = client.prepare_cached(sql).await.map_err(|e| FetchError::Query(describe_pg_error(&e)))?;
    let params = bindings.columns();
    let bound = bind(stmt.params().len(), &params)?;
    sink.columns(stmt.columns().iter().map(|c| c.name().to_string()).collect());
    let stream = client.query_raw(&stmt, bound).await.map_err(|e| FetchError::Query(describe_pg_error(&e)))?;
    pin_mut!(stream);
    while let Some(row) = stream.try_next().await.map_err(|e| FetchError::Query(describe_pg_error(&e)))? {
        sink.row(decode::cells(&row))?;
    }
    Ok(())
}

/// The rule's target columns as the statement's parameters: each a text array, or none at all for a
/// statement that takes none.
fn bind(expected: usize, params: &[Vec<String>]) -> Result<Vec<&(dyn ToSql + Sync)>, FetchError> {
    if expected == 0 {
        Ok(Vec::new())
    } else if expected == params.len() {
        Ok(params.iter().map(|p| p as &(dyn ToSql + Sync)).collect())
    } else {
        Err(FetchError::Query(parameter_mismatch(expected, params.len())))
    }
}

/// What is wrong with a prepared statement's parameters for a rule that binds `labels` (one text
/// array per label): their number, or a parameter used as something other than a text array.
fn binding_problems(params: &[Type], labels: &[String]) -> Vec<String> {
    if !params.is_empty() && params.len() != labels.len() {
        return vec![parameter_mismatch(params.len(), labels.len())];
    }
    params
        .iter()
        .enumerate()
        .filter(|(_, ty)| !<Vec<String> as ToSql>::accepts(ty))
        .map(|(i, ty)| {
            let n = i + 1;
            format!(
                "parameter ${n} is a text array (the values of label '{}' of every target), but the query uses it as {}; write ${n}::text[] and unnest it or use = ANY",
                labels.get(i).cloned().unwrap_or_default(),
                ty.name()
            )
        })
        .collect()
}

/// This kind's cast of `column` to text, for messages.
fn pg_cast_to_text(column: &str) -> String {
    format!("{column}::text")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Decoded;

    #[test]
    fn the_type_table_and_text_arrays() {
        assert_eq!(decoded(&Type::INTERVAL), None);
        assert_eq!(decoded(&Type::NUMERIC), Some(Decoded::Float));
        assert_eq!(column_type(&Type::INTERVAL), ColumnType::Unsupported("interval".into()));
        assert!(<Vec<String> as ToSql>::accepts(&Type::TEXT_ARRAY));
        assert!(!<Vec<String> as ToSql>::accepts(&Type::TEXT));
    }
}
