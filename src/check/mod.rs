//! `--check-rules`: validates rules files for CI, without starting the exporter.
//!
//! The static checks are the loader's own ([`crate::rules::check_sources`]), so CI rejects exactly
//! what the exporter would refuse at start or reload, with the same messages and positions. `--db`
//! adds what only the server can tell: it prepares (never executes) every rendered query, and checks
//! that the columns each rule reads are among the statement's result columns, with types the
//! exporter can decode and read the way the rule needs.
//!
//! Exit codes: 0 when every file is valid (warnings allowed unless `--strict`), 1 when a file has an
//! error, 2 when a file cannot be read (usage errors are clap's, also 2).

use std::io::Write;
use std::path::PathBuf;

use crate::rules::input::{self, Refused};
use crate::rules::span;
use crate::rules::{check_sources, sort_diagnostics, Checked, Diagnostic, LoadOptions, Severity};
use crate::source::{ExplainLimits, Reach};
pub use statements::PreparedCounts;

mod statements;

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
    /// With `db`: plan every query (never run it) and warn about costly plans.
    pub explain: Option<ExplainLimits>,
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
    /// Statements prepared, on a server (`--db`) and locally (always: no network needed).
    pub prepared: PreparedCounts,
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
        summary.push_str(&format!("; {} queries prepared on the server", report.prepared.server));
    }
    if report.prepared.local > 0 {
        summary.push_str(&format!("; {} queries prepared without a server", report.prepared.local));
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
        match input::read_rules_file(path) {
            Ok(text) => sources.push((path.clone(), text)),
            Err(Refused::Unreadable(d)) => {
                unreadable = true;
                diagnostics.push(d);
            }
            Err(Refused::Invalid(d)) => diagnostics.push(d),
        }
    }
    // Without --db an unset ${VAR} only warns: CI rarely has production's environment. With --db the
    // DSN is needed whole.
    let load = LoadOptions { unset_env_is_error: opts.db, ..LoadOptions::default() };
    let Checked { rules, rule_pointers, diagnostics: found, spans } = check_sources(&sources, &load);
    diagnostics.extend(found);
    let ctx = statements::Ctx {
        set: &rules,
        rule_pointers: &rule_pointers,
        trees: &spans,
        static_diags: &diagnostics,
        explain: opts.explain.as_ref(),
    };
    let reach = if opts.db { Reach::Server } else { Reach::Local };
    let mut found = Vec::new();
    let prepared = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(statements::check_statements(&ctx, reach, &mut found)),
        Err(e) => {
            let file = files.first().map(PathBuf::as_path).unwrap_or(std::path::Path::new("-"));
            found.push(Diagnostic::error(file, "", format!("cannot start the async runtime for the checks: {e}")));
            PreparedCounts::default()
        }
    };
    span::fill_positions(&mut found, &spans);
    diagnostics.extend(found);
    if opts.strict {
        for d in &mut diagnostics {
            d.severity = Severity::Error;
        }
    }
    sort_diagnostics(&mut diagnostics, files);
    Report { diagnostics, unreadable, files: files.len(), rules: rules.rules.len(), prepared }
}

/// `{"file","line","column","severity","message","pointer"}`, keys in that order (written by hand:
/// serde_json's map would sort them), `line` and `column` null when unknown.
pub fn json_line(d: &Diagnostic) -> String {
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
pub fn github_line(d: &Diagnostic) -> String {
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
}
