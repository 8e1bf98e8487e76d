//! `--check-rules --db`: what only the source can tell. Every rendered query is prepared (never run)
//! on its source, and the result columns each rule reads ([`columns_read`]) must be there, with
//! types the exporter can read the way the rule needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::rules::columns::{columns_read, Need};
use crate::rules::model::{Rule, RuleSet, ValueType};
use crate::rules::span::{self, SpanTree};
use crate::rules::{template, Diagnostic, Severity};
use crate::source::postgres::parameter_mismatch;
use crate::source::{as_source, ColumnType, Decoded, Fetch, FetchError, Prepared, Sources};

use super::explain::{plan_warnings, Limits};

/// Prepares every rule's query on its databases, and plans it with `explain`; returns how many
/// were prepared.
pub(super) async fn check_queries(
    set: &RuleSet,
    explain: Option<&Limits>,
    rule_pointers: &[String],
    trees: &BTreeMap<PathBuf, SpanTree>,
    static_diags: &[Diagnostic],
    out: &mut Vec<Diagnostic>,
) -> usize {
    let mut sources = Sources::build(set, Sources::default());
    // Databases already reported: a static error in their settings, or a failed connection.
    let mut given_up: Vec<String> = Vec::new();
    for name in set.databases.keys() {
        let pointer = format!("/databases/{}", span::escape(name));
        let broken = static_diags.iter().any(|d| {
            d.severity == Severity::Error && (d.pointer == pointer || d.pointer.starts_with(&format!("{pointer}/")))
        });
        if broken {
            given_up.push(name.clone());
        } else if let Err(msg) = sources.slot(name).as_ref() {
            let file = trees
                .iter()
                .find(|(_, tree)| tree.value_position(&pointer).is_some())
                .map(|(f, _)| f.clone())
                .unwrap_or_default();
            out.push(Diagnostic::error(&file, pointer, msg.clone()));
            given_up.push(name.clone());
        }
    }
    let mut prepared = 0;
    for (rule, pointer) in set.rules.iter().zip(rule_pointers) {
        let query_pointer = format!("{pointer}/query");
        // A rule whose template does not render was reported already.
        if static_diags
            .iter()
            .any(|d| d.file == rule.file && d.pointer == query_pointer && d.severity == Severity::Error)
        {
            continue;
        }
        for db_name in rule.databases() {
            let Some(db) = set.databases.get(db_name) else { continue };
            if given_up.iter().any(|g| g == db_name) {
                continue;
            }
            let slot = sources.slot(db_name);
            let Ok(source) = as_source(&slot) else { continue };
            // The template is rendered for the server's own version, as the exporter does.
            let render_failed = std::sync::atomic::AtomicBool::new(false);
            let render = |version: i64| {
                template::render_query_described(rule, version).map_err(|m| {
                    render_failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    format!("the query template does not render for server_version_num {version}: {m}")
                })
            };
            let on = if rule.databases().len() > 1 { format!(" on database '{db_name}'") } else { String::new() };
            let error = |msg: String| Diagnostic::error(&rule.file, query_pointer.clone(), msg);
            match source.prepare(&render, db.connect_timeout + rule.timeout).await {
                Ok(p) => {
                    prepared += 1;
                    let problems = statement_problems(rule, &p);
                    let fine = problems.is_empty();
                    out.extend(problems.into_iter().map(|msg| error(format!("{msg}{on}"))));
                    if let (true, Some(limits)) = (fine, explain) {
                        let fetch = Fetch {
                            render: &render,
                            bindings: rule.bindings(),
                            timeout: db.connect_timeout + rule.timeout,
                            http: None,
                        };
                        match source.explain(fetch).await {
                            Ok(x) => out.extend(plan_warnings(&x.plan, &x.tables, limits).into_iter().map(|msg| {
                                Diagnostic::warning(&rule.file, query_pointer.clone(), format!("{msg}{on}"))
                            })),
                            Err(e) => out.push(error(format!("EXPLAIN of the query{on} failed: {e}"))),
                        }
                    }
                }
                Err(FetchError::Connect(m)) => {
                    out.push(error(format!("cannot connect to database '{db_name}' to prepare the query: {m}")));
                    given_up.push(db_name.to_string());
                }
                Err(FetchError::Query(m)) if render_failed.load(std::sync::atomic::Ordering::Relaxed) => {
                    out.push(error(format!("{m}{on}")))
                }
                Err(FetchError::Query(m)) => out.push(error(format!("the server rejects the query{on}: {m}"))),
                Err(e) => out.push(error(format!("preparing the query{on} failed: {e}"))),
            }
        }
    }
    // How each reachable database is carried (TLS version and cipher, or plaintext), on stderr with the summary.
    for (name, db) in &set.databases {
        if given_up.iter().any(|g| g == name) {
            continue;
        }
        let slot = sources.slot(name);
        if let Ok(source) = as_source(&slot) {
            if let Some(t) = source.transport(db.connect_timeout).await {
                eprintln!("database '{name}': {t}");
            }
        }
    }
    sources.shut_down(Duration::from_millis(200)).await;
    prepared
}

/// Whether a column decoded as `d` can be read the way `need` asks (see `Cell`'s `as_*` readers and
/// the signal's judgement).
fn accepts(need: Need, d: Decoded) -> bool {
    use Decoded::*;
    match need {
        Need::Any => true,
        Need::Order => matches!(d, Int | Float | Text | Timestamp | Json),
        Need::Value(ValueType::Integer) => matches!(d, Int | Float | Text | Json),
        Need::Value(ValueType::Float) => matches!(d, Bool | Int | Float | Text | Json),
        Need::Value(ValueType::Bool) => matches!(d, Bool | Text | Json),
        Need::Value(ValueType::Text) => true,
        Need::Value(ValueType::Timestamp) => matches!(d, Int | Float | Text | Timestamp | Json),
    }
}

/// What is wrong with a prepared statement for this rule: parameters, missing columns, types.
fn statement_problems(rule: &Rule, p: &Prepared) -> Vec<String> {
    let mut problems = Vec::new();
    let labels = rule.bindings().labels;
    if p.params > 0 && p.params != labels.len() {
        problems.push(parameter_mismatch(p.params, labels.len()));
    } else {
        for (n, ty) in &p.unbindable_params {
            problems.push(format!(
                "parameter ${n} is a text array (the values of label '{}' of every target), but the query uses it as {ty}; write ${n}::text[] and unnest it or use = ANY",
                labels.get(n - 1).cloned().unwrap_or_default(),
            ));
        }
    }
    let returned: Vec<&str> = p.columns.iter().map(|(n, _)| n.as_str()).collect();
    for used in columns_read(rule) {
        let (column, role) = (&used.column, &used.role);
        // The first column of that name is the one read, as at run time.
        let Some((_, ty)) = p.columns.iter().find(|(n, _)| n == column) else {
            problems.push(format!(
                "the query returns no column '{column}' ({role}); it returns: {}",
                if returned.is_empty() { "no columns".to_string() } else { returned.join(", ") }
            ));
            continue;
        };
        match ty {
            ColumnType::Unsupported(name) => problems.push(format!(
                "column '{column}' ({role}) has type {name}, which the exporter cannot read; cast it in the query (e.g. {column}::text)"
            )),
            ColumnType::Known(d, name) if !accepts(used.need, *d) => problems.push(format!(
                "column '{column}' ({role}) has type {name}, which cannot be read as {}; cast it in the query",
                used.need.wanted()
            )),
            ColumnType::Known(..) | ColumnType::Unknown => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_needs_follow_the_cell_readers() {
        assert!(accepts(Need::Value(ValueType::Integer), Decoded::Text));
        assert!(!accepts(Need::Value(ValueType::Integer), Decoded::Bool));
        assert!(!accepts(Need::Value(ValueType::Bool), Decoded::Int));
        assert!(!accepts(Need::Order, Decoded::Bool));
        assert!(accepts(Need::Any, Decoded::Bool));
    }
}
