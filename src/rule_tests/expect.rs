//! Judging one evaluation's outcomes against a case's expectations. Each difference is a
//! [`Problem`] at the line of the expectation it breaks, with the expected and actual series as a
//! diff, or the target's state with the detail the evaluation gave.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::series::{self, Series};
use super::test_file::{Expect, ExpectedState, OtherSeries, SeriesBlock, TargetExpect};
use crate::publish::outcome::{Outcome, Status};
use crate::publish::targets::TargetView;
use crate::rules::model::{Rule, RuleKind};

/// One way an evaluation differs from what the case expects.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    /// Where in the test file the broken expectation is.
    pub position: Option<(usize, usize)>,
    pub message: String,
    /// Diff lines (`- expected`, `+ actual`), if any.
    pub lines: Vec<String>,
}

/// Every difference between `outcomes` (one per rule evaluated) and `expect`.
pub(super) fn check(expect: &Expect, outcomes: &[(Arc<Rule>, Outcome)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (rule, outcome) in outcomes {
        if let Some(p) = status_problem(expect, rule, outcome) {
            problems.push(p);
        }
    }
    let actual: Vec<Series> = outcomes.iter().flat_map(|(_, o)| series::of_families(&o.families)).collect();
    for block in &expect.series {
        let shown: Vec<Series> = actual.iter().filter(|s| covers(block, s)).cloned().collect();
        let lines = series::diff(&block.samples, &shown);
        if !lines.is_empty() {
            let what = match &block.selector {
                Some(sel) => format!("the series matching {}", sel.name),
                None => "the series of the families named".to_string(),
            };
            let message = format!("{what} differ (- expected, + actual)");
            problems.push(Problem { position: block.position, message, lines });
        }
    }
    for name in &expect.absent {
        let present: Vec<String> =
            actual.iter().filter(|s| &s.name == name).map(|s| format!("+ {}", s.text())).collect();
        if !present.is_empty() {
            let message = format!("family {name} must be absent, but the evaluation gave it");
            problems.push(Problem { position: None, message, lines: present });
        }
    }
    if expect.other_series == OtherSeries::Forbidden {
        let named: BTreeSet<&str> =
            expect.series.iter().flat_map(|b| b.samples.iter().map(|s| s.name.as_str())).collect();
        let selected =
            |s: &Series| expect.series.iter().any(|b| b.selector.as_ref().is_some_and(|sel| sel.name == s.name));
        let others: Vec<String> = actual
            .iter()
            .filter(|s| !named.contains(s.name.as_str()) && !selected(s))
            .map(|s| format!("+ {}", s.text()))
            .collect();
        if !others.is_empty() {
            let message = "other_series: forbidden, but the evaluation gave series of families the case does not name"
                .to_string();
            problems.push(Problem { position: None, message, lines: others });
        }
    }
    for t in &expect.targets {
        if let Some(p) = target_problem(t, outcomes) {
            problems.push(p);
        }
    }
    problems
}

/// Whether `block` covers `s`: its selector matches, or (without one) it names `s`'s family.
fn covers(block: &SeriesBlock, s: &Series) -> bool {
    match &block.selector {
        Some(sel) => sel.matches(s),
        None => block.samples.iter().any(|e| e.name == s.name),
    }
}

/// A rule that failed without being listed in `failing`, or the other way round.
fn status_problem(expect: &Expect, rule: &Rule, outcome: &Outcome) -> Option<Problem> {
    let must_fail = expect.failing.iter().any(|n| n == &rule.name);
    let message = match (&outcome.status, must_fail) {
        (Status::Success, true) => format!("rule '{}' succeeded, but the case expects it to fail", rule.name),
        (Status::Error(m), false) => {
            format!("rule '{}' failed: {m}; list it under failing if the case means it to", rule.name)
        }
        (Status::Timeout(d), false) => format!(
            "rule '{}' timed out after {}; list it under failing if the case means it to",
            rule.name,
            humantime::format_duration(*d)
        ),
        _ => return None,
    };
    Some(Problem { position: None, message, lines: Vec::new() })
}

/// A target whose state differs from the expected one.
fn target_problem(t: &TargetExpect, outcomes: &[(Arc<Rule>, Outcome)]) -> Option<Problem> {
    let RuleKind::Signal(s) = &t.rule.kind else { return None };
    let name: Vec<String> = s.labels.iter().zip(&t.labels).map(|(l, v)| format!("{l}=\"{v}\"")).collect();
    let name = format!("target {{{}}} of signal '{}'", name.join(","), t.rule.name);
    let problem = |message: String| Some(Problem { position: t.position, message, lines: Vec::new() });
    let Some((_, outcome)) = outcomes.iter().find(|(r, _)| r.name == t.rule.name) else {
        return problem(format!("{name}: the signal was not evaluated"));
    };
    let Some(found) = outcome.targets.errors_first().find(|x| x.labels.iter().zip(&t.labels).all(|(a, b)| a == b))
    else {
        return problem(format!("{name}: the evaluation has no such target"));
    };
    let (actual, reason, detail) = match found.state {
        TargetView::Up => (ExpectedState::Up, None, ""),
        TargetView::Down => (ExpectedState::Down, None, ""),
        TargetView::Failed(f, d) => (ExpectedState::Failed(f), Some(s.reasons.of(f)), d),
    };
    let reason_differs = match (&t.reason, reason) {
        (Some(want), Some(got)) => want != got,
        _ => false,
    };
    if actual == t.state && !reason_differs {
        return None;
    }
    let want = match &t.reason {
        Some(r) => format!("{} ({}=\"{r}\")", t.state.text(), s.reason_label),
        None => t.state.text().to_string(),
    };
    let got = match reason {
        Some(r) => format!("{} ({}=\"{r}\"): {detail}", actual.text(), s.reason_label),
        None => actual.text().to_string(),
    };
    problem(format!("{name}: expected {want}, got {got}"))
}
