//! What the status page and `/api/v1/status` show: each rule's last evaluation, its recent history
//! and, for a signal, every target's state and why.
//!
//! The scheduler records each evaluation here as it finishes; the page only reads. Like
//! [`crate::publish::snapshot`], readers load an `Arc` (no lock, no query) and writers publish a new
//! snapshot, so a page view costs the scrape path nothing and shares no lock with `/metrics`. A
//! rule's status is its own `Arc`: recording one rule copies the list of pointers, not the others'
//! targets. Targets are kept packed ([`Targets`]), details only for targets in error.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

use crate::publish::outcome::{EvaluationResult, Outcome};
use crate::rules::model::{Failure, Rule, RuleKind, RuleSet};

use crate::publish::targets::{Target, TargetView, Targets};

/// How many evaluations, and separately how many failures, each rule keeps.
pub const HISTORY: usize = 10;

/// One finished evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub at: DateTime<Utc>,
    pub duration: Duration,
    pub rows: usize,
    pub series: usize,
    /// As in `sql_signal_exporter_rule_evaluations_total`.
    pub result: EvaluationResult,
    pub error: Option<String>,
}

/// Everything shown about one rule.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    pub name: String,
    /// `signal` or `metric`.
    pub kind: &'static str,
    /// The names of its databases (never a DSN).
    pub sources: Vec<String>,
    pub interval: Duration,
    /// A signal's label names, in target order.
    pub labels: Vec<String>,
    /// A signal's error series as `name{label="value"}` per failure (indexed like [`Failure::ALL`]),
    /// so the page ties a state to the series an alert fired on.
    pub error_series: Vec<String>,
    pub last: Option<Evaluation>,
    pub next_run: Option<DateTime<Utc>>,
    pub sql: Option<String>,
    /// A signal's targets as last judged (read them with [`Targets::errors_first`]).
    pub targets: Targets,
    /// Newest first.
    pub history: VecDeque<Evaluation>,
    /// The last failures however old, newest first.
    pub failures: VecDeque<Evaluation>,
}

impl RuleStatus {
    fn new(rule: &Rule) -> RuleStatus {
        let (kind, labels, error_series) = match &rule.kind {
            RuleKind::Signal(s) => (
                "signal",
                s.labels.clone(),
                Failure::ALL
                    .iter()
                    .map(|f| format!("{}{{{}=\"{}\"}}", s.error.name, s.reason_label, s.reasons.of(*f)))
                    .collect(),
            ),
            RuleKind::Metric(_) => ("metric", Vec::new(), Vec::new()),
        };
        RuleStatus {
            name: rule.name.clone(),
            kind,
            sources: rule.placement.sources().map(str::to_string).collect(),
            interval: rule.interval,
            labels,
            error_series,
            last: None,
            next_run: None,
            sql: None,
            targets: Targets::default(),
            history: VecDeque::new(),
            failures: VecDeque::new(),
        }
    }

    fn same_shape(&self, other: &RuleStatus) -> bool {
        (self.kind, &self.sources, self.interval, &self.labels, &self.error_series)
            == (other.kind, &other.sources, other.interval, &other.labels, &other.error_series)
    }

    /// Whether the last evaluation failed or any target is in error.
    pub fn in_error(&self) -> bool {
        self.last.as_ref().is_some_and(|l| l.result != EvaluationResult::Success) || self.targets.counts.errors() > 0
    }
}

/// When a rule runs next, as a record of its evaluation knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRun {
    /// This long from now.
    In(Duration),
    /// Not known to the recorder (the watchdog's expiry): the last known time stands.
    Unknown,
}

/// What a page view reads.
#[derive(Debug, Default)]
pub struct StatusSnapshot {
    /// In rule order.
    pub rules: Vec<Arc<RuleStatus>>,
}

#[derive(Default)]
struct Rules {
    order: Vec<String>,
    by_name: HashMap<String, Arc<RuleStatus>>,
}

/// Holds the current [`StatusSnapshot`]; written by rule tasks, read by the page.
#[derive(Default)]
pub struct StatusStore {
    current: ArcSwap<StatusSnapshot>,
    /// Serialises writers only; readers never take it.
    rules: Mutex<Rules>,
}

impl StatusStore {
    pub fn new() -> StatusStore {
        StatusStore::default()
    }

    /// The snapshot to show. Never blocks.
    pub fn load(&self) -> Arc<StatusSnapshot> {
        self.current.load_full()
    }

    /// Sets which rules exist. A rule kept with the same kind, sources, interval and labels keeps
    /// everything; a changed one keeps its history only.
    pub fn set_rules(&self, rules: &RuleSet) {
        let mut state = self.lock();
        let mut by_name = HashMap::with_capacity(rules.rules.len());
        for rule in &rules.rules {
            let fresh = RuleStatus::new(rule);
            let status = match state.by_name.remove(&rule.name) {
                Some(old) if old.same_shape(&fresh) => old,
                Some(old) => {
                    Arc::new(RuleStatus { history: old.history.clone(), failures: old.failures.clone(), ..fresh })
                }
                None => Arc::new(fresh),
            };
            by_name.insert(rule.name.clone(), status);
        }
        state.order = rules.rules.iter().map(|r| r.name.clone()).collect();
        state.by_name = by_name;
        self.publish(&state);
    }

    /// Whether the last evaluation recorded for `rule` failed.
    pub fn last_failed(&self, rule: &str) -> bool {
        let state = self.lock();
        state.by_name.get(rule).and_then(|r| r.last.as_ref()).is_some_and(|l| l.result != EvaluationResult::Success)
    }

    /// Records a finished (or, by the watchdog, expired) evaluation of `rule`.
    pub fn record(&self, rule: &Rule, outcome: Outcome, next: NextRun) {
        let now = Utc::now();
        let evaluation = Evaluation {
            at: now - chrono::Duration::from_std(outcome.duration).unwrap_or_default(),
            duration: outcome.duration,
            rows: outcome.rows,
            series: outcome.series(),
            result: outcome.status.result(),
            error: outcome.status.reason(),
        };
        let mut state = self.lock();
        let Some(old) = state.by_name.get(&rule.name) else { return }; // removed while evaluating
        let mut history = old.history.clone();
        let mut failures = old.failures.clone();
        if evaluation.result != EvaluationResult::Success {
            failures.push_front(evaluation.clone());
            failures.truncate(HISTORY);
        }
        history.push_front(evaluation.clone());
        history.truncate(HISTORY);
        let status = RuleStatus {
            last: Some(evaluation),
            next_run: match next {
                NextRun::In(d) => Some(now + chrono::Duration::from_std(d).unwrap_or_default()),
                NextRun::Unknown => old.next_run,
            },
            sql: outcome.sql.or_else(|| old.sql.clone()),
            targets: outcome.targets,
            history,
            failures,
            ..RuleStatus::new(rule)
        };
        state.by_name.insert(rule.name.clone(), Arc::new(status));
        self.publish(&state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        // A panic while holding the lock leaves consistent data (we only insert and replace).
        self.rules.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: &Rules) {
        let rules = state.order.iter().filter_map(|n| state.by_name.get(n).cloned()).collect();
        self.current.store(Arc::new(StatusSnapshot { rules }));
    }
}

fn evaluation_json(e: &Evaluation) -> Value {
    json!({
        "at": e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "duration_seconds": e.duration.as_secs_f64(),
        "rows": e.rows,
        "series": e.series,
        "result": e.result.as_str(),
        "error": e.error,
    })
}

/// Everything about a rule but its targets, which may be many: those are streamed by [`Rule`].
fn rule_head(r: &RuleStatus) -> Map<String, Value> {
    let mut head = Map::new();
    head.insert("name".into(), r.name.as_str().into());
    head.insert("kind".into(), r.kind.into());
    head.insert("sources".into(), r.sources.clone().into());
    head.insert("interval_seconds".into(), r.interval.as_secs_f64().into());
    head.insert("last_evaluation".into(), r.last.as_ref().map(evaluation_json).into());
    let next_run = r.next_run.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    head.insert("next_run".into(), next_run.into());
    head.insert("sql".into(), r.sql.clone().into());
    head.insert("history".into(), r.history.iter().map(evaluation_json).collect());
    head.insert("failures".into(), r.failures.iter().map(evaluation_json).collect());
    if r.kind == "signal" {
        let c = &r.targets.counts;
        let mut counts = Map::new();
        counts.insert("up".into(), c.up.into());
        counts.insert("down".into(), c.down.into());
        for (f, n) in Failure::ALL.iter().zip(c.failed) {
            counts.insert(f.key().into(), n.into());
        }
        head.insert("target_counts".into(), Value::Object(counts));
    }
    head
}

/// A rule as the API shows it: its head, then for a signal `targets`, written straight out.
struct RuleJson<'a>(&'a RuleStatus);

impl Serialize for RuleJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = s.serialize_map(None)?;
        for (k, v) in &rule_head(r) {
            map.serialize_entry(k, v)?;
        }
        if r.kind == "signal" {
            map.serialize_entry("targets", &TargetsJson(r))?;
        }
        map.end()
    }
}

struct TargetsJson<'a>(&'a RuleStatus);

impl Serialize for TargetsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.targets.errors_first().map(|t| TargetJson(&self.0.labels, t)))
    }
}

/// A target: `labels`, `state` and, unless up or down, `detail`.
struct TargetJson<'a>(&'a [String], Target<'a>);

impl Serialize for TargetJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Labels<'a>(&'a [String], &'a [&'a str]);
        impl Serialize for Labels<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().zip(self.1))
            }
        }
        let t = &self.1;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("labels", &Labels(self.0, &t.labels))?;
        map.serialize_entry("state", t.state.name())?;
        if let TargetView::Failed(_, detail) = t.state {
            map.serialize_entry("detail", detail)?;
        }
        map.end()
    }
}

/// The body of `/api/v1/status` (documented in the README; keep it stable). Written out without
/// building a tree of the targets first: a rule of 100k targets costs the text only.
pub fn to_json(snapshot: &StatusSnapshot, now: DateTime<Utc>) -> String {
    struct Body<'a>(&'a StatusSnapshot, DateTime<Utc>);
    impl Serialize for Body<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(3))?;
            map.serialize_entry("version", crate::VERSION)?;
            map.serialize_entry("generated_at", &self.1.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))?;
            map.serialize_entry("rules", &self.0.rules.iter().map(|r| RuleJson(r)).collect::<Vec<_>>())?;
            map.end()
        }
    }
    // Serialising into memory fails only on a non-string map key, which these have none of.
    serde_json::to_string(&Body(snapshot, now)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests;
