//! Rules files: their typed model, how they are loaded and validated, and their diagnostics.

pub mod diagnostic;
pub mod load;
pub mod model;
pub mod schema_errors;
pub mod span;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use load::{load_files, load_sources, LoadOptions, Loaded};
pub use model::*;
