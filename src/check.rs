//! `--check-rules`: validates rules files for CI, without starting the exporter.
//!
//! The static checks are the loader's own ([`rules::load::check_sources`]), so CI rejects exactly
//! what the exporter would refuse at start or reload, with the same messages and positions. `--db`
//! adds what only the server can tell: it prepares (never executes) every rendered query, and checks
//! that the columns each rule reads are among the statement's result columns, with types the
//! exporter can decode and read the way the rule needs.
//!
//! Exit codes: 0 when every file is valid (warnings allowed unless `--strict`), 1 when a file has an
//! error, 2 when a file cannot be read (usage errors are clap's, also 2).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;

use crate::rules::load::{check_sources, sort_diagnostics, Checked, LoadOptions};
use crate::rules::model::{Database, Rule, RuleKind, ValueType};
use crate::rules::span::{self, SpanTree};
use crate::rules::{Diagnostic, Severity};
use crate::source::{FetchError, Prepared, Source};
use crate::template;

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `FILE:LINE:COL: error: MESSAGE`, as compilers print, so editors and CI logs link to the line.
    #[default]
    Text,
    /// One JSON object per line: file, line, column, severity, message, pointer.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…,col=…::message`), which annotate the
    /// pull request's diff.
    Github,
}

/// What `--check-rules` was asked to do besides the static checks.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Connect to each database and prepare every query.
    pub db: bool,
    /// Warnings are errors.
    pub strict: bool,
    pub format: Format,
}

/// The outcome of a check, before printing.
#[derive(Debug)]
pub struct Report {
    /// Every diagnostic, in file and line order.
    pub diagnostics: Vec<Diagnostic>,
    /// A file could not be read.
    pub unreadable: bool,
    pub files: usize,
    pub rules: usize,
    /// Queries prepared on a server (`--db`).
    pub prepared: usize,
}

impl Report {
    /// 0 valid, 1 invalid, 2 unreadable.
    pub fn exit_code(&self) -> u8 {
        if self.unreadable {
            2
        } else if self.diagnostics.iter().any(|d| d.severity == Severity::Error) {
            1
        } else {
            0
        }
    }
}

/// Checks `files`, prints the diagnostics to stdout and a summary to stderr; returns the exit code.
pub fn run(files: &[PathBuf], opts: &Options) -> u8 {
    let report = check(files, opts);
    let mut out = std::io::stdout().lock();
    for d in &report.diagnostics {
        let line = match opts.format {
            Format::Text => d.to_string(),
            Format::Json => json_line(d),
            Format::Github => github_line(d),
        };
        // A closed stdout (`| head`) is not worth a panic.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    let _ = out.flush();
    let count = |s: Severity| report.diagnostics.iter().filter(|d| d.severity == s).count();
    let mut summary = format!(
        "checked {} file(s), {} rule(s): {} error(s), {} warning(s)",
        report.files,
        report.rules,
        count(Severity::Error),
        count(Severity::Warning)
    );
    if opts.db {
        summary.push_str(&format!("; {} queries prepared on the server", report.prepared));
    }
    eprintln!("{summary}");
    report.exit_code()
}

/// Runs every check on `files` and returns what was found.
pub fn check(files: &[PathBuf], opts: &Options) -> Report {
    let mut diagnostics = Vec::new();
    let mut sources = Vec::new();
    let mut unreadable = false;
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push((path.clone(), text)),
            Err(e) => {
                unreadable = true;
                diagnostics.push(Diagnostic::error(path, "", format!("cannot read the rules file: {e}")));
            }
        }
    }
    // Without --db an unset ${VAR} only warns: CI rarely has production's environment. With --db the
    // DSN is needed whole.
    let load = LoadOptions { unset_env_is_error: opts.db, ..LoadOptions::default() };
    let Checked { rules, rule_pointers, diagnostics: found } = check_sources(&sources, &load);
    diagnostics.extend(found);
    let mut prepared = 0;
    if opts.db {
        let trees: BTreeMap<PathBuf, SpanTree> = sources
            .iter()
            .filter_map(|(path, text)| span::parse(text).ok().map(|(tree, _)| (path.clone(), tree)))
            .collect();
        let mut db_diags = Vec::new();
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => {
                prepared = rt.block_on(check_queries(&rules, &rule_pointers, &trees, &diagnostics, &mut db_diags));
            }
            Err(e) => db_diags.push(Diagnostic::error(
                files.first().map(PathBuf::as_path).unwrap_or(std::path::Path::new("-")),
                "",
                format!("cannot start the async runtime for --db: {e}"),
            )),
        }
        span::fill_positions(&mut db_diags, &trees);
        diagnostics.extend(db_diags);
    }
    if opts.strict {
        for d in &mut diagnostics {
            d.severity = Severity::Error;
        }
    }
    sort_diagnostics(&mut diagnostics, files);
    Report { diagnostics, unreadable, files: files.len(), rules: rules.rules.len(), prepared }
}

/// Prepares every rule's query on its databases; returns how many were prepared.
async fn check_queries(
    set: &crate::rules::RuleSet,
    rule_pointers: &[String],
    trees: &BTreeMap<PathBuf, SpanTree>,
    static_diags: &[Diagnostic],
    out: &mut Vec<Diagnostic>,
) -> usize {
    // One source per database, made on first use; None once it failed (reported once).
    let mut sources: BTreeMap<String, Option<Source>> = BTreeMap::new();
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
            if !sources.contains_key(db_name) {
                let source = open_source(set, db, trees, static_diags, out);
                sources.insert(db_name.to_string(), source);
            }
            let Some(Some(source)) = sources.get(db_name) else { continue };
            // The template is rendered for the server's own version, as the exporter does.
            let render_failed = std::cell::Cell::new(false);
            let render = |version: i64| {
                template::render_query(rule, version).map_err(|e| {
                    render_failed.set(true);
                    format!(
                        "the query template does not render for server_version_num {version}: {}",
                        template::describe(&e)
                    )
                })
            };
            let on = if rule.databases().len() > 1 { format!(" on database '{db_name}'") } else { String::new() };
            match source.prepare_rendered(render, db.connect_timeout + rule.timeout).await {
                Ok(p) => {
                    prepared += 1;
                    for msg in statement_problems(rule, &p) {
                        out.push(Diagnostic::error(&rule.file, query_pointer.clone(), format!("{msg}{on}")));
                    }
                }
                Err(FetchError::Connect(m)) => {
                    out.push(Diagnostic::error(
                        &rule.file,
                        query_pointer.clone(),
                        format!("cannot connect to database '{db_name}' to prepare the query: {m}"),
                    ));
                    sources.insert(db_name.to_string(), None);
                }
                Err(FetchError::Query(m)) if render_failed.get() => {
                    out.push(Diagnostic::error(&rule.file, query_pointer.clone(), format!("{m}{on}")))
                }
                Err(FetchError::Query(m)) => out.push(Diagnostic::error(
                    &rule.file,
                    query_pointer.clone(),
                    format!("the server rejects the query{on}: {m}"),
                )),
                Err(e) => out.push(Diagnostic::error(
                    &rule.file,
                    query_pointer.clone(),
                    format!("preparing the query{on} failed: {e}"),
                )),
            }
        }
    }
    for source in sources.values().flatten() {
        source.close();
    }
    prepared
}

/// The pool for `db`, unless its DSN already has an error (then it was reported).
fn open_source(
    set: &crate::rules::RuleSet,
    db: &Arc<Database>,
    trees: &BTreeMap<PathBuf, SpanTree>,
    static_diags: &[Diagnostic],
    out: &mut Vec<Diagnostic>,
) -> Option<Source> {
    let pointer = format!("/databases/{}", span::escape(&db.name));
    let broken = static_diags.iter().any(|d| {
        d.severity == Severity::Error && (d.pointer == pointer || d.pointer.starts_with(&format!("{pointer}/")))
    });
    if broken {
        return None;
    }
    match Source::new(db.clone(), set.statement_timeout(&db.name), Duration::ZERO) {
        Ok(source) => Some(source),
        Err(msg) => {
            let file = trees
                .iter()
                .find(|(_, tree)| tree.value_position(&pointer).is_some())
                .map(|(f, _)| f.clone())
                .unwrap_or_default();
            out.push(Diagnostic::error(&file, pointer, msg));
            None
        }
    }
}

use crate::source::{decoded, Decoded};

/// What the rule does with a column, and so which decoded kinds it can use (see `cell::Cell`'s
/// `as_*` readers and `signal::judge`).
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Anything decodable (label values, text values, metric values).
    Any,
    /// `order_by`: compared as times or numbers.
    Order,
    Value(ValueType),
}

impl Need {
    fn accepts(self, d: Decoded) -> bool {
        use Decoded::*;
        match self {
            Need::Any => true,
            Need::Order => matches!(d, Int | Float | Text | Timestamp | Json),
            Need::Value(ValueType::Integer) => matches!(d, Int | Float | Text | Json),
            Need::Value(ValueType::Float) => matches!(d, Bool | Int | Float | Text | Json),
            Need::Value(ValueType::Bool) => matches!(d, Bool | Text | Json),
            Need::Value(ValueType::Text) => true,
            Need::Value(ValueType::Timestamp) => matches!(d, Int | Float | Text | Timestamp | Json),
        }
    }

    fn wanted(self) -> &'static str {
        match self {
            Need::Any => "a value",
            Need::Order => "an order (a time or a number)",
            Need::Value(ValueType::Integer) => "an integer",
            Need::Value(ValueType::Float) => "a float",
            Need::Value(ValueType::Bool) => "a bool",
            Need::Value(ValueType::Text) => "a text",
            Need::Value(ValueType::Timestamp) => "a time",
        }
    }
}

/// The columns a rule reads, with their role (for messages) and what it needs of each.
fn columns_read(rule: &Rule) -> Vec<(String, String, Need)> {
    let mut out = Vec::new();
    match &rule.kind {
        RuleKind::Signal(s) => {
            for l in &s.labels {
                out.push((l.clone(), "a target label".to_string(), Need::Any));
            }
            if let Some(c) = &s.order_by {
                out.push((c.clone(), "order_by".to_string(), Need::Order));
            }
            if let Some(f) = &s.freshness {
                out.push((f.column.clone(), "freshness".to_string(), Need::Value(ValueType::Timestamp)));
            }
            for (name, ty) in &s.values {
                out.push((name.clone(), format!("a value of type {}", ty.as_str()), Need::Value(*ty)));
            }
        }
        RuleKind::Metric(m) => {
            for f in &m.families {
                for l in &f.key_labels {
                    out.push((l.clone(), format!("a key label of {}", f.name), Need::Any));
                }
                for c in f.values.columns() {
                    out.push((c.clone(), format!("a value of {}", f.name), Need::Any));
                }
            }
        }
    }
    out
}

/// How many text arrays the rule binds as `$1, $2, …` (see `evaluation`).
fn bound_params(rule: &Rule) -> usize {
    match &rule.kind {
        RuleKind::Signal(s) => s.labels.len(),
        RuleKind::Metric(_) => 0,
    }
}

/// What is wrong with a prepared statement for this rule: parameters, missing columns, types.
fn statement_problems(rule: &Rule, p: &Prepared) -> Vec<String> {
    let mut problems = Vec::new();
    let bound = bound_params(rule);
    if !p.params.is_empty() && p.params.len() != bound {
        problems.push(crate::source::parameter_mismatch(p.params.len(), bound));
    } else {
        for (i, ty) in p.params.iter().enumerate() {
            if !<Vec<String> as ToSql>::accepts(ty) {
                problems.push(format!(
                    "parameter ${} is a text array (the values of label '{}' of every target), but the query uses it as {}; write ${}::text[] and unnest it or use = ANY",
                    i + 1,
                    match &rule.kind {
                        RuleKind::Signal(s) => s.labels.get(i).cloned().unwrap_or_default(),
                        RuleKind::Metric(_) => String::new(),
                    },
                    ty.name(),
                    i + 1
                ));
            }
        }
    }
    let returned: Vec<&str> = p.columns.iter().map(|(n, _)| n.as_str()).collect();
    for (column, role, need) in columns_read(rule) {
        // The first column of that name is the one read, as at run time.
        let Some((_, ty)) = p.columns.iter().find(|(n, _)| *n == column) else {
            problems.push(format!(
                "the query returns no column '{column}' ({role}); it returns: {}",
                if returned.is_empty() { "no columns".to_string() } else { returned.join(", ") }
            ));
            continue;
        };
        match decoded(ty) {
            None => problems.push(format!(
                "column '{column}' ({role}) has type {}, which the exporter cannot read; cast it in the query (e.g. {column}::text)",
                ty.name()
            )),
            Some(d) if !need.accepts(d) => problems.push(format!(
                "column '{column}' ({role}) has type {}, which cannot be read as {}; cast it in the query",
                ty.name(),
                need.wanted()
            )),
            Some(_) => {}
        }
    }
    problems
}

/// `{"file","line","column","severity","message","pointer"}`, keys in that order (written by hand:
/// serde_json's map would sort them), `line` and `column` null when unknown.
fn json_line(d: &Diagnostic) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let (line, column) = match d.position {
        Some((l, c)) => (l.to_string(), c.to_string()),
        None => ("null".to_string(), "null".to_string()),
    };
    format!(
        "{{\"file\":{},\"line\":{line},\"column\":{column},\"severity\":{},\"message\":{},\"pointer\":{}}}",
        text(&d.file.display().to_string()),
        text(d.severity.as_str()),
        text(&d.message),
        text(&d.pointer)
    )
}

/// A GitHub Actions annotation; `%`, CR and LF are escaped in the message, and `,` and `:` as well
/// in properties, as the workflow command syntax requires.
fn github_line(d: &Diagnostic) -> String {
    fn data(s: &str) -> String {
        s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    let mut props = format!("file={}", property(&d.file.display().to_string()));
    if let Some((line, col)) = d.position {
        props.push_str(&format!(",line={line},col={col}"));
    }
    format!("::{} {props}::{}", d.severity.as_str(), data(&d.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::types::Type;

    fn diag() -> Diagnostic {
        Diagnostic::error(std::path::Path::new("rules/a,b.yaml"), "/signals/0/window", "window: 100% bad\nreally")
            .at(7, 5)
    }

    #[test]
    fn formats() {
        let d = diag();
        assert_eq!(d.to_string(), "rules/a,b.yaml:7:5: error: window: 100% bad\nreally");
        assert_eq!(github_line(&d), "::error file=rules/a%2Cb.yaml,line=7,col=5::window: 100%25 bad%0Areally");
        assert!(json_line(&d).starts_with(r#"{"file":"rules/a,b.yaml","line":7,"column":5,"severity":"error","#));
        let v: serde_json::Value = serde_json::from_str(&json_line(&d)).expect("json");
        assert_eq!(v["line"], 7);
        assert_eq!(v["column"], 5);
        assert_eq!(v["severity"], "error");
        assert_eq!(v["pointer"], "/signals/0/window");
        let w = Diagnostic::warning(std::path::Path::new("x.yaml"), "", "m");
        assert_eq!(github_line(&w), "::warning file=x.yaml::m");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json_line(&w)).expect("json")["line"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn type_needs_follow_the_cell_readers() {
        assert!(Need::Value(ValueType::Integer).accepts(Decoded::Text));
        assert!(!Need::Value(ValueType::Integer).accepts(Decoded::Bool));
        assert!(!Need::Value(ValueType::Bool).accepts(Decoded::Int));
        assert!(!Need::Order.accepts(Decoded::Bool));
        assert!(Need::Any.accepts(Decoded::Bool));
        assert_eq!(decoded(&Type::INTERVAL), None);
        assert_eq!(decoded(&Type::NUMERIC), Some(Decoded::Float));
        assert!(<Vec<String> as ToSql>::accepts(&Type::TEXT_ARRAY));
        assert!(!<Vec<String> as ToSql>::accepts(&Type::TEXT));
    }
}
