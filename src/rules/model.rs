//! The validated, typed model of a rules file.
//!
//! Everything downstream (scheduler, source, evaluation, rendering) works on these types only, never on
//! YAML. A value of these types has already passed the JSON Schema and the semantic checks in
//! [`super::load`], so the rest of the program can rely on its invariants (durations parsed, targets
//! expanded, labels consistent) instead of re-checking them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::secret::Secret;

/// Every rule and database of all loaded rules files.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub databases: BTreeMap<String, Arc<Database>>,
    /// Rules in the order they were declared, across files.
    pub rules: Vec<Arc<Rule>>,
}

/// Where one database lives and how the exporter's sessions behave on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub name: String,
    /// The DSN with `${VAR}` already expanded. Never printed: see [`Secret`].
    pub dsn: Secret,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    pub lock_timeout: Duration,
}

/// One rule: a query run on an interval, and what its rows become.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// Where the rule was declared, for messages.
    pub file: PathBuf,
    pub database: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Most rows the query may return before the rule fails.
    pub max_rows: usize,
    /// The minijinja template the SQL is rendered from.
    pub query: String,
    /// Constants the template and expressions see as `vars`.
    pub vars: serde_json::Value,
    pub kind: RuleKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Signal(SignalRule),
}

/// A health signal: the newest `window` results of each target decide up or down.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRule {
    /// Label names identifying a target; also the result columns that carry them.
    pub labels: Vec<String>,
    /// The expected targets, each a value per label in `labels` order. `None`: discovered from rows.
    pub targets: Option<Vec<Vec<String>>>,
    pub window: usize,
    pub min_rows: usize,
    pub order_by: Option<String>,
    pub freshness: Option<Freshness>,
    /// Columns the success expression reads, in declaration order.
    pub values: Vec<(String, ValueType)>,
    /// A minijinja expression over one result.
    pub success: String,
    pub up: MetricDescriptor,
    pub error: MetricDescriptor,
    pub reason_label: String,
    pub reasons: Reasons,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub column: String,
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Integer,
    Float,
    Text,
    Bool,
    Timestamp,
}

impl ValueType {
    pub fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "integer" => ValueType::Integer,
            "float" => ValueType::Float,
            "text" => ValueType::Text,
            "bool" => ValueType::Bool,
            "timestamp" => ValueType::Timestamp,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Integer => "integer",
            ValueType::Float => "float",
            ValueType::Text => "text",
            ValueType::Bool => "bool",
            ValueType::Timestamp => "timestamp",
        }
    }
}

/// A metric name with its HELP text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDescriptor {
    pub name: String,
    pub help: String,
}

/// Why a signal could not judge a target. Each failure maps to a `reason` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    QueryFailed,
    TooFewRows,
    BadTimestamp,
    Stale,
    BadValue,
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::QueryFailed,
        Failure::TooFewRows,
        Failure::BadTimestamp,
        Failure::Stale,
        Failure::BadValue,
    ];

    /// The key of this failure in the rules file's `reasons` map, also its default reason.
    pub fn key(self) -> &'static str {
        match self {
            Failure::QueryFailed => "query_failed",
            Failure::TooFewRows => "too_few_rows",
            Failure::BadTimestamp => "bad_timestamp",
            Failure::Stale => "stale",
            Failure::BadValue => "bad_value",
        }
    }
}

/// The reason label value for each [`Failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasons {
    by_failure: [String; 5],
}

impl Default for Reasons {
    fn default() -> Self {
        Reasons {
            by_failure: Failure::ALL.map(|f| f.key().to_string()),
        }
    }
}

impl Reasons {
    pub fn set(&mut self, failure: Failure, reason: String) {
        self.by_failure[failure as usize] = reason;
    }

    pub fn of(&self, failure: Failure) -> &str {
        &self.by_failure[failure as usize]
    }

    /// The distinct reason values, sorted: every target exports each of them.
    pub fn distinct(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.by_failure.iter().map(String::as_str).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}
