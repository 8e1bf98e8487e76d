//! Publishing: everything a finished (or expired) evaluation updates, written by one event
//! ([`event::RuleEvent`]) and read by the HTTP side without a lock or a query.
//!
//! - [`outcome`]: what one evaluation produced, and its result kinds.
//! - [`event`]: the event, and the [`event::Publisher`] that applies it to the stores below.
//! - [`snapshot`]: the rendered bytes `/metrics` serves, replaced per rule.
//! - [`status`]: each rule's last evaluations and each target's state and why.
//! - [`self_metrics`]: the exporter's own metrics, `sql_signal_exporter_*`.
//!
//! Depends on `eval` and `rules` only: it never reaches a source or the scheduler.

pub mod event;
pub mod outcome;
pub mod self_metrics;
pub mod snapshot;
pub mod status;
pub mod targets;
