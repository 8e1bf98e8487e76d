//! One evaluation of one rule: fetch once from each of its sources, turn the rows into families.
//!
//! This is the glue between the sources ([`crate::source`], reached only through the seam) and the
//! pure evaluation ([`crate::eval`]). Whatever goes wrong, it returns families to serve: for a
//! signal, the fail-safe ones; for a metric rule, none of the failed run's series (only the zero
//! series a family declares with `on_error: zero`), so a stale value is never served as fresh.
//!
//! A metric rule on several sources runs on all of them at once, one fetch each; a failure on one
//! withdraws that source's series only. A rule's own health gauges (`up`, `latency`) are added
//! last, whatever the kind of its source.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::eval::exposition::{Family, MetricType, Sample};
use crate::eval::{metric, signal};
use crate::publish::outcome::{Outcome, Status};
use crate::publish::targets::Targets;
use crate::rules::model::{Failure, FamilyNaming, MetricRule, Rule, RuleKind, SignalRule};
use crate::run::metric_sink::MetricSink;
use crate::run::signal_sink::WindowSink;
use crate::source::{Fetch, FetchError, RowSink, Source};

/// A rule's sources as an evaluation takes them: one per source of the rule's placement, in that
/// order, or why there is none.
pub type RuleSources<'a> = [Result<&'a dyn Source, &'a str>];

/// What a rule's task carries from one evaluation to the next: the targets a signal without declared
/// targets last saw, so that a failed query reports them fail-safe instead of dropping them. Kept
/// packed (a target costs its label bytes and 4 bytes a label), unpacked only for an evaluation
/// that needs them: at 100k series, 1 MB kept rather than 4.
#[derive(Debug, Default)]
pub struct Memory {
    targets: Targets,
}

/// Evaluates `rule` once (a rule that runs again and again uses [`evaluate_remembering`]).
pub async fn evaluate(rule: &Rule, sources: &RuleSources<'_>) -> Outcome {
    evaluate_remembering(rule, sources, &mut Memory::default()).await
}

/// [`evaluate`] for a rule that runs again and again: uses and updates `memory`.
pub async fn evaluate_remembering(rule: &Rule, sources: &RuleSources<'_>, memory: &mut Memory) -> Outcome {
    let started = Instant::now();
    let mut outcome = match &rule.kind {
        RuleKind::Signal(s) => evaluate_signal(rule, s, source_at(sources, 0), memory).await,
        RuleKind::Metric(m) => evaluate_metric(rule, m, sources).await,
    };
    outcome.duration = started.elapsed();
    let series = outcome.series();
    if series > rule.max_series {
        // Serving a truncated set would be a silent lie; serve none and say why.
        outcome.families.clear();
        outcome.status = Status::Error(format!(
            "produced {series} series, more than max_series ({}); none are served",
            rule.max_series
        ));
    }
    add_health(rule, &mut outcome);
    outcome
}

fn source_at<'a>(sources: &RuleSources<'a>, i: usize) -> Result<&'a dyn Source, &'a str> {
    sources.get(i).copied().unwrap_or(Err("no connection pool was set up for this database"))
}

/// Why a fetch gave no rows to evaluate.
#[derive(Debug)]
enum FetchFailure {
    /// The rule's source could not be built.
    NoSource(String),
    Failed(FetchError),
}

impl FetchFailure {
    fn message(&self) -> String {
        match self {
            FetchFailure::NoSource(m) => m.clone(),
            FetchFailure::Failed(e) => e.to_string(),
        }
    }

    fn status(&self, rule: &Rule) -> Status {
        match self {
            FetchFailure::Failed(FetchError::Timeout(_)) => Status::Timeout(rule.timeout),
            other => Status::Error(other.message()),
        }
    }

    fn is_connect(&self) -> bool {
        matches!(self, FetchFailure::Failed(FetchError::Connect(_)))
    }
}

/// Runs the rule's statements on `source` into `sink`.
async fn fetch_into(
    rule: &Rule,
    source: Result<&dyn Source, &str>,
    sink: &mut dyn RowSink,
) -> Result<(), FetchFailure> {
    let source = source.map_err(|m| FetchFailure::NoSource(m.to_string()))?;
    source.fetch(Fetch { rule, timeout: rule.timeout }, sink).await.map_err(FetchFailure::Failed)
}

async fn evaluate_signal(
    rule: &Rule,
    s: &SignalRule,
    source: Result<&dyn Source, &str>,
    memory: &mut Memory,
) -> Outcome {
    // Only the rows the windows can use are kept (see `signal_sink`), however many the query returns.
    let mut sink = WindowSink::new(s, rule.max_rows);
    let fetched = fetch_into(rule, source, &mut sink).await.map(|()| sink.finish());
    let rows = if fetched.is_ok() { sink.rows_seen() } else { 0 };
    let message = fetched.as_ref().err().map(FetchFailure::message);
    let judge = |remembered: &[Vec<String>]| {
        let result = fetched.as_ref().map_err(|_| message.as_deref().unwrap_or_default());
        signal::evaluate(s, &rule.vars, result, Utc::now(), remembered)
    };
    let mut results = judge(&[]);
    if results.is_empty() && !memory.targets.is_empty() {
        // No target judged: a failure reports the targets seen last time (unpacked only now).
        results = judge(&memory.targets.label_sets());
    }
    let targets = Targets::pack(s.labels.len(), &results);
    if s.targets.is_none() && fetched.is_ok() {
        memory.targets = targets.clone();
    }
    let status = match &fetched {
        Err(failure) => failure.status(rule),
        Ok(_) => results.iter().find_map(column_problem).map_or(Status::Success, Status::Error),
    };
    let connect_failures = match &fetched {
        Err(f) if f.is_connect() => rule.placement.sources().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    // The rows are judged: free them before the families are built.
    drop(fetched);
    Outcome {
        families: signal::families(s, &results),
        status,
        rows,
        duration: Duration::ZERO,
        connect_failures,
        sql: sink.sql(),
        targets,
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
        connect_failures: Vec::new(),
        sql: None,
        targets,
    };
    add_health(rule, &mut outcome);
    outcome
}

/// What one source's run of a metric rule gave.
struct SourceRun<'a> {
    source: &'a str,
    fetched: Result<(), FetchFailure>,
    sink: MetricSink<'a>,
}

/// One run of a metric rule on each of its sources, concurrently, rows folded as they stream; the
/// families merged in declaration order (those named from a column after them, by name), each
/// source's series present only if its run succeeded.
async fn evaluate_metric(rule: &Rule, m: &MetricRule, sources: &RuleSources<'_>) -> Outcome {
    let runs = futures_util::future::join_all(rule.placement.sources().enumerate().map(|(i, name)| {
        let source = source_at(sources, i);
        async move {
            let mut sink = MetricSink::new(m, name, rule.max_rows);
            let fetched = fetch_into(rule, source, &mut sink).await;
            SourceRun { source: name, fetched, sink }
        }
    }))
    .await;
    let mut merged = MetricMerge::new(m, runs.len() > 1);
    for run in runs {
        merged.add(rule, run);
    }
    merged.finish()
}

/// The families of a metric rule as its sources' runs come in.
struct MetricMerge<'a> {
    rule: &'a MetricRule,
    several: bool,
    /// The declared families, in declaration order.
    families: Vec<Family>,
    /// The families named from a column, by name: served after the declared ones, sorted.
    generated: BTreeMap<String, Family>,
    rows: usize,
    errors: Vec<String>,
    timeout: Option<Duration>,
    connect_failures: Vec<String>,
    sql: Option<String>,
}

impl<'a> MetricMerge<'a> {
    fn new(rule: &'a MetricRule, several: bool) -> MetricMerge<'a> {
        let declared = rule.families.iter().filter(|f| f.naming == FamilyNaming::Declared);
        MetricMerge {
            rule,
            several,
            families: declared.map(metric::empty_family).collect(),
            generated: BTreeMap::new(),
            rows: 0,
            errors: Vec::new(),
            timeout: None,
            connect_failures: Vec::new(),
            sql: None,
        }
    }

    fn merge(&mut self, produced: Vec<Family>) {
        for f in produced {
            if let Some(target) = self.families.iter_mut().find(|t| t.name == f.name) {
                target.absorb(f);
            } else if let Some(target) = self.generated.get_mut(&f.name) {
                target.absorb(f);
            } else {
                self.generated.insert(f.name.clone(), f);
            }
        }
    }

    fn error(&mut self, source: &str, msg: String) {
        self.errors.push(if self.several { format!("database '{source}': {msg}") } else { msg });
    }

    fn add(&mut self, rule: &Rule, run: SourceRun<'_>) {
        let SourceRun { source, fetched, sink } = run;
        self.sql = self.sql.take().or_else(|| sink.sql());
        match fetched {
            Ok(()) => {
                self.rows += sink.rows();
                match sink.finish() {
                    Ok(folded) => {
                        for failure in folded.family_failures {
                            self.error(source, failure);
                        }
                        self.merge(folded.families);
                    }
                    Err(msg) => {
                        self.error(source, msg);
                        self.merge(metric::failed(self.rule, source));
                    }
                }
            }
            Err(failure) => {
                match &failure {
                    FetchFailure::Failed(FetchError::Timeout(_)) => self.timeout = Some(rule.timeout),
                    f => {
                        if f.is_connect() {
                            self.connect_failures.push(source.to_string());
                        }
                        self.error(source, f.message());
                    }
                }
                self.merge(metric::failed(self.rule, source));
            }
        }
    }

    fn finish(mut self) -> Outcome {
        self.families.extend(self.generated.into_values());
        // A family without series would only print its HELP and TYPE lines.
        self.families.retain(|f| !f.is_empty());
        let status = match (self.errors.is_empty(), self.timeout) {
            (false, _) => Status::Error(self.errors.join("; ")),
            (true, Some(after)) => Status::Timeout(after),
            (true, None) => Status::Success,
        };
        Outcome {
            families: self.families,
            status,
            rows: self.rows,
            duration: Duration::ZERO,
            connect_failures: self.connect_failures,
            sql: self.sql,
            targets: Targets::default(),
        }
    }
}

/// Adds the rule's own `up` and `latency` gauges to an outcome.
fn add_health(rule: &Rule, outcome: &mut Outcome) {
    let ok = outcome.status == Status::Success;
    if let Some(d) = &rule.health.latency {
        if ok {
            let mut f = Family::new(&d.name, &d.help, MetricType::Gauge);
            f.samples.push(Sample { labels: Vec::new(), value: outcome.duration.as_secs_f64() });
            outcome.families.push(f);
        }
    }
    if let Some(d) = &rule.health.up {
        let mut f = Family::new(&d.name, &d.help, MetricType::Gauge);
        f.samples.push(Sample { labels: Vec::new(), value: if ok { 1.0 } else { 0.0 } });
        outcome.families.push(f);
    }
}

/// A missing column fails every target with the same query-level detail: that is a rule error.
fn column_problem(t: &signal::TargetResult) -> Option<String> {
    match &t.state {
        signal::TargetState::Failed { failure: Failure::QueryFailed, detail } => Some(detail.clone()),
        _ => None,
    }
}
