//! What only a rule's source can tell about its statements: each one is prepared (never run) by
//! its source, and the result columns the rule reads ([`columns_read`]) must be there, with types
//! the exporter can read the way the rule needs. Sources that prepare locally (an embedded engine)
//! are always asked, so a typo in an endpoint rule's SQL fails in CI with no network; sources on a
//! server only with `--db`. With `--explain`, each statement's plan is judged by its source.
//!
//! Everything here goes through the source seam: no kind is named.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::rules::columns::{columns_read, Need};
use crate::rules::model::{Rule, RuleKind, RuleSet, ValueType};
use crate::rules::span::{self, SpanTree};
use crate::rules::{query_pointer, Diagnostic, Severity};
use crate::source::{
    as_source, ColumnType, Decoded, ExplainLimits, Fetch, FetchError, Prepared, Reach, Source, Sources, StatementCheck,
};

/// What the statements check reads and where it reports.
pub(super) struct Ctx<'a> {
    pub set: &'a RuleSet,
    /// The JSON pointer of each rule of `set.rules`, in the same order.
    pub rule_pointers: &'a [String],
    pub trees: &'a BTreeMap<PathBuf, SpanTree>,
    /// What the static checks found: a rule or source they reported is not asked again.
    pub static_diags: &'a [Diagnostic],
    /// With `--explain`: plan every statement and judge it.
    pub explain: Option<&'a ExplainLimits>,
}

/// How many statements were prepared, by where their source prepares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreparedCounts {
    pub server: usize,
    pub local: usize,
}

/// Prepares every statement of every rule on the sources that `reach` allows, reporting into
/// `out`. `Reach::Server` asks every source (`--db`); `Reach::Local` only those that need no server.
pub(super) async fn check_statements(ctx: &Ctx<'_>, reach: Reach, out: &mut Vec<Diagnostic>) -> PreparedCounts {
    let mut sources = Sources::build_reaching(ctx.set, reach);
    let mut given_up = unusable_sources(ctx, &sources, out);
    let mut counts = PreparedCounts::default();
    for (rule, pointer) in ctx.set.rules.iter().zip(ctx.rule_pointers) {
        for name in rule.placement.sources() {
            if given_up.iter().any(|g| g == name) {
                continue;
            }
            let slot = sources.slot(name);
            let Ok(source) = as_source(&slot) else { continue };
            let at = RuleAt { rule, base: pointer, source: name };
            match check_rule_on(ctx, &at, source, out).await {
                Ok(n) if source.reach() == Reach::Server => counts.server += n,
                Ok(n) => counts.local += n,
                Err(()) => given_up.push(name.to_string()),
            }
        }
    }
    if reach == Reach::Server {
        report_transports(ctx, &sources, &given_up).await;
    }
    sources.shut_down(Duration::from_millis(200)).await;
    counts
}

/// Sources the check cannot ask: a static error in their settings (already reported), or one
/// that could not be built (reported here, at its declaration).
fn unusable_sources(ctx: &Ctx<'_>, sources: &Sources, out: &mut Vec<Diagnostic>) -> Vec<String> {
    let mut given_up = Vec::new();
    // One pass over the diagnostics, not one per source: a file may declare tens of thousands.
    let broken: HashSet<&str> =
        ctx.static_diags.iter().filter(|d| d.severity == Severity::Error).map(|d| declaration_of(&d.pointer)).collect();
    for (name, pointer) in declared(ctx.set) {
        if broken.contains(pointer.as_str()) {
            given_up.push(name);
        } else if let Some(Err(msg)) = sources.built(&name).as_deref() {
            let file = ctx
                .trees
                .iter()
                .find(|(_, tree)| tree.value_position(&pointer).is_some())
                .map(|(f, _)| f.clone())
                .unwrap_or_default();
            out.push(Diagnostic::error(&file, pointer, msg.clone()));
            given_up.push(name);
        }
    }
    given_up
}

/// The declaration a pointer lies in: its first two segments (`/databases/x/dsn` → `/databases/x`).
/// Segments are escaped, so a `/` always separates two.
fn declaration_of(pointer: &str) -> &str {
    match pointer.match_indices('/').nth(2) {
        Some((end, _)) => &pointer[..end],
        None => pointer,
    }
}

/// Every declared source with the JSON pointer of its declaration.
fn declared(set: &RuleSet) -> Vec<(String, String)> {
    let databases = set.databases.keys().map(|n| (n.clone(), format!("/databases/{}", span::escape(n))));
    let endpoints = set.endpoints.keys().map(|n| (n.clone(), format!("/endpoints/{}", span::escape(n))));
    databases.chain(endpoints).collect()
}

/// One rule on one of its sources, for messages.
struct RuleAt<'a> {
    rule: &'a Rule,
    /// The rule's JSON pointer.
    base: &'a str,
    source: &'a str,
}

impl RuleAt<'_> {
    /// ` on database 'x'` for a rule on several sources, else nothing.
    fn on(&self) -> String {
        if self.rule.placement.sources().len() > 1 {
            format!(" on database '{}'", self.source)
        } else {
            String::new()
        }
    }

    fn error(&self, pointer: String, msg: String) -> Diagnostic {
        Diagnostic::error(&self.rule.file, pointer, msg)
    }
}

/// Prepares (and with `--explain` plans) `at.rule`'s statements on `source`; the number prepared,
/// or `Err` when the source cannot be reached (reported once; its other rules are skipped).
async fn check_rule_on(
    ctx: &Ctx<'_>,
    at: &RuleAt<'_>,
    source: &dyn Source,
    out: &mut Vec<Diagnostic>,
) -> Result<usize, ()> {
    let rule = at.rule;
    let main = query_pointer(at.base, crate::rules::MAIN_QUERY);
    // A rule whose main template does not render was reported already.
    if ctx.static_diags.iter().any(|d| d.file == rule.file && d.pointer == main && d.severity == Severity::Error) {
        return Ok(0);
    }
    let fetch = Fetch { rule, timeout: ctx.set.connect_timeout(at.source) + rule.timeout };
    let checks = match source.prepare(fetch).await {
        Ok(checks) => checks,
        Err(FetchError::Connect(m)) => {
            let msg = format!("cannot connect to database '{}' to prepare the query: {m}", at.source);
            out.push(at.error(main, msg));
            return Err(());
        }
        Err(e) => {
            out.push(at.error(main, format!("preparing the query{} failed: {e}", at.on())));
            return Err(());
        }
    };
    let several = checks.len() > 1;
    let mut prepared = 0;
    let mut all_fine = true;
    for StatementCheck { query, result } in checks {
        let pointer = query_pointer(at.base, &query);
        if ctx.static_diags.iter().any(|d| d.file == rule.file && d.pointer == pointer && d.severity == Severity::Error)
        {
            continue;
        }
        match result {
            Ok(p) => {
                prepared += 1;
                let before = out.len();
                statement_problems(at, &query, several, &p, out);
                all_fine &= out.len() == before;
            }
            Err(e) => {
                all_fine = false;
                out.push(at.error(pointer, prepare_failure(at, e)));
            }
        }
    }
    if let (true, Some(limits)) = (all_fine, ctx.explain) {
        match source.explain(fetch, limits).await {
            Ok(warnings) => out.extend(
                warnings.into_iter().map(|w| Diagnostic::warning(&rule.file, main.clone(), format!("{w}{}", at.on()))),
            ),
            Err(e) => out.push(at.error(main, format!("EXPLAIN of the query{} failed: {e}", at.on()))),
        }
    }
    Ok(prepared)
}

/// A statement the source would not prepare, worded by the source (with the database for a rule
/// on several).
fn prepare_failure(at: &RuleAt<'_>, e: FetchError) -> String {
    let prefix = if at.on().is_empty() { String::new() } else { format!("database '{}': ", at.source) };
    match e {
        FetchError::Query(m) | FetchError::Render(m) => format!("{prefix}{m}"),
        e => format!("{prefix}preparing the query failed: {e}"),
    }
}

/// How each reachable source is carried (TLS version and cipher, or plaintext), on stderr with
/// the summary.
async fn report_transports(ctx: &Ctx<'_>, sources: &Sources, given_up: &[String]) {
    for (name, _) in declared(ctx.set) {
        if given_up.contains(&name) {
            continue;
        }
        let slot = sources.slot(&name);
        if let Ok(source) = as_source(&slot) {
            if let Some(t) = source.transport(ctx.set.connect_timeout(&name)).await {
                eprintln!("database '{name}': {t}");
            }
        }
    }
}
/// Whether a column decoded as `d` can be read the way `need` asks (see `Cell`'s `as_*` readers and
/// the signal's judgement).
fn accepts(need: Need, d: Decoded) -> bool {
    use Decoded::*;
    match need {
        Need::Any | Need::AnyIfPresent => true,
        Need::Order => matches!(d, Int | Float | Text | Timestamp | Json),
        Need::Value(ValueType::Integer) => matches!(d, Int | Float | Text | Json),
        Need::Value(ValueType::Float) => matches!(d, Bool | Int | Float | Text | Json),
        Need::Value(ValueType::Bool) => matches!(d, Bool | Text | Json),
        Need::Value(ValueType::Text) => true,
        Need::Value(ValueType::Timestamp) => matches!(d, Int | Float | Text | Timestamp | Json),
    }
}

/// What is wrong with a prepared statement for this rule: what it cannot bind, missing columns,
/// types. With one statement, at the query; with several, at the column that reads it.
fn statement_problems(at: &RuleAt<'_>, query: &str, several: bool, p: &Prepared, out: &mut Vec<Diagnostic>) {
    let main = query_pointer(at.base, query);
    let on = at.on();
    out.extend(p.binding_problems.iter().map(|m| at.error(main.clone(), format!("{m}{on}"))));
    let returned: Vec<&str> = p.columns.iter().map(|(n, _)| n.as_str()).collect();
    let named = if several { format!(" '{query}'") } else { String::new() };
    for used in columns_read(at.rule) {
        if several && family_query(at.rule, &used.key) != Some(query) {
            continue;
        }
        let pointer = if several { format!("{}/{}", at.base, used.key) } else { main.clone() };
        let (column, role) = (&used.column, &used.role);
        // The first column of that name is the one read, as at run time.
        let problem = match p.columns.iter().find(|(n, _)| n == column).map(|(_, ty)| ty) {
            None if used.need == Need::AnyIfPresent => None,
            None => Some(format!(
                "the query{named} returns no column '{column}' ({role}); it returns: {}",
                if returned.is_empty() { "no columns".to_string() } else { returned.join(", ") }
            )),
            Some(ColumnType::Unsupported(name)) => Some(format!(
                "column '{column}' ({role}) has type {name}, which the exporter cannot read; cast it in the query (e.g. {})",
                (p.cast_to_text)(column)
            )),
            Some(ColumnType::Known(d, name)) if !accepts(used.need, *d) => Some(format!(
                "column '{column}' ({role}) has type {name}, which cannot be read as {}; cast it in the query",
                used.need.wanted()
            )),
            Some(ColumnType::Known(..) | ColumnType::Unknown) => None,
        };
        out.extend(problem.map(|m| at.error(pointer, format!("{m}{on}"))));
    }
}

/// The named query the family behind a column key (`families/3/value`) reads.
fn family_query<'a>(rule: &'a Rule, key: &str) -> Option<&'a str> {
    let i = key.strip_prefix("families/")?.split('/').next()?.parse::<usize>().ok()?;
    match &rule.kind {
        RuleKind::Metric(m) => m.families.get(i)?.query.as_deref(),
        RuleKind::Signal(_) => None,
    }
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

#[cfg(test)]
mod declaration_tests {
    use super::declaration_of;

    #[test]
    fn a_pointer_inside_a_declaration_names_the_declaration() {
        assert_eq!(declaration_of("/databases/d1/dsn"), "/databases/d1");
        assert_eq!(declaration_of("/databases/d1"), "/databases/d1");
        assert_eq!(declaration_of("/endpoints/a~1b/tls/ca_file"), "/endpoints/a~1b");
        assert_eq!(declaration_of("/databases"), "/databases");
    }
}
