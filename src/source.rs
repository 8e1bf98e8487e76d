//! The database edge: connection pools, and running one rule's query into a [`ResultSet`].
//!
//! This is the only module that talks to PostgreSQL. It owns the guarantees the database cares about:
//! a bounded pool per database (rules beyond it queue instead of opening connections), sessions that
//! are read-only, named (`application_name`) and carry `statement_timeout` and `lock_timeout` as
//! startup options (so they cost no extra statement), and a query past its timeout is cancelled on
//! the server, not merely abandoned.
//!
//! The server's version (`server_version_num`) is read once per new connection, in the pool's
//! `post_create` hook, and kept on the [`Source`]: query templates branch on it (PostgreSQL 17 moved
//! columns between statistics views), yet a rule still costs one statement per evaluation.

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::{pin_mut, TryStreamExt};
use tokio::time::{timeout_at, Instant};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};
use tokio_util::task::TaskTracker;

use crate::cell::{Cell, ResultSet};
use crate::rules::model::Database;
use crate::secret::redact;

/// The `application_name` of every session, so a DBA sees who is querying.
pub const APPLICATION_NAME: &str = "sql-signal-exporter";

/// A query as the server prepared it, not run: its parameter types and result columns.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The rendered SQL that was prepared.
    pub sql: String,
    pub params: Vec<Type>,
    pub columns: Vec<(String, Type)>,
}

/// Why a query produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No connection could be had (server down, wrong credentials, pool exhausted past the timeout).
    Connect(String),
    /// The server rejected or aborted the query.
    Query(String),
    /// The rule's timeout passed; the query was cancelled on the server.
    Timeout(Duration),
    /// More rows than the rule allows; the rest were not read.
    TooManyRows(usize),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Connect(m) => write!(f, "cannot connect: {m}"),
            FetchError::Query(m) => write!(f, "query failed: {m}"),
            FetchError::Timeout(d) => write!(f, "timed out after {} and was cancelled", humantime::format_duration(*d)),
            FetchError::TooManyRows(n) => write!(f, "returned more than max_rows ({n}) rows"),
        }
    }
}

/// A pool of sessions to one database.
pub struct Source {
    pub database: Arc<Database>,
    pool: Pool,
    /// Strings that must never leave this module: the DSN and its password.
    secrets: Vec<String>,
    /// `server_version_num` of the newest connection; 0 until one was made or when the server did
    /// not tell.
    server_version_num: Arc<AtomicI64>,
    backoff: Backoff,
    /// Cancel requests of abandoned queries, awaited at shutdown.
    cancels: TaskTracker,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("database", &self.database.name).finish_non_exhaustive()
    }
}

impl Source {
    /// Builds the pool; connects lazily, so this succeeds with the database down.
    /// `statement_timeout` is the server-side backstop for the slowest rule on this database.
    /// `max_backoff` caps the wait between connection attempts after failures.
    pub fn new(database: Arc<Database>, statement_timeout: Duration, max_backoff: Duration) -> Result<Source, String> {
        let dsn = database.dsn.expose();
        let mut secrets = vec![dsn.to_string()];
        let mut config = parse_dsn(dsn).map_err(|msg| format!("database '{}': {msg}", database.name))?;
        if let Some(pw) = config.get_password() {
            secrets.push(String::from_utf8_lossy(pw).into_owned());
        }
        let mut options = config.get_options().map(|o| format!("{o} ")).unwrap_or_default();
        options.push_str(&format!(
            "-c default_transaction_read_only=on -c statement_timeout={} -c lock_timeout={}",
            // PostgreSQL takes these in milliseconds as an i32.
            statement_timeout.as_millis().clamp(1, i32::MAX as u128),
            database.lock_timeout.as_millis().clamp(1, i32::MAX as u128)
        ));
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        config.connect_timeout(database.connect_timeout);
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let server_version_num = Arc::new(AtomicI64::new(0));
        let version_slot = server_version_num.clone();
        let pool = Pool::builder(manager)
            .max_size(database.max_connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(database.connect_timeout))
            .post_create(Hook::async_fn(move |client, _| {
                let slot = version_slot.clone();
                Box::pin(async move {
                    match client.simple_query("SHOW server_version_num").await {
                        Ok(messages) => {
                            let version = messages.iter().find_map(|m| match m {
                                tokio_postgres::SimpleQueryMessage::Row(row) => {
                                    row.get(0).and_then(|v| v.trim().parse::<i64>().ok())
                                }
                                _ => None,
                            });
                            slot.store(version.unwrap_or(0), Ordering::Relaxed);
                            Ok(())
                        }
                        // A PostgreSQL-compatible server without the setting: templates see the assumed version.
                        Err(e) if e.as_db_error().is_some() => {
                            slot.store(0, Ordering::Relaxed);
                            Ok(())
                        }
                        Err(e) => Err(HookError::Backend(e)),
                    }
                })
            }))
            .build()
            .map_err(|e| format!("database '{}': cannot build the connection pool: {e}", database.name))?;
        Ok(Source {
            database,
            pool,
            secrets,
            server_version_num,
            backoff: Backoff::new(max_backoff),
            cancels: TaskTracker::new(),
        })
    }

    /// The server's `server_version_num` (e.g. 150004), once a connection has been made and the
    /// server told it.
    pub fn server_version_num(&self) -> Option<i64> {
        match self.server_version_num.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v),
        }
    }

    /// Removes the DSN and password from a message that came from the driver or server.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = redact(&out, s);
        }
        out
    }

    /// Connections open now, and those of them lent to a running query.
    pub fn connections(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.size.saturating_sub(s.available))
    }

    /// Runs `sql` with `params` (each bound as a text array), reading at most `max_rows` rows,
    /// all within `timeout` (waiting for a connection included).
    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Vec<String>],
        timeout: Duration,
        max_rows: usize,
    ) -> Result<ResultSet, FetchError> {
        self.fetch_rendered(|_| Ok(sql.to_string()), params, timeout, max_rows).await
    }

    /// Like [`fetch`](Self::fetch), with the SQL rendered by `render` from the server's
    /// `server_version_num` once a connection is at hand (the assumed version of
    /// [`crate::template::ASSUMED_SERVER_VERSION_NUM`] when the server did not tell). A render error
    /// is a [`FetchError::Query`] and sends nothing to the server.
    pub async fn fetch_rendered(
        &self,
        render: impl FnOnce(i64) -> Result<String, String>,
        params: &[Vec<String>],
        timeout: Duration,
        max_rows: usize,
    ) -> Result<ResultSet, FetchError> {
        let deadline = Instant::now() + timeout;
        if let Some(wait) = self.backoff.blocked_for() {
            return Err(FetchError::Connect(format!(
                "not retrying for another {} after: {}",
                humantime::format_duration(Duration::from_secs(wait.as_secs().max(1))),
                self.backoff.last_error()
            )));
        }
        let client = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => {
                let msg = self.scrub(&describe_pool_error(&e));
                if !matches!(e, deadpool_postgres::PoolError::Timeout(_)) {
                    self.backoff.failed(&msg);
                }
                return Err(FetchError::Connect(msg));
            }
            Ok(Ok(c)) => c,
        };
        self.backoff.succeeded();
        let version = self.server_version_num().unwrap_or(crate::template::ASSUMED_SERVER_VERSION_NUM);
        let sql = render(version).map_err(FetchError::Query)?;
        let mut in_flight = InFlight::new(client, self.cancels.clone());
        match timeout_at(deadline, run(in_flight.client(), &sql, params, max_rows)).await {
            Ok(Ok(rs)) => {
                in_flight.finish();
                Ok(rs)
            }
            // The server is still sending rows nobody will read: the guard stops it.
            Ok(Err(e @ FetchError::TooManyRows(_))) => Err(e),
            Ok(Err(FetchError::Query(m))) => {
                in_flight.finish();
                Err(FetchError::Query(self.scrub(&m)))
            }
            Ok(Err(e)) => Err(e),
            // The guard cancels the query on the server and discards the session.
            Err(_) => Err(FetchError::Timeout(timeout)),
        }
    }

    /// Prepares the SQL that `render` makes (from the server's `server_version_num`) on a pooled
    /// session, without executing it, all within `timeout`: what `--check-rules --db` asks the
    /// server. Messages are scrubbed of the DSN and password.
    pub async fn prepare_rendered(
        &self,
        render: impl FnOnce(i64) -> Result<String, String>,
        timeout: Duration,
    ) -> Result<Prepared, FetchError> {
        let deadline = Instant::now() + timeout;
        let client = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => return Err(FetchError::Connect(self.scrub(&describe_pool_error(&e)))),
            Ok(Ok(c)) => c,
        };
        let version = self.server_version_num().unwrap_or(crate::template::ASSUMED_SERVER_VERSION_NUM);
        let sql = render(version).map_err(FetchError::Query)?;
        match timeout_at(deadline, client.prepare(&sql)).await {
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
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
                Err(FetchError::Query(self.scrub(&msg)))
            }
            Ok(Ok(stmt)) => Ok(Prepared {
                params: stmt.params().to_vec(),
                columns: stmt.columns().iter().map(|c| (c.name().to_string(), c.type_().clone())).collect(),
                sql,
            }),
        }
    }

    /// Closes every idle connection; in-use ones close when returned.
    pub fn close(&self) {
        self.pool.close();
        self.cancels.close();
    }

    /// Waits (at most `limit`) for the cancel requests of abandoned queries to reach the server.
    pub async fn drain(&self, limit: Duration) {
        self.cancels.close();
        let _ = tokio::time::timeout(limit, self.cancels.wait()).await;
    }
}

/// A query on its way: unless [`InFlight::finish`] is called, dropping it cancels the query on the
/// server and discards the session. That covers the rule's timeout, a result abandoned past
/// `max_rows`, and an evaluation dropped by reload or shutdown: no backend is left running a query
/// nobody waits for.
struct InFlight {
    client: Option<deadpool_postgres::Client>,
    cancel: tokio_postgres::CancelToken,
    cancels: TaskTracker,
}

impl InFlight {
    fn new(client: deadpool_postgres::Client, cancels: TaskTracker) -> InFlight {
        let cancel = client.cancel_token();
        InFlight { client: Some(client), cancel, cancels }
    }

    fn client(&self) -> &deadpool_postgres::Client {
        self.client.as_ref().expect("the client is present until finish or drop")
    }

    /// The query completed: the session goes back to the pool.
    fn finish(&mut self) {
        self.client.take();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        // Its protocol state is mid-query: never reuse it.
        drop(deadpool_postgres::Object::take(client));
        let cancel = self.cancel.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.cancels.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), cancel.cancel_query(NoTls)).await;
            });
        }
    }
}

/// Exponential backoff with jitter after failed connection attempts, so rules (and reloads) never
/// turn an outage into a connection storm. It never waits longer than `max`, which is below the
/// shortest interval of the database's rules, so recovery is seen within one interval.
struct Backoff {
    max: Duration,
    state: std::sync::Mutex<BackoffState>,
}

#[derive(Default)]
struct BackoffState {
    failures: u32,
    until: Option<std::time::Instant>,
    last_error: String,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff { max, state: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BackoffState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn blocked_for(&self) -> Option<Duration> {
        let s = self.lock();
        s.until.and_then(|u| u.checked_duration_since(std::time::Instant::now()))
    }

    fn last_error(&self) -> String {
        self.lock().last_error.clone()
    }

    fn failed(&self, error: &str) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        // 0.25 s, 0.5 s, 1 s, … capped at max, each with ±25 % jitter.
        let base = Duration::from_millis(250).saturating_mul(1u32 << (s.failures - 1).min(16)).min(self.max);
        let jitter = 0.75 + 0.5 * pseudo_random_unit();
        s.until = Some(std::time::Instant::now() + base.mul_f64(jitter));
        s.last_error = error.to_string();
    }

    fn succeeded(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.until = None;
    }
}

/// A number in [0, 1) that differs between calls and processes; enough for jitter.
fn pseudo_random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn describe_pool_error(e: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(err) => describe_pg_error(err),
        P::Timeout(_) => "timed out waiting for a connection".to_string(),
        other => other.to_string(),
    }
}

/// Parses a DSN into the driver's configuration, refusing what this exporter cannot do. The message
/// never contains the DSN.
pub fn parse_dsn(dsn: &str) -> Result<tokio_postgres::Config, String> {
    let config = tokio_postgres::Config::from_str(dsn).map_err(|e| {
        format!(
            "the DSN is not a valid libpq URL or key=value string ({}); see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING",
            redact(&e.to_string(), dsn)
        )
    })?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err("sslmode=require asks for TLS, which this version of the exporter does not speak yet; \
                    use sslmode=prefer or disable (over a trusted network or a local proxy)"
            .to_string());
    }
    Ok(config)
}

/// Why a statement's parameters do not fit what the rule binds (`bound` text arrays).
pub fn parameter_mismatch(used: usize, bound: usize) -> String {
    if bound == 0 {
        format!("the query uses {used} parameter(s) but this rule binds none; write the values into the query")
    } else {
        format!(
            "the query uses {used} parameter(s) but the rule binds {bound} ($1..${bound} are the target label arrays, one per label)"
        )
    }
}

/// The server's message when there is one (it is the useful part), else the driver's text.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            m.push_str(&format!("; hint: {hint}"));
        }
        return m;
    }
    let mut m = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        m.push_str(&format!(": {s}"));
        source = s.source();
    }
    m
}

async fn run(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[Vec<String>],
    max_rows: usize,
) -> Result<ResultSet, FetchError> {
    let stmt = client.prepare_cached(sql).await.map_err(|e| FetchError::Query(describe_pg_error(&e)))?;
    let expected = stmt.params().len();
    let bound: Vec<&(dyn ToSql + Sync)> = if expected == 0 {
        Vec::new()
    } else if expected == params.len() {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    } else {
        return Err(FetchError::Query(parameter_mismatch(expected, params.len())));
    };
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_string()).collect();
    let stream = client.query_raw(&stmt, bound).await.map_err(|e| FetchError::Query(describe_pg_error(&e)))?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await.map_err(|e| FetchError::Query(describe_pg_error(&e)))? {
        if rows.len() >= max_rows {
            return Err(FetchError::TooManyRows(max_rows));
        }
        rows.push(cells(&row));
    }
    Ok(ResultSet { columns, rows })
}

/// Decodes a row into cells; a type we do not decode becomes [`Cell::Unsupported`], which fails only
/// the rule or target that reads it.
fn cells(row: &Row) -> Vec<Cell> {
    (0..row.len()).map(|i| cell(row, i)).collect()
}

/// The kinds of value the exporter decodes PostgreSQL types into; `--check-rules --db` uses the same
/// table to tell which columns a rule can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Bool,
    Int,
    Float,
    Text,
    Timestamp,
    /// json/jsonb: its value decides at run time.
    Json,
}

/// How a PostgreSQL type is decoded; `None`: it is not (cast it in the query). The one list of
/// supported types.
pub fn decoded(ty: &Type) -> Option<Decoded> {
    Some(match *ty {
        Type::BOOL => Decoded::Bool,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Decoded::Int,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => Decoded::Float,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Decoded::Text,
        Type::TIMESTAMPTZ | Type::TIMESTAMP | Type::DATE => Decoded::Timestamp,
        Type::JSON | Type::JSONB => Decoded::Json,
        _ => return None,
    })
}

fn cell(row: &Row, i: usize) -> Cell {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize, f: impl FnOnce(T) -> Cell) -> Cell {
        match row.try_get::<_, Option<T>>(i) {
            Ok(Some(v)) => f(v),
            Ok(None) => Cell::Null,
            Err(e) => Cell::Unsupported(e.to_string()),
        }
    }
    let ty = row.columns()[i].type_().clone();
    // The kind comes from `decoded`; within a kind, the concrete type picks the Rust type to read.
    match decoded(&ty) {
        None => Cell::Unsupported(ty.name().to_string()),
        Some(Decoded::Bool) => get(row, i, Cell::Bool),
        Some(Decoded::Int) => match ty {
            Type::INT2 => get(row, i, |v: i16| Cell::Int(v.into())),
            Type::INT4 => get(row, i, |v: i32| Cell::Int(v.into())),
            Type::OID => get(row, i, |v: u32| Cell::Int(v.into())),
            _ => get(row, i, Cell::Int),
        },
        Some(Decoded::Float) => match ty {
            Type::FLOAT4 => get(row, i, |v: f32| Cell::Float(v.into())),
            Type::NUMERIC => get(row, i, |v: rust_decimal::Decimal| {
                use rust_decimal::prelude::ToPrimitive;
                if v.is_integer() {
                    v.to_i64().map(Cell::Int).unwrap_or_else(|| Cell::Float(v.to_f64().unwrap_or(f64::NAN)))
                } else {
                    v.to_f64().map(Cell::Float).unwrap_or(Cell::Unsupported("numeric out of range".into()))
                }
            }),
            _ => get(row, i, Cell::Float),
        },
        Some(Decoded::Text) => get(row, i, Cell::Text),
        Some(Decoded::Timestamp) => match ty {
            Type::TIMESTAMP => get(row, i, |v: chrono::NaiveDateTime| Cell::Timestamp(v.and_utc())),
            Type::DATE => get(row, i, |v: chrono::NaiveDate| match v.and_hms_opt(0, 0, 0) {
                Some(t) => Cell::Timestamp(t.and_utc()),
                None => Cell::Null,
            }),
            _ => get(row, i, Cell::Timestamp),
        },
        Some(Decoded::Json) => get(row, i, json_cell),
    }
}

fn json_cell(v: serde_json::Value) -> Cell {
    match v {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::Bool(b) => Cell::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Cell::Text(s),
        other => Cell::Text(other.to_string()),
    }
}
