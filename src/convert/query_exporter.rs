//! query-exporter (5.x): `databases`, `metrics` and `queries`.
//!
//! Each query becomes one rule on its databases; each metric it fills becomes a family whose value
//! is the column named as the metric, labelled by the metric's `labels` columns. The peer labels
//! every series with `database` (the database's name) and the database's own `labels`: the rule
//! does the same with `database_label: database` and static labels. `interval` and an even
//! `schedule` become the rule's interval, `timeout` its timeout.
//!
//! Not representable, and reported: counters that `increment` (the default: the peer adds each
//! result to a running total, a rule exports what the query returns; `increment: false` converts),
//! histograms, summaries and enums (rules have no such families), queries with `parameters`,
//! `connect-sql`, and labels that differ between the databases of one query. prometheus_client's
//! `*_created` series beside each counter are the client library's, and have no counterpart.

use std::path::PathBuf;

use serde_yaml::Value;

use super::dsn::{self, DsnSite};
use super::output::{sql_template, EntryOut, FamilyOut, KindOut, RuleOut, RulesOut, ValueOut};
use super::peer_file::{
    identifier, key_segment, scalar_text, unknown_keys, ConvertError, Node, PeerFile, Report, ValueExt,
};
use super::schedule;

/// The label the peer puts the database's name in.
const DATABASE_LABEL: &str = "database";

pub(super) fn convert(report: &mut Report, files: &[PathBuf]) -> Result<RulesOut, ConvertError> {
    let mut rules = RulesOut::default();
    for path in files {
        let file = PeerFile::read(path)?;
        unknown_keys(report, Node::root(&file), &["databases", "metrics", "queries", "builtin-metrics"]);
        if file.doc.get("queries").is_none() {
            return Err(file.shape_error(
                "",
                "no `queries:` mapping",
                "query-exporter's databases, metrics and queries",
            ));
        }
        for (name, db) in file.doc.entries("databases") {
            let pointer = format!("/databases/{}", key_segment(&name));
            rules.databases.push(database(report, Node { file: &file, value: db, pointer: &pointer }, &name));
        }
        for (name, query) in file.doc.entries("queries") {
            let pointer = format!("/queries/{}", key_segment(&name));
            rules.metrics.push(query_rule(report, Node { file: &file, value: query, pointer: &pointer }, &name));
        }
    }
    Ok(rules)
}

fn database(report: &mut Report, node: Node<'_>, name: &str) -> super::output::DatabaseOut {
    let Node { file, value: db, pointer } = node;
    let key = identifier(name);
    let mut comments = unknown_keys(report, node, &["dsn", "labels", "connect-sql", "keep-connected", "autocommit"]);
    if db.get("connect-sql").is_some() {
        comments.push(report.left_out(
            file,
            &format!("{pointer}/connect-sql"),
            format!(
                "connect-sql of database '{name}': rule sessions are the exporter's own (read-only, its own timeouts)"
            ),
        ));
    }
    let dsn_pointer = format!("{pointer}/dsn");
    let mut out = match db.get("dsn") {
        Some(Value::String(text)) if text.starts_with("env:") => {
            dsn::from_variable(report, &key, text.trim_start_matches("env:"))
        }
        Some(Value::String(text)) => {
            dsn::database(report, &DsnSite { file, pointer: &dsn_pointer, database: &key }, text)
        }
        Some(Value::Mapping(_)) => {
            let dsn_value = db.get("dsn").unwrap_or(&Value::Null);
            let text = dsn_from_parts(dsn_value);
            dsn::database(report, &DsnSite { file, pointer: &dsn_pointer, database: &key }, &text)
        }
        _ => {
            comments.push(report.left_out(file, pointer, format!("database '{name}' has no dsn")));
            dsn::from_variable(report, &key, &format!("{}_DSN", key.to_ascii_uppercase()))
        }
    };
    out.comments.splice(0..0, comments);
    out
}

/// query-exporter's DSN as a mapping (`dialect`, `user`, `password`, `host`, `port`, `database`,
/// `options`) as a URL.
fn dsn_from_parts(parts: &Value) -> String {
    let get = |k: &str| parts.text(k).unwrap_or_default();
    let (user, password) = (get("user"), get("password"));
    let auth = if user.is_empty() {
        String::new()
    } else if password.is_empty() {
        format!("{user}@")
    } else {
        format!("{user}:{password}@")
    };
    let port = match get("port") {
        p if p.is_empty() => p,
        p => format!(":{p}"),
    };
    let options: Vec<String> =
        parts.entries("options").into_iter().filter_map(|(k, v)| scalar_text(v).map(|v| format!("{k}={v}"))).collect();
    let query = if options.is_empty() { String::new() } else { format!("?{}", options.join("&")) };
    format!("{}://{auth}{}{port}/{}{query}", get("dialect"), get("host"), get("database"))
}

fn query_rule(report: &mut Report, node: Node<'_>, name: &str) -> EntryOut {
    let Node { file, value: query, pointer } = node;
    let mut rule = RuleOut {
        name: identifier(name),
        database_label: Some(DATABASE_LABEL.to_string()),
        comments: vec![format!("{} query '{name}'", file.at(pointer))],
        ..RuleOut::default()
    };
    rule.comments.extend(unknown_keys(
        report,
        node,
        &["databases", "metrics", "sql", "interval", "schedule", "timeout", "parameters"],
    ));
    if query.get("parameters").is_some() {
        return EntryOut::Comment(report.left_out(
            file,
            &format!("{pointer}/parameters"),
            format!("query '{name}' runs once per set of `parameters`; a rule runs its query once"),
        ));
    }
    let Some(sql) = query.text("sql") else {
        return EntryOut::Comment(report.left_out(file, pointer, format!("query '{name}' has no sql")));
    };
    rule.query = sql_template(&sql);
    let databases = query.strings("databases");
    rule.databases = databases.iter().map(|d| identifier(d)).collect();
    for d in &databases {
        if identifier(d) != *d {
            rule.comments.push(report.left_out(
                file,
                &format!("{pointer}/databases"),
                format!(
                    "database name '{d}' is not an identifier; its series are labelled database=\"{}\"",
                    identifier(d)
                ),
            ));
        }
    }
    schedule_of(report, node, &mut rule);
    let static_labels = database_labels(report, node, &databases, &mut rule.comments);
    for metric in query.strings("metrics") {
        let metric_pointer = format!("/metrics/{}", key_segment(&metric));
        match metric_family(report, file, &metric, &metric_pointer) {
            Ok(mut family) => {
                family.static_labels = static_labels.clone();
                rule.families.push(family);
            }
            Err(comment) => rule.comments.push(comment),
        }
    }
    if rule.families.is_empty() || rule.databases.is_empty() {
        let mut text = rule.comments.join("\n");
        text.push_str(&format!("\nquery '{name}' has no metric or database that converts; no rule"));
        return EntryOut::Comment(text);
    }
    EntryOut::Rule(rule)
}

/// `interval`, `schedule` and `timeout` onto `rule`.
fn schedule_of(report: &mut Report, node: Node<'_>, rule: &mut RuleOut) {
    let Node { file, value: query, pointer } = node;
    if let Some(cron) = query.text("schedule") {
        match schedule::cron_period_millis(&cron) {
            Some(ms) if ms >= 1000 => rule.interval = Some(schedule::duration_text(ms)),
            _ => rule.comments.push(report.left_out(
                file,
                &format!("{pointer}/schedule"),
                format!("schedule {cron:?} does not fire at an even period; the rule runs every 1m (set its interval)"),
            )),
        }
    } else if let Some(text) = query.text("interval") {
        match schedule::seconds_or_duration_millis(&text) {
            Some(ms) if ms >= 1000 => rule.interval = Some(schedule::duration_text(ms)),
            _ => rule.comments.push(report.left_out(
                file,
                &format!("{pointer}/interval"),
                format!("interval {text:?} is not a duration of at least 1s; the rule runs every 1m"),
            )),
        }
    }
    if let Some(text) = query.text("timeout") {
        match schedule::seconds_or_duration_millis(&text) {
            Some(ms) if ms >= 1 => rule.timeout = Some(schedule::duration_text(ms)),
            _ => rule.comments.push(report.left_out(
                file,
                &format!("{pointer}/timeout"),
                format!("timeout {text:?} is not a duration; the rule's default timeout applies"),
            )),
        }
    }
}

/// The databases' own `labels`, the same on every database of the query, as static labels.
fn database_labels(
    report: &mut Report,
    query: Node<'_>,
    databases: &[String],
    comments: &mut Vec<String>,
) -> Vec<(String, String)> {
    let Node { file, pointer, .. } = query;
    let labels_of = |db: &str| -> Vec<(String, String)> {
        let Some(spec) = file.doc.get("databases").and_then(|d| d.get(db)) else { return Vec::new() };
        let mut labels: Vec<(String, String)> =
            spec.entries("labels").into_iter().filter_map(|(k, v)| scalar_text(v).map(|v| (k, v))).collect();
        labels.sort();
        labels
    };
    let Some(first) = databases.first() else { return Vec::new() };
    let labels = labels_of(first);
    if databases.iter().any(|d| labels_of(d) != labels) {
        comments.push(report.left_out(
            file,
            &format!("{pointer}/databases"),
            "the databases of this query have different `labels`: a rule's static labels are the same on every database; none are set",
        ));
        return Vec::new();
    }
    labels
}

/// The family of the metric at `pointer`, or the comment saying why it does not convert.
fn metric_family(report: &mut Report, file: &PeerFile, metric: &str, pointer: &str) -> Result<FamilyOut, String> {
    let Some(spec) = file.doc.get("metrics").and_then(|m| m.get(metric)) else {
        return Err(report.left_out(file, pointer, format!("metric '{metric}' is not declared under `metrics:`")));
    };
    let help = spec.text("description").unwrap_or_default();
    let kind = spec.text("type").unwrap_or_default();
    let value = ValueOut::Column(metric.to_string());
    // prometheus_client exports a counter `x` as `x_total`.
    let counter_name = if metric.ends_with("_total") { metric.to_string() } else { format!("{metric}_total") };
    let mut family = match kind.as_str() {
        "gauge" => FamilyOut::new(metric, &help, KindOut::Gauge, value),
        "counter" if spec.get("increment").and_then(Value::as_bool) == Some(false) => {
            FamilyOut::new(&counter_name, &help, KindOut::Counter, value)
        }
        "counter" => {
            return Err(report.left_out(
                file,
                pointer,
                format!(
                    "counter '{metric}' (family {counter_name}) increments by each result (increment: true, the default); a rule exports \
                     the value the query returns: make the query return the running total and set increment: false"
                ),
            ))
        }
        other => {
            return Err(report.left_out(file, pointer, format!("metric '{metric}' is a {other}: rules have no {other} families")))
        }
    };
    family.key_labels = spec.strings("labels");
    if spec.get("expiration").is_some() {
        family.comments.push(format!(
            "{}: expiration needs no setting here: every evaluation replaces the family's series",
            file.at(&format!("{pointer}/expiration"))
        ));
    }
    family.comments.extend(unknown_keys(
        report,
        Node { file, value: spec, pointer },
        &["type", "description", "labels", "buckets", "states", "expiration", "increment"],
    ));
    Ok(family)
}
