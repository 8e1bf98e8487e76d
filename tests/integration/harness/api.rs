//! Every path into the exporter's library that the tests use, so that moving a module means editing
//! this file only.

pub use sql_signal_exporter::evaluation::{self, Status};
pub use sql_signal_exporter::rules::{self, LoadOptions, Rule, RuleSet};
pub use sql_signal_exporter::source::Source;
pub use sql_signal_exporter::{app, exposition};
