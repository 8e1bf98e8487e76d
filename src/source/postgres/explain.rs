//! `EXPLAIN` for `--check-rules --db --explain`: the plan the server would run a rule's statement
//! with, and the size of every table it reads, without running the statement.
//!
//! The statement is sent as `EXPLAIN (FORMAT JSON, VERBOSE) <sql>` through the extended protocol with
//! the rule's real target arrays bound as `$1, $2, …`: the server plans it as it would plan the
//! rule's own execution (a custom plan for these values) and works on PostgreSQL 15, where
//! `EXPLAIN (GENERIC_PLAN)` does not exist yet. Without `ANALYZE`, `EXPLAIN` never executes.

use tokio::time::{timeout_at, Instant};

use super::error::describe_pg_error;
use super::error::describe_pool_error;
use super::plan::TableSize;
use super::PgSource;
use crate::source::seam::{Fetch, FetchError};

/// A statement's plan, not run.
pub(super) struct Explained {
    /// The plan in PostgreSQL's `EXPLAIN (FORMAT JSON, VERBOSE)` shape.
    pub plan: serde_json::Value,
    /// The estimated size of every table the plan reads.
    pub tables: Vec<TableSize>,
}

impl PgSource {
    pub(super) async fn explain_rendered(&self, fetch: Fetch<'_>) -> Result<Explained, FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        let client = match timeout_at(deadline, self.pool.get()).await {
            Err(_) => return Err(FetchError::Timeout(fetch.timeout)),
            Ok(Err(e)) => return Err(FetchError::Connect(self.scrub(&describe_pool_error(&e)))),
            Ok(Ok(c)) => c,
        };
        let sql = self.render(fetch.rule)?;
        let work = async {
            let query_err = |e: tokio_postgres::Error| FetchError::Query(self.scrub(&describe_pg_error(&e)));
            let stmt = client.prepare(&format!("EXPLAIN (FORMAT JSON, VERBOSE) {sql}")).await.map_err(query_err)?;
            let params = fetch.rule.bindings().columns();
            let bound = super::bind(stmt.params().len(), &params)?;
            let row = client.query_one(&stmt, &bound).await.map_err(query_err)?;
            let plan: serde_json::Value = row.try_get(0).map_err(query_err)?;
            let mut names = Vec::new();
            relations(&plan, &mut names);
            let (schemas, tables): (Vec<String>, Vec<String>) = names.iter().cloned().unzip();
            let rows = client
                .query(
                    "SELECT n.nspname::text, c.relname::text, c.reltuples::float8 \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     JOIN unnest($1::text[], $2::text[]) AS t(s, r) ON t.s = n.nspname AND t.r = c.relname",
                    &[&schemas, &tables],
                )
                .await
                .map_err(query_err)?;
            let tables = rows.iter().map(|r| TableSize { schema: r.get(0), table: r.get(1), rows: r.get(2) }).collect();
            Ok(Explained { plan, tables })
        };
        match timeout_at(deadline, work).await {
            Ok(result) => result,
            Err(_) => {
                drop(deadpool::managed::Object::take(client));
                Err(FetchError::Timeout(fetch.timeout))
            }
        }
    }
}

/// Every (schema, table) a JSON plan names, once each.
fn relations(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            if let (Some(schema), Some(table)) =
                (map.get("Schema").and_then(|s| s.as_str()), map.get("Relation Name").and_then(|s| s.as_str()))
            {
                let pair = (schema.to_string(), table.to_string());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
            map.values().for_each(|x| relations(x, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| relations(x, out)),
        _ => {}
    }
}
