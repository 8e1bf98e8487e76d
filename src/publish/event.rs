//! The one way a rule's evaluation becomes visible: an event, published once, that updates the
//! snapshot `/metrics` serves, the status record `/` and `/api/v1/status` show, and the exporter's
//! own metrics, and writes the log line, together (as vector's `internal_events` emit a log and a
//! metric in one place). The watchdog publishes through the same event, so the page, the JSON and
//! `/metrics` always agree about a rule, stalled or not.

use std::sync::Arc;
use std::time::Duration;

use crate::publish::outcome::{Outcome, Status};
use crate::publish::self_metrics::{SelfMetrics, SourceUse};
use crate::publish::snapshot::{Rendered, SnapshotStore};
use crate::publish::status::{NextRun, StatusStore};
use crate::rules::model::Rule;

/// Something that happened to a rule's evaluation.
#[derive(Debug)]
pub enum RuleEvent<'a> {
    /// An evaluation finished (successfully or not); the next starts in `next_in`.
    Evaluated { rule: &'a Rule, outcome: Outcome, next_in: Duration, sources: Vec<SourceUse> },
    /// The rule has not finished an evaluation within `limit`: the watchdog serves `outcome` (the
    /// rule's fail-safe series) until it does.
    Expired { rule: &'a Rule, outcome: Outcome, limit: Duration },
    /// The rule finished an evaluation again after the watchdog had taken over.
    Resumed { rule: &'a Rule },
}

/// Where events are published: every store a finished evaluation updates.
#[derive(Clone)]
pub struct Publisher {
    pub snapshot: Arc<SnapshotStore>,
    pub metrics: Arc<SelfMetrics>,
    pub status: Arc<StatusStore>,
}

impl Publisher {
    pub fn new() -> Publisher {
        Publisher {
            snapshot: Arc::new(SnapshotStore::new()),
            metrics: Arc::new(SelfMetrics::new()),
            status: Arc::new(StatusStore::new()),
        }
    }

    /// Logs, counts and records `event`, and serves what it says.
    pub fn publish(&self, event: RuleEvent<'_>) {
        match event {
            RuleEvent::Evaluated { rule, outcome, next_in, sources } => {
                self.log_evaluated(rule, &outcome);
                self.metrics.observe(&rule.name, &outcome);
                for s in &sources {
                    self.metrics.observe_source(s, &outcome);
                }
                self.snapshot.update(&rule.name, Rendered::of(&outcome.families));
                self.status.record(rule, outcome, NextRun::In(next_in));
            }
            RuleEvent::Expired { rule, outcome, limit } => {
                let reason = outcome.status.reason().unwrap_or_default();
                tracing::error!(rule = %rule.name, limit = %humantime::format_duration(limit), "{reason}");
                self.metrics.observe_expiry(&rule.name);
                self.snapshot.update(&rule.name, Rendered::of(&outcome.families));
                self.status.record(rule, outcome, NextRun::Unknown);
            }
            RuleEvent::Resumed { rule } => {
                tracing::info!(rule = %rule.name, "rule finished an evaluation again; the watchdog stands down");
            }
        }
    }

    /// The log line of a finished evaluation: a failure each time, a recovery once.
    fn log_evaluated(&self, rule: &Rule, outcome: &Outcome) {
        match &outcome.status {
            Status::Success => {
                if self.status.last_failed(&rule.name) {
                    tracing::info!(rule = %rule.name, "rule recovered");
                }
            }
            Status::Error(reason) => tracing::warn!(rule = %rule.name, reason = %reason, "rule evaluation failed"),
            Status::Timeout(after) => tracing::warn!(
                rule = %rule.name,
                reason = "timeout",
                timeout = %humantime::format_duration(*after),
                "rule evaluation timed out"
            ),
        }
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}
