//! Pure evaluation: rows in, samples out. No I/O, no async runtime, no clock of its own (the caller
//! passes `now`), so every rule of judgement is unit-tested without a database.
//!
//! - [`cell`]: the value of one result column, and how each kind of value is read.
//! - [`signal`]: the judgement of a health signal, target by target, fail-safe.
//! - [`metric`]: the mapping of a metric rule's rows to families.
//! - [`exposition`]: families and their rendering in the Prometheus text format.
//!
//! May depend on: [`crate::rules`] (the model it evaluates).

pub mod cell;
pub mod exposition;
pub mod metric;
pub mod signal;
