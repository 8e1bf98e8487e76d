//! The watchdog: a rule that has not finished an evaluation for too long is served fail-safe.
//!
//! Every evaluation ends within its timeout by construction (the source enforces it), so a rule that
//! has not finished one for longer than its interval plus its timeout plus
//! [`crate::rules::limits::WATCHDOG_MARGIN`] is stuck for a
//! reason nothing else catches: a hung task, a bug. Its last snapshot must not go on saying "up" or
//! "down" on its own, so the watchdog replaces it: a signal's fail-safe series (error=1, up=1), none
//! of a metric rule's families. It publishes that once per stall, as the same event a finished
//! evaluation publishes ([`RuleEvent::Expired`]): logged, counted in
//! `sql_signal_exporter_rule_watchdog_expirations_total`, served on `/metrics` and recorded for the
//! status page and API. It leaves the rule's task alone: when the task finishes an evaluation, its
//! result is served again.
//!
//! The watchdog runs in its own task, one per rule, beside the rule's task. Publishing and the
//! heartbeat share one lock, so a fail-safe can never overwrite a result that finished first.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::publish::event::{Publisher, RuleEvent};
use crate::rules::limits::watchdog_limit;
use crate::rules::model::Rule;
use crate::run::evaluate;

/// How often a stalled rule is looked at again.
const POLL: Duration = Duration::from_secs(1);

/// When a rule last finished an evaluation, and whether the watchdog has taken over its snapshot.
pub struct Heartbeat {
    state: Mutex<Beat>,
}

struct Beat {
    last: Instant,
    stalled: bool,
}

impl Heartbeat {
    pub fn new() -> Arc<Heartbeat> {
        Arc::new(Heartbeat { state: Mutex::new(Beat { last: Instant::now(), stalled: false }) })
    }

    fn lock(&self) -> MutexGuard<'_, Beat> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a finished evaluation of `rule`, then records it; tells when the watchdog had
    /// served the rule fail-safe until now.
    pub fn finished(&self, publisher: &Publisher, event: RuleEvent<'_>) {
        let mut beat = self.lock();
        let rule = match &event {
            RuleEvent::Evaluated { rule, .. } | RuleEvent::Expired { rule, .. } | RuleEvent::Resumed { rule } => *rule,
        };
        publisher.publish(event);
        beat.last = Instant::now();
        if std::mem::replace(&mut beat.stalled, false) {
            publisher.publish(RuleEvent::Resumed { rule });
        }
    }
}

/// How long `rule` may go without finishing an evaluation.
pub fn limit(rule: &Rule) -> Duration {
    watchdog_limit(rule.interval, rule.timeout)
}

/// Watches `rule` until aborted (with its task).
pub async fn watch(rule: Arc<Rule>, heartbeat: Arc<Heartbeat>, publisher: Publisher) {
    let limit = limit(&rule);
    loop {
        let due = {
            let beat = heartbeat.lock();
            if beat.stalled {
                Instant::now() + POLL
            } else {
                beat.last + limit
            }
        };
        tokio::time::sleep_until(due).await;
        let mut beat = heartbeat.lock();
        if beat.stalled || beat.last.elapsed() < limit {
            continue;
        }
        beat.stalled = true;
        let reason = format!(
            "the rule has not finished an evaluation for {}; served fail-safe until it does",
            humantime::format_duration(Duration::from_secs(beat.last.elapsed().as_secs()))
        );
        let outcome = evaluate::failed(&rule, reason);
        publisher.publish(RuleEvent::Expired { rule: &rule, outcome, limit });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::exposition::{Family, Format, MetricType, Sample};
    use crate::publish::outcome::{EvaluationResult, Outcome, Status};
    use crate::rules::{load_sources, LoadOptions};

    const RULES: &str = "version: 1\ndatabases:\n  main: {dsn: \"host=localhost\"}\nsignals:\n  - name: s\n    \
        database: main\n    interval: 10s\n    timeout: 2s\n    labels: [c]\n    targets: [{c: x}]\n    window: 1\n    \
        values: {v: integer}\n    success: \"v == 0\"\n    metrics:\n      up: {name: a_up, help: h}\n      \
        error: {name: a_error, help: h}\n    query: \"SELECT c, v FROM t\"\n";

    fn body(publisher: &Publisher) -> String {
        String::from_utf8_lossy(&publisher.snapshot.load().body_in(Format::Text).concat()).into_owned()
    }

    /// A finished evaluation whose one series says the target is down.
    fn down(rule: &Rule) -> Outcome {
        let mut family = Family::new("a_up", "h", MetricType::Gauge);
        family.samples.push(Sample { labels: vec![("c".into(), "x".into())], value: 0.0 });
        let mut outcome = evaluate::failed(rule, String::new());
        (outcome.families, outcome.status) = (vec![family], Status::Success);
        outcome
    }

    fn finish(heartbeat: &Heartbeat, publisher: &Publisher, rule: &Rule) {
        let event =
            RuleEvent::Evaluated { rule, outcome: down(rule), next_in: Duration::from_secs(10), sources: Vec::new() };
        heartbeat.finished(publisher, event);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rule_that_stops_finishing_is_served_fail_safe_and_reported_until_it_finishes_again() {
        let loaded = load_sources(&[("r.yaml".into(), RULES.to_string())], &LoadOptions::default()).expect("valid");
        let rule = loaded.rules.rules[0].clone();
        assert_eq!(limit(&rule), Duration::from_secs(17));
        let publisher = Publisher::new();
        publisher.snapshot.set_rules(vec!["s".into()]);
        publisher.status.set_rules(&loaded.rules);
        let heartbeat = Heartbeat::new();
        finish(&heartbeat, &publisher, &rule);
        let served_down = body(&publisher);
        assert!(served_down.contains("a_up{c=\"x\"} 0"), "{served_down}");
        let task = tokio::spawn(watch(rule.clone(), heartbeat.clone(), publisher.clone()));

        // Within the limit the last result stands, on /metrics and in the status records.
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(body(&publisher), served_down);
        let last = |p: &Publisher| p.status.load().rules[0].last.clone().expect("an evaluation");
        assert_eq!(last(&publisher).result, EvaluationResult::Success);
        // Past it, the signal is fail-safe: error=1 and up=1, never a stale "down" ...
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = body(&publisher);
        assert!(text.contains("a_error{c=\"x\",reason=") && text.contains("} 1"), "{text}");
        assert!(text.contains("a_up{c=\"x\"} 1"), "{text}");
        // ... and the status records and the API say so, with the watchdog's reason.
        let expired = last(&publisher);
        assert_eq!(expired.result, EvaluationResult::Error);
        assert!(expired.error.as_deref().unwrap_or_default().contains("has not finished an evaluation"), "{expired:?}");
        let api = crate::publish::status::to_json(&publisher.status.load(), chrono::Utc::now());
        assert!(api.contains("\"result\":\"error\"") && api.contains("served fail-safe until it does"), "{api}");
        assert!(api.contains("\"state\":\"query_failed\""), "the target is shown fail-safe: {api}");
        let count = || publisher.metrics.rule_watchdog_expirations.with_label_values(&["s"]).get();
        assert_eq!(count(), 1);
        // Counted once per stall, not once per poll.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(count(), 1);
        // A finished evaluation takes over again, and a new stall is counted again.
        finish(&heartbeat, &publisher, &rule);
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(body(&publisher), served_down);
        assert_eq!(last(&publisher).result, EvaluationResult::Success);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count(), 2);
        task.abort();
    }
}
