//! postgres_exporter's `queries.yaml` (`--extend.query-path`), as version 0.11 exports it.
//!
//! Each top-level key is a namespace: one query, one rule. Each column's `usage` says what it is:
//!
//! | usage | postgres_exporter 0.11 exports | rule |
//! |---|---|---|
//! | `LABEL` | a label of every family of the query | a key label |
//! | `GAUGE`, `COUNTER` | `<namespace>_<column>` | a gauge or counter family (a counter keeps its name) |
//! | `MAPPEDMETRIC` | `<namespace>_<column>`, the column read as a number: 0.11 does not apply `mapping` to a queries.yaml column (a text value exports nothing) | a gauge of the column read as a number the same way; the unapplied mapping is said as a difference |
//! | `DURATION` | `<namespace>_<column>_milliseconds`, the column read as a number | a gauge of that name, read the same way |
//! | `DISCARD` | nothing | nothing |
//! | `HISTOGRAM` | a histogram from the `_bucket`, `_sum` and `_count` columns | not representable: reported |
//!
//! `cache_seconds` becomes the rule's interval; `runonserver` (a semver range of server versions)
//! becomes a template condition on `server_version_num` that runs an empty query of the same
//! columns on other servers (0.11 ignores it in queries.yaml, which is said as a difference);
//! `master` needs nothing (a rule runs on the database of its DSN only).
//! The DSN is the peer's own `DATA_SOURCE_NAME`. The peer adds a `server="host:port"` label to
//! every series; the rule does not (the exporter's own `sql_signal_exporter_rule_up` says which
//! database a rule reads).

use std::path::PathBuf;

use serde_yaml::Value;

use super::dsn;
use super::output::{sql_template, EntryOut, FamilyOut, KindOut, RuleOut, RulesOut, ValueOut};
use super::peer_file::{key_segment, unknown_keys, ConvertError, Node, PeerFile, Report, ValueExt};
use super::schedule;

/// The database every rule reads: the peer's DSN variable.
const DATABASE: &str = "postgres";
const DSN_VARIABLE: &str = "DATA_SOURCE_NAME";

pub(super) fn convert(report: &mut Report, files: &[PathBuf]) -> Result<RulesOut, ConvertError> {
    let mut rules = RulesOut::default();
    rules.databases.push(dsn::from_variable(report, DATABASE, DSN_VARIABLE));
    for path in files {
        let file = PeerFile::read(path)?;
        if !file.doc.is_mapping() {
            return Err(file.shape_error(
                "",
                "the document is not a mapping",
                "namespaces, each with query and metrics",
            ));
        }
        for namespace in file.doc.keys() {
            let pointer = format!("/{}", key_segment(&namespace));
            let Some(spec) = file.doc.get(namespace.as_str()) else { continue };
            rules.metrics.push(namespace_rule(
                report,
                Node { file: &file, value: spec, pointer: &pointer },
                &namespace,
            ));
        }
    }
    Ok(rules)
}

/// A column of a namespace, with its place in the file.
struct Column {
    name: String,
    usage: String,
    help: String,
    pointer: String,
}

fn columns(spec: &Value, pointer: &str) -> Vec<Column> {
    let mut out = Vec::new();
    for (i, item) in spec.items("metrics").into_iter().enumerate() {
        for (name, mapping) in item.pairs() {
            out.push(Column {
                usage: mapping.text("usage").unwrap_or_default().to_ascii_uppercase(),
                help: mapping.text("description").unwrap_or_default(),
                pointer: format!("{pointer}/metrics/{i}/{}", key_segment(&name)),
                name,
            });
        }
    }
    out
}

/// One namespace: one rule, or a comment when nothing of it converts.
fn namespace_rule(report: &mut Report, node: Node<'_>, namespace: &str) -> EntryOut {
    let Node { file, value: spec, pointer } = node;
    let mut rule = RuleOut {
        name: super::peer_file::identifier(namespace),
        databases: vec![DATABASE.to_string()],
        comments: vec![format!("{} namespace '{namespace}'", file.at(pointer))],
        ..RuleOut::default()
    };
    rule.comments.extend(unknown_keys(report, node, &["query", "metrics", "master", "cache_seconds", "runonserver"]));
    let Some(query) = spec.text("query") else {
        return EntryOut::Comment(report.left_out(file, pointer, format!("namespace '{namespace}' has no query")));
    };
    if let Some(seconds) = spec.text("cache_seconds") {
        match schedule::seconds_or_duration_millis(&seconds) {
            Some(ms) if ms >= 1000 => rule.interval = Some(schedule::duration_text(ms)),
            _ => rule.comments.push(report.left_out(
                file,
                &format!("{pointer}/cache_seconds"),
                format!("cache_seconds {seconds:?} is not a number of seconds of at least 1"),
            )),
        }
    }
    let columns = columns(spec, pointer);
    let labels: Vec<String> = columns.iter().filter(|c| c.usage == "LABEL").map(|c| c.name.clone()).collect();
    for column in &columns {
        if let Some(family) = column_family(report, file, namespace, column, &mut rule.comments) {
            rule.families.push(FamilyOut { key_labels: labels.clone(), ..family });
        }
    }
    let query = match spec.text("runonserver") {
        Some(range) => match version_condition(&range) {
            Some(condition) => {
                let families: Vec<String> = rule.families.iter().map(|f| f.name.clone()).collect();
                rule.comments.push(report.differs(
                    file,
                    &format!("{pointer}/runonserver"),
                    format!(
                        "runonserver {range:?} is honoured here, while postgres_exporter 0.11 ignores it in queries.yaml \
                         (tested): on a server outside the range the peer runs the query and exports {}, the rule does not",
                        families.join(", ")
                    ),
                ));
                guarded_query(&query, &condition, &columns)
            }
            None => {
                rule.comments.push(report.left_out(
                    file,
                    &format!("{pointer}/runonserver"),
                    format!("runonserver {range:?} is not a semver range this converter reads; the query runs on every server"),
                ));
                sql_template(&query)
            }
        },
        None => sql_template(&query),
    };
    rule.query = with_number_columns(&query, &columns);
    if rule.families.is_empty() {
        let mut text = rule.comments.join("\n");
        text.push_str(&format!("\nnamespace '{namespace}' has no column that converts; no rule"));
        return EntryOut::Comment(text);
    }
    EntryOut::Rule(rule)
}

/// The family of one column, or `None` (a label, a discarded column, or one left out).
fn column_family(
    report: &mut Report,
    file: &PeerFile,
    namespace: &str,
    column: &Column,
    comments: &mut Vec<String>,
) -> Option<FamilyOut> {
    let name = format!("{namespace}_{}", column.name);
    let value = ValueOut::Column(column.name.clone());
    let as_number = ValueOut::Column(number_column(&column.name));
    match column.usage.as_str() {
        "LABEL" | "DISCARD" => None,
        "GAUGE" => Some(FamilyOut::new(&name, &column.help, KindOut::Gauge, value)),
        "COUNTER" => Some(FamilyOut::new(&name, &column.help, KindOut::Counter, value)),
        "DURATION" => Some(FamilyOut::new(&format!("{name}_milliseconds"), &column.help, KindOut::Gauge, as_number)),
        "MAPPEDMETRIC" => {
            let mut family = FamilyOut::new(&name, &column.help, KindOut::Gauge, as_number);
            family.comments.push(report.differs(
                file,
                &column.pointer,
                format!(
                    "the mapping of MAPPEDMETRIC column '{}' (family {name}) is not applied: postgres_exporter 0.11 \
                     reads a queries.yaml column as a number and ignores its mapping (tested), and so does this rule; \
                     to map text, write a CASE in the query",
                    column.name
                ),
            ));
            Some(family)
        }
        "HISTOGRAM" => {
            comments.push(report.left_out(
                file,
                &column.pointer,
                format!(
                    "HISTOGRAM column '{}' (family {name}, from its _bucket, _sum and _count columns): rules have no histogram family",
                    column.name
                ),
            ));
            None
        }
        other => {
            comments.push(report.left_out(
                file,
                &column.pointer,
                format!("column '{}' has usage {other:?}, which postgres_exporter does not define either", column.name),
            ));
            None
        }
    }
}

/// The column a MAPPEDMETRIC or DURATION column is read from, as a number.
fn number_column(column: &str) -> String {
    format!("{column}_as_number")
}

/// Whether postgres_exporter 0.11 reads the column's text as a number (`strconv.ParseFloat`),
/// exporting nothing for a value that is not one.
fn read_as_number(usage: &str) -> bool {
    matches!(usage, "MAPPEDMETRIC" | "DURATION")
}

/// The query with a numeric copy of each MAPPEDMETRIC and DURATION column: NULL where the text is
/// not a number, so that such a value exports no series, as in the peer, instead of failing the rule.
fn with_number_columns(query: &str, columns: &[Column]) -> String {
    let numbers: Vec<String> = columns
        .iter()
        .filter(|c| read_as_number(&c.usage))
        .map(|c| {
            format!(
                "CASE WHEN ({col})::text ~ '^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$' \
                 THEN ({col})::text::float8 END AS {}",
                number_column(&c.name),
                col = c.name
            )
        })
        .collect();
    if numbers.is_empty() {
        return query.to_string();
    }
    format!("SELECT peer_query.*,\n  {}\nFROM (\n{query}\n) AS peer_query", numbers.join(",\n  "))
}

/// The query on servers `condition` admits; elsewhere an empty result with the same columns, as the
/// peer exports nothing there.
fn guarded_query(query: &str, condition: &str, columns: &[Column]) -> String {
    let empty: Vec<String> = columns
        .iter()
        .filter(|c| c.usage != "DISCARD")
        .map(|c| {
            let ty = if c.usage == "LABEL" { "text" } else { "float8" };
            format!("NULL::{ty} AS {}", c.name)
        })
        .collect();
    format!(
        "{{% if {condition} %}}\n{}\n{{% else %}}\nSELECT {} WHERE false\n{{% endif %}}",
        sql_template(query),
        empty.join(", ")
    )
}

/// A semver range (`>=10.0.0`, `>=9.6.0 <10.0.0`, `>=9.4 || <9.0`) as a condition on
/// `server_version_num`, as postgres_exporter parses a server's version into semver.
fn version_condition(range: &str) -> Option<String> {
    let mut alternatives = Vec::new();
    for alternative in range.split("||") {
        let mut all = Vec::new();
        for comparator in alternative.split_whitespace() {
            let split = comparator.find(|c: char| c.is_ascii_digit())?;
            let (op, version) = comparator.split_at(split);
            let op = match op {
                ">=" | ">" | "<=" | "<" | "!=" => op,
                "" | "=" | "==" => "==",
                _ => return None,
            };
            all.push(format!("server_version_num {op} {}", version_num(version)?));
        }
        if all.is_empty() {
            return None;
        }
        alternatives.push(format!("({})", all.join(" and ")));
    }
    Some(alternatives.join(" or "))
}

/// `15.4.0` → 150004, `9.6.24` → 90624: PostgreSQL's `server_version_num` of a semver version.
fn version_num(version: &str) -> Option<u64> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().transpose().ok()?.unwrap_or(0);
    let patch = parts.next().transpose().ok()?.unwrap_or(0);
    Some(if major >= 10 { major * 10_000 + minor } else { major * 10_000 + minor * 100 + patch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_ranges_become_server_version_conditions() {
        assert_eq!(version_condition(">=10.0.0").as_deref(), Some("(server_version_num >= 100000)"));
        assert_eq!(
            version_condition(">=9.6.0 <10.0.0").as_deref(),
            Some("(server_version_num >= 90600 and server_version_num < 100000)")
        );
        assert_eq!(
            version_condition("<9.4.0 || >=15.2.0").as_deref(),
            Some("(server_version_num < 90400) or (server_version_num >= 150002)")
        );
        assert_eq!(version_condition("~1.2"), None);
    }
}
