//! Every path into the exporter's library that the tests use, so that moving a module means editing
//! this file only.

pub use sql_signal_exporter::app;
pub use sql_signal_exporter::eval::exposition;
pub use sql_signal_exporter::publish::outcome::Status;
pub use sql_signal_exporter::rules::{self, LoadOptions, Rule, RuleSet};
pub use sql_signal_exporter::run::evaluate as evaluation;
pub use sql_signal_exporter::source::{as_source, Sources};
