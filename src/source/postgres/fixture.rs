//! Rule tests on PostgreSQL: a connection of its own, a transaction that is never committed, and
//! the fixture's tables as temporary tables that shadow the real ones.
//!
//! The temporary schema (`pg_temp`) is searched before every other schema, `pg_catalog` included,
//! so the rule's unqualified table and view names resolve to the fixture's tables and its SQL runs
//! unchanged. A schema-qualified name (`public.data`) is not shadowed: the rule then reads the real
//! table. Rows are loaded by `json_populate_recordset`, so each value is read by its column type's
//! input function, as `psql` would read it. After loading, the transaction is made read-only, so
//! the rule's statement cannot write a real table, as in production (PostgreSQL still allows writes
//! to temporary tables there; the rollback discards them). The connection is taken out of
//! the pool and closed at the end: it never serves a real evaluation.

use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::time::{timeout_at, Instant};

use super::error::{describe_pg_error, describe_pool_error};
use super::{run, PgSource};
use crate::rules::model::MAIN_QUERY;
use crate::source::credentials::{scrub, Secrets};
use crate::source::fixture::{Fixture, FixtureTable};
use crate::source::seam::FixtureSession;
use crate::source::seam::{
    render_statement, Connections, Fetch, FetchError, Reach, RowSink, ServerIdentity, Source, StatementCheck,
};

/// How long ending a session may take before its connection is simply closed (which also ends the
/// transaction, uncommitted).
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A fixture's transaction on a connection of its own.
pub(super) struct PgFixture {
    name: String,
    /// `None` once finished.
    client: tokio::sync::Mutex<Option<ClientWrapper>>,
    /// The server the rule's statement is rendered for, as the pool's sessions learnt it.
    server: ServerIdentity,
    secrets: Secrets,
}

impl std::fmt::Debug for PgFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFixture").field("database", &self.name).finish_non_exhaustive()
    }
}

impl PgSource {
    /// Opens a connection outside the pool, begins the transaction and loads `fixture` into it.
    pub(super) async fn open_fixture_session(
        &self,
        fixture: &Fixture,
        timeout: Duration,
    ) -> Result<PgFixture, FetchError> {
        // Responses are for endpoints: a case may hold both for rules of both kinds.
        let deadline = Instant::now() + timeout;
        let client = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => return Err(FetchError::Connect(self.scrub(&describe_pool_error(&e)))),
            Ok(Ok(c)) => deadpool::managed::Object::take(c),
        };
        let session = PgFixture {
            name: self.database.name.clone(),
            client: tokio::sync::Mutex::new(None),
            server: self.server(),
            secrets: self.secrets.clone(),
        };
        match timeout_at(deadline, load(&client, fixture)).await {
            Err(_) => Err(FetchError::Timeout(timeout)),
            Ok(Err(e)) => Err(FetchError::Query(session.scrub(&e))),
            Ok(Ok(())) => {
                *session.client.lock().await = Some(client);
                Ok(session)
            }
        }
    }
}

/// Begins the transaction, creates and fills every table, then makes the transaction read-only.
async fn load(client: &ClientWrapper, fixture: &Fixture) -> Result<(), String> {
    client.batch_execute("BEGIN READ WRITE").await.map_err(|e| describe_pg_error(&e))?;
    for table in &fixture.tables {
        let create = create_statement(table);
        client.batch_execute(&create).await.map_err(|e| {
            format!(
                "fixture table '{}': the server refuses to create it: {} (the session needs the TEMPORARY privilege on the database)",
                table.name,
                describe_pg_error(&e)
            )
        })?;
        let name = quote_ident(&table.name);
        let insert =
            format!("INSERT INTO pg_temp.{name} SELECT * FROM json_populate_recordset(NULL::pg_temp.{name}, $1::json)");
        client.execute(insert.as_str(), &[&rows_as_json(table)]).await.map_err(|e| {
            format!("fixture table '{}': a row does not fit its columns: {}", table.name, describe_pg_error(&e))
        })?;
    }
    client.batch_execute("SET TRANSACTION READ ONLY").await.map_err(|e| describe_pg_error(&e))
}

/// `CREATE TEMPORARY TABLE name (col type, ...)`; the names quoted, the types as the test file gives
/// them (the test file's schema allows only type names there).
fn create_statement(table: &FixtureTable) -> String {
    let columns: Vec<String> =
        table.columns.iter().map(|c| format!("{} {}", quote_ident(&c.name), c.sql_type)).collect();
    format!("CREATE TEMPORARY TABLE {} ({})", quote_ident(&table.name), columns.join(", "))
}

/// The rows as one JSON array of objects keyed by column name.
fn rows_as_json(table: &FixtureTable) -> serde_json::Value {
    let rows = table.rows.iter().map(|row| {
        let object = table.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), v.clone())).collect();
        serde_json::Value::Object(object)
    });
    serde_json::Value::Array(rows.collect())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgFixture {
    fn scrub(&self, text: &str) -> String {
        scrub(&self.secrets, text)
    }

    async fn fetch_fixture(&self, fetch: Fetch<'_>, sink: &mut dyn RowSink) -> Result<(), FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        let sql = render_statement(fetch.rule, &self.server)?;
        sink.statement(MAIN_QUERY, &sql);
        let mut guard = self.client.lock().await;
        let Some(client) = guard.as_ref() else {
            return Err(FetchError::Query("the fixture session was already finished".into()));
        };
        match timeout_at(deadline, run(client, &sql, fetch.rule.bindings(), sink)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(FetchError::Query(m))) => Err(FetchError::Query(self.scrub(&m))),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // Mid-statement: the connection is closed, which ends the statement and the transaction.
                guard.take();
                Err(FetchError::Timeout(fetch.timeout))
            }
        }
    }
}

impl Source for PgFixture {
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

impl FixtureSession for PgFixture {
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<(), FetchError>> {
        async move {
            let Some(client) = self.client.lock().await.take() else { return Ok(()) };
            let rolled_back = tokio::time::timeout(ROLLBACK_TIMEOUT, client.batch_execute("ROLLBACK")).await;
            // Closing the connection ends the transaction on the server whatever the ROLLBACK did.
            drop(client);
            match rolled_back {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(FetchError::Query(self.scrub(&describe_pg_error(&e)))),
                Err(_) => Err(FetchError::Timeout(ROLLBACK_TIMEOUT)),
            }
        }
        .boxed()
    }
}
