//! Running rules: the scheduler that evaluates each rule on its interval, one evaluation's glue
//! between the sources and the pure evaluation, the sinks rows stream into, and the watchdog.
//!
//! - [`scheduler`]: one task per rule; applies a new rule set on reload; publishes each evaluation.
//! - [`evaluate`]: one run of one rule: fetch through the source seam, evaluate, never fail to
//!   return families to serve.
//! - [`signal_sink`]: a signal's rows folded as they stream in, only what its windows can use.
//! - [`metric_sink`]: a metric rule's rows folded into its families as they stream in.
//! - [`query_sink`]: every row of each named statement, kept apart (the reference the streaming
//!   sinks are tested against).
//! - [`watchdog`]: a rule that stops finishing evaluations is served fail-safe.
//!
//! Depends on `source` (through its seam only: no kind is named here), `eval`, `publish` and
//! `rules`; never on the HTTP side.

pub mod evaluate;
pub mod metric_sink;
pub mod query_sink;
pub mod scheduler;
pub mod signal_sink;
pub mod watchdog;
