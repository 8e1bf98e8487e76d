//! `--once`: every rule evaluated once, concurrently, on the sources the running exporter would
//! build; the exposition to stdout and why each target is in error to stderr.

use std::time::Duration;

use crate::eval::exposition;
use crate::publish::outcome::Status;
use crate::publish::targets::{TargetView, Targets};
use crate::rules::model::{Rule, RuleKind, RuleSet};
use crate::run::evaluate;
use crate::source::{as_source, Sources};

/// Evaluates every rule once, concurrently, and returns the exposition and whether all succeeded.
pub async fn run_once(rules: &RuleSet) -> (Vec<u8>, bool) {
    // The sources the running exporter would build: the same connection bound and timeouts.
    let mut sources = Sources::build(rules, Sources::default());
    let mut handles = Vec::new();
    for rule in &rules.rules {
        let rule = rule.clone();
        let slots = sources.slots_of(&rule);
        handles.push(tokio::spawn(async move {
            let srcs: Vec<_> = slots.iter().map(as_source).collect();
            let outcome = evaluate::evaluate(&rule, &srcs).await;
            match &outcome.status {
                Status::Error(reason) => tracing::error!(rule = %rule.name, reason = %reason, "rule evaluation failed"),
                Status::Timeout(_) => {
                    tracing::error!(rule = %rule.name, reason = "timeout", "rule evaluation timed out")
                }
                Status::Success => {}
            }
            log_targets(&rule, &outcome.targets);
            outcome
        }));
    }
    let mut out = Vec::new();
    let mut all_ok = true;
    for h in handles {
        match h.await {
            Ok(outcome) => {
                all_ok &= outcome.status == Status::Success;
                out.extend(exposition::text::render(&outcome.families));
            }
            Err(e) => {
                all_ok = false;
                tracing::error!("rule task failed: {e}");
            }
        }
    }
    sources.shut_down(Duration::from_secs(1)).await;
    (out, all_ok)
}

/// Why each signal target is not up, a line each (the status page's details).
fn log_targets(rule: &Rule, targets: &Targets) {
    let RuleKind::Signal(s) = &rule.kind else { return };
    for t in targets.errors_first() {
        let target = || s.labels.iter().zip(&t.labels).map(|(l, v)| format!("{l}={v}")).collect::<Vec<_>>().join(",");
        match t.state {
            TargetView::Failed(failure, detail) => {
                tracing::warn!(rule = %rule.name, target = %target(), state = failure.key(), detail = %detail, "target in error")
            }
            TargetView::Down => tracing::info!(rule = %rule.name, target = %target(), state = "down", "target down"),
            TargetView::Up => break, // up comes last
        }
    }
}
