//! One evaluation of one rule: render the SQL, fetch once, turn rows into families.
//!
//! This is the glue between the database edge ([`crate::source`]) and the pure per-kind evaluation
//! ([`crate::signal`], [`crate::metric`]). Whatever goes wrong, it returns families to serve: for a
//! signal, the fail-safe ones; for a metric rule, none of the failed run's series (only the zero
//! series a family declares with `on_error: zero`), so a stale value is never served as fresh.
//!
//! A metric rule that names several databases runs on all of them at once, one fetch each; a
//! failure on one database withdraws that database's series only.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::eval::cell::ResultSet;
use crate::eval::exposition::Family;
use crate::eval::{metric, signal};
use crate::rules::model::{Failure, MetricRule, Rule, RuleKind, SignalRule};
use crate::rules::template;
use crate::serve::signal_sink::WindowSink;
use crate::serve::status::Targets;
use crate::source::{Collect, Fetch, FetchError, RowSink, Source};

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
    /// The databases on which no connection could be had (for a rule on several databases).
    pub connect_failures: Vec<String>,
    /// The SQL as last rendered for a source (the first database's, for a rule on several).
    pub sql: Option<String>,
    /// A signal's judgement of each target, for the status page; empty for a metric rule.
    pub targets: Targets,
}

impl Outcome {
    pub fn series(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

/// A rule's sources as an evaluation takes them: one per database of [`Rule::databases`], in that
/// order, or why there is none.
pub type Sources<'a> = [Result<&'a dyn Source, &'a str>];

/// Evaluates `rule` once (a rule that runs again and again uses [`evaluate_remembering`]).
pub async fn evaluate_on(rule: &Rule, sources: &Sources<'_>) -> Outcome {
    evaluate_remembering(rule, sources, &mut Memory::default()).await
}

/// What a rule's task carries from one evaluation to the next: the targets a signal without declared
/// targets last saw, so that a failed query reports them fail-safe instead of dropping them.
#[derive(Debug, Default)]
pub struct Memory {
    targets: Vec<Vec<String>>,
}

/// [`evaluate_on`] for a rule that runs again and again: uses and updates `memory`.
pub async fn evaluate_remembering(rule: &Rule, sources: &Sources<'_>, memory: &mut Memory) -> Outcome {
    let started = Instant::now();
    let mut outcome = match &rule.kind {
        RuleKind::Signal(s) => evaluate_signal(rule, s, source_at(sources, 0), started, memory).await,
        RuleKind::Metric(m) if rule.endpoint.is_some() => {
            super::endpoint::evaluate_metric(rule, m, source_at(sources, 0), started).await
        }
        RuleKind::Metric(m) => evaluate_metric(rule, m, sources, started).await,
    };
    let series = outcome.series();
    if series > rule.max_series {
        // Serving a truncated set would be a silent lie; serve none and say why.
        outcome.families.clear();
        outcome.status = Status::Error(format!(
            "produced {series} series, more than max_series ({}); none are served",
            rule.max_series
        ));
    }
    if let Some(e) = &rule.endpoint {
        super::endpoint::own_metrics(e, &mut outcome);
    }
    outcome
}

fn source_at<'a>(sources: &Sources<'a>, i: usize) -> Result<&'a dyn Source, &'a str> {
    sources.get(i).copied().unwrap_or(Err("no connection pool was set up for this database"))
}

async fn evaluate_signal(
    rule: &Rule,
    s: &SignalRule,
    source: Result<&dyn Source, &str>,
    started: Instant,
    memory: &mut Memory,
) -> Outcome {
    // Only the rows the windows can use are kept (see `signal_sink`), however many the query returns.
    let mut sink = WindowSink::new(s, rule.max_rows);
    let (fetched, sql) = fetch_into(rule, source, &mut sink).await;
    let fetched = fetched.map(|()| sink.finish());
    let connect_failed = matches!(fetched, Err((Some(FetchError::Connect(_)), _)));
    let rows = if fetched.is_ok() { sink.rows_seen() } else { 0 };
    let results =
        signal::evaluate(s, &rule.vars, fetched.as_ref().map_err(|(_, m)| m.as_str()), Utc::now(), &memory.targets);
    if s.targets.is_none() && fetched.is_ok() {
        memory.targets = results.iter().map(|t| t.labels.clone()).collect();
    }
    let status = match &fetched {
        Err((Some(FetchError::Timeout(_)), _)) => Status::Timeout,
        Err((_, m)) => Status::Error(m.clone()),
        Ok(_) => match results.iter().find_map(column_problem) {
            Some(m) => Status::Error(m),
            None => Status::Success,
        },
    };
    // The rows are judged: free them before the families are built.
    drop(fetched);
    let families = signal::families(s, &results);
    let connect_failures = if connect_failed { vec![rule.database.clone()] } else { Vec::new() };
    Outcome {
        families,
        status,
        rows,
        duration: started.elapsed(),
        connect_failed,
        connect_failures,
        sql,
        targets: Targets::pack(s.labels.len(), &results),
    }
}

/// What a rule serves when its evaluation panicked (a bug): a signal's fail-safe series, a metric
/// rule's none, and the panic as the rule's error.
pub fn panicked(rule: &Rule, message: &str) -> Outcome {
    failed(rule, format!("internal error, please report it: evaluation panicked: {message}"))
}

/// What a rule serves when it cannot be evaluated for `reason`: a signal's fail-safe series, a
/// metric rule's none.
pub fn failed(rule: &Rule, reason: String) -> Outcome {
    let (families, targets) = match &rule.kind {
        RuleKind::Signal(s) => {
            let targets = signal::evaluate(s, &rule.vars, Err(&reason), Utc::now(), &[]);
            (signal::families(s, &targets), Targets::pack(s.labels.len(), &targets))
        }
        RuleKind::Metric(_) => (Vec::new(), Targets::default()),
    };
    let mut outcome = Outcome {
        families,
        status: Status::Error(reason),
        rows: 0,
        duration: Duration::ZERO,
        connect_failed: false,
        connect_failures: Vec::new(),
        sql: None,
        targets,
    };
    if let Some(e) = &rule.endpoint {
        super::endpoint::own_metrics(e, &mut outcome);
    }
    outcome
}

/// One run of a metric rule on each of its databases, concurrently; the families merged in
/// declaration order, each database's series present only if its run succeeded.
async fn evaluate_metric(rule: &Rule, m: &MetricRule, sources: &Sources<'_>, started: Instant) -> Outcome {
    let databases = rule.databases();
    let runs = futures_util::future::join_all(databases.iter().enumerate().map(|(i, db)| {
        let src = source_at(sources, i);
        async move { (*db, fetch(rule, src).await) }
    }))
    .await;

    let mut families: Vec<Family> =
        m.families.iter().map(|f| Family::new(&f.name, &f.help, metric::exposition_type(f.kind))).collect();
    let mut merge = |produced: Vec<Family>| {
        for f in produced {
            if let Some(target) = families.iter_mut().find(|t| t.name == f.name) {
                target.samples.extend(f.samples);
            }
        }
    };
    let several = databases.len() > 1;
    let on = |db: &str, msg: String| if several { format!("database '{db}': {msg}") } else { msg };
    let (mut rows, mut errors, mut timed_out, mut connect_failures) = (0, Vec::new(), false, Vec::new());
    let mut sql = None;
    for (db, (fetched, rendered)) in runs {
        sql = sql.or(rendered);
        match fetched {
            Ok(rs) => {
                rows += rs.rows.len();
                match metric::evaluate(m, db, &rs) {
                    Ok(produced) => merge(produced),
                    Err(msg) => {
                        errors.push(on(db, msg));
                        merge(metric::failed(m, db));
                    }
                }
            }
            Err((e, msg)) => {
                match e {
                    Some(FetchError::Timeout(_)) => timed_out = true,
                    Some(FetchError::Connect(_)) => {
                        connect_failures.push(db.to_string());
                        errors.push(on(db, msg));
                    }
                    _ => errors.push(on(db, msg)),
                }
                merge(metric::failed(m, db));
            }
        }
    }
    // A family without series would only print its HELP and TYPE lines.
    families.retain(|f| !f.samples.is_empty());
    let status = if !errors.is_empty() {
        Status::Error(errors.join("; "))
    } else if timed_out {
        Status::Timeout
    } else {
        Status::Success
    };
    Outcome {
        families,
        status,
        rows,
        duration: started.elapsed(),
        connect_failed: !connect_failures.is_empty(),
        connect_failures,
        sql,
        targets: Targets::default(),
    }
}

type Fetched = Result<ResultSet, (Option<FetchError>, String)>;

/// Runs the rule's query, keeping every row; on failure, the fetch error (if it got that far) and a
/// message. Also the SQL as rendered for the source, if it got that far.
async fn fetch(rule: &Rule, source: Result<&dyn Source, &str>) -> (Fetched, Option<String>) {
    let mut rows = Collect::new(rule.max_rows);
    let (result, sql) = fetch_into(rule, source, &mut rows).await;
    (result.map(|()| rows.result), sql)
}

/// Runs the rule's query into `sink`; also the SQL as rendered, if it got that far.
async fn fetch_into(
    rule: &Rule,
    source: Result<&dyn Source, &str>,
    sink: &mut dyn RowSink,
) -> (Result<(), (Option<FetchError>, String)>, Option<String>) {
    let source = match source {
        Ok(s) => s,
        Err(m) => return (Err((None, m.to_string())), None),
    };
    let rendered = std::sync::Mutex::new(None);
    // The template is rendered for the source's own version, learnt with the connection.
    let render = |version: i64| {
        let sql = template::render_query_described(rule, version)
            .map_err(|m| format!("the query template does not render for server_version_num {version}: {m}"))?;
        *rendered.lock().unwrap_or_else(|p| p.into_inner()) = Some(sql.clone());
        Ok(sql)
    };
    let work = match &rule.endpoint {
        Some(_) => match crate::source::http::work(rule) {
            Ok(w) => Some(w),
            Err(m) => return (Err((None, m)), None),
        },
        None => None,
    };
    let fetched = Fetch { render: &render, bindings: rule.bindings(), timeout: rule.timeout, http: work.as_ref() };
    let result = match source.fetch(fetched, sink).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let m = e.to_string();
            Err((Some(e), m))
        }
    };
    (result, rendered.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// A missing column fails every target with the same query-level detail: that is a rule error.
fn column_problem(t: &signal::TargetResult) -> Option<String> {
    match &t.state {
        signal::TargetState::Failed { failure: Failure::QueryFailed, detail } => Some(detail.clone()),
        _ => None,
    }
}
