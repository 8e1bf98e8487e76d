//! justwatchcom/sql_exporter (0.4.5, Debian's `prometheus-sql-exporter`): jobs, each with
//! connections and queries, and a top-level `queries:` map for `query_ref`.
//!
//! Every query becomes one rule and one gauge family `sql_<query name>`, its `values` unpivoted
//! under the label `col`, as the peer exports them. The peer adds the labels `sql_job` (the job),
//! `driver`, `host` (`host:port`), `database` and `user` (from the connection); the rule writes them
//! as static labels, read from the DSN, so the label sets stay equal. A job with several
//! connections cannot give each its own `host`, `database` and `user` in one family: it is reported,
//! and the rule labels each series with the connection's database name (`sql_connection`) instead.
//! `interval` and an even `cron_schedule` become the rule's interval; `startup_sql` is reported (a
//! rule's session settings are the exporter's own, read-only).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;

use super::dsn::{self, DsnSite};
use super::output::{sql_template, EntryOut, FamilyOut, KindOut, RuleOut, RulesOut, ValueOut};
use super::peer_file::{identifier, unknown_keys, ConvertError, Node, PeerFile, Report, ValueExt};
use super::schedule;

/// The label the peer puts the value column's name in.
const COLUMN_LABEL: &str = "col";

pub(super) fn convert(report: &mut Report, files: &[PathBuf]) -> Result<RulesOut, ConvertError> {
    let mut rules = RulesOut::default();
    let mut families = BTreeSet::new();
    for path in files {
        let file = PeerFile::read(path)?;
        unknown_keys(report, Node::root(&file), &["jobs", "queries"]);
        if file.doc.items("jobs").is_empty() {
            return Err(file.shape_error(
                "",
                "no `jobs:` list",
                "justwatchcom/sql_exporter's jobs, connections and queries",
            ));
        }
        for (j, job) in file.doc.items("jobs").into_iter().enumerate() {
            let ctx = JobCtx { file: &file, job, pointer: format!("/jobs/{j}") };
            job_rules(report, &ctx, &mut rules, &mut families);
        }
    }
    Ok(rules)
}

/// One job of one file.
struct JobCtx<'a> {
    file: &'a PeerFile,
    job: &'a Value,
    pointer: String,
}

fn job_rules(report: &mut Report, ctx: &JobCtx<'_>, rules: &mut RulesOut, families: &mut BTreeSet<String>) {
    let (file, job, pointer) = (ctx.file, ctx.job, ctx.pointer.as_str());
    let job_name = job.text("name").unwrap_or_else(|| format!("job{}", pointer.rsplit('/').next().unwrap_or("0")));
    let mut comments = unknown_keys(
        report,
        Node { file, value: job, pointer },
        &["name", "interval", "cron_schedule", "connections", "startup_sql", "queries"],
    );
    if job.get("startup_sql").is_some() {
        comments.push(report.left_out(
            file,
            &format!("{pointer}/startup_sql"),
            format!(
                "startup_sql of job '{job_name}': rule sessions are the exporter's own (read-only, its own timeouts)"
            ),
        ));
    }
    let interval = job_interval(report, ctx, &mut comments);
    let connections = job.strings("connections");
    let mut databases = Vec::new();
    for (c, dsn_text) in connections.iter().enumerate() {
        let name = if connections.len() == 1 { identifier(&job_name) } else { identifier(&format!("{job_name}_{c}")) };
        let site = DsnSite { file, pointer: &format!("{pointer}/connections/{c}"), database: &name };
        rules.databases.push(dsn::database(report, &site, dsn_text));
        databases.push(name);
    }
    if databases.is_empty() {
        rules.metrics.push(EntryOut::Comment(report.left_out(
            file,
            pointer,
            format!("job '{job_name}' has no connections"),
        )));
        return;
    }
    let labels = connection_labels(report, ctx, &connections, &mut comments);
    for (q, query) in job.items("queries").into_iter().enumerate() {
        let at = format!("{pointer}/queries/{q}");
        let rule = query_rule(report, QueryCtx { job: ctx, query, pointer: &at, job_name: &job_name }, families);
        rules.metrics.push(match rule {
            EntryOut::Rule(mut rule) => {
                rule.databases = databases.clone();
                if databases.len() > 1 {
                    rule.database_label = Some("sql_connection".to_string());
                }
                rule.interval = interval.clone();
                rule.comments.splice(0..0, comments.drain(..));
                for family in &mut rule.families {
                    family.static_labels.extend(labels.iter().cloned());
                    family.static_labels.sort();
                }
                EntryOut::Rule(rule)
            }
            comment => comment,
        });
    }
}

/// `interval`, or an even `cron_schedule`, as the rule's interval.
fn job_interval(report: &mut Report, ctx: &JobCtx<'_>, comments: &mut Vec<String>) -> Option<String> {
    let (file, job, pointer) = (ctx.file, ctx.job, ctx.pointer.as_str());
    if let Some(cron) = job.text("cron_schedule") {
        return match schedule::cron_period_millis(&cron) {
            Some(ms) if ms >= 1000 => Some(schedule::duration_text(ms)),
            _ => {
                comments.push(report.left_out(
                    file,
                    &format!("{pointer}/cron_schedule"),
                    format!("cron_schedule {cron:?} does not fire at an even period; the rule runs every 1m (set its interval)"),
                ));
                None
            }
        };
    }
    let text = job.text("interval")?;
    match schedule::go_duration_millis(&text) {
        Some(ms) if ms >= 1000 => Some(schedule::duration_text(ms)),
        _ => {
            comments.push(report.left_out(
                file,
                &format!("{pointer}/interval"),
                format!("interval {text:?} is not a Go duration of at least 1s; the rule runs every 1m"),
            ));
            None
        }
    }
}

/// The labels the peer adds from the connection: `sql_job`, `driver`, and for a single connection
/// `host`, `database` and `user`.
fn connection_labels(
    report: &mut Report,
    ctx: &JobCtx<'_>,
    connections: &[String],
    comments: &mut Vec<String>,
) -> Vec<(String, String)> {
    let job_name = ctx.job.text("name").unwrap_or_default();
    let mut labels = vec![("sql_job".to_string(), job_name.clone()), ("driver".to_string(), "postgres".to_string())];
    match connections {
        [one] => {
            if let Some(peer) = dsn::peer_endpoint(one) {
                labels.push(("host".to_string(), peer.host));
                labels.push(("database".to_string(), peer.dbname));
                labels.push(("user".to_string(), peer.user));
            }
        }
        _ => comments.push(report.left_out(
            ctx.file,
            &format!("{}/connections", ctx.pointer),
            format!(
                "the host, database and user labels of job '{job_name}', which has several connections: one \
                 family cannot give each connection its own; the rule labels each series with sql_connection instead"
            ),
        )),
    }
    labels
}

/// One query of a job.
struct QueryCtx<'a> {
    job: &'a JobCtx<'a>,
    query: &'a Value,
    pointer: &'a str,
    job_name: &'a str,
}

fn query_rule(report: &mut Report, q: QueryCtx<'_>, families: &mut BTreeSet<String>) -> EntryOut {
    let file = q.job.file;
    let name = q.query.text("name").unwrap_or_default();
    let mut comments = vec![format!("{} job '{}', query '{name}'", file.at(q.pointer), q.job_name)];
    comments.extend(unknown_keys(
        report,
        Node { file, value: q.query, pointer: q.pointer },
        &["name", "help", "labels", "values", "query", "query_ref"],
    ));
    let sql = match (q.query.text("query"), q.query.text("query_ref")) {
        (Some(sql), _) => sql,
        (None, Some(reference)) => match file.doc.get("queries").and_then(|m| m.text(&reference)) {
            Some(sql) => sql,
            None => {
                return EntryOut::Comment(report.left_out(
                    file,
                    &format!("{}/query_ref", q.pointer),
                    format!("query_ref '{reference}' names no entry of the top-level `queries:`"),
                ))
            }
        },
        (None, None) => {
            return EntryOut::Comment(report.left_out(
                file,
                q.pointer,
                format!("query '{name}' has no query or query_ref"),
            ))
        }
    };
    let family_name = format!("sql_{name}");
    if !families.insert(family_name.clone()) {
        return EntryOut::Comment(report.left_out(
            file,
            q.pointer,
            format!("a second query named '{name}' (family {family_name}): family names are unique across rules"),
        ));
    }
    let values = q.query.strings("values");
    if values.is_empty() {
        return EntryOut::Comment(report.left_out(file, q.pointer, format!("query '{name}' has no values")));
    }
    let mut family = FamilyOut::new(
        &family_name,
        &q.query.text("help").unwrap_or_default(),
        KindOut::Gauge,
        ValueOut::Columns { columns: values, label: COLUMN_LABEL.to_string() },
    );
    family.key_labels = q.query.strings("labels");
    let rule = RuleOut {
        name: identifier(&format!("{}_{name}", q.job_name)),
        query: sql_template(&sql),
        families: vec![family],
        comments,
        ..RuleOut::default()
    };
    EntryOut::Rule(rule)
}
