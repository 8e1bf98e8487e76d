//! `--check-rules --db --explain` on PostgreSQL: what a rule's statement would cost the database,
//! judged from the plan the server would run it with (never from running it). The plan's shape is
//! PostgreSQL's own, so its judgement lives beside the source that asks for it.
//!
//! Two things are worth a warning at the rule's `query:` line: a sequential scan over a table with
//! more than `min_rows` rows (by the server's own estimate, `reltuples`), which grows with the table
//! and is usually what an index would cure; and an estimated total cost above `max_cost`, whatever
//! the plan. The scan's warning names the table and the conditions of its filter (or the join that
//! reads it whole), which are what an index would have to serve. It is a check-time tool: at run
//! time a rule still costs one statement per interval.

use serde_json::Value;

use crate::source::seam::ExplainLimits as Limits;

/// A table's estimated row count (`pg_class.reltuples`, -1 when never analyzed).
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub schema: String,
    pub table: String,
    pub rows: f64,
}

/// The warnings a plan (`EXPLAIN (FORMAT JSON, VERBOSE)`'s value) deserves.
pub fn plan_warnings(plan: &Value, tables: &[TableSize], limits: &Limits) -> Vec<String> {
    let Some(root) = plan.get(0).and_then(|p| p.get("Plan")) else {
        return vec!["the server's plan has no recognisable shape; it was not judged".to_string()];
    };
    let mut out = Vec::new();
    walk(root, None, tables, limits, &mut out);
    let cost = root.get("Total Cost").and_then(Value::as_f64).unwrap_or(0.0);
    if cost > limits.max_cost {
        out.push(format!(
            "the plan's estimated total cost is {cost:.0}, above the limit of {:.0} (--explain.max-cost)",
            limits.max_cost
        ));
    }
    out
}

fn walk(node: &Value, join: Option<&str>, tables: &[TableSize], limits: &Limits, out: &mut Vec<String>) {
    if node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan") {
        if let Some(w) = seq_scan_warning(node, join, tables, limits) {
            out.push(w);
        }
    }
    // The join a scan feeds: its own condition, or one passed through a Hash, Sort or Materialize.
    let own = ["Hash Cond", "Merge Cond", "Join Filter"].iter().find_map(|k| node.get(*k).and_then(Value::as_str));
    let passes = matches!(node.get("Node Type").and_then(Value::as_str), Some("Hash" | "Sort" | "Materialize"));
    let join = own.or(if passes { join } else { None });
    for child in node.get("Plans").and_then(Value::as_array).into_iter().flatten() {
        walk(child, join, tables, limits, out);
    }
}

fn seq_scan_warning(node: &Value, join: Option<&str>, tables: &[TableSize], limits: &Limits) -> Option<String> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let table = text(node, "Relation Name")?;
    let schema = text(node, "Schema").unwrap_or_default();
    // A never-analyzed table has reltuples -1; the scan's own estimate is then the best there is.
    let known = tables.iter().find(|t| t.table == table && t.schema == schema).map(|t| t.rows).unwrap_or(-1.0);
    let rows = if known >= 0.0 { known } else { node.get("Plan Rows").and_then(Value::as_f64).unwrap_or(0.0) };
    if rows <= limits.min_rows {
        return None;
    }
    let name = if schema.is_empty() { table } else { format!("{schema}.{table}") };
    let served = match text(node, "Filter") {
        Some(filter) => {
            let parts: Vec<String> = conjuncts(&filter).iter().map(|c| format!("`{}`", shorten(c))).collect();
            format!(
                "its filter keeps the rows where {}; an index on what these conditions test could serve them",
                parts.join(" and ")
            )
        }
        None => match join {
            Some(cond) => {
                format!(
                    "it reads every row, to join on `{}`; an index on that could serve it",
                    shorten(strip_parens(cond))
                )
            }
            None => "it reads every row (no filter)".to_string(),
        },
    };
    Some(format!(
        "the plan scans table {name} (about {rows:.0} rows, above --explain.min-rows {:.0}) sequentially: {served}",
        limits.min_rows
    ))
}

/// The top-level `AND`ed conditions of a filter, without their outer parentheses.
fn conjuncts(filter: &str) -> Vec<String> {
    let inner = strip_parens(filter.trim());
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0i32, false, 0);
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b' ' if !quoted && depth == 0 && inner[i..].starts_with(" AND ") => {
                parts.push(strip_parens(inner[start..i].trim()).to_string());
                start = i + 5;
                i += 4;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(strip_parens(inner[start..].trim()).to_string());
    parts
}

/// `s` without one pair of parentheses that enclose all of it.
fn strip_parens(s: &str) -> &str {
    if !(s.starts_with('(') && s.ends_with(')')) {
        return s;
    }
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth == 0 && i + 1 < s.len() {
            return s;
        }
    }
    &s[1..s.len() - 1]
}

/// Long conditions (a bound target array lists every target) cut to a readable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 160;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(node: Value) -> Value {
        serde_json::json!([{ "Plan": node }])
    }

    #[test]
    fn a_big_sequential_scan_names_table_and_filter() {
        let p = plan(serde_json::json!({
            "Node Type": "Seq Scan", "Relation Name": "runs", "Schema": "public", "Total Cost": 2000.0,
            "Plan Rows": 10.0, "Filter": "((runs.name = ANY ('{a,b}'::text[])) AND (runs.ok IS TRUE))"
        }));
        let big = [TableSize { schema: "public".into(), table: "runs".into(), rows: 200_000.0 }];
        let w = plan_warnings(&p, &big, &Limits::default());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("table public.runs (about 200000 rows"), "{}", w[0]);
        assert!(w[0].contains("`runs.name = ANY ('{a,b}'::text[])` and `runs.ok IS TRUE`"), "{}", w[0]);
        let small = [TableSize { rows: 50_000.0, ..big[0].clone() }];
        assert!(plan_warnings(&p, &small, &Limits::default()).is_empty());
        let cheap = Limits { max_cost: 1000.0, ..Limits::default() };
        assert!(plan_warnings(&p, &small, &cheap)[0].contains("estimated total cost is 2000"));
    }

    #[test]
    fn a_scan_without_filter_names_its_join() {
        let p = plan(serde_json::json!({
            "Node Type": "Hash Join", "Total Cost": 10.0, "Hash Cond": "(k.name = t.name)",
            "Plans": [{ "Node Type": "Hash", "Plans": [
                { "Node Type": "Seq Scan", "Relation Name": "k", "Schema": "s", "Plan Rows": 300000.0 }
            ]}]
        }));
        let w =
            plan_warnings(&p, &[TableSize { schema: "s".into(), table: "k".into(), rows: -1.0 }], &Limits::default());
        assert!(w[0].contains("s.k (about 300000 rows") && w[0].contains("join on `k.name = t.name`"), "{w:?}");
    }

    #[test]
    fn conjuncts_respect_parentheses_and_quotes() {
        assert_eq!(conjuncts("((a = 1) AND ((b = 2) OR (c = ' AND ')))"), ["a = 1", "(b = 2) OR (c = ' AND ')"]);
        assert_eq!(conjuncts("(a = 1)"), ["a = 1"]);
        assert_eq!(strip_parens("(a) AND (b)"), "(a) AND (b)");
    }
}
