//! Behind a transaction pooler (PgBouncer `pool_mode = transaction`, RDS Proxy, Supavisor).
//!
//! Such a pooler lends a server session for one transaction only, and refuses the `options`
//! startup parameter. So each query runs in its own read-only transaction that sets the timeouts
//! with `SET LOCAL` (one round trip, simple protocol), and the query goes as an unnamed statement
//! (`query_typed`: parse, bind and execute in one message), which no later transaction can trip
//! over. The statement cache is not used.
//!
//! An unnamed statement reports its columns only with its first row; a result of no rows has no
//! column names. For that case alone the statement is described by a prepared statement made and
//! closed inside the same transaction, so it never outlives the session the pooler lent us.

use std::time::Duration;

use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::Type;

use super::connect::Client;
use super::decode;
use super::error::describe_pg_error;
use crate::rules::model::Bindings;
use crate::source::seam::{FetchError, RowSink};

#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) statement: Duration,
    pub(super) lock: Duration,
}

fn begin(t: Timeouts) -> String {
    format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}",
        t.statement.as_millis().clamp(1, i32::MAX as u128),
        t.lock.as_millis().clamp(1, i32::MAX as u128)
    )
}

/// Runs `sql` in its own read-only transaction; the rule's target columns are bound as text arrays.
pub(super) async fn run(
    client: &Client,
    sql: &str,
    bindings: Bindings<'_>,
    sink: &mut dyn RowSink,
    timeouts: Timeouts,
) -> Result<(), FetchError> {
    let q = |e: tokio_postgres::Error| FetchError::Query(describe_pg_error(&e));
    client.batch_execute(&begin(timeouts)).await.map_err(q)?;
    let result = rows(client, sql, bindings, sink).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    // A failed COMMIT or ROLLBACK leaves the session in an unknown state: the error drops it.
    client.batch_execute(end).await.map_err(q)?;
    result
}

async fn rows(client: &Client, sql: &str, bindings: Bindings<'_>, sink: &mut dyn RowSink) -> Result<(), FetchError> {
    let q = |e: tokio_postgres::Error| FetchError::Query(describe_pg_error(&e));
    let params = bindings.columns();
    let typed = params.iter().map(|p| (p, Type::TEXT_ARRAY));
    let stream = client.query_typed_raw(sql, typed).await.map_err(q)?;
    pin_mut!(stream);
    let mut seen = false;
    while let Some(row) = stream.try_next().await.map_err(q)? {
        if !seen {
            sink.columns(row.columns().iter().map(|c| c.name().to_string()).collect());
            seen = true;
        }
        sink.row(decode::cells(&row))?;
    }
    if !seen {
        let shape = describe(client, sql).await.map_err(q)?;
        sink.columns(shape.columns.into_iter().map(|(name, _)| name).collect());
    }
    Ok(())
}

/// A statement's parameter and column types.
pub(super) struct Shape {
    pub(super) params: Vec<Type>,
    pub(super) columns: Vec<(String, Type)>,
}

impl Shape {
    pub(super) fn of(stmt: &tokio_postgres::Statement) -> Shape {
        Shape {
            params: stmt.params().to_vec(),
            columns: stmt.columns().iter().map(|c| (c.name().to_string(), c.type_().clone())).collect(),
        }
    }
}

/// Prepares and closes `sql` (inside the caller's transaction).
async fn describe(client: &Client, sql: &str) -> Result<Shape, tokio_postgres::Error> {
    let stmt = client.prepare(sql).await?;
    let shape = Shape::of(&stmt);
    // Dropping sends Close before anything the caller sends next, so before its COMMIT.
    drop(stmt);
    Ok(shape)
}

/// `--check-rules --db`: the statement's shape, described inside a transaction of its own.
pub(super) async fn prepare(client: &Client, sql: &str) -> Result<Shape, tokio_postgres::Error> {
    client.batch_execute("BEGIN READ ONLY").await?;
    let shape = describe(client, sql).await;
    client.batch_execute("ROLLBACK").await?;
    shape
}
