//! `--test-rules`: proves that a rule says what its author means, as `promtool test rules` does for
//! alerts. A test file names rules files and holds cases; each case gives fixture rows (tables
//! that shadow the real ones, in a transaction that is rolled back) or canned responses, and the
//! series, target states and failures it expects.
//!
//! A test runs the real evaluation, not a copy: the rules are loaded by the rules loader, the
//! sources are built as the exporter builds them, and each case's rules go through
//! [`crate::run::evaluate`] on the session [`crate::source::Source::open_fixture`] opens, so a
//! rule's own SQL, templates, bindings, sinks and judgement all run. What differs is only where
//! the rows come from.
//!
//! Exit codes: 0 when every case passes, 1 when a case fails, 2 when a test file is broken (its
//! diagnostics are printed at `FILE:LINE:COL`, as `--check-rules` prints them).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use crate::check::{github_line, json_line, Format};
use crate::rules::Diagnostic;

mod expect;
mod runner;
mod series;
mod test_file;
mod test_spec;
mod time;

use runner::CaseReport;
pub use test_file::SCHEMA_TEXT;

/// What `--test-rules` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--db NAME=DSN`: the database each SQL case of database NAME runs on.
    pub databases: BTreeMap<String, String>,
    pub format: Format,
}

/// What one test file gave: its cases' reports, or why it could not run.
enum FileReport {
    Broken(Vec<Diagnostic>),
    Ran(PathBuf, Vec<CaseReport>),
}

/// Runs every case of `files`, prints a line per case (and per problem) to stdout and a summary to
/// stderr; returns the exit code.
pub fn run(files: &[PathBuf], opts: &Options) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime for the tests: {e}");
            return 2;
        }
    };
    let ctx = test_file::LoadCtx { dsn_overrides: &opts.databases };
    let reports: Vec<FileReport> = files
        .iter()
        .map(|path| match test_file::load(&ctx, path) {
            Ok(file) => FileReport::Ran(path.clone(), runtime.block_on(runner::run_file(&file))),
            Err(diags) => FileReport::Broken(diags),
        })
        .collect();
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for report in &reports {
        match report {
            FileReport::Broken(diags) => {
                broken += 1;
                for d in diags {
                    let line = match opts.format {
                        Format::Text => d.to_string(),
                        Format::Json => json_line(d),
                        Format::Github => github_line(d),
                    };
                    let _ = writeln!(out, "{line}");
                }
            }
            FileReport::Ran(path, cases) => {
                for case in cases {
                    if case.problems.is_empty() {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                    let _ = writeln!(out, "{}", case_text(path, case, opts.format));
                }
            }
        }
    }
    let _ = out.flush();
    eprintln!("tested {} file(s): {passed} case(s) passed, {failed} failed; {broken} file(s) broken", files.len());
    if broken > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    }
}

/// A place in a test file, printed `FILE:LINE:COL` as compilers print it (`FILE` when unknown).
struct At<'a> {
    path: &'a std::path::Path,
    position: Option<(usize, usize)>,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "{}:{l}:{c}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// A case's result in `format`.
fn case_text(path: &std::path::Path, case: &CaseReport, format: Format) -> String {
    let verdict = if case.problems.is_empty() { "PASS" } else { "FAIL" };
    match format {
        Format::Text => {
            let mut text = format!("{verdict} {}: {}", At { path, position: case.position }, case.name);
            for p in &case.problems {
                text.push_str(&format!("\n  {}: {}", At { path, position: p.position.or(case.position) }, p.message));
                for l in &p.lines {
                    text.push_str(&format!("\n    {l}"));
                }
            }
            text
        }
        Format::Json => {
            let problems: Vec<serde_json::Value> = case
                .problems
                .iter()
                .map(|p| {
                    let (line, column) = p.position.or(case.position).unzip();
                    serde_json::json!({"line": line, "column": column, "message": p.message, "diff": p.lines})
                })
                .collect();
            let (line, column) = case.position.unzip();
            serde_json::json!({
                "file": path.display().to_string(), "line": line, "column": column, "case": case.name,
                "result": verdict.to_ascii_lowercase(), "problems": problems,
            })
            .to_string()
        }
        Format::Github => {
            if case.problems.is_empty() {
                return format!("PASS {}: {}", At { path, position: case.position }, case.name);
            }
            let diags: Vec<String> = case
                .problems
                .iter()
                .map(|p| {
                    let mut message = format!("case '{}': {}", case.name, p.message);
                    for l in &p.lines {
                        message.push_str(&format!("\n{l}"));
                    }
                    let mut d = Diagnostic::error(path, "", message);
                    d.position = p.position.or(case.position);
                    github_line(&d)
                })
                .collect();
            diags.join("\n")
        }
    }
}
