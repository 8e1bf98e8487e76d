//! sql-signal-exporter: a Prometheus exporter whose behaviour is declared in a YAML rules file.
//!
//! # A map of the code
//!
//! One folder per step of the data path, in the order one evaluation walks them:
//!
//! ```text
//! rules file ─▶ rules ─▶ run::scheduler ─▶ run::evaluate ─▶ source (seam) ─▶ rows ─▶ run sinks ─▶ eval
//!               model     one task a rule    one evaluation    a kind per folder       folded    samples
//!
//!   eval ─▶ publish::event ─▶ snapshot, status records, self-metrics ─▶ http (/metrics, /, API)
//! ```
//!
//! - [`rules`]: YAML → JSON Schema → semantic checks → the typed [`rules::RuleSet`]; every problem
//!   is a [`rules::Diagnostic`] at its line. Also the query templates and the DSN parser.
//! - [`eval`]: pure judgement of signals and mapping of metric rows, and the cell type. No I/O.
//! - [`source`]: the seam every kind of source implements ([`source::seam`]), one folder per kind
//!   behind it, and the one place that picks a kind (`source::registry`).
//! - [`publish`]: what a finished evaluation updates, through one event: the snapshot `/metrics`
//!   serves, the status records, the exporter's own metrics, the log line.
//! - [`run`]: the scheduler, one evaluation's glue, the sinks rows stream into, the watchdog.
//! - [`check`]: `--check-rules`, the loader's checks for CI, with every statement prepared through
//!   the seam.
//! - [`rule_tests`]: `--test-rules`, the rules' own evaluation run on fixture rows and responses,
//!   judged against the series and target states a test file expects.
//! - [`http`]: the routes, the status page, `--web.config.file`; reads only what was published.
//! - [`app`]: start, reload, `--once`, shutdown.
//! - [`convert`]: `--convert`, a peer exporter's configuration turned into a rules file (reads
//!   files, writes text; depends on `rules` only).
//! - [`secret`], [`logging`], [`resident`]: leaves every module may use (`resident` gives freed
//!   heap back to the system after a load and after each evaluation, and drops start-up code pages).
//!
//! Imports point down this order: `secret`/`logging` ← `rules` ← `eval` ← `source`, `publish` ←
//! `run`, `check`, `http` ← `app`, with `rule_tests` above `run` and `check` (only `main.rs`
//! calls it); `http` never reaches `run` or `source`. The architecture test
//! (`tests/integration/architecture.rs`) holds that order and the absence of cycles between files.

// Functions stay at or under clippy.toml's 80 lines, split by job; an exception says why in an
// #[allow] beside it.
#![deny(clippy::too_many_lines)]

pub mod app;
pub mod check;
pub mod convert;
pub mod eval;
pub mod http;
pub mod logging;
pub mod publish;
pub mod resident;
pub mod rule_tests;
pub mod rules;
pub mod run;
pub mod secret;
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
