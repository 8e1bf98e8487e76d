//! sql-signal-exporter: a Prometheus exporter whose behaviour is declared in a YAML rules file.
//!
//! # A map of the code
//!
//! One folder per step of the data path:
//!
//! ```text
//! rules file ──▶ rules ──▶ serve::scheduler ──▶ source ──▶ eval ──▶ serve::snapshot ──▶ serve::http
//!                model       one task a rule      rows       samples   rendered bytes      /metrics
//! ```
//!
//! - [`rules`]: YAML → JSON Schema → semantic checks → the typed [`rules::RuleSet`]; every problem
//!   is a [`rules::Diagnostic`] at its line. Also the query templates and the DSN parser.
//! - [`source`]: the seam every kind of source implements (render → fetch → rows), and
//!   [`source::postgres`], the only module that names the PostgreSQL driver.
//! - [`eval`]: pure judgement of signals and mapping of metric rows, and the cell type. No I/O.
//! - [`serve`]: scheduler, the glue of one evaluation, snapshot, HTTP, self-metrics, wiring.
//! - [`check`]: `--check-rules`, the loader's checks for CI, with `--db` preparing every query.
//! - [`secret`], [`logging`]: leaves every module may use.
//!
//! Dependencies between these folders point one way, down this list read from the bottom:
//! `serve → check? no; serve → source → eval → rules → secret`, and `check → source`. The README's
//! code map states the invariants and the tests that hold them.

pub mod check;
pub mod eval;
pub mod logging;
pub mod rules;
pub mod secret;
pub mod serve;
pub mod source;

/// Prefix of the exporter's own metrics; rules may not use it.
pub const SELF_METRIC_PREFIX: &str = "sql_signal_exporter_";

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision this build was made from, when known at build time.
pub const REVISION: &str = match option_env!("SQL_SIGNAL_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};
