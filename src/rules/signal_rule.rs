//! Building one health signal (an entry of `signals:`) into a [`SignalRule`], with the checks a schema
//! cannot express: labels that clash, targets that use exactly the declared labels, a success
//! expression that compiles and names only what a result has, a template that renders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::columns::columns_read;
use super::diagnostic::Diagnostic;
use super::endpoint::{RuleAt, SourceSpec};
use super::limits::{DEFAULT_MAX_ROWS, DEFAULT_MAX_SERIES, MAX_TARGETS};
use super::loader::Ctx;
use super::model::*;
use super::names::special_label_meaning;
use super::spec::{OneOrMany, SignalSpec};
use super::sql_text::unmentioned_column;
use super::template;

impl Ctx<'_> {
    pub(super) fn signal(&mut self, path: &Path, index: usize, s: SignalSpec) {
        let base = format!("/signals/{index}");
        let ptr = |k: &str| format!("{base}/{k}");
        self.claim_rule_name(path, ptr("name"), &s.name);
        self.claim_metric_name(path, ptr("metrics/up/name"), &s.metrics.up.name, &s.name);
        self.claim_metric_name(path, ptr("metrics/error/name"), &s.metrics.error.name, &s.name);

        let (interval, timeout) = self.interval_and_timeout(path, &base, s.interval.as_deref(), s.timeout.as_deref());

        let reason_label = self.signal_labels(path, &base, &s);
        let targets = self.signal_targets(path, &base, &s);

        let min_rows = self.signal_min_rows(path, &base, &s);
        let values: Vec<(String, ValueType)> = s.values.iter().map(|(c, t)| (c.clone(), *t)).collect();

        let reasons = signal_reasons(&s);

        let freshness = s.freshness.as_ref().map(|f| Freshness {
            column: f.column.clone(),
            max_age: self.duration(path, ptr("freshness/max_age"), Some(&f.max_age), Duration::from_secs(3600)),
        });

        self.signal_success(path, &base, &s, &values);

        let on_endpoint = self.rule_source(
            RuleAt { path, base: &base, name: &s.name },
            SourceSpec {
                database_named: s.database.is_some(),
                on_endpoint: s.on_endpoint,
                query: Some(s.query.clone()),
                queries: None,
            },
        );
        let (placement, health) = match on_endpoint {
            Some((e, health)) => (Placement::Endpoint(e), health),
            None => (Placement::Databases(vec![s.database.unwrap_or_default()]), RuleHealth::default()),
        };
        let rule = Rule {
            name: s.name,
            file: path.to_path_buf(),
            placement,
            health,
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
        // The query is rendered once every file is read (`query_renders`): its databases may be
        // declared in a later file, and their flavour decides what it is rendered for.
        self.request_templates(path, &base, &rule);
        self.set.rules.push(Arc::new(rule));
    }

    /// `min_rows`, by default the window.
    fn signal_min_rows(&mut self, path: &Path, base: &str, s: &SignalSpec) -> usize {
        // min_rows below window judges what there is; above window is legal but almost always a
        // mistake: a query that returns the newest `window` results per target can never satisfy it.
        let min_rows = s.min_rows.unwrap_or(s.window);
        if min_rows > s.window {
            let msg = format!(
                "min_rows ({min_rows}) is above window ({}): a target needs more results than are judged, and a query that returns only the newest window results per target makes every target too_few_rows",
                s.window
            );
            self.diags.push(Diagnostic::warning(path, format!("{base}/min_rows"), msg));
        }
        min_rows
    }

    /// The rule's one `query` renders for every server assumed for its sources (see
    /// [`RuleSet::assumed_servers`]), and a signal's mentions every column it is read by. An
    /// endpoint's metric rule renders its named queries instead (`query_templates`).
    pub(super) fn query_renders(&mut self, rule: &Rule, base: &str) {
        if matches!((&rule.kind, &rule.placement), (RuleKind::Metric(_), Placement::Endpoint(_))) {
            return;
        }
        let servers = self.set.assumed_servers(rule);
        let pointer = format!("{base}/query");
        let mut rendered = None;
        for server in &servers {
            match template::render_query_described(rule, server) {
                Err(msg) if !self.schema_reported(&rule.file, &pointer) => {
                    let which = if servers.len() > 1 { format!(" for {}", server.describe()) } else { String::new() };
                    self.error(
                        &rule.file,
                        pointer.clone(),
                        format!("the query template does not render{which}: {msg}"),
                    );
                }
                Err(_) => {}
                Ok(sql) => rendered = rendered.or(Some(sql)),
            }
        }
        let (Some(sql), RuleKind::Signal(_)) = (rendered, &rule.kind) else { return };
        for used in columns_read(rule) {
            let at = format!("{base}/{}", used.key);
            if let Some(msg) = unmentioned_column(&sql, &used.role, &used.column) {
                if !self.schema_reported(&rule.file, &at) {
                    self.warning(&rule.file, at, msg);
                }
            }
        }
    }

    /// The signal's label names checked, and its reason label's name.
    fn signal_labels(&mut self, path: &Path, base: &str, s: &SignalSpec) -> String {
        let ptr = |k: &str| format!("{base}/{k}");
        let reason_label = s.reason_label.clone().unwrap_or_else(|| "reason".to_string());
        for (i, label) in s.labels.iter().enumerate() {
            self.check_label_name(path, ptr(&format!("labels/{i}")), label);
            if let Some(meaning) = special_label_meaning(label) {
                let msg = format!(
                    "label name '{label}' has a special meaning in Prometheus ({meaning}); prefer another name"
                );
                self.diags.push(Diagnostic::warning(path, ptr(&format!("labels/{i}")), msg));
            }
        }
        if s.reason_label.is_some() {
            self.check_label_name(path, ptr("reason_label"), &reason_label);
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
        reason_label
    }

    /// The declared targets, each list expanded, checked against the labels.
    fn signal_targets(&mut self, path: &Path, base: &str, s: &SignalSpec) -> Option<Vec<Vec<String>>> {
        s.targets.as_ref().map(|entries| {
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
        })
    }

    /// Expressions must compile now, not at 3 a.m. on the first evaluation.
    fn signal_success(&mut self, path: &Path, base: &str, s: &SignalSpec, values: &[(String, ValueType)]) {
        let ptr = |k: &str| format!("{base}/{k}");
        let env = template::environment();
        match env.compile_expression(&s.success) {
            Err(e) => self.error(
                path,
                ptr("success"),
                format!("the success expression does not compile: {}", template::describe(&e)),
            ),
            Ok(expr) => {
                if let Some(msg) = success_problem(&env, &expr, &s.labels, values, &s.vars) {
                    self.error(path, ptr("success"), msg);
                }
            }
        }
    }
}

/// The reason label value of each failure: the file's, else the failure's own key.
fn signal_reasons(s: &SignalSpec) -> Reasons {
    let mut reasons = Reasons::default();
    for failure in Failure::ALL {
        if let Some(r) = s.reasons.get(failure.key()) {
            reasons.set(failure, r.clone());
        }
    }
    reasons
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
                return Some(format!("the success expression fails: {}", template::describe(&e)));
            }
        }
    }
    None
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
