//! A rule test file read into its typed form: the rules it tests, loaded by the rules loader, and
//! its cases with fixtures and expectations checked against those rules. Every problem is a
//! [`Diagnostic`] at its `FILE:LINE:COL`, read by the same document reader as rules files
//! ([`crate::rules::document`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::series::{self, Selector, Series};
use super::test_spec::{
    CaseSpec, ExpectSpec, FailureSpec, OtherSeriesSpec, ResponseSpec, SeriesSpec, StepSpec, TableSpec, TargetSpec,
    TestFileSpec,
};
use super::time::{self, Place};
use crate::rules::model::{Failure, Rule, RuleKind, RuleSet};
use crate::rules::{check_sources, document, input, span, Diagnostic, LoadOptions, Severity};
use crate::source::{
    CannedReply, Fixture, FixtureAnswer, FixtureColumn, FixtureResponse, FixtureTable, TransportFailure,
};

/// The JSON Schema of rule test files.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/rule-tests.schema.json");

fn schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(SCHEMA_TEXT).expect("the embedded test schema is valid JSON (tested)"))
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::draft202012::new(schema()).expect("the embedded test schema compiles (tested)"))
}

/// A test file ready to run.
#[derive(Debug)]
pub(super) struct TestFile {
    pub rules: RuleSet,
    pub cases: Vec<Case>,
}

#[derive(Debug)]
pub(super) struct Case {
    pub name: String,
    /// Where the case starts in the test file.
    pub position: Option<(usize, usize)>,
    pub rules: Vec<Arc<Rule>>,
    pub steps: Vec<Step>,
}

/// One evaluation of a case's rules.
#[derive(Debug)]
pub(super) struct Step {
    pub tables: Vec<Table>,
    /// Each request's answer, by request name; bodies resolved at each run.
    pub responses: Vec<(String, ResponseSpec)>,
    pub expect: Expect,
}

impl Step {
    /// The fixture of this step with its relative times resolved against `now`.
    pub(super) fn fixture(&self, now: chrono::DateTime<chrono::Utc>) -> Fixture {
        Fixture {
            tables: self.tables.iter().map(|t| t.resolved(now)).collect(),
            responses: self.responses.iter().map(|(name, r)| response(name, r, now)).collect(),
        }
    }
}

/// A fixture table before its relative times are resolved (at each run).
#[derive(Debug)]
pub(super) struct Table {
    pub name: String,
    pub columns: Vec<FixtureColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

impl Table {
    fn resolved(&self, now: chrono::DateTime<chrono::Utc>) -> FixtureTable {
        let places: Vec<Place> = self
            .columns
            .iter()
            .map(|c| {
                let t = c.sql_type.to_ascii_lowercase();
                if time::is_time_type(&t) || t.starts_with("json") {
                    Place::Resolving
                } else {
                    Place::Literal
                }
            })
            .collect();
        let rows = self
            .rows
            .iter()
            .map(|row| {
                // Checked at load: the object forms resolve.
                row.iter().zip(&places).map(|(v, p)| time::resolve(v, now, *p).unwrap_or_else(|_| v.clone())).collect()
            })
            .collect();
        FixtureTable { name: self.name.clone(), columns: self.columns.clone(), rows }
    }
}

#[derive(Debug, Default)]
pub(super) struct Expect {
    pub series: Vec<SeriesBlock>,
    pub targets: Vec<TargetExpect>,
    pub absent: Vec<String>,
    pub other_series: OtherSeries,
    /// Rules that must fail; every other rule of the case must succeed.
    pub failing: Vec<String>,
}

/// Series that must be exactly these: over a selector, or over the families the lines name.
#[derive(Debug)]
pub(super) struct SeriesBlock {
    pub selector: Option<Selector>,
    pub samples: Vec<Series>,
    pub position: Option<(usize, usize)>,
}

/// Whether series of families no block names may be present.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum OtherSeries {
    #[default]
    Allowed,
    Forbidden,
}

#[derive(Debug)]
pub(super) struct TargetExpect {
    pub rule: Arc<Rule>,
    /// The target's label values in the signal's `labels` order.
    pub labels: Vec<String>,
    pub state: ExpectedState,
    pub reason: Option<String>,
    pub position: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpectedState {
    Up,
    Down,
    Failed(Failure),
}

impl ExpectedState {
    pub(super) fn text(self) -> &'static str {
        match self {
            ExpectedState::Up => "up",
            ExpectedState::Down => "down",
            ExpectedState::Failed(f) => f.key(),
        }
    }
}

/// What reading a test file needs besides the file.
pub(super) struct LoadCtx<'a> {
    /// `--db NAME=DSN`: replaces the named database's DSN.
    pub dsn_overrides: &'a BTreeMap<String, String>,
}

/// Reads and checks `path`: the test file, or every problem found.
pub(super) fn load(ctx: &LoadCtx<'_>, path: &Path) -> Result<TestFile, Vec<Diagnostic>> {
    let text = input::read_rules_file(path).map_err(|r| vec![r.into_diagnostic()])?;
    let parsed = document::parse(path, &text);
    let mut diags = parsed.diagnostics;
    let Some(doc) = parsed.value.filter(|v| !v.is_null()) else {
        if diags.is_empty() {
            diags.push(Diagnostic::error(path, "", "the test file is empty; it must start with `version: 1`").at(1, 1));
        }
        return Err(diags);
    };
    for (problem, _) in document::schema_problems(validator(), schema(), &doc, 100) {
        diags.push(Diagnostic::error(path, problem.pointer, problem.message));
    }
    let spec = if diags.is_empty() {
        serde_json::from_value::<TestFileSpec>(doc)
            .map_err(|e| diags.push(Diagnostic::error(path, "", format!("unexpected structure: {e}"))))
            .ok()
    } else {
        None
    };
    let trees: BTreeMap<PathBuf, span::SpanTree> = parsed.spans.into_iter().map(|t| (path.to_path_buf(), t)).collect();
    let built = spec.and_then(|spec| {
        let mut b = TestFileBuilder { path, trees: &trees, diags: &mut diags };
        b.file(ctx, spec)
    });
    span::fill_positions(&mut diags, &trees);
    match built {
        Some(file) if !diags.iter().any(|d| d.severity == Severity::Error) => Ok(file),
        _ => Err(diags),
    }
}

/// Builds the typed file, reporting each problem at its pointer.
struct TestFileBuilder<'a> {
    path: &'a Path,
    trees: &'a BTreeMap<PathBuf, span::SpanTree>,
    diags: &'a mut Vec<Diagnostic>,
}

impl TestFileBuilder<'_> {
    fn error(&mut self, pointer: impl Into<String>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(self.path, pointer, msg));
    }

    fn position(&self, pointer: &str) -> Option<(usize, usize)> {
        self.trees.get(self.path).and_then(|t| t.position(pointer))
    }

    fn file(&mut self, ctx: &LoadCtx<'_>, spec: TestFileSpec) -> Option<TestFile> {
        let rules = self.rules(ctx, &spec)?;
        let mut cases = Vec::new();
        for (i, case) in spec.cases.into_iter().enumerate() {
            if let Some(c) = self.case(&rules, &format!("/cases/{i}"), case) {
                cases.push(c);
            }
        }
        Some(TestFile { rules, cases })
    }

    /// The rules files, loaded with the test file's `env` before the process environment, and the
    /// `--db` DSNs in place of their databases'.
    fn rules(&mut self, ctx: &LoadCtx<'_>, spec: &TestFileSpec) -> Option<RuleSet> {
        let dir = self.path.parent().unwrap_or(Path::new(""));
        let mut sources = Vec::new();
        for (i, file) in spec.rule_files.iter().enumerate() {
            let at = dir.join(file);
            match input::read_rules_file(&at) {
                Ok(text) => sources.push((at, text)),
                Err(r) => {
                    let d = r.into_diagnostic();
                    self.error(format!("/rule_files/{i}"), format!("{}: {}", at.display(), d.message));
                }
            }
        }
        let env = spec.env.clone();
        let lookup = move |name: &str| env.get(name).cloned().or_else(|| std::env::var(name).ok());
        // An unset variable only warns: a database given by --db needs no DSN in the environment.
        let opts = LoadOptions { env: Arc::new(lookup), unset_env_is_error: false };
        let checked = check_sources(&sources, &opts);
        let errors: Vec<Diagnostic> =
            checked.diagnostics.into_iter().filter(|d| d.severity == Severity::Error).collect();
        if !errors.is_empty() {
            self.diags.extend(errors);
            return None;
        }
        let mut set = checked.rules;
        for (name, dsn) in ctx.dsn_overrides {
            if let Some(db) = set.databases.get_mut(name) {
                match crate::rules::conninfo::ConnInfo::parse(dsn) {
                    Ok(conninfo) => {
                        let mut replaced = (**db).clone();
                        replaced.dsn = crate::secret::Secret::new(dsn.clone());
                        replaced.conninfo = conninfo;
                        replaced.password = crate::rules::model::PasswordSource::Dsn;
                        *db = Arc::new(replaced);
                    }
                    Err(m) => self.error("", format!("--db {name}=…: the DSN does not parse: {m}")),
                }
            }
        }
        Some(set)
    }

    fn case(&mut self, rules: &RuleSet, pointer: &str, spec: CaseSpec) -> Option<Case> {
        let before = self.diags.len();
        let chosen: Vec<Arc<Rule>> = match &spec.rules {
            None => rules.rules.clone(),
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let found = rules.rules.iter().find(|r| &r.name == n).cloned();
                    if found.is_none() {
                        let known: Vec<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
                        self.error(
                            format!("{pointer}/rules/{i}"),
                            format!("no rule '{n}' in the rules files; they have: {}", known.join(", ")),
                        );
                    }
                    found
                })
                .collect(),
        };
        let single = !spec.evaluations.is_empty();
        let top_has_step =
            !spec.step.tables.is_empty() || !spec.step.responses.is_empty() || spec.step.expect.is_some();
        if single && top_has_step {
            self.error(
                pointer,
                "a case has either tables/responses/expect or evaluations, not both; move them into the first evaluation",
            );
        }
        let step_specs: Vec<(String, StepSpec)> = if single {
            spec.evaluations.into_iter().enumerate().map(|(i, s)| (format!("{pointer}/evaluations/{i}"), s)).collect()
        } else {
            vec![(pointer.to_string(), spec.step)]
        };
        let steps: Vec<Step> = step_specs.into_iter().map(|(p, s)| self.step(&chosen, &p, s)).collect();
        (self.diags.len() == before).then(|| Case {
            name: spec.name,
            position: self.position(pointer),
            rules: chosen,
            steps,
        })
    }

    fn step(&mut self, rules: &[Arc<Rule>], pointer: &str, spec: StepSpec) -> Step {
        let tables = spec
            .tables
            .into_iter()
            .map(|(name, t)| self.table(&format!("{pointer}/tables/{}", span::escape(&name)), name, t))
            .collect();
        for (name, r) in &spec.responses {
            if let Some(body) = &r.body {
                if let Err(m) = time::resolve(body, chrono::Utc::now(), Place::Resolving) {
                    self.error(format!("{pointer}/responses/{}/body", span::escape(name)), m);
                }
            }
        }
        let responses = spec.responses.into_iter().collect();
        let expect = match spec.expect {
            Some(e) => self.expect(rules, &format!("{pointer}/expect"), e),
            None => Expect::default(),
        };
        Step { tables, responses, expect }
    }

    fn table(&mut self, pointer: &str, name: String, spec: TableSpec) -> Table {
        let columns: Vec<FixtureColumn> = spec
            .columns
            .iter()
            .map(|c| {
                let (n, t) = c.trim().split_once(char::is_whitespace).unwrap_or((c, ""));
                FixtureColumn { name: n.to_string(), sql_type: t.trim().to_string() }
            })
            .collect();
        for (i, row) in spec.rows.iter().enumerate() {
            if row.len() != columns.len() {
                self.error(
                    format!("{pointer}/rows/{i}"),
                    format!("the row has {} value(s) but the table has {} column(s); give one value per column, null for NULL", row.len(), columns.len()),
                );
            }
            for (j, v) in row.iter().enumerate() {
                // Checked once here with any time: the object form's mistakes are the author's.
                if let Err(m) = time::resolve(v, chrono::Utc::now(), Place::Literal) {
                    self.error(format!("{pointer}/rows/{i}/{j}"), m);
                }
            }
        }
        Table { name, columns, rows: spec.rows }
    }

    fn expect(&mut self, rules: &[Arc<Rule>], pointer: &str, spec: ExpectSpec) -> Expect {
        let mut expect = Expect {
            absent: spec.absent,
            other_series: match spec.other_series {
                Some(OtherSeriesSpec::Forbidden) => OtherSeries::Forbidden,
                _ => OtherSeries::Allowed,
            },
            ..Expect::default()
        };
        for (i, name) in spec.failing.iter().enumerate() {
            if !rules.iter().any(|r| &r.name == name) {
                self.error(format!("{pointer}/failing/{i}"), format!("rule '{name}' is not evaluated by this case"));
            }
        }
        expect.failing = spec.failing;
        match spec.series {
            Some(SeriesSpec::Text(text)) => {
                let at = format!("{pointer}/series");
                if let Some(samples) = self.samples(&at, &text) {
                    expect.series.push(SeriesBlock { selector: None, samples, position: self.position(&at) });
                }
            }
            Some(SeriesSpec::Blocks(blocks)) => {
                for (i, b) in blocks.into_iter().enumerate() {
                    let at = format!("{pointer}/series/{i}");
                    let selector = match series::parse_selector(&b.select) {
                        Ok(s) => Some(s),
                        Err(m) => {
                            self.error(format!("{at}/select"), m);
                            None
                        }
                    };
                    if let (Some(selector), Some(samples)) =
                        (selector, self.samples(&format!("{at}/samples"), &b.samples))
                    {
                        expect.series.push(SeriesBlock {
                            selector: Some(selector),
                            samples,
                            position: self.position(&at),
                        });
                    }
                }
            }
            None => {}
        }
        for (i, t) in spec.targets.into_iter().enumerate() {
            if let Some(target) = self.target(rules, &format!("{pointer}/targets/{i}"), t) {
                expect.targets.push(target);
            }
        }
        expect
    }

    fn samples(&mut self, pointer: &str, text: &str) -> Option<Vec<Series>> {
        series::parse_lines(text).map_err(|m| self.error(pointer, m)).ok()
    }

    fn target(&mut self, rules: &[Arc<Rule>], pointer: &str, spec: TargetSpec) -> Option<TargetExpect> {
        let signals: Vec<&Arc<Rule>> = rules.iter().filter(|r| matches!(r.kind, RuleKind::Signal(_))).collect();
        let rule = match &spec.rule {
            Some(name) => signals.iter().find(|r| &r.name == name).copied(),
            None if signals.len() == 1 => signals.first().copied(),
            None => None,
        };
        let Some(rule) = rule else {
            let names: Vec<&str> = signals.iter().map(|r| r.name.as_str()).collect();
            self.error(
                pointer,
                format!(
                    "say which signal this target belongs to with rule: (the case evaluates the signals: {})",
                    names.join(", ")
                ),
            );
            return None;
        };
        let RuleKind::Signal(s) = &rule.kind else { return None };
        let mut given: Vec<&String> = spec.labels.keys().collect();
        given.sort();
        let mut wanted: Vec<&String> = s.labels.iter().collect();
        wanted.sort();
        if given != wanted {
            self.error(
                format!("{pointer}/labels"),
                format!(
                    "a target of signal '{}' is named by the labels {}; give each of them once",
                    rule.name,
                    s.labels.join(", ")
                ),
            );
            return None;
        }
        let state = match spec.state.as_str() {
            "up" => ExpectedState::Up,
            "down" => ExpectedState::Down,
            other => match Failure::ALL.iter().find(|f| f.key() == other) {
                Some(f) => ExpectedState::Failed(*f),
                None => {
                    let kinds: Vec<&str> = Failure::ALL.iter().map(|f| f.key()).collect();
                    self.error(
                        format!("{pointer}/state"),
                        format!("state '{other}' is not up, down or a failure kind ({})", kinds.join(", ")),
                    );
                    return None;
                }
            },
        };
        if spec.reason.is_some() && !matches!(state, ExpectedState::Failed(_)) {
            self.error(
                format!("{pointer}/reason"),
                "only a target in error has a reason; remove reason or give a failure kind as state",
            );
        }
        let labels = s.labels.iter().map(|l| spec.labels.get(l).cloned().unwrap_or_default()).collect();
        Some(TargetExpect { rule: rule.clone(), labels, state, reason: spec.reason, position: self.position(pointer) })
    }
}

/// The answer `spec` gives to request `request`, its body's relative times resolved against `now`.
fn response(request: &str, spec: &ResponseSpec, now: chrono::DateTime<chrono::Utc>) -> FixtureResponse {
    let answer = match spec.failure {
        Some(FailureSpec::Timeout) => FixtureAnswer::Failure(TransportFailure::Timeout),
        Some(FailureSpec::Refused) => FixtureAnswer::Failure(TransportFailure::Refused),
        None => FixtureAnswer::Reply(CannedReply {
            status: spec.status.unwrap_or(200),
            headers: spec.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: match (&spec.body_text, &spec.body) {
                (Some(text), _) => text.clone().into_bytes(),
                (None, Some(v)) => {
                    time::resolve(v, now, Place::Resolving).unwrap_or_else(|_| v.clone()).to_string().into_bytes()
                }
                (None, None) => Vec::new(),
            },
        }),
    };
    FixtureResponse { request: request.to_string(), answer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_schema_compiles_and_describes_every_property() {
        assert!(validator()
            .is_valid(&serde_json::json!({"version": 1, "rule_files": ["a.yaml"], "cases": [{"name": "x"}]})));
        assert!(!validator().is_valid(
            &serde_json::json!({"version": 1, "rule_files": ["a.yaml"], "cases": [{"name": "x", "expct": {}}]})
        ));
        // Every property of the schema says what it is for (the editor shows it).
        fn walk(v: &serde_json::Value, at: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (k, p) in props {
                    if p.get("description").is_none() && p.get("$ref").is_none() {
                        missing.push(format!("{at}/{k}"));
                    }
                }
            }
            match v {
                serde_json::Value::Object(m) => m.iter().for_each(|(k, c)| walk(c, &format!("{at}/{k}"), missing)),
                serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, at, missing)),
                _ => {}
            }
        }
        let mut missing = Vec::new();
        walk(schema(), "", &mut missing);
        assert!(missing.is_empty(), "properties without a description: {missing:?}");
    }

    #[test]
    fn the_schemas_target_states_are_up_down_and_every_failure_kind() {
        let states = &schema()["$defs"]["expect"]["properties"]["targets"]["items"]["properties"]["state"]["enum"];
        let mut expected = vec!["up", "down"];
        expected.extend(Failure::ALL.iter().map(|f| f.key()));
        assert_eq!(states, &serde_json::json!(expected));
    }
}
