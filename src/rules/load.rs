//! Loading rules files: YAML text → JSON Schema → typed [`RuleSet`], with every problem reported.
//!
//! Loading never stops at the first problem: it collects every diagnostic of every file, so an
//! operator fixes a file in one round. The same function serves start-up, reload and `--check-rules`.
//!
//! The order: YAML syntax (serde_yaml); a second, position-keeping parse ([`super::span`]) that also
//! rejects duplicate keys; the JSON Schema, whose errors [`super::schema_errors`] words for operators;
//! then the semantic checks the schema cannot express, on every rule and database that still
//! deserializes. Last, every diagnostic gets the `line:col` its JSON pointer resolves to, so the
//! exporter's log and `--check-rules` both print `FILE:LINE:COL: error: MESSAGE`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use super::diagnostic::{Diagnostic, Diagnostics, Severity};
use super::model::*;
use super::schema_errors;
use super::span::{self, SpanTree};
use crate::secret::Secret;
use crate::template;

// Metric rules (`metrics:`) load in their own file; a child module shares this loader's `Ctx`.
#[path = "metric_spec.rs"]
mod metric_spec;
pub use metric_spec::DEFAULT_DATABASE_LABEL;

/// The JSON Schema of rules files, embedded so the binary checks files without the repository.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/rules.schema.json");

/// Looks up an environment variable by name.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a load may consult besides the files.
#[derive(Clone)]
pub struct LoadOptions {
    /// Looks up `${VAR}`; the process environment by default, a map in tests.
    pub env: EnvLookup,
    /// An unset `${VAR}` is an error (the exporter) rather than a warning (`--check-rules`).
    pub unset_env_is_error: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { env: Arc::new(|name| std::env::var(name).ok()), unset_env_is_error: true }
    }
}

/// A successful load: the rules, and warnings that did not stop it.
#[derive(Debug)]
pub struct Loaded {
    pub rules: RuleSet,
    pub warnings: Vec<Diagnostic>,
}

/// Loads and validates `paths` together (names must be unique across them).
pub fn load_files(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push((path.clone(), text)),
            Err(e) => diags.push(Diagnostic::error(path, "", format!("cannot read the rules file: {e}"))),
        }
    }
    let result = load_sources(&sources, opts);
    if diags.is_empty() {
        return result;
    }
    match result {
        Ok(_) => Err(Diagnostics(diags)),
        Err(Diagnostics(more)) => {
            diags.extend(more);
            Err(Diagnostics(diags))
        }
    }
}

/// Loads rules from texts already read, each with the path it is reported under.
pub fn load_sources(sources: &[(PathBuf, String)], opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    let Checked { rules, diagnostics, .. } = check_sources(sources, opts);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        Err(Diagnostics(diagnostics))
    } else {
        Ok(Loaded { rules, warnings: diagnostics })
    }
}

/// Everything a check of rules files found, valid or not.
///
/// `--check-rules --db` goes on to prepare the queries of the rules that were built even when other
/// rules have errors, so it needs the partial rule set that [`load_sources`] discards.
#[derive(Debug)]
pub struct Checked {
    /// Every rule that was built. A rule whose part of the file fails the schema is not built; a rule
    /// with only semantic errors is.
    pub rules: RuleSet,
    /// The JSON pointer of each rule of `rules.rules` (`/signals/3`), in the same order.
    pub rule_pointers: Vec<String>,
    /// Every problem, positioned where its pointer resolves, in file and line order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks rules from texts already read: the work behind [`load_sources`] and `--check-rules`.
pub fn check_sources(sources: &[(PathBuf, String)], opts: &LoadOptions) -> Checked {
    let mut ctx = Ctx {
        opts,
        diags: Vec::new(),
        set: RuleSet::default(),
        rule_names: BTreeMap::new(),
        metric_names: BTreeMap::new(),
        spans: BTreeMap::new(),
        rule_pointers: Vec::new(),
        schema_pointers: BTreeMap::new(),
    };
    for (path, text) in sources {
        ctx.file(path, text);
    }
    // Rules must name a database declared in any of the files.
    for (n, rule) in ctx.set.rules.iter().enumerate() {
        let base = ctx.rule_pointers.get(n).cloned().unwrap_or_default();
        let databases = rule.databases();
        for (i, database) in databases.iter().enumerate() {
            if ctx.set.databases.contains_key(*database) {
                continue;
            }
            let declared: Vec<&str> = ctx.set.databases.keys().map(String::as_str).collect();
            let file = rule.file.clone();
            let msg = format!(
                "rule '{}' uses database '{}', which no rules file declares under `databases` (declared: {})",
                rule.name,
                database,
                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
            );
            let key = if matches!(&rule.kind, RuleKind::Metric(m) if m.databases.len() > 1) {
                format!("database/{i}")
            } else {
                "database".to_string()
            };
            let pointer = format!("{base}/{key}");
            if !ctx.schema_reported(&file, &pointer) {
                ctx.diags.push(Diagnostic::error(&file, pointer, msg));
            }
        }
    }
    let Ctx { mut diags, set, spans, rule_pointers, .. } = ctx;
    span::fill_positions(&mut diags, &spans);
    let files: Vec<PathBuf> = sources.iter().map(|(p, _)| p.clone()).collect();
    sort_diagnostics(&mut diags, &files);
    Checked { rules: set, rule_pointers, diagnostics: diags }
}

/// Orders diagnostics by file (in the order the files were given), then by position. The sort is
/// stable, so diagnostics at one place keep the order in which the checks found them.
pub fn sort_diagnostics(diags: &mut [Diagnostic], files: &[PathBuf]) {
    diags.sort_by_key(|d| {
        let file = files.iter().position(|f| *f == d.file).unwrap_or(usize::MAX);
        (file, d.position.unwrap_or((0, 0)))
    });
}

/// The schema as a JSON value, for turning its errors into messages.
fn schema_value() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(SCHEMA_TEXT).expect("the embedded schema is valid JSON (checked by tests)")
    })
}

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema_value()).expect("the embedded schema compiles (checked by tests)")
    })
}

struct Ctx<'a> {
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    set: RuleSet,
    /// Rule name → file and pointer of the rule that declared it first.
    rule_names: BTreeMap<String, (PathBuf, String)>,
    /// Metric name → rule (and its file) that declared it first.
    metric_names: BTreeMap<String, (String, PathBuf)>,
    /// Positions in each file read so far, for messages that point at another place.
    spans: BTreeMap<PathBuf, SpanTree>,
    /// The pointer of each rule in `set.rules`, in the same order.
    rule_pointers: Vec<String>,
    /// Per file, the places the schema reported a problem at (unknown keys aside).
    schema_pointers: BTreeMap<PathBuf, Vec<String>>,
}

// The shapes below mirror the schema; the schema has already checked types and required keys. Each
// rule and database is read on its own (see `Ctx::file`), so one bad rule does not hide the others.

#[derive(Deserialize)]
struct DatabaseSpec {
    dsn: Option<String>,
    dsn_file: Option<String>,
    max_connections: Option<usize>,
    connect_timeout: Option<String>,
    lock_timeout: Option<String>,
}

#[derive(Deserialize)]
struct SignalSpec {
    name: String,
    database: String,
    interval: Option<String>,
    timeout: Option<String>,
    max_rows: Option<usize>,
    max_series: Option<usize>,
    labels: Vec<String>,
    targets: Option<Vec<BTreeMap<String, OneOrMany>>>,
    window: usize,
    min_rows: Option<usize>,
    order_by: Option<String>,
    freshness: Option<FreshnessSpec>,
    #[serde(default)]
    values: BTreeMap<String, String>,
    success: String,
    metrics: SignalMetricsSpec,
    #[serde(default)]
    reasons: BTreeMap<String, String>,
    reason_label: Option<String>,
    #[serde(default = "empty_object")]
    vars: serde_json::Value,
    query: String,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct FreshnessSpec {
    column: String,
    max_age: String,
}

#[derive(Deserialize)]
struct SignalMetricsSpec {
    up: DescriptorSpec,
    error: DescriptorSpec,
}

#[derive(Deserialize)]
struct DescriptorSpec {
    name: String,
    help: String,
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ROWS: usize = 1_000_000;
const DEFAULT_MAX_SERIES: usize = 1_000_000;

/// Parses a duration such as `30s`, `1m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("'{text}' is not a duration ({e}); write e.g. 30s, 1m, 3h"))
}

impl Ctx<'_> {
    fn error(&mut self, file: &Path, pointer: impl Into<String>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(file, pointer, msg));
    }

    fn file(&mut self, path: &Path, text: &str) {
        let doc: serde_json::Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let mut d = Diagnostic::error(path, "", format!("invalid YAML: {}", yaml_message(&e)));
                if let Some(loc) = e.location() {
                    d = d.at(loc.line(), loc.column());
                } else if let Some(line) = second_document_line(text) {
                    d = Diagnostic::error(
                        path,
                        "",
                        "a rules file holds one YAML document; this '---' starts a second one",
                    )
                    .at(line, 1);
                }
                self.diags.push(d);
                return;
            }
        };
        // A second parse keeps positions for messages, and finds duplicate keys, which serde_yaml
        // resolves silently (last one wins). A text serde_yaml accepts and this parser does not
        // merely has no positions.
        if let Ok((tree, duplicates)) = span::parse(text) {
            for dup in duplicates {
                let msg = format!("duplicate key '{}' (first at line {}); give each key once", dup.key, dup.first.0);
                self.diags.push(Diagnostic::error(path, dup.pointer, msg).at(dup.position.0, dup.position.1));
            }
            self.spans.insert(path.to_path_buf(), tree);
        }
        if doc.is_null() {
            self.error(path, "", "the rules file is empty; it must start with `version: 1`");
            return;
        }
        // Schema errors are reported for the whole file. Every rule and database that still
        // deserializes then gets the semantic checks as well, so one run reports everything; a semantic
        // finding at a place the schema already reported is dropped, so each mistake has one message.
        // (Unknown keys do not count: building a rule ignores them.)
        let mut reported: Vec<String> = Vec::new();
        for err in schema_validator().iter_errors(&doc) {
            let unknown_key = matches!(err.kind(), jsonschema::error::ValidationErrorKind::AdditionalProperties { .. });
            for problem in schema_errors::describe(schema_value(), &err) {
                if !unknown_key && !problem.pointer.is_empty() {
                    reported.push(problem.pointer.clone());
                }
                self.error(path, problem.pointer, problem.message);
            }
        }
        self.schema_pointers.insert(path.to_path_buf(), reported);
        if let Some(databases) = doc.get("databases").and_then(|d| d.as_object()) {
            for (name, value) in databases {
                let pointer = format!("/databases/{}", span::escape(name));
                let before = self.diags.len();
                if let Some(spec) = self.item::<DatabaseSpec>(path, &pointer, value) {
                    self.database(path, name.clone(), spec);
                }
                self.drop_reported(path, before);
            }
        }
        if let Some(signals) = doc.get("signals").and_then(|s| s.as_array()) {
            for (i, value) in signals.iter().enumerate() {
                let pointer = format!("/signals/{i}");
                let before = self.diags.len();
                if let Some(spec) = self.item::<SignalSpec>(path, &pointer, value) {
                    self.signal(path, i, spec);
                    self.rule_built(&pointer);
                }
                self.drop_reported(path, before);
            }
        }
        if let Some(metrics) = doc.get("metrics").and_then(|m| m.as_array()) {
            for (i, value) in metrics.iter().enumerate() {
                let pointer = format!("/metrics/{i}");
                let before = self.diags.len();
                if let Some(spec) = self.item::<metric_spec::MetricRuleSpec>(path, &pointer, value) {
                    self.metric_rule(path, i, spec);
                    self.rule_built(&pointer);
                }
                self.drop_reported(path, before);
            }
        }
    }

    /// Whether the schema reported a problem at `pointer` of `path` or inside it.
    fn schema_reported(&self, path: &Path, pointer: &str) -> bool {
        self.schema_pointers.get(path).is_some_and(|reported| {
            reported
                .iter()
                .any(|r| r == pointer || pointer.strip_prefix(r.as_str()).is_some_and(|rest| rest.starts_with('/')))
        })
    }

    /// Drops the diagnostics found since `before` at places of `path` the schema already reported.
    fn drop_reported(&mut self, path: &Path, before: usize) {
        let later: Vec<Diagnostic> = self.diags.drain(before..).collect();
        for d in later {
            if !(d.file == path && self.schema_reported(path, &d.pointer)) {
                self.diags.push(d);
            }
        }
    }

    /// The typed spec of one rule or database. When it does not deserialize, the schema has said why
    /// (else the mismatch between schema and spec is reported here).
    fn item<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &Path,
        pointer: &str,
        value: &serde_json::Value,
    ) -> Option<T> {
        match T::deserialize(value) {
            Ok(spec) => Some(spec),
            Err(e) => {
                let within =
                    |r: &String| r == pointer || r.strip_prefix(pointer).is_some_and(|rest| rest.starts_with('/'));
                if !self.schema_pointers.get(path).is_some_and(|reported| reported.iter().any(within)) {
                    self.error(path, pointer, format!("unexpected structure: {e}"));
                }
                None
            }
        }
    }

    /// Records the pointer of the rule just built, for messages about it after all files are read.
    fn rule_built(&mut self, pointer: &str) {
        while self.rule_pointers.len() < self.set.rules.len() {
            self.rule_pointers.push(pointer.to_string());
        }
    }

    /// A rule's interval and timeout. The default timeout is below any interval, so only a timeout
    /// the file gives can be too long, and the error then points at it.
    pub(super) fn interval_and_timeout(
        &mut self,
        path: &Path,
        base: &str,
        interval: Option<&str>,
        timeout: Option<&str>,
    ) -> (Duration, Duration) {
        let mut interval = self.duration(path, format!("{base}/interval"), interval, DEFAULT_INTERVAL);
        if interval < MIN_INTERVAL {
            self.error(
                path,
                format!("{base}/interval"),
                format!(
                    "interval: {} is shorter than 1s; a rule queries its database once per interval",
                    humantime::format_duration(interval)
                ),
            );
            interval = MIN_INTERVAL;
        }
        let timeout = self.duration(path, format!("{base}/timeout"), timeout, default_timeout(interval));
        if timeout >= interval {
            self.error(
                path,
                format!("{base}/timeout"),
                format!(
                    "timeout ({}) must be shorter than interval ({}) so that a rule never overlaps itself",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
        (interval, timeout)
    }

    fn duration(&mut self, path: &Path, pointer: String, text: Option<&str>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => match parse_duration(t) {
                Ok(d) if d > MAX_DURATION => {
                    let key = pointer.rsplit('/').next().unwrap_or_default().to_string();
                    self.error(
                        path,
                        pointer,
                        format!("{key}: {t} is longer than 24d, the longest timeout PostgreSQL accepts; durations are at most 24d"),
                    );
                    default
                }
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    let key = pointer.rsplit('/').next().unwrap_or_default().to_string();
                    self.error(path, pointer, format!("{key}: a duration must be longer than zero"));
                    default
                }
                Err(msg) => {
                    self.error(path, pointer, msg);
                    default
                }
            },
        }
    }

    fn database(&mut self, path: &Path, name: String, spec: DatabaseSpec) {
        let ptr = |k: &str| format!("/databases/{name}/{k}");
        if self.set.databases.contains_key(&name) {
            self.error(
                path,
                format!("/databases/{name}"),
                format!("database '{name}' is declared in more than one file"),
            );
            return;
        }
        let before = self.diags.len();
        let dsn = match (&spec.dsn, &spec.dsn_file) {
            (Some(dsn), _) => self.expand_env(path, ptr("dsn"), dsn),
            (None, Some(file)) => {
                let file_path = resolve_relative(path, file);
                match std::fs::read_to_string(&file_path) {
                    Ok(text) => text.trim().to_string(),
                    Err(e) => {
                        self.error(path, ptr("dsn_file"), format!("cannot read dsn_file {}: {e}", file_path.display()));
                        String::new()
                    }
                }
            }
            (None, None) => String::new(),
        };
        if self.diags.len() == before && !dsn.is_empty() {
            let key = if spec.dsn.is_some() { "dsn" } else { "dsn_file" };
            self.check_dsn(path, ptr(key), &dsn, spec.dsn.as_deref());
        }
        let connect_timeout =
            self.duration(path, ptr("connect_timeout"), spec.connect_timeout.as_deref(), Duration::from_secs(5));
        let lock_timeout =
            self.duration(path, ptr("lock_timeout"), spec.lock_timeout.as_deref(), Duration::from_secs(5));
        self.set.databases.insert(
            name.clone(),
            Arc::new(Database {
                name,
                dsn: Secret::new(dsn),
                max_connections: spec.max_connections.unwrap_or(4),
                connect_timeout,
                lock_timeout,
            }),
        );
    }

    /// The DSN must parse (else every rule on the database would fail), and a password must not be
    /// written into the rules file itself. Neither message shows the DSN.
    fn check_dsn(&mut self, path: &Path, pointer: String, dsn: &str, written: Option<&str>) {
        use std::str::FromStr;
        if let Err(msg) = crate::source::parse_dsn(dsn) {
            self.error(path, pointer, msg);
            return;
        }
        let literal_password = written
            .and_then(|w| tokio_postgres::Config::from_str(w).ok())
            .and_then(|c| c.get_password().map(|p| !p.is_empty() && !p.windows(2).any(|w| w == b"${")))
            .unwrap_or(false);
        if literal_password {
            let msg = "the DSN has a password written into the rules file; take it from the environment (${VAR}) or from dsn_file";
            self.diags.push(Diagnostic::warning(path, pointer, msg));
        }
    }

    /// Replaces `${VAR}` with the variable's value. The value is never echoed in a message.
    fn expand_env(&mut self, path: &Path, pointer: String, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.error(path, pointer.clone(), "unterminated ${ in value; write ${NAME}");
                return out;
            };
            let var = &after[..end];
            match (self.opts.env)(var) {
                Some(v) => out.push_str(&v),
                None => {
                    let msg = format!("environment variable {var} is not set; export it before starting the exporter");
                    let d = if self.opts.unset_env_is_error {
                        Diagnostic::error(path, pointer.clone(), msg)
                    } else {
                        Diagnostic::warning(path, pointer.clone(), msg)
                    };
                    self.diags.push(d);
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn claim_rule_name(&mut self, path: &Path, pointer: String, name: &str) {
        if let Some((file, first)) = self.rule_names.get(name) {
            let at = match self.spans.get(file).and_then(|t| t.position(first)) {
                Some((line, _)) if file == path => format!("line {line}"),
                Some((line, col)) => format!("{}:{line}:{col}", file.display()),
                None => file.display().to_string(),
            };
            let msg = format!("rule name '{name}' is already used by the rule at {at}; rule names must be unique");
            self.error(path, pointer, msg);
        } else {
            self.rule_names.insert(name.to_string(), (path.to_path_buf(), pointer));
        }
    }

    fn claim_metric_name(&mut self, path: &Path, pointer: String, metric: &str, rule: &str) {
        if let Some((first, file)) = self.metric_names.get(metric) {
            let msg = if first == rule && file == path {
                format!("metric name '{metric}' is used twice in rule '{rule}'; every metric needs a name of its own")
            } else if file == path {
                format!("metric name '{metric}' is already produced by rule '{first}'; metric names must be unique")
            } else {
                format!(
                    "metric name '{metric}' is already produced by rule '{first}' in {}; metric names must be unique",
                    file.display()
                )
            };
            self.error(path, pointer, msg);
        } else if metric.starts_with(crate::SELF_METRIC_PREFIX) {
            self.error(
                path,
                pointer,
                format!(
                    "metric names starting with '{}' are reserved for the exporter's own metrics",
                    crate::SELF_METRIC_PREFIX
                ),
            );
        } else if metric.starts_with("process_") {
            self.error(
                path,
                pointer,
                format!("metric name '{metric}' clashes with the exporter's own process_* metrics"),
            );
        } else if metric.starts_with("__") {
            self.error(path, pointer, format!("metric name '{metric}' starts with '__', which Prometheus reserves"));
        } else {
            if metric.contains(':') {
                let msg = format!("metric name '{metric}' contains ':', which Prometheus reserves for recording rules");
                self.diags.push(Diagnostic::warning(path, pointer, msg));
            }
            self.metric_names.insert(metric.to_string(), (rule.to_string(), path.to_path_buf()));
        }
    }

    fn signal(&mut self, path: &Path, index: usize, s: SignalSpec) {
        let base = format!("/signals/{index}");
        let ptr = |k: &str| format!("{base}/{k}");
        self.claim_rule_name(path, ptr("name"), &s.name);
        self.claim_metric_name(path, ptr("metrics/up/name"), &s.metrics.up.name, &s.name);
        self.claim_metric_name(path, ptr("metrics/error/name"), &s.metrics.error.name, &s.name);

        let (interval, timeout) = self.interval_and_timeout(path, &base, s.interval.as_deref(), s.timeout.as_deref());

        let reason_label = s.reason_label.clone().unwrap_or_else(|| "reason".to_string());
        for (i, label) in s.labels.iter().enumerate() {
            check_label_name(self, path, ptr(&format!("labels/{i}")), label);
            if let Some(meaning) = special_label_meaning(label) {
                let msg = format!(
                    "label name '{label}' has a special meaning in Prometheus ({meaning}); prefer another name"
                );
                self.diags.push(Diagnostic::warning(path, ptr(&format!("labels/{i}")), msg));
            }
        }
        if s.reason_label.is_some() {
            check_label_name(self, path, ptr("reason_label"), &reason_label);
        }
        if let Some(i) = s.labels.iter().position(|l| *l == reason_label) {
            let at = if s.reason_label.is_some() { ptr("reason_label") } else { ptr(&format!("labels/{i}")) };
            let msg = if s.reason_label.is_some() {
                format!("reason label '{reason_label}' is also a target label; rename one of them")
            } else {
                format!("target label '{reason_label}' clashes with the error metric's reason label; rename it, or set reason_label")
            };
            self.error(path, at, msg);
        }

        let targets = s.targets.as_ref().map(|entries| {
            let mut out: Vec<Vec<String>> = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, entry) in entries.iter().enumerate() {
                let p = format!("{base}/targets/{i}");
                let keys: BTreeSet<&String> = entry.keys().collect();
                let declared: BTreeSet<&String> = s.labels.iter().collect();
                if keys != declared {
                    let missing: Vec<&str> = declared.difference(&keys).map(|s| s.as_str()).collect();
                    let extra: Vec<&str> = keys.difference(&declared).map(|s| s.as_str()).collect();
                    let mut msg = String::from("a target must give a value for exactly the labels");
                    msg.push_str(&format!(" [{}]", s.labels.join(", ")));
                    if !missing.is_empty() {
                        msg.push_str(&format!("; missing: {}", missing.join(", ")));
                    }
                    if !extra.is_empty() {
                        msg.push_str(&format!("; not a declared label: {}", extra.join(", ")));
                    }
                    self.error(path, p, msg);
                    continue;
                }
                let mut repeated = Vec::new();
                for combo in expand_target(&s.labels, entry) {
                    if seen.insert(combo.clone()) {
                        out.push(combo);
                    } else {
                        let pairs: Vec<String> = s.labels.iter().zip(&combo).map(|(l, v)| format!("{l}={v}")).collect();
                        repeated.push(format!("{{{}}}", pairs.join(", ")));
                    }
                }
                if !repeated.is_empty() {
                    let msg = format!("target {} is already listed by an earlier entry", repeated.join(", "));
                    self.diags.push(Diagnostic::warning(path, p, msg));
                }
                if out.len() > MAX_TARGETS {
                    let msg = format!(
                        "the targets expand to more than {MAX_TARGETS}; split the rule or let the query discover them"
                    );
                    self.error(path, format!("{base}/targets"), msg);
                    break;
                }
            }
            out
        });

        // min_rows below window judges what there is; above window is legal but almost always a
        // mistake: a query that returns the newest `window` results per target can never satisfy it.
        let min_rows = s.min_rows.unwrap_or(s.window);
        if min_rows > s.window {
            let msg = format!(
                "min_rows ({min_rows}) is above window ({}): a target needs more results than are judged, and a query that returns only the newest window results per target makes every target too_few_rows",
                s.window
            );
            self.diags.push(Diagnostic::warning(path, ptr("min_rows"), msg));
        }
        let mut values = Vec::new();
        for (col, ty) in &s.values {
            match ValueType::parse(ty) {
                Some(t) => values.push((col.clone(), t)),
                None => self.error(path, ptr(&format!("values/{col}")), format!("unknown value type '{ty}'")),
            }
        }

        let mut reasons = Reasons::default();
        for failure in Failure::ALL {
            if let Some(r) = s.reasons.get(failure.key()) {
                reasons.set(failure, r.clone());
            }
        }

        let freshness = s.freshness.as_ref().map(|f| Freshness {
            column: f.column.clone(),
            max_age: self.duration(path, ptr("freshness/max_age"), Some(&f.max_age), Duration::from_secs(3600)),
        });

        // Expressions and templates must compile now, not at 3 a.m. on the first evaluation.
        let env = template::environment();
        match env.compile_expression(&s.success) {
            Err(e) => self.error(
                path,
                ptr("success"),
                format!("the success expression does not compile: {}", jinja_message(&e)),
            ),
            Ok(expr) => {
                // Every declared value counts, also one whose type is wrong (reported above).
                let declared: Vec<(String, ValueType)> =
                    s.values.iter().map(|(n, t)| (n.clone(), ValueType::parse(t).unwrap_or(ValueType::Text))).collect();
                if let Some(msg) = success_problem(&env, &expr, &s.labels, &declared, &s.vars) {
                    self.error(path, ptr("success"), msg);
                }
            }
        }

        let rule = Rule {
            name: s.name,
            file: path.to_path_buf(),
            database: s.database,
            interval,
            timeout,
            max_rows: s.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
            max_series: s.max_series.unwrap_or(DEFAULT_MAX_SERIES),
            query: s.query,
            vars: s.vars,
            kind: RuleKind::Signal(SignalRule {
                labels: s.labels,
                targets,
                window: s.window,
                min_rows,
                order_by: s.order_by,
                freshness,
                values,
                success: s.success,
                up: MetricDescriptor { name: s.metrics.up.name, help: s.metrics.up.help },
                error: MetricDescriptor { name: s.metrics.error.name, help: s.metrics.error.help },
                reason_label,
                reasons,
            }),
        };
        match template::render_query(&rule, template::ASSUMED_SERVER_VERSION_NUM) {
            Err(e) => self.error(
                path,
                ptr("query"),
                format!("the query template does not render: {}", render_problem(&rule, &e)),
            ),
            Ok(sql) => {
                if let RuleKind::Signal(signal) = &rule.kind {
                    for (pointer, role, column) in signal_columns(&base, signal) {
                        if let Some(msg) = unmentioned_column(&sql, role, column) {
                            self.diags.push(Diagnostic::warning(path, pointer, msg));
                        }
                    }
                }
            }
        }
        self.set.rules.push(Arc::new(rule));
    }
}

fn check_label_name(ctx: &mut Ctx<'_>, path: &Path, pointer: String, label: &str) {
    if label.starts_with("__") {
        ctx.error(path, pointer, format!("label name '{label}' starts with '__', which Prometheus reserves"));
    }
}

/// What a label name means to Prometheus when it means something already.
fn special_label_meaning(label: &str) -> Option<&'static str> {
    match label {
        "le" => Some("the upper bound of a histogram bucket"),
        "quantile" => Some("the quantile of a summary"),
        "job" | "instance" => Some("set by Prometheus on every scraped series; the scrape renames it to exported_*"),
        _ => None,
    }
}

/// The default timeout of a rule: 30s, or less for a short interval, always below the interval.
pub(super) fn default_timeout(interval: Duration) -> Duration {
    // `interval * 3` could overflow; this cannot.
    DEFAULT_TIMEOUT.min(interval - interval / 4)
}

/// The longest duration a rules file may give: PostgreSQL's timeouts are milliseconds in an i32.
const MAX_DURATION: Duration = Duration::from_secs(24 * 24 * 3600);

/// The most targets a signal may declare (after lists expand).
const MAX_TARGETS: usize = 100_000;

/// The shortest interval: a rule queries its database once per interval.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A minijinja error in one line: its kind, detail and line, without the source dump.
fn jinja_message(e: &minijinja::Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    msg
}

/// Why a query template does not render, naming the undefined variable when that is the reason
/// (minijinja only says "undefined value").
fn render_problem(rule: &Rule, e: &minijinja::Error) -> String {
    let mut msg = jinja_message(e);
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        let env = template::environment();
        if let Ok(tmpl) = env.template_from_str(&rule.query) {
            let ctx = template::query_context(rule, template::ASSUMED_SERVER_VERSION_NUM);
            let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
            let mut used: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
            used.sort();
            let missing = used.iter().find(|name| {
                let first = name.split('.').next().unwrap_or_default();
                !globals.contains(first) && !resolves(&ctx, name)
            });
            if let Some(name) = missing {
                let (parent, what) = match name.rsplit_once('.') {
                    Some((parent, _)) => (lookup(&ctx, parent), format!("{parent} has")),
                    None => (Some(ctx.clone()), "a query template sees".to_string()),
                };
                let known = parent.map(|v| keys_of(&v)).unwrap_or_default();
                msg = if known.is_empty() {
                    format!(
                        "'{name}' is not defined (the rule sets no {})",
                        name.rsplit_once('.').map(|(p, _)| p).unwrap_or("variables")
                    )
                } else {
                    format!("'{name}' is not defined ({what}: {})", known.join(", "))
                };
            }
        }
    }
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (line {line} of the query)"));
    }
    msg
}

fn lookup(ctx: &minijinja::Value, dotted: &str) -> Option<minijinja::Value> {
    let mut value = ctx.clone();
    for part in dotted.split('.') {
        value = value.get_attr(part).ok().filter(|v| !v.is_undefined())?;
    }
    Some(value)
}

fn resolves(ctx: &minijinja::Value, dotted: &str) -> bool {
    lookup(ctx, dotted).is_some()
}

fn keys_of(value: &minijinja::Value) -> Vec<String> {
    if value.kind() != minijinja::value::ValueKind::Map {
        return Vec::new();
    }
    let mut keys: Vec<String> = value.try_iter().map(|it| it.map(|k| k.to_string()).collect()).unwrap_or_default();
    keys.sort();
    keys
}

/// A success expression that compiles can still name something a result does not have (a typo in a
/// value's name) or an unknown filter; both would fail every evaluation with `bad_value`. The names
/// are checked exactly; filters, tests and functions by running the expression on made-up values of
/// the declared types, once all falsy and once all truthy so both sides of `and`/`or` run. Other
/// failures on made-up values (a division by zero, say) are not reported.
fn success_problem(
    env: &minijinja::Environment<'_>,
    expr: &minijinja::Expression<'_, '_>,
    labels: &[String],
    values: &[(String, ValueType)],
    vars: &serde_json::Value,
) -> Option<String> {
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut known: BTreeSet<&str> = labels.iter().chain(values.iter().map(|(n, _)| n)).map(String::as_str).collect();
    known.insert("vars");
    let mut unknown: Vec<String> = expr
        .undeclared_variables(false)
        .into_iter()
        .filter(|n| !known.contains(n.as_str()) && !globals.contains(n.as_str()))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        let names: Vec<String> = unknown.iter().map(|n| format!("'{n}'")).collect();
        let values: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
        return Some(format!(
            "the success expression uses {}, which a result does not have; it sees the values [{}], the labels [{}] and vars",
            names.join(", "),
            values.join(", "),
            labels.join(", ")
        ));
    }
    for truthy in [false, true] {
        let mut ctx = serde_json::Map::new();
        ctx.insert("vars".into(), vars.clone());
        for label in labels {
            ctx.insert(label.clone(), if truthy { "x" } else { "" }.into());
        }
        for (name, ty) in values {
            let v: serde_json::Value = match (ty, truthy) {
                (ValueType::Integer | ValueType::Timestamp, t) => (t as i64).into(),
                (ValueType::Float, t) => (t as i64 as f64).into(),
                (ValueType::Bool, t) => t.into(),
                (ValueType::Text, t) => if t { "x" } else { "" }.into(),
            };
            ctx.insert(name.clone(), v);
        }
        if let Err(e) = expr.eval(minijinja::Value::from_serialize(serde_json::Value::Object(ctx))) {
            use minijinja::ErrorKind as E;
            if matches!(e.kind(), E::UnknownFilter | E::UnknownTest | E::UnknownFunction | E::UnknownMethod) {
                return Some(format!("the success expression fails: {}", jinja_message(&e)));
            }
        }
    }
    None
}

/// The columns a signal reads from the result, each with the pointer of where the file names it.
fn signal_columns<'a>(base: &str, s: &'a SignalRule) -> Vec<(String, &'static str, &'a str)> {
    let mut out = Vec::new();
    for (i, label) in s.labels.iter().enumerate() {
        out.push((format!("{base}/labels/{i}"), "a target label", label.as_str()));
    }
    if let Some(col) = &s.order_by {
        out.push((format!("{base}/order_by"), "order_by", col.as_str()));
    }
    if let Some(f) = &s.freshness {
        out.push((format!("{base}/freshness/column"), "freshness", f.column.as_str()));
    }
    for (name, _) in &s.values {
        out.push((format!("{base}/values/{}", span::escape(name)), "a value", name.as_str()));
    }
    out
}

/// A warning when the rendered SQL never mentions `column` as a word. Only a heuristic on the text:
/// a query that selects `*` is skipped, and a column the text mentions may still not be returned;
/// `--check-rules --db` checks the real result columns.
fn unmentioned_column(sql: &str, role: &str, column: &str) -> Option<String> {
    if selects_star(sql) || mentions_word(sql, column) {
        return None;
    }
    Some(format!(
        "the query never mentions '{column}' ({role}), but must return a column of that name (a check of the SQL text only; --db checks the real columns)"
    ))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Whether `word` occurs in `text` as a whole word, ignoring case (unquoted SQL names fold case).
fn mentions_word(text: &str, word: &str) -> bool {
    let text = text.to_lowercase();
    let word = word.to_lowercase();
    if word.is_empty() {
        return false;
    }
    let mut from = 0;
    while let Some(at) = text[from..].find(&word) {
        let start = from + at;
        let end = start + word.len();
        let before_ok = !text[..start].chars().next_back().is_some_and(is_word_char);
        let after_ok = !text[end..].chars().next().is_some_and(is_word_char);
        if before_ok && after_ok {
            return true;
        }
        from = start + word.len().max(1);
    }
    false
}

/// Whether the SQL selects `*` or `t.*` somewhere, so its columns cannot be read from the text.
fn selects_star(sql: &str) -> bool {
    let lower = sql.to_lowercase();
    lower.char_indices().filter(|(_, c)| *c == '*').any(|(i, _)| {
        let before = lower[..i].trim_end();
        before.ends_with(',') || before.ends_with('.') || before.ends_with("select") || before.ends_with("distinct")
    })
}

/// Every combination of the entry's values, in `labels` order.
fn expand_target(labels: &[String], entry: &BTreeMap<String, OneOrMany>) -> Vec<Vec<String>> {
    let mut combos: Vec<Vec<String>> = vec![Vec::new()];
    for label in labels {
        let values: Vec<&String> = match entry.get(label) {
            Some(OneOrMany::One(v)) => vec![v],
            Some(OneOrMany::Many(vs)) => vs.iter().collect(),
            None => return Vec::new(),
        };
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((*v).clone());
                    c
                })
            })
            .collect();
    }
    combos
}

fn resolve_relative(rules_file: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        rules_file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn yaml_message(e: &serde_yaml::Error) -> String {
    // serde_yaml appends " at line X column Y" (printed in front instead), and sometimes what it was
    // parsing and where that began, which is often the line to fix (an unclosed bracket).
    let msg = e.to_string();
    let Some(i) = msg.find(" at line ") else { return msg };
    let context = msg[i..].split_once(", ").map(|(_, c)| c);
    match context {
        Some(c) => format!("{} ({c})", &msg[..i]),
        None => msg[..i].to_string(),
    }
}

/// The line of the `---` that starts a second YAML document, for serde_yaml's error without position.
fn second_document_line(text: &str) -> Option<usize> {
    let mut content_seen = false;
    for (n, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ");
        if is_marker && content_seen {
            return Some(n + 1);
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && !is_marker {
            content_seen = true;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_found_whole_and_case_insensitively() {
        assert!(mentions_word("SELECT Cluster, n FROM t", "cluster"));
        assert!(mentions_word("x.failures)", "failures"));
        assert!(!mentions_word("SELECT clusters FROM t", "cluster"));
        assert!(!mentions_word("SELECT my_cluster FROM t", "cluster"));
        assert!(!mentions_word("SELECT 1", ""));
    }

    #[test]
    fn star_selects_are_recognised() {
        assert!(selects_star("SELECT * FROM t"));
        assert!(selects_star("select distinct * from t"));
        assert!(selects_star("SELECT a, t.* FROM t"));
        assert!(!selects_star("SELECT count(*), a * 2 FROM t"));
    }

    #[test]
    fn the_default_timeout_stays_below_the_interval() {
        assert_eq!(default_timeout(Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(default_timeout(Duration::from_secs(20)), Duration::from_secs(15));
        assert!(default_timeout(Duration::from_millis(1)) < Duration::from_millis(1));
    }

    #[test]
    fn yaml_errors_keep_their_context_and_a_second_document_is_found() {
        let e = serde_yaml::from_str::<serde_json::Value>("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(
            yaml_message(&e),
            "did not find expected ',' or ']' (while parsing a flow sequence at line 1 column 4)"
        );
        assert_eq!(second_document_line("# c\n---\na: 1\n---\nb: 2\n"), Some(4));
        assert_eq!(second_document_line("---\na: 1\n"), None);
    }
}
