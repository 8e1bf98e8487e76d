//! `EXPLAIN FORMAT=JSON` for `--check-rules --db --explain`: the plan MySQL or MariaDB would run a
//! rule's statement with, judged for full scans, without running it.
//!
//! The statement is prepared as `EXPLAIN FORMAT=JSON <sql>` and executed with the rule's real
//! targets bound, so the optimizer plans it as it would plan the rule. A table read with access
//! type `ALL` (every row) whose estimated rows exceed the threshold warns. Both engines' shapes are
//! read: MariaDB's `rows`, MySQL's `rows_examined_per_scan`. MySQL has no total cost comparable to
//! PostgreSQL's, so `--explain.max-cost` does not apply here.

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

use super::connect::MySqlConn;
use super::error::describe_mysql_error;
use crate::rules::model::Bindings;
use crate::source::seam::{ExplainLimits, Fetch, FetchError};
use tokio::time::{timeout_at, Instant};

use super::MySqlSource;

/// The plan of `explain_sql` (an `EXPLAIN FORMAT=JSON` statement) with `bindings` bound.
async fn plan_json(conn: &mut MySqlConn, explain_sql: &str, bindings: Bindings<'_>) -> Result<Json, String> {
    let stmt = conn.prep(explain_sql).await.map_err(|e| describe_mysql_error(&e))?;
    let params = super::bind(usize::from(stmt.num_params()), bindings).map_err(|e| e.to_string())?;
    let text: Option<String> = conn.exec_first(&stmt, params).await.map_err(|e| describe_mysql_error(&e))?;
    let text = text.ok_or_else(|| "EXPLAIN returned no plan".to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("EXPLAIN returned a plan that is not JSON: {e}"))
}

impl MySqlSource {
    /// The plan's warnings for the rule's statement with its real targets bound.
    pub(super) async fn explain_plan(
        &self,
        fetch: Fetch<'_>,
        limits: &ExplainLimits,
    ) -> Result<Vec<String>, FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        let mut conn = self.session(deadline, fetch.timeout).await?;
        let sql = format!("EXPLAIN FORMAT=JSON {}", self.statement(fetch.rule)?);
        let plan = timeout_at(deadline, plan_json(&mut conn, &sql, fetch.rule.bindings()))
            .await
            .map_err(|_| FetchError::Timeout(fetch.timeout))?
            .map_err(|m| FetchError::Query(self.scrub(&m)))?;
        Ok(mysql_plan_warnings(&plan, limits))
    }
}

/// A warning per full scan of a table above `limits.min_rows`.
fn mysql_plan_warnings(plan: &Json, limits: &ExplainLimits) -> Vec<String> {
    let mut out = Vec::new();
    walk(plan, limits, &mut out);
    out
}

fn walk(node: &Json, limits: &ExplainLimits, out: &mut Vec<String>) {
    match node {
        Json::Object(map) => {
            if map.get("access_type").and_then(Json::as_str) == Some("ALL") {
                let rows = ["rows", "rows_examined_per_scan"].iter().find_map(|k| map.get(*k).and_then(Json::as_f64));
                let table = map.get("table_name").and_then(Json::as_str).unwrap_or("a table");
                if let Some(rows) = rows.filter(|r| *r > limits.min_rows) {
                    out.push(format!(
                        "a full scan of {table} (access type ALL) reads about {rows:.0} rows, above the limit of {:.0} (--explain.min-rows); add an index the query can use",
                        limits.min_rows
                    ));
                }
            }
            map.values().for_each(|v| walk(v, limits, out));
        }
        Json::Array(items) => items.iter().for_each(|v| walk(v, limits, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scans_above_the_threshold_warn_in_both_shapes() {
        let limits = ExplainLimits { min_rows: 100.0, max_cost: 0.0 };
        let maria: Json =
            serde_json::json!({"query_block": {"table": {"table_name": "data", "access_type": "ALL", "rows": 5000}}});
        assert!(mysql_plan_warnings(&maria, &limits)[0].contains("full scan of data"));
        let mysql: Json = serde_json::json!({"query_block": {"nested_loop": [{"table": {"table_name": "t", "access_type": "ALL", "rows_examined_per_scan": 50}}]}});
        assert!(mysql_plan_warnings(&mysql, &limits).is_empty());
        let index: Json =
            serde_json::json!({"query_block": {"table": {"table_name": "data", "access_type": "ref", "rows": 5000}}});
        assert!(mysql_plan_warnings(&index, &limits).is_empty());
    }
}
