//! Loading rules files: YAML text → JSON Schema → typed [`RuleSet`], with every problem reported.
//!
//! Loading never stops at the first problem: it collects every diagnostic of every file, so an
//! operator fixes a file in one round. The same function serves start-up, reload and `--check-rules`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use super::diagnostic::{Diagnostic, Diagnostics, Severity};
use super::model::*;
use crate::secret::Secret;
use crate::template;

/// The JSON Schema of rules files, embedded so the binary checks files without the repository.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/rules.schema.json");

/// What a load may consult besides the files.
#[derive(Clone)]
pub struct LoadOptions {
    /// Looks up `${VAR}`; the process environment by default, a map in tests.
    pub env: Arc<dyn Fn(&str) -> Option<String> + Send + Sync>,
    /// An unset `${VAR}` is an error (the exporter) rather than a warning (`--check-rules`).
    pub unset_env_is_error: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            env: Arc::new(|name| std::env::var(name).ok()),
            unset_env_is_error: true,
        }
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
            Err(e) => diags.push(Diagnostic::error(
                path,
                "",
                format!("cannot read the rules file: {e}"),
            )),
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
    let mut ctx = Ctx {
        opts,
        diags: Vec::new(),
        set: RuleSet::default(),
        rule_names: BTreeMap::new(),
        metric_names: BTreeMap::new(),
    };
    for (path, text) in sources {
        ctx.file(path, text);
    }
    // Rules must name a database declared in any of the files.
    for rule in &ctx.set.rules {
        if !ctx.set.databases.contains_key(&rule.database) {
            let declared: Vec<&str> = ctx.set.databases.keys().map(String::as_str).collect();
            let file = rule.file.clone();
            let msg = format!(
                "rule '{}' uses database '{}', which no rules file declares under `databases` (declared: {})",
                rule.name,
                rule.database,
                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
            );
            ctx.diags.push(Diagnostic::error(&file, rule_pointer(&ctx.set, rule, "database"), msg));
        }
    }
    let Ctx { diags, set, .. } = ctx;
    if diags.iter().any(|d| d.severity == Severity::Error) {
        Err(Diagnostics(diags))
    } else {
        Ok(Loaded { rules: set, warnings: diags })
    }
}

fn rule_pointer(set: &RuleSet, rule: &Rule, key: &str) -> String {
    let section = match rule.kind {
        RuleKind::Signal(_) => "signals",
    };
    let index = set
        .rules
        .iter()
        .filter(|r| r.file == rule.file && matches!(r.kind, RuleKind::Signal(_)))
        .position(|r| r.name == rule.name)
        .unwrap_or(0);
    format!("/{section}/{index}/{key}")
}

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(SCHEMA_TEXT).expect("the embedded schema is valid JSON (checked by tests)");
        jsonschema::draft202012::new(&schema).expect("the embedded schema compiles (checked by tests)")
    })
}

struct Ctx<'a> {
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    set: RuleSet,
    /// Rule name → file that declared it first.
    rule_names: BTreeMap<String, PathBuf>,
    /// Metric name → rule that declared it first.
    metric_names: BTreeMap<String, String>,
}

// The shapes below mirror the schema; the schema has already checked types and required keys.

#[derive(Deserialize)]
struct FileSpec {
    #[allow(dead_code)]
    version: u32,
    #[serde(default)]
    databases: BTreeMap<String, DatabaseSpec>,
    #[serde(default)]
    signals: Vec<SignalSpec>,
    #[serde(default)]
    metrics: Vec<serde_json::Value>,
}

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
                }
                self.diags.push(d);
                return;
            }
        };
        let before = self.diags.len();
        for err in schema_validator().iter_errors(&doc) {
            let pointer = err.instance_path.to_string();
            self.error(path, pointer, schema_message(&err));
        }
        if self.diags.len() > before {
            return;
        }
        let spec: FileSpec = match serde_json::from_value(doc) {
            Ok(s) => s,
            Err(e) => {
                self.error(path, "", format!("unexpected structure: {e}"));
                return;
            }
        };
        for (name, db) in spec.databases {
            self.database(path, name, db);
        }
        for (i, s) in spec.signals.into_iter().enumerate() {
            self.signal(path, i, s);
        }
        if !spec.metrics.is_empty() {
            self.error(path, "/metrics", "metric rules are not supported by this version yet");
        }
    }

    fn duration(&mut self, path: &Path, pointer: String, text: Option<&str>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => match parse_duration(t) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.error(path, pointer, "a duration must be longer than zero");
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
            self.error(path, format!("/databases/{name}"), format!("database '{name}' is declared in more than one file"));
            return;
        }
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
        let connect_timeout = self.duration(path, ptr("connect_timeout"), spec.connect_timeout.as_deref(), Duration::from_secs(5));
        let lock_timeout = self.duration(path, ptr("lock_timeout"), spec.lock_timeout.as_deref(), Duration::from_secs(5));
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
        if let Some(first) = self.rule_names.get(name) {
            let msg = format!("rule name '{name}' is already used (first in {}); rule names must be unique", first.display());
            self.error(path, pointer, msg);
        } else {
            self.rule_names.insert(name.to_string(), path.to_path_buf());
        }
    }

    fn claim_metric_name(&mut self, path: &Path, pointer: String, metric: &str, rule: &str) {
        if let Some(first) = self.metric_names.get(metric) {
            let msg = format!("metric name '{metric}' is already produced by rule '{first}'; metric names must be unique");
            self.error(path, pointer, msg);
        } else if metric.starts_with(crate::SELF_METRIC_PREFIX) {
            self.error(path, pointer, format!("metric names starting with '{}' are reserved for the exporter's own metrics", crate::SELF_METRIC_PREFIX));
        } else {
            self.metric_names.insert(metric.to_string(), rule.to_string());
        }
    }

    fn signal(&mut self, path: &Path, index: usize, s: SignalSpec) {
        let base = format!("/signals/{index}");
        let ptr = |k: &str| format!("{base}/{k}");
        self.claim_rule_name(path, ptr("name"), &s.name);
        self.claim_metric_name(path, ptr("metrics/up/name"), &s.metrics.up.name, &s.name);
        self.claim_metric_name(path, ptr("metrics/error/name"), &s.metrics.error.name, &s.name);

        let interval = self.duration(path, ptr("interval"), s.interval.as_deref(), DEFAULT_INTERVAL);
        let timeout = self.duration(path, ptr("timeout"), s.timeout.as_deref(), DEFAULT_TIMEOUT.min(interval));
        if timeout >= interval {
            self.error(path, ptr("timeout"), format!(
                "timeout ({}) must be shorter than interval ({}) so that a rule never overlaps itself",
                humantime::format_duration(timeout), humantime::format_duration(interval)));
        }

        let reason_label = s.reason_label.clone().unwrap_or_else(|| "reason".to_string());
        for label in &s.labels {
            check_label_name(self, path, ptr("labels"), label);
        }
        if s.labels.contains(&reason_label) {
            self.error(path, ptr("reason_label"), format!("reason label '{reason_label}' is also a target label; rename one of them"));
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
                for combo in expand_target(&s.labels, entry) {
                    if seen.insert(combo.clone()) {
                        out.push(combo);
                    }
                }
            }
            out
        });

        let min_rows = s.min_rows.unwrap_or(s.window);
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
        if let Err(e) = env.compile_expression(&s.success) {
            self.error(path, ptr("success"), format!("the success expression does not compile: {}", template::describe(&e)));
        }

        let rule = Rule {
            name: s.name,
            file: path.to_path_buf(),
            database: s.database,
            interval,
            timeout,
            max_rows: s.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
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
        if let Err(e) = template::render_query(&rule, template::ASSUMED_SERVER_VERSION_NUM) {
            self.error(path, ptr("query"), format!("the query template does not render: {}", template::describe(&e)));
        }
        self.set.rules.push(Arc::new(rule));
    }
}

fn check_label_name(ctx: &mut Ctx<'_>, path: &Path, pointer: String, label: &str) {
    if label.starts_with("__") {
        ctx.error(path, pointer, format!("label name '{label}' starts with '__', which Prometheus reserves"));
    }
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
    // serde_yaml appends " at line X column Y"; we print the position in front instead.
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

fn schema_message(err: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match &err.kind {
        K::AdditionalProperties { unexpected } => {
            format!("unknown key{} {}", if unexpected.len() > 1 { "s" } else { "" }, unexpected.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", "))
        }
        K::Required { property } => format!("missing required key {property}"),
        _ => err.to_string(),
    }
}
