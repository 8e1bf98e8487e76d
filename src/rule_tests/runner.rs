//! Running a test file: each case's rules evaluated by the real evaluation
//! ([`crate::run::evaluate`]) on fixture sessions of their own sources, then judged against the
//! case's expectations ([`super::expect`]).

use std::sync::Arc;
use std::time::Duration;

use super::expect::{self, Problem};
use super::test_file::{Case, TestFile};
use crate::publish::outcome::Outcome;
use crate::rules::model::Rule;
use crate::run::evaluate::{self, Memory};
use crate::source::{as_source, Fixture, FixtureSession, Source, Sources};

/// How long closing the sources may wait for their cancel requests.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// What one case gave.
#[derive(Debug)]
pub(super) struct CaseReport {
    pub name: String,
    pub position: Option<(usize, usize)>,
    /// Empty when the case passed.
    pub problems: Vec<Problem>,
}

/// Runs every case of `file`, in order, on sources built as the exporter builds them.
pub(super) async fn run_file(file: &TestFile) -> Vec<CaseReport> {
    let mut sources = Sources::build(&file.rules, Sources::default());
    let mut reports = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        reports.push(run_case(file, &sources, case).await);
    }
    sources.shut_down(SHUTDOWN_LIMIT).await;
    reports
}

async fn run_case(file: &TestFile, sources: &Sources, case: &Case) -> CaseReport {
    // One memory per rule across the evaluations: discovered targets are remembered as in the exporter.
    let mut memories: Vec<Memory> = case.rules.iter().map(|_| Memory::default()).collect();
    let mut problems = Vec::new();
    for (n, step) in case.steps.iter().enumerate() {
        let fixture = step.fixture(chrono::Utc::now());
        let mut outcomes: Vec<(Arc<Rule>, Outcome)> = Vec::new();
        let mut found = Vec::new();
        for (rule, memory) in case.rules.iter().zip(&mut memories) {
            match evaluate_on_fixture(file, sources, rule, &fixture, memory).await {
                Ok(outcome) => outcomes.push((rule.clone(), outcome)),
                Err(message) => found.push(Problem { position: case.position, message, lines: Vec::new() }),
            }
        }
        if found.is_empty() {
            found = expect::check(&step.expect, &outcomes);
        }
        if case.steps.len() > 1 {
            for p in &mut found {
                p.message = format!("evaluation {}: {}", n + 1, p.message);
            }
        }
        problems.extend(found);
    }
    CaseReport { name: case.name.clone(), position: case.position, problems }
}

/// Evaluates `rule` once on fixture sessions of its sources; the sessions are always finished.
async fn evaluate_on_fixture(
    file: &TestFile,
    sources: &Sources,
    rule: &Rule,
    fixture: &Fixture,
    memory: &mut Memory,
) -> Result<Outcome, String> {
    let slots = sources.slots_of(rule);
    let mut sessions: Vec<Box<dyn FixtureSession>> = Vec::new();
    let mut opened = Ok(());
    for (slot, name) in slots.iter().zip(rule.placement.sources()) {
        if file.rules.databases.get(name).is_some_and(|d| d.dsn.expose().is_empty()) {
            opened = Err(format!(
                "rule '{}': database '{name}' has no DSN here: set the variable its dsn names, or pass --db {name}=DSN",
                rule.name
            ));
            break;
        }
        let opening = match as_source(slot) {
            Ok(source) => source.open_fixture(fixture, rule.timeout).await.map_err(|e| e.to_string()),
            Err(m) => Err(m.to_string()),
        };
        match opening {
            Ok(s) => sessions.push(s),
            Err(m) => {
                opened = Err(format!("rule '{}': cannot open the fixture on '{name}': {m}", rule.name));
                break;
            }
        }
    }
    let outcome = match opened {
        Ok(()) => {
            let srcs: Vec<Result<&dyn Source, &str>> = sessions.iter().map(|s| Ok(&**s as &dyn Source)).collect();
            Ok(evaluate::evaluate_remembering(rule, &srcs, memory).await)
        }
        Err(m) => Err(m),
    };
    let mut undone = Vec::new();
    for s in sessions {
        let name = s.name().to_string();
        if let Err(e) = s.finish().await {
            undone.push(format!("rule '{}': the fixture on '{name}' was not rolled back cleanly: {e}", rule.name));
        }
    }
    match outcome {
        Ok(o) if undone.is_empty() => Ok(o),
        Ok(_) => Err(undone.join("; ")),
        Err(m) => Err(m),
    }
}
