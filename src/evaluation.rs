//! One evaluation of one rule: render the SQL, fetch once, turn rows into families.
//!
//! This is the glue between the database edge ([`crate::source`]) and the pure per-kind evaluation
//! ([`crate::signal`]). Whatever goes wrong, it returns families to serve: for a signal, the
//! fail-safe ones.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::cell::ResultSet;
use crate::exposition::Family;
use crate::rules::model::{Rule, RuleKind};
use crate::signal;
use crate::source::{FetchError, Source};
use crate::template;

/// How an evaluation ended, for the exporter's own metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Success,
    /// The rule could not run or its result could not be used; the message says why.
    Error(String),
    /// The query ran past the rule's timeout and was cancelled.
    Timeout,
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error(_) => "error",
            Status::Timeout => "timeout",
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
    /// No connection could be had (counted per database).
    pub connect_failed: bool,
}

impl Outcome {
    pub fn series(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

/// The bind parameters of a signal: one text array per label, one element per declared target.
pub fn signal_params(s: &crate::rules::model::SignalRule) -> Vec<Vec<String>> {
    let targets = s.targets.as_deref().unwrap_or(&[]);
    (0..s.labels.len()).map(|i| targets.iter().map(|t| t[i].clone()).collect()).collect()
}

/// Evaluates `rule` once against `source` (`Err` when the source could not even be built).
pub async fn evaluate(rule: &Rule, source: Result<&Source, &str>) -> Outcome {
    let started = Instant::now();
    let fetched = fetch(rule, source).await;
    let connect_failed = matches!(fetched, Err((Some(FetchError::Connect(_)), _)));
    let rows = fetched.as_ref().map(|rs| rs.rows.len()).unwrap_or(0);
    let (families, status) = match &rule.kind {
        RuleKind::Signal(s) => {
            let results = signal::evaluate(s, fetched.as_ref().map_err(|(_, m)| m.as_str()), Utc::now());
            let status = match &fetched {
                Err((Some(FetchError::Timeout(_)), _)) => Status::Timeout,
                Err((_, m)) => Status::Error(m.clone()),
                Ok(_) => match results.iter().find_map(column_problem) {
                    Some(m) => Status::Error(m),
                    None => Status::Success,
                },
            };
            (signal::families(s, &results), status)
        }
    };
    Outcome { families, status, rows, duration: started.elapsed(), connect_failed }
}

/// Runs the rule's query; on failure, the fetch error (if it got that far) and a message.
async fn fetch(rule: &Rule, source: Result<&Source, &str>) -> Result<ResultSet, (Option<FetchError>, String)> {
    let source = source.map_err(|m| (None, m.to_string()))?;
    let sql = template::render_query(rule, template::ASSUMED_SERVER_VERSION_NUM)
        .map_err(|e| (None, format!("query template: {}", template::describe(&e))))?;
    let params = match &rule.kind {
        RuleKind::Signal(s) => signal_params(s),
    };
    source
        .fetch(&sql, &params, rule.timeout, rule.max_rows)
        .await
        .map_err(|e| {
            let m = e.to_string();
            (Some(e), m)
        })
}

/// A missing column fails every target with the same query-level detail: that is a rule error.
fn column_problem(t: &signal::TargetResult) -> Option<String> {
    match &t.state {
        signal::TargetState::Failed { failure: crate::rules::model::Failure::QueryFailed, detail } => Some(detail.clone()),
        _ => None,
    }
}
