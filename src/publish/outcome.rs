//! What one evaluation of a rule produced: the families to serve and how it went. Produced by
//! `run`, published here to the snapshot, the status records and the self-metrics at once.

use std::fmt;
use std::time::Duration;

use crate::eval::exposition::Family;
use crate::publish::targets::Targets;

/// How an evaluation ended; text only at the edge ([`EvaluationResult::as_str`]), where it is the
/// `result` label of `sql_signal_exporter_rule_evaluations_total` and the status API's `result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationResult {
    Success,
    /// The rule could not run or its result could not be used.
    Error,
    /// The query ran past the rule's timeout and was cancelled.
    Timeout,
}

impl EvaluationResult {
    pub const ALL: [EvaluationResult; 3] =
        [EvaluationResult::Success, EvaluationResult::Error, EvaluationResult::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            EvaluationResult::Success => "success",
            EvaluationResult::Error => "error",
            EvaluationResult::Timeout => "timeout",
        }
    }
}

impl fmt::Display for EvaluationResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an evaluation ended, with why when it failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Success,
    /// The rule could not run or its result could not be used; the message says why.
    Error(String),
    /// The query ran past the rule's timeout (given) and was cancelled.
    Timeout(Duration),
}

impl Status {
    pub fn result(&self) -> EvaluationResult {
        match self {
            Status::Success => EvaluationResult::Success,
            Status::Error(_) => EvaluationResult::Error,
            Status::Timeout(_) => EvaluationResult::Timeout,
        }
    }

    /// Why the evaluation failed, in one line; `None` when it succeeded.
    pub fn reason(&self) -> Option<String> {
        match self {
            Status::Success => None,
            Status::Error(m) => Some(m.clone()),
            Status::Timeout(d) => Some(format!("timed out after {}", humantime::format_duration(*d))),
        }
    }
}

/// What one evaluation produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub families: Vec<Family>,
    pub status: Status,
    pub rows: usize,
    pub duration: Duration,
    /// The sources on which no connection could be had (counted per source).
    pub connect_failures: Vec<String>,
    /// The SQL as last rendered for a source (the first source's, for a rule on several).
    pub sql: Option<String>,
    /// A signal's judgement of each target, for the status page; empty for a metric rule.
    pub targets: Targets,
}

impl Outcome {
    pub fn series(&self) -> usize {
        self.families.iter().map(Family::series).sum()
    }
}
