//! Problems found in a rules file, with where they are.
//!
//! One type serves the exporter's load and reload and `--check-rules`, so an operator sees the same
//! message in CI as in the exporter's log.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem in one rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// JSON pointer to the offending key or value (`/signals/0/window`), empty for the whole file.
    pub pointer: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &Path, pointer: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            pointer: pointer.into(),
            position: None,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(file: &Path, pointer: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(file, pointer, message) }
    }

    pub fn at(mut self, line: usize, col: usize) -> Diagnostic {
        self.position = Some((line, col));
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error: MESSAGE`, the form compilers use, so editors and CI link to the line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        let sev = self.severity.as_str();
        match self.position {
            Some((line, col)) => write!(f, "{file}:{line}:{col}: {sev}: {}", self.message),
            None if self.pointer.is_empty() => write!(f, "{file}: {sev}: {}", self.message),
            None => write!(f, "{file}: {sev}: at {}: {}", self.pointer, self.message),
        }
    }
}

/// The diagnostics of a failed load. Its `Display` lists every one, a line each.
#[derive(Debug, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The most diagnostics reported for one file; a generated file gone wrong can have one per line,
/// and nobody reads past the first screens.
pub const MAX_DIAGNOSTICS_PER_FILE: usize = 1000;
