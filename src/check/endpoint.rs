//! `--check-rules` for rules on endpoints: every query is prepared in an empty SQLite, with the
//! rule's requests as `:name` parameters and its `targets` table, and must return the columns its
//! families (or signal) read. SQLite needs no server, so this runs without `--db` and without network:
//! a typo in an HTTP rule's SQL fails in CI at its line.

use crate::rules::columns::columns_read;
use crate::rules::model::{Rule, RuleKind, RuleSet};
use crate::rules::{template, Diagnostic, Severity, MAIN_QUERY};
use crate::source::http::sqlite;

/// Prepares every endpoint rule's queries; returns how many were prepared.
pub(super) fn check_endpoint_queries(
    set: &RuleSet,
    rule_pointers: &[String],
    static_diags: &[Diagnostic],
    out: &mut Vec<Diagnostic>,
) -> usize {
    let mut prepared = 0;
    for (rule, base) in set.rules.iter().zip(rule_pointers) {
        let Some(e) = &rule.endpoint else { continue };
        let requests: Vec<String> = e.requests.iter().map(|r| r.name.clone()).collect();
        let labels: &[String] = match &rule.kind {
            RuleKind::Signal(s) => &s.labels,
            RuleKind::Metric(_) => &[],
        };
        for (name, text) in &e.queries {
            let pointer = if name == MAIN_QUERY { format!("{base}/query") } else { format!("{base}/queries/{name}") };
            if static_diags.iter().any(|d| d.file == rule.file && d.pointer == pointer && d.severity == Severity::Error)
            {
                continue;
            }
            let Ok(sql) = template::render_text(rule, text) else { continue };
            match sqlite::prepare(&sql, &requests, labels) {
                Err(msg) => out.push(Diagnostic::error(&rule.file, pointer, format!("SQLite: {msg}"))),
                Ok(columns) => {
                    prepared += 1;
                    missing_columns(rule, name, e.queries.len(), base, &columns, out);
                }
            }
        }
    }
    prepared
}

/// The columns a rule reads from query `name` that it does not return.
fn missing_columns(rule: &Rule, name: &str, queries: usize, base: &str, columns: &[String], out: &mut Vec<Diagnostic>) {
    for used in columns_read(rule) {
        // With several queries, a family's columns come from the query it names.
        if queries > 1 {
            let family = used.key.strip_prefix("families/").and_then(|k| k.split('/').next()?.parse::<usize>().ok());
            let reads = match (&rule.kind, family) {
                (RuleKind::Metric(m), Some(i)) => m.families.get(i).and_then(|f| f.query.as_deref()),
                _ => None,
            };
            if reads != Some(name) {
                continue;
            }
        }
        if !columns.contains(&used.column) {
            let msg = format!(
                "the query{} returns no column '{}' ({}); it returns: {}",
                if queries > 1 { format!(" '{name}'") } else { String::new() },
                used.column,
                used.role,
                columns.join(", ")
            );
            out.push(Diagnostic::error(&rule.file, format!("{base}/{}", used.key), msg));
        }
    }
}
