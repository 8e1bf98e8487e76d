//! burningalchemist/sql_exporter: a configuration (`sql_exporter.yml`) with a `target` or `jobs`,
//! and collectors inline (`collectors:`) or in `collector_files` (globs, relative to the file).
//!
//! Each query of a collector (its `queries:` entry named by `query_ref`, or a metric's own `query`)
//! becomes one rule on the collector's targets; each metric a family with its `type`, `help`,
//! `key_labels`, `static_labels`, and its `values` (several unpivoted under `value_label`).
//! `static_value` becomes a constant column added around the query. `min_interval` becomes the
//! rule's interval (without it the peer queries on every scrape; a rule runs every minute).
//! In `jobs` mode the peer labels each series with `job` and `instance` (the target's name) and the
//! `static_configs` labels: the rule does the same with a static `job` label,
//! `database_label: instance` and static labels. `timestamp_value` is reported: rules export no
//! sample timestamps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::dsn::{self, DsnSite};
use super::output::{sql_template, EntryOut, FamilyOut, KindOut, RuleOut, RulesOut, ValueOut};
use super::peer_file::{identifier, scalar_text, unknown_keys, ConvertError, Node, PeerFile, Report, ValueExt};
use super::schedule;

/// The label the peer puts a target's name in, in `jobs` mode.
const INSTANCE_LABEL: &str = "instance";

/// A collector and the file it was read from.
struct Collector {
    file: usize,
    pointer: String,
    name: String,
}

/// Where a collector runs: its databases, and the labels the peer adds there.
#[derive(Default, Clone)]
struct Placement {
    databases: Vec<String>,
    /// `jobs` mode: the `instance` label names the database.
    instance_label: bool,
    static_labels: Vec<(String, String)>,
}

pub(super) fn convert(report: &mut Report, files: &[PathBuf]) -> Result<RulesOut, ConvertError> {
    let Some(config_path) = files.first() else {
        return Err(ConvertError { message: "--convert sql_exporter: no configuration file given".to_string() });
    };
    let mut peer_files = vec![PeerFile::read(config_path)?];
    let mut collectors = Vec::new();
    let config = &peer_files[0];
    unknown_keys(report, Node::root(config), &["global", "target", "jobs", "collectors", "collector_files"]);
    for (i, c) in config.doc.items("collectors").into_iter().enumerate() {
        collectors.push(Collector {
            file: 0,
            pointer: format!("/collectors/{i}"),
            name: c.text("collector_name").unwrap_or_default(),
        });
    }
    let mut paths: Vec<PathBuf> = files[1..].to_vec();
    for pattern in config.doc.strings("collector_files") {
        paths.extend(glob(config_path.parent().unwrap_or(Path::new(".")), &pattern));
    }
    paths.sort();
    paths.dedup();
    for path in paths {
        let file = PeerFile::read(&path)?;
        collectors.push(Collector {
            file: peer_files.len(),
            pointer: String::new(),
            name: file.doc.text("collector_name").unwrap_or_default(),
        });
        peer_files.push(file);
    }
    let mut rules = RulesOut::default();
    let default_interval =
        peer_files[0].doc.get("global").and_then(|g| g.text("min_interval")).and_then(|t| interval_of(&t));
    let placements = placements(report, &peer_files[0], &collectors, &mut rules);
    for collector in &collectors {
        let file = &peer_files[collector.file];
        let Some(placement) = placements.get(&collector.name) else {
            rules.metrics.push(EntryOut::Comment(format!(
                "{}: collector '{}' is used by no target or job; not converted (nothing ran it)",
                file.at(&collector.pointer),
                collector.name
            )));
            continue;
        };
        let ctx = CollectorCtx { file, collector, placement, default_interval: default_interval.clone() };
        collector_rules(report, &ctx, &mut rules);
    }
    Ok(rules)
}

/// Files in `dir` matching `pattern` (`*` and `?` in its last component).
fn glob(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = dir.join(pattern);
    let (parent, name) = match (full.parent(), full.file_name().and_then(|n| n.to_str())) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_string()),
        _ => return Vec::new(),
    };
    let Ok(entries) = std::fs::read_dir(&parent) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| wildcard_match(&name, n)))
        .collect()
}

/// Whether `text` matches `pattern`, where `*` is any run of characters and `?` any one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
    dp[0][0] = true;
    for i in 1..=p.len() {
        dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
        for j in 1..=t.len() {
            dp[i][j] = match p[i - 1] {
                '*' => dp[i - 1][j] || dp[i][j - 1],
                '?' => dp[i - 1][j - 1],
                c => dp[i - 1][j - 1] && c == t[j - 1],
            };
        }
    }
    dp[p.len()][t.len()]
}

/// The databases of the `target` or of every job's targets, and which collectors run where.
fn placements(
    report: &mut Report,
    config: &PeerFile,
    collectors: &[Collector],
    rules: &mut RulesOut,
) -> BTreeMap<String, Placement> {
    let mut out: BTreeMap<String, Placement> = BTreeMap::new();
    // A collector placed twice with other labels (two jobs, or two static_configs with their own
    // labels) would need two sets of static labels on one family: the first set is kept and the
    // others are reported.
    let mut relabelled: Vec<String> = Vec::new();
    let mut use_collectors = |names: &[String], placement: &Placement, out: &mut BTreeMap<String, Placement>| {
        for c in collectors.iter().filter(|c| names.iter().any(|n| wildcard_match(n, &c.name))) {
            let placed = out.contains_key(&c.name);
            let entry = out.entry(c.name.clone()).or_default();
            if placed
                && (entry.static_labels != placement.static_labels || entry.instance_label != placement.instance_label)
            {
                relabelled.push(c.name.clone());
            } else {
                entry.static_labels = placement.static_labels.clone();
            }
            entry.databases.extend(placement.databases.iter().cloned());
            entry.instance_label |= placement.instance_label;
        }
    };
    if let Some(target) = config.doc.get("target") {
        unknown_keys(
            report,
            Node { file: config, value: target, pointer: "/target" },
            &["name", "data_source_name", "collectors", "enable_ping"],
        );
        let name = identifier(&target.text("name").unwrap_or_else(|| "target".to_string()));
        let site = DsnSite { file: config, pointer: "/target/data_source_name", database: &name };
        rules.databases.push(dsn::database(report, &site, &target.text("data_source_name").unwrap_or_default()));
        let placement = Placement { databases: vec![name], ..Placement::default() };
        use_collectors(&target.strings("collectors"), &placement, &mut out);
    }
    for (j, job) in config.doc.items("jobs").into_iter().enumerate() {
        let job_name = job.text("job_name").unwrap_or_default();
        for (s, static_config) in job.items("static_configs").into_iter().enumerate() {
            let pointer = format!("/jobs/{j}/static_configs/{s}");
            let mut placement = Placement { instance_label: true, ..Placement::default() };
            placement.static_labels.push(("job".to_string(), job_name.clone()));
            for (k, v) in static_config.entries("labels") {
                placement.static_labels.push((k, scalar_text(v).unwrap_or_default()));
            }
            placement.static_labels.sort();
            for (target, dsn_value) in static_config.entries("targets") {
                let name = identifier(&target);
                let at = format!("{pointer}/targets/{}", super::peer_file::key_segment(&target));
                let site = DsnSite { file: config, pointer: &at, database: &name };
                rules.databases.push(dsn::database(report, &site, &scalar_text(dsn_value).unwrap_or_default()));
                placement.databases.push(name);
            }
            use_collectors(&job.strings("collectors"), &placement, &mut out);
        }
    }
    relabelled.sort();
    relabelled.dedup();
    for name in relabelled {
        let message = format!(
            "collector '{name}' runs on targets with different labels (job, static_configs labels): one family has \
             one set of static labels; every target of the rule gets the first set"
        );
        rules.metrics.push(EntryOut::Comment(report.left_out(config, "/jobs", message)));
    }
    out
}

/// One query of a collector and the metrics that read it.
struct QueryGroup<'a> {
    name: String,
    sql: String,
    metrics: Vec<(String, &'a Value)>,
}

/// `min_interval` as a rule interval: none for 0s (the peer's "on every scrape").
fn interval_of(text: &str) -> Option<String> {
    match schedule::go_duration_millis(text) {
        Some(ms) if ms >= 1000 => Some(schedule::duration_text(ms)),
        _ => None,
    }
}

/// One collector, and where it runs.
struct CollectorCtx<'a> {
    file: &'a PeerFile,
    collector: &'a Collector,
    placement: &'a Placement,
    /// `global.min_interval`.
    default_interval: Option<String>,
}

fn collector_rules(report: &mut Report, ctx: &CollectorCtx<'_>, rules: &mut RulesOut) {
    let (file, collector, placement) = (ctx.file, ctx.collector, ctx.placement);
    let base = collector.pointer.as_str();
    let doc = if base.is_empty() { &file.doc } else { file.doc.pointer_value(base) };
    let mut comments = unknown_keys(
        report,
        Node { file, value: doc, pointer: base },
        &["collector_name", "min_interval", "metrics", "queries"],
    );
    let interval = match doc.text("min_interval") {
        Some(text) => interval_of(&text),
        None => ctx.default_interval.clone(),
    };
    let mut groups: Vec<QueryGroup<'_>> = Vec::new();
    for (q, query) in doc.items("queries").into_iter().enumerate() {
        let name = query.text("query_name").unwrap_or_else(|| format!("query{q}"));
        groups.push(QueryGroup { name, sql: query.text("query").unwrap_or_default(), metrics: Vec::new() });
    }
    for (m, metric) in doc.items("metrics").into_iter().enumerate() {
        let pointer = format!("{base}/metrics/{m}");
        let name = metric.text("metric_name").unwrap_or_default();
        match (metric.text("query"), metric.text("query_ref")) {
            (Some(sql), _) => groups.push(QueryGroup { name: name.clone(), sql, metrics: vec![(pointer, metric)] }),
            (None, Some(reference)) => match groups.iter_mut().find(|g| g.name == reference) {
                Some(group) => group.metrics.push((pointer, metric)),
                None => comments.push(report.left_out(
                    file,
                    &pointer,
                    format!(
                        "metric '{name}': query_ref '{reference}' names no query of collector '{}'",
                        collector.name
                    ),
                )),
            },
            (None, None) => {
                comments.push(report.left_out(file, &pointer, format!("metric '{name}' has no query or query_ref")))
            }
        }
    }
    for group in groups.into_iter().filter(|g| !g.metrics.is_empty()) {
        let mut rule = RuleOut {
            name: identifier(&format!("{}_{}", collector.name, group.name)),
            databases: placement.databases.clone(),
            database_label: placement.instance_label.then(|| INSTANCE_LABEL.to_string()),
            interval: interval.clone(),
            comments: std::mem::take(&mut comments),
            ..RuleOut::default()
        };
        rule.comments.insert(0, format!("{} collector '{}', query '{}'", file.at(base), collector.name, group.name));
        let mut constants = Vec::new();
        for (pointer, metric) in &group.metrics {
            match metric_family(report, Node { file, value: metric, pointer }, &mut constants) {
                Ok(mut family) => {
                    family.static_labels.extend(placement.static_labels.iter().cloned());
                    family.static_labels.sort();
                    rule.families.push(family);
                }
                Err(comment) => rule.comments.push(comment),
            }
        }
        rule.query = with_constants(&sql_template(&group.sql), &constants);
        rules.metrics.push(if rule.families.is_empty() {
            EntryOut::Comment(rule.comments.join("\n"))
        } else {
            EntryOut::Rule(rule)
        });
    }
}

/// The query with constant columns (`static_value`s) added around it.
fn with_constants(sql: &str, constants: &[(String, String)]) -> String {
    if constants.is_empty() {
        return sql.to_string();
    }
    let columns: Vec<String> = constants.iter().map(|(name, value)| format!("{value}::float8 AS {name}")).collect();
    format!("SELECT peer_query.*, {}\nFROM (\n{sql}\n) AS peer_query", columns.join(", "))
}

/// One metric's family; a `static_value` adds a constant column to `constants`.
fn metric_family(
    report: &mut Report,
    node: Node<'_>,
    constants: &mut Vec<(String, String)>,
) -> Result<FamilyOut, String> {
    let Node { file, value: metric, pointer } = node;
    let name = metric.text("metric_name").unwrap_or_default();
    let mut comments = unknown_keys(
        report,
        node,
        &[
            "metric_name",
            "type",
            "help",
            "key_labels",
            "static_labels",
            "values",
            "value_label",
            "static_value",
            "timestamp_value",
            "query",
            "query_ref",
        ],
    );
    if metric.get("timestamp_value").is_some() {
        comments.push(report.left_out(
            file,
            &format!("{pointer}/timestamp_value"),
            format!(
                "timestamp_value of metric '{name}': rules export no sample timestamps (the scrape's time applies)"
            ),
        ));
    }
    let kind = match metric.text("type").unwrap_or_default().to_ascii_lowercase().as_str() {
        "counter" => KindOut::Counter,
        "gauge" => KindOut::Gauge,
        other => {
            return Err(report.left_out(
                file,
                pointer,
                format!("metric '{name}' has type {other:?}; expected gauge or counter"),
            ))
        }
    };
    let values = metric.strings("values");
    let value = match (metric.text("static_value"), values.as_slice(), metric.text("value_label")) {
        (Some(constant), _, _) if constant.parse::<f64>().is_ok() => {
            let column = format!("static_value_{}", constants.len() + 1);
            constants.push((column.clone(), constant));
            ValueOut::Column(column)
        }
        (_, [one], None) => ValueOut::Column(one.clone()),
        (_, [_, ..], Some(label)) => ValueOut::Columns { columns: values.clone(), label },
        _ => {
            return Err(report.left_out(
                file,
                pointer,
                format!("metric '{name}' has no values (or several without value_label)"),
            ))
        }
    };
    let mut family = FamilyOut::new(&name, &metric.text("help").unwrap_or_default(), kind, value);
    family.key_labels = metric.strings("key_labels");
    family.static_labels =
        metric.entries("static_labels").into_iter().map(|(k, v)| (k, scalar_text(v).unwrap_or_default())).collect();
    family.comments = comments;
    Ok(family)
}

/// The node at a JSON pointer of a YAML document (Null when absent).
trait PointerValue {
    fn pointer_value(&self, pointer: &str) -> &Value;
}

impl PointerValue for Value {
    fn pointer_value(&self, pointer: &str) -> &Value {
        let mut node = self;
        for segment in pointer.split('/').skip(1) {
            node = match node {
                Value::Sequence(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                other => other.get(segment),
            }
            .unwrap_or(&Value::Null);
        }
        node
    }
}
