//! `--convert`: a peer exporter's configuration turned into a rules file.
//!
//! Teams move to this exporter with years of queries written for a peer: postgres_exporter's
//! `queries.yaml`, burningalchemist's sql_exporter, justwatchcom's sql_exporter or query-exporter.
//! Rewriting them by hand is the cost that keeps them where they are, so each format has a
//! converter here that keeps the peer's metric names, label names, help texts and types, so that
//! dashboards and alerts keep working (the side-by-side tests in `tests/integration/convert/`
//! compare the series with the real peers on one database).
//!
//! One file per format reads the peer's YAML (`peer_file` keeps the position of every node, so a
//! warning names the file and line) into the output model of `output`, which writes the rules YAML
//! with the schema modeline. Anything a rules file cannot represent is never dropped silently: it
//! becomes a comment at its place in the output and a [`Warning`] naming the source file and line,
//! and the command exits 1. DSNs become `databases:` entries whose password is a `${VAR}` reference
//! (`dsn`): a password is never copied, the converter says which variable to set.
//!
//! This module depends only on [`crate::rules`] (for the DSN parser and YAML positions): converting
//! reads files and writes text, it never connects anywhere.

use std::path::PathBuf;

mod dsn;
mod justwatch;
mod output;
mod peer_file;
mod postgres_exporter;
mod query_exporter;
mod schedule;
mod sql_exporter;

pub use output::SCHEMA_MODELINE;
pub use peer_file::{Conversion, ConvertError, Variable, Warning, WarningKind};

/// A peer's configuration format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// postgres_exporter's `queries.yaml` (`--extend.query-path`).
    PostgresExporter,
    /// burningalchemist/sql_exporter: `sql_exporter.yml` with its collector files.
    SqlExporter,
    /// justwatchcom/sql_exporter: jobs, connections and queries.
    Justwatch,
    /// query-exporter: databases, metrics and queries.
    QueryExporter,
}

impl Format {
    pub const ALL: [Format; 4] =
        [Format::PostgresExporter, Format::SqlExporter, Format::Justwatch, Format::QueryExporter];

    /// The name the command line spells it with.
    pub fn flag_name(self) -> &'static str {
        match self {
            Format::PostgresExporter => "postgres_exporter",
            Format::SqlExporter => "sql_exporter",
            Format::Justwatch => "justwatch",
            Format::QueryExporter => "query-exporter",
        }
    }

    /// The format named `name` on the command line.
    pub fn from_flag_name(name: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.flag_name() == name).ok_or_else(|| {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.flag_name()).collect();
            format!("--convert: unknown format '{name}'; expected one of {}", known.join(", "))
        })
    }
}

/// Converts the peer configuration `files` (a format with one file takes the first; the others may
/// take several).
pub fn convert(format: Format, files: &[PathBuf]) -> Result<Conversion, ConvertError> {
    let mut report = peer_file::Report::default();
    let rules = match format {
        Format::PostgresExporter => postgres_exporter::convert(&mut report, files)?,
        Format::SqlExporter => sql_exporter::convert(&mut report, files)?,
        Format::Justwatch => justwatch::convert(&mut report, files)?,
        Format::QueryExporter => query_exporter::convert(&mut report, files)?,
    };
    let rules_yaml = output::render(&rules, format.flag_name());
    Ok(report.finish(rules_yaml))
}
