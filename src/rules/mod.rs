//! Rules files: their typed model, how they are loaded and validated, and their diagnostics.
//!
//! This is the first step of the data path and depends on nothing else of the exporter but
//! [`crate::secret`]: it turns YAML into the typed [`RuleSet`] that every later step reads.
//!
//! Loading never stops at the first problem: it collects every diagnostic of every file, so an
//! operator fixes a file in one round. The same function serves start-up, reload and `--check-rules`.
//! The order: YAML syntax (serde_yaml); a second, position-keeping parse ([`span`]) that also
//! rejects duplicate keys; the JSON Schema ([`schema`]), whose errors [`schema_errors`] words for
//! operators; then the semantic checks the schema cannot express, on every rule and database that
//! still deserializes (`signal_rule`, [`metric_rule`], `database`, `names`, [`limits`]). Last,
//! every diagnostic gets the `line:col` its JSON pointer resolves to, so the exporter's log and
//! `--check-rules` both print `FILE:LINE:COL: error: MESSAGE`.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod columns;
pub mod conninfo;
mod database;
pub mod diagnostic;
pub mod document;
pub mod duration;
mod endpoint;
pub mod input;
pub mod limits;
mod loader;
pub mod metric_family;
pub mod metric_rule;
pub mod model;
pub mod mysql_dsn;
pub mod names;
pub mod schema;
pub mod schema_errors;
pub mod server;
mod signal_rule;
pub mod span;
mod spec;
mod sql_text;
pub mod template;
pub mod tls_files;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use endpoint::{query_pointer, DEFAULT_MAX_BODY_BYTES};
pub use metric_rule::DEFAULT_DATABASE_LABEL;
pub use model::*;

pub use diagnostic::MAX_DIAGNOSTICS_PER_FILE;
use loader::Ctx;
pub use loader::{EnvLookup, LoadOptions};
use span::SpanTree;

/// A successful load: the rules, and warnings that did not stop it.
#[derive(Debug)]
pub struct Loaded {
    pub rules: RuleSet,
    pub warnings: Vec<Diagnostic>,
}

/// Loads and validates `paths` together (names must be unique across them).
pub fn load_files(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        match input::read_rules_file(path) {
            Ok(text) => sources.push((path.clone(), text)),
            Err(refused) => diags.push(refused.into_diagnostic()),
        }
    }
    let result = load_sources(&sources, opts);
    if diags.is_empty() {
        return result;
    }
    match result {
        Ok(_) => Err(Diagnostics(diags)),
        Err(Diagnostics(more)) => {
            diags.extend(more);
            Err(Diagnostics(diags))
        }
    }
}

/// Loads rules from texts already read, each with the path it is reported under.
pub fn load_sources(sources: &[(PathBuf, String)], opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    let Checked { rules, diagnostics, .. } = check_sources(sources, opts);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        Err(Diagnostics(diagnostics))
    } else {
        Ok(Loaded { rules, warnings: diagnostics })
    }
}

/// Everything a check of rules files found, valid or not.
///
/// `--check-rules --db` goes on to prepare the queries of the rules that were built even when other
/// rules have errors, so it needs the partial rule set that [`load_sources`] discards.
#[derive(Debug)]
pub struct Checked {
    /// Every rule that was built. A rule whose part of the file fails the schema is not built; a rule
    /// with only semantic errors is.
    pub rules: RuleSet,
    /// The JSON pointer of each rule of `rules.rules` (`/signals/3`), in the same order.
    pub rule_pointers: Vec<String>,
    /// Every problem, positioned where its pointer resolves, in file and line order.
    pub diagnostics: Vec<Diagnostic>,
    /// The positions of every file that parsed, for diagnostics found later (`--check-rules --db`).
    pub spans: BTreeMap<PathBuf, SpanTree>,
}

/// Checks rules from texts already read: the work behind [`load_sources`] and `--check-rules`.
pub fn check_sources(sources: &[(PathBuf, String)], opts: &LoadOptions) -> Checked {
    let mut ctx = Ctx::new(opts);
    for (path, text) in sources {
        ctx.file(path, text);
    }
    ctx.settle_generated_names();
    // Rules must name a database or endpoint declared in any of the files, and their queries render
    // for the servers those declare.
    let rules = ctx.set.rules.clone();
    for (n, rule) in rules.iter().enumerate() {
        let base = ctx.rule_pointers.get(n).cloned().unwrap_or_default();
        match &rule.placement {
            Placement::Endpoint(e) => ctx.endpoint_declared(rule, e, &base),
            Placement::Databases(names) => ctx.databases_declared(rule, names, &base),
        }
        ctx.query_renders(rule, &base);
    }
    let Ctx { mut diags, set, spans, rule_pointers, unpositioned, .. } = ctx;
    span::fill_positions(&mut diags, &spans);
    for d in diags.iter_mut().filter(|d| d.position.is_none()) {
        d.position = unpositioned.get(&d.file).copied();
    }
    let files: Vec<PathBuf> = sources.iter().map(|(p, _)| p.clone()).collect();
    sort_diagnostics(&mut diags, &files);
    let diags = cap_per_file(diags);
    Checked { rules: set, rule_pointers, diagnostics: diags, spans }
}

/// Keeps the first [`MAX_DIAGNOSTICS_PER_FILE`] diagnostics of each file (sorted, grouped by file)
/// and says how many more there were.
fn cap_per_file(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len().min(4 * MAX_DIAGNOSTICS_PER_FILE));
    let mut run = 0;
    let mut hidden: Option<(Diagnostic, usize)> = None;
    let flush = |out: &mut Vec<Diagnostic>, hidden: &mut Option<(Diagnostic, usize)>| {
        if let Some((mut note, n)) = hidden.take() {
            // At the first one not shown, so that it sorts after those shown.
            note.message = format!(
                "{n} more problem(s) from here on are not shown (at most {MAX_DIAGNOSTICS_PER_FILE} per file are)"
            );
            out.push(note);
        }
    };
    for d in diags {
        if out.last().is_some_and(|last| last.file != d.file) || hidden.as_ref().is_some_and(|(h, _)| h.file != d.file)
        {
            flush(&mut out, &mut hidden);
            run = 0;
        }
        run += 1;
        if run <= MAX_DIAGNOSTICS_PER_FILE {
            out.push(d);
        } else {
            let error = d.severity == Severity::Error;
            let (note, n) = hidden.get_or_insert((d, 0));
            *n += 1;
            if error {
                note.severity = Severity::Error;
            }
        }
    }
    flush(&mut out, &mut hidden);
    out
}

/// Orders diagnostics by file (in the order the files were given), then by position. The sort is
/// stable, so diagnostics at one place keep the order in which the checks found them.
pub fn sort_diagnostics(diags: &mut [Diagnostic], files: &[PathBuf]) {
    // Cached: comparing paths is slow, and a large file may have many thousands of diagnostics.
    diags.sort_by_cached_key(|d| {
        let file = files.iter().position(|f| *f == d.file).unwrap_or(usize::MAX);
        (file, d.position.unwrap_or((0, 0)))
    });
}
