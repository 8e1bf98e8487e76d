//! sql-signal-exporter: a Prometheus exporter whose behaviour is declared in a YAML rules file.
//!
//! # A map of the code
//!
//! The data path, and the module that owns each step:
//!
//! ```text
//! rules file ──▶ validated model ──▶ scheduler ──▶ source query ──▶ evaluation ──▶ snapshot ──▶ HTTP
//! rules::load    rules::model        scheduler     source           evaluation     snapshot     http
//!                                                  (cell)           signal, metric exposition
//! ```
//!
//! - [`rules`]: reads YAML, checks it against the JSON Schema (`schemas/rules.schema.json`) and the
//!   semantic rules, and builds the typed [`rules::RuleSet`]. Every problem becomes a
//!   [`rules::Diagnostic`].
//! - [`scheduler`]: one task per rule, on its interval; applies a new rule set on reload.
//! - [`source`]: the only module that talks to PostgreSQL (pools, timeouts, cancel, row decoding into
//!   [`cell::Cell`]s).
//! - [`evaluation`]: one run of one rule; [`signal`] is the pure judgement of a health signal (rows in,
//!   states out) and [`metric`] the pure mapping of a metric rule's rows to families; both are
//!   unit-tested without a database.
//! - [`exposition`]: renders families to the text format; [`snapshot`] holds the rendered bytes that
//!   `/metrics` serves.
//! - [`http`]: warp routes; [`app`] wires everything; [`self_metrics`] are the exporter's own metrics.
//! - [`check`]: `--check-rules`, the same validation for CI, with `--db` preparing every query.

pub mod app;
pub mod cell;
pub mod check;
pub mod evaluation;
pub mod exposition;
pub mod http;
pub mod logging;
pub mod metric;
pub mod rules;
pub mod scheduler;
pub mod secret;
pub mod self_metrics;
pub mod signal;
pub mod snapshot;
pub mod source;
pub mod template;

/// Prefix of the exporter's own metrics; rules may not use it.
pub const SELF_METRIC_PREFIX: &str = "sql_signal_exporter_";

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision this build was made from, when known at build time.
pub const REVISION: &str = match option_env!("SQL_SIGNAL_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};
